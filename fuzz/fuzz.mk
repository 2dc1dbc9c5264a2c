# fuzz/fuzz.mk: libFuzzer harnesses of src/pure.c and src/storage.c
# (included by test/unit/unit.mk).
#
#   make fuzz [FUZZ_SECONDS=60] [FUZZERS="headers path"]
#       build every harness under fuzz/build/, run them one after the other
#       for FUZZ_SECONDS each, print executions, exec/s, coverage and
#       findings per harness; fails if any harness found something.
#   make fuzz-build     only build them
#   make fuzz-clean     remove fuzz/build/ (the grown corpora too)

FUZZ_DIR := $(srcdir)/fuzz
FUZZ_BUILD := $(FUZZ_DIR)/build
FUZZ_SECONDS ?= 60
FUZZERS ?= headers path retry_after body markdown storage_check
FUZZ_CLANG ?= clang
FUZZ_CFLAGS := -g -O1 -Wall -Wextra -Werror -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_BINS := $(addprefix $(FUZZ_BUILD)/fuzz_,$(FUZZERS))

# the harnesses of src/storage.c (cmark-gfm and libxml2); the others link src/pure.c
FUZZ_STORAGE := $(addprefix $(FUZZ_BUILD)/fuzz_,markdown storage_check)
FUZZ_STORAGE_LIBS := -lcmark-gfm-extensions -lcmark-gfm -lxml2

.PHONY: fuzz fuzz-build fuzz-clean

$(FUZZ_BUILD)/fuzz_%: $(FUZZ_DIR)/fuzz_%.c $(FUZZ_DIR)/fuzz_common.h $(srcdir)/src/pure.c $(srcdir)/src/pure.h
	@mkdir -p $(FUZZ_BUILD)
	$(FUZZ_CLANG) $(FUZZ_CFLAGS) -I$(srcdir)/src $(shell xml2-config --cflags) \
		-o $@ $< $(srcdir)/src/pure.c -lcjson -lcurl -lxml2

# a static pattern rule: an explicit rule, so make does not use the one above
$(FUZZ_STORAGE): $(FUZZ_BUILD)/fuzz_%: $(FUZZ_DIR)/fuzz_%.c $(FUZZ_DIR)/fuzz_common.h \
		$(srcdir)/src/storage.c $(srcdir)/src/storage.h
	@mkdir -p $(FUZZ_BUILD)
	$(FUZZ_CLANG) $(FUZZ_CFLAGS) -I$(srcdir)/src $(shell xml2-config --cflags) \
		-o $@ $< $(srcdir)/src/storage.c $(FUZZ_STORAGE_LIBS)

fuzz-build: $(FUZZ_BINS)

# fuzz_headers runs in the ISO-8859-1 locale that unit.mk builds (when it can)
fuzz: $(FUZZ_BINS) $(UNIT_LOCALE)/LC_CTYPE
	FUZZ_BUILD=$(FUZZ_BUILD) FUZZ_DIR=$(FUZZ_DIR) CFDW_FUZZ_LOCPATH=$(abspath $(UNIT_BUILD)/locale) \
		sh $(FUZZ_DIR)/run.sh $(FUZZ_SECONDS) $(FUZZERS)

fuzz-clean:
	rm -rf $(FUZZ_BUILD)
