# test/unit/unit.mk: unit tests of src/pure.c and src/storage.c, no
# PostgreSQL server needed.  Included at the end of the top-level Makefile
# (after PGXS, which sets srcdir), so `make`, `make install` and
# `make installcheck` are unchanged.
#
#   make unit             build test/unit/test_pure and build/test_storage with
#                         gcc -Werror and run them
#   make unit-storage     only test_storage: the Markdown corpus in test/corpus
#                         (and the large document make-large.py writes under
#                         test/unit/build/corpus), the check, the comparison
#   make unit-asan        the same tests built with clang and ASan/UBSan/LSan
#   make unit-valgrind    test_pure under valgrind (definite/indirect leaks fail)
#   make corpus-update    rewrite test/corpus/*.storage from the converter and
#                         show what changed: expected outputs, so read the diff
#   make fuzz [FUZZ_SECONDS=60]   libFuzzer harnesses, see fuzz/fuzz.mk
#
# Nothing here uses PGXS's CC/CFLAGS: the tests compile src/pure.c and
# src/storage.c straight into their own binaries and never touch src/*.o.

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
UNIT_PYTHON ?= python3

# test_storage: src/storage.c against cmark-gfm and libxml2 only (built
# under build/, like the large corpus document, so nothing new is left
# beside the sources)
STORAGE_SRCS := $(UNIT_DIR)/test_storage.c $(srcdir)/src/storage.c
STORAGE_DEPS := $(STORAGE_SRCS) $(srcdir)/src/storage.h
STORAGE_LIBS := -lcmark-gfm -lcmark-gfm-extensions -lxml2
STORAGE_CORPUS := $(srcdir)/test/corpus
STORAGE_LARGE := $(UNIT_BUILD)/corpus
STORAGE_ARGS = $(STORAGE_CORPUS) $(STORAGE_LARGE)

# A single-byte locale for the header-name test (isalnum() is true for
# 0xE9 in LATIN1 locales).  Built here because most machines have none;
# without localedef the test says SKIP.
UNIT_LOCALE := $(UNIT_BUILD)/locale/en_US.ISO-8859-1
UNIT_ENV = CFDW_TEST_LOCPATH=$(abspath $(UNIT_BUILD)/locale) \
	CFDW_TEST_SPEC=$(abspath $(srcdir)/test/contract/openapi-v2.v3.json)

.PHONY: unit unit-storage unit-asan unit-valgrind unit-clean corpus-update

$(UNIT_DIR)/test_pure: $(UNIT_DEPS)
	$(UNIT_GCC) -std=gnu11 $(UNIT_WARN) -g -O1 $(UNIT_CPPFLAGS) -o $@ $(UNIT_SRCS) $(UNIT_LIBS)

$(UNIT_DIR)/test_pure_asan: $(UNIT_DEPS)
	$(UNIT_CLANG) -std=gnu11 $(UNIT_WARN) -g -O1 $(UNIT_SAN) $(UNIT_CPPFLAGS) -o $@ $(UNIT_SRCS) $(UNIT_LIBS)

$(UNIT_BUILD)/test_storage: $(STORAGE_DEPS)
	@mkdir -p $(UNIT_BUILD)
	$(UNIT_GCC) -std=gnu11 $(UNIT_WARN) -g -O1 $(UNIT_CPPFLAGS) -o $@ $(STORAGE_SRCS) $(STORAGE_LIBS)

$(UNIT_BUILD)/test_storage_asan: $(STORAGE_DEPS)
	@mkdir -p $(UNIT_BUILD)
	$(UNIT_CLANG) -std=gnu11 $(UNIT_WARN) -g -O1 $(UNIT_SAN) $(UNIT_CPPFLAGS) -o $@ $(STORAGE_SRCS) $(STORAGE_LIBS)

# the ~1 MB document and its expected output, written together
$(STORAGE_LARGE)/90-large.md: $(STORAGE_CORPUS)/make-large.py
	$(UNIT_PYTHON) $< $(STORAGE_LARGE)

$(UNIT_LOCALE)/LC_CTYPE:
	@mkdir -p $(UNIT_BUILD)/locale
	@localedef -i en_US -f ISO-8859-1 $(UNIT_LOCALE) >/dev/null 2>&1 || \
		echo "unit: localedef could not build an ISO-8859-1 locale; the locale test will be skipped"

unit: $(UNIT_DIR)/test_pure $(UNIT_LOCALE)/LC_CTYPE $(UNIT_BUILD)/test_storage $(STORAGE_LARGE)/90-large.md
	$(UNIT_ENV) $(UNIT_DIR)/test_pure
	$(UNIT_BUILD)/test_storage $(STORAGE_ARGS)

unit-storage: $(UNIT_BUILD)/test_storage $(STORAGE_LARGE)/90-large.md
	$(UNIT_BUILD)/test_storage $(STORAGE_ARGS)

unit-asan: $(UNIT_DIR)/test_pure_asan $(UNIT_LOCALE)/LC_CTYPE $(UNIT_BUILD)/test_storage_asan $(STORAGE_LARGE)/90-large.md
	$(UNIT_ENV) ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=0 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $(UNIT_DIR)/test_pure_asan
	ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=0 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $(UNIT_BUILD)/test_storage_asan $(STORAGE_ARGS)

# Only the committed corpus: the large document's expected output is
# make-large.py's, never the converter's.
corpus-update: $(UNIT_BUILD)/test_storage
	$(UNIT_BUILD)/test_storage --write $(STORAGE_CORPUS)
	@git -C $(srcdir) diff --stat -- test/corpus || true
	@echo "corpus-update: the .storage files are expected outputs; read 'git diff test/corpus' before committing them"

unit-valgrind: $(UNIT_DIR)/test_pure $(UNIT_LOCALE)/LC_CTYPE
	$(UNIT_ENV) $(UNIT_VALGRIND) -q --leak-check=full --error-exitcode=1 \
		--errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
		$(UNIT_DIR)/test_pure

unit-clean:
	rm -rf $(UNIT_BUILD) $(UNIT_DIR)/test_pure $(UNIT_DIR)/test_pure_asan

clean: unit-clean

include $(srcdir)/fuzz/fuzz.mk
