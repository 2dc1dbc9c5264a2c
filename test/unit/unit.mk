# test/unit/unit.mk: unit tests of src/pure.c, no PostgreSQL server needed.
# Included at the end of the top-level Makefile (after PGXS, which sets
# srcdir), so `make`, `make install` and `make installcheck` are unchanged.
#
#   make unit             build test/unit/test_pure with gcc -Werror and run it
#   make unit-asan        the same tests built with clang and ASan/UBSan/LSan
#   make unit-valgrind    the gcc build under valgrind (definite/indirect leaks fail)
#   make fuzz [FUZZ_SECONDS=60]   libFuzzer harnesses, see fuzz/fuzz.mk
#
# Nothing here uses PGXS's CC/CFLAGS: the tests compile src/pure.c straight
# into their own binaries and never touch src/*.o.

UNIT_DIR := $(srcdir)/test/unit
UNIT_BUILD := $(UNIT_DIR)/build
UNIT_SRCS := $(UNIT_DIR)/test_pure.c $(srcdir)/src/pure.c
UNIT_DEPS := $(UNIT_SRCS) $(srcdir)/src/pure.h
UNIT_CPPFLAGS := -I$(srcdir)/src $(shell xml2-config --cflags)
UNIT_LIBS := -lcjson -lcurl -lxml2
UNIT_GCC ?= gcc
UNIT_CLANG ?= clang
UNIT_WARN := -Wall -Wextra -Werror
UNIT_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
UNIT_VALGRIND ?= valgrind

# A single-byte locale for the header-name test (isalnum() is true for
# 0xE9 in LATIN1 locales).  Built here because most machines have none;
# without localedef the test says SKIP.
UNIT_LOCALE := $(UNIT_BUILD)/locale/en_US.ISO-8859-1
UNIT_ENV = CFDW_TEST_LOCPATH=$(abspath $(UNIT_BUILD)/locale)

.PHONY: unit unit-asan unit-valgrind unit-clean

$(UNIT_DIR)/test_pure: $(UNIT_DEPS)
	$(UNIT_GCC) -std=gnu11 $(UNIT_WARN) -g -O1 $(UNIT_CPPFLAGS) -o $@ $(UNIT_SRCS) $(UNIT_LIBS)

$(UNIT_DIR)/test_pure_asan: $(UNIT_DEPS)
	$(UNIT_CLANG) -std=gnu11 $(UNIT_WARN) -g -O1 $(UNIT_SAN) $(UNIT_CPPFLAGS) -o $@ $(UNIT_SRCS) $(UNIT_LIBS)

$(UNIT_LOCALE)/LC_CTYPE:
	@mkdir -p $(UNIT_BUILD)/locale
	@localedef -i en_US -f ISO-8859-1 $(UNIT_LOCALE) >/dev/null 2>&1 || \
		echo "unit: localedef could not build an ISO-8859-1 locale; the locale test will be skipped"

unit: $(UNIT_DIR)/test_pure $(UNIT_LOCALE)/LC_CTYPE
	$(UNIT_ENV) $(UNIT_DIR)/test_pure

unit-asan: $(UNIT_DIR)/test_pure_asan $(UNIT_LOCALE)/LC_CTYPE
	$(UNIT_ENV) ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=0 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $(UNIT_DIR)/test_pure_asan

unit-valgrind: $(UNIT_DIR)/test_pure $(UNIT_LOCALE)/LC_CTYPE
	$(UNIT_ENV) $(UNIT_VALGRIND) -q --leak-check=full --error-exitcode=1 \
		--errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
		$(UNIT_DIR)/test_pure

unit-clean:
	rm -rf $(UNIT_BUILD) $(UNIT_DIR)/test_pure $(UNIT_DIR)/test_pure_asan

clean: unit-clean

include $(srcdir)/fuzz/fuzz.mk
