# confluence_fdw: PGXS build
MODULE_big = confluence_fdw
OBJS = \
	src/confluence_fdw.o \
	src/content.o \
	src/delivery.o \
	src/gateway.o \
	src/insert.o \
	src/modify.o \
	src/oauth.o \
	src/options.o \
	src/privileged.o \
	src/pure.o \
	src/pushdown.o \
	src/queue.o \
	src/queue_state.o \
	src/ratelimit.o \
	src/request.o \
	src/response.o \
	src/scan.o \
	src/storage.o \
	src/templates.o \
	src/transport.o \
	src/upsert.o \
	src/worker.o

EXTENSION = confluence_fdw
# Every released script and every upgrade script: released ones are frozen
# (test/released-scripts.sha256, checked by test/versions.sh).
DATA = $(patsubst $(srcdir)/%,%,$(wildcard $(srcdir)/sql/confluence_fdw--*.sql))
PGFILEDESC = "confluence_fdw - send rows to Confluence Cloud"

SHLIB_LINK += -lcurl -lcjson -lxml2 -lcmark-gfm -lcmark-gfm-extensions
PG_CPPFLAGS += -I$(srcdir)/src $(shell xml2-config --cflags)
PG_CFLAGS += -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare

REGRESS = setup options insert returning manual http errors explain import read change content contract test_connection gateway triggers faults badinput answers security front queue queue_roles queue_safety cron oauth
REGRESS_OPTS = --dbname=contrib_regression

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS tracks no header dependencies; every object includes these.
$(OBJS): src/confluence_fdw.h src/compat.h src/pure.h src/storage.h src/html_entities.h
# Every suite against the extension as installed (a package, or an earlier
# `make install`), with the Confluence stand-in and nginx it needs; no build.
.PHONY: installcheck-installed
installcheck-installed:
	CFDW_INSTALLED=1 bash $(srcdir)/test/run-tests.sh

include $(srcdir)/test/unit/unit.mk
