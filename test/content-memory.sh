#!/usr/bin/env bash
# Memory of the Markdown conversion (src/content.c, src/storage.c), in a
# throw-away cluster, one session:
#
# 1. Growth: markdown_to_storage() and storage_is_well_formed() of a
#    generated Markdown document of about CONTENTMEM_KB (100) kB,
#    CONTENTMEM_SMALL (20) times, then CONTENTMEM_LARGE (200) times.  The
#    backend's peak resident memory must grow by less than
#    CONTENTMEM_MAX_GROWTH_KB (4096) from the first run to the second, and
#    the context cmark allocates in ("confluence_fdw content") must keep no
#    more after the large run than after the small one.
# 2. Out of memory: with the backend's address space limited (prlimit
#    --as, from psql's \!, as the server's user: a container may lack
#    CAP_SYS_RESOURCE) to what it uses plus 64 MB, converting
#    a 12 MB Markdown document must fail with SQLSTATE 53200 from the
#    allocator content.c gives cmark-gfm (the DETAIL names its context),
#    not abort() (which restarts every backend of the cluster); then, with
#    the limit lifted, the same session converts a document as before and
#    the context is small again (reset after the error).
#
#   CFDW_SKIP_DEPS=1 CFDW_SKIP_BUILD=1 bash test/content-memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source-path=SCRIPTDIR source=lib.sh
source test/lib.sh

export CONTENTMEM_KB=${CONTENTMEM_KB:-100} CONTENTMEM_SMALL=${CONTENTMEM_SMALL:-20}
export CONTENTMEM_LARGE=${CONTENTMEM_LARGE:-200}
CONTENTMEM_MAX_GROWTH_KB=${CONTENTMEM_MAX_GROWTH_KB:-4096}
[ "${CFDW_SKIP_DEPS:-0}" = 1 ] || bash test/install-deps.sh
if [ "${CFDW_SKIP_BUILD:-0}" != 1 ]; then
  PG_CONFIG=$(cfdw_pg_config)
  make -s PG_CONFIG="$PG_CONFIG" >/dev/null
  make -s PG_CONFIG="$PG_CONFIG" install >/dev/null
fi
[ "$(id -u)" = 0 ] || cfdw_die "content-memory: run as root (runuser, to change a backend's limit as its user)"
command -v prlimit >/dev/null || cfdw_die "content-memory: prlimit (util-linux) is missing"

work=$(mktemp -d /tmp/cfdw-contentmem.XXXXXX)
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT
export CONTENTMEM_WORK=$work

cat >"$work/contentmem.sql" <<'SQL'
\set ON_ERROR_STOP on
\set QUIET on
\getenv kb CONTENTMEM_KB
\getenv n_small CONTENTMEM_SMALL
\getenv n_large CONTENTMEM_LARGE
CREATE EXTENSION confluence_fdw;
CREATE FUNCTION mem(field text) RETURNS bigint LANGUAGE sql AS $$
  SELECT (regexp_match(pg_read_file('/proc/' || pg_backend_pid() || '/status'),
                       field || ':\s+(\d+) kB'))[1]::bigint $$;
CREATE FUNCTION content_cxt() RETURNS bigint LANGUAGE sql AS $$
  SELECT coalesce(sum(total_bytes), 0)::bigint FROM pg_backend_memory_contexts
   WHERE name = 'confluence_fdw content' $$;
-- release notes: headings, emphasis, links, lists, tasks, tables, code, alerts
CREATE TABLE doc AS
SELECT string_agg(format(E'## Release %s\n\nFixed *%s* bugs in [the parser](https://example.com/%s) & **one** leak.\n\n'
                         '- [x] tests for %s\n- [ ] docs, see www.example.com\n\n'
                         '| part | state |\n|:--|--:|\n| %s | ~~open~~ done |\n\n'
                         '> [!NOTE]\n> Upgrade before %s.\n\n```sql\nSELECT %s;\n```\n\n', i, i, i, i, i, i, i), '') AS md
  FROM generate_series(1, (:kb * 1024) / 330) AS i;
CREATE FUNCTION convert_n(n int) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  md text := (SELECT md FROM doc);
  total bigint := 0;
  s text;
BEGIN
  FOR i IN 1..n LOOP
    s := confluence_fdw.markdown_to_storage(md);
    IF NOT confluence_fdw.storage_is_well_formed(s) THEN
      RAISE EXCEPTION 'conversion % is not well formed', i;
    END IF;
    total := total + length(s);
  END LOOP;
  RETURN total;
END $$;

-- 1. growth
SELECT length(md) AS doc_bytes FROM doc \gset
SELECT convert_n(1) AS out_bytes \gset
SELECT convert_n(:n_small) > 0 AS ok_small \gset
SELECT mem('VmHWM') AS hwm_small, mem('VmRSS') AS rss_small, content_cxt() AS cxt_small \gset
SELECT convert_n(:n_large) > 0 AS ok_large \gset
SELECT mem('VmHWM') AS hwm_large, mem('VmRSS') AS rss_large, content_cxt() AS cxt_large \gset

-- 2. out of memory
SELECT pg_backend_pid() AS pid \gset
CREATE TEMP TABLE big AS
SELECT repeat(E'- item *em* [link](http://x.example/) ~~gone~~ www.example.com\n', 200000) AS md;
SELECT length(md) AS big_bytes FROM big \gset
\setenv CONTENTMEM_PID :pid
\! runuser -u "$(stat -c %U /proc/$CONTENTMEM_PID)" -- prlimit --pid "$CONTENTMEM_PID" --as="$(( $(sed -n 's/^VmSize:[[:space:]]*\([0-9]*\) kB/\1/p' /proc/$CONTENTMEM_PID/status) * 1024 + 64 * 1048576 )):unlimited"
CREATE TEMP TABLE oom (sqlstate text, message text, detail text);
DO $$
DECLARE
  st text; msg text; det text;
BEGIN
  PERFORM length(confluence_fdw.markdown_to_storage(md)) FROM big;
  INSERT INTO oom VALUES ('00000', 'converted', '');
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
  INSERT INTO oom VALUES (st, msg, det);
END $$;
\! runuser -u "$(stat -c %U /proc/$CONTENTMEM_PID)" -- prlimit --pid "$CONTENTMEM_PID" --as=unlimited:unlimited
SELECT sqlstate AS oom_state, message AS oom_message, detail AS oom_detail FROM oom \gset
SELECT content_cxt() AS cxt_after_oom, pg_backend_pid() AS pid_after \gset
SELECT convert_n(1) AS out_after \gset
\pset tuples_only on
\pset format unaligned
\o :out
SELECT :doc_bytes, :out_bytes, :hwm_small, :hwm_large, :rss_small, :rss_large, :cxt_small, :cxt_large,
       :big_bytes, :'oom_state', :cxt_after_oom, :pid, :pid_after, :out_after;
\o
\o :out_msg
SELECT :'oom_message' || ' / ' || :'oom_detail';
\o
SQL
chmod 644 "$work/contentmem.sql"

# shellcheck disable=SC2016
CFDW_LOG_MIN_MESSAGES=error CFDW_LOG_STATEMENT=none CFDW_CRON_DB=postgres \
  cfdw_pg_virtualenv bash -c 'psql -X -q -v out="$CONTENTMEM_WORK/out.txt" -v out_msg="$CONTENTMEM_WORK/msg.txt" -d postgres -f "$CONTENTMEM_WORK/contentmem.sql"'
read -r doc_bytes out_bytes hwm_small hwm_large rss_small rss_large cxt_small cxt_large \
  big_bytes oom_state cxt_after_oom pid pid_after out_after <<<"$(tr '|' ' ' <"$work/out.txt")"
oom_msg=$(cat "$work/msg.txt")
growth=$((hwm_large - hwm_small))
echo "content-memory: a $doc_bytes-byte Markdown document ($out_bytes bytes of storage) converted and checked"
echo "  $CONTENTMEM_SMALL times: peak $hwm_small kB, RSS $rss_small kB, cmark's context $cxt_small bytes"
echo "  $CONTENTMEM_LARGE times: peak $hwm_large kB, RSS $rss_large kB, cmark's context $cxt_large bytes (peak growth $growth kB)"
echo "  a $big_bytes-byte document with 64 MB of address space left: SQLSTATE $oom_state, \"$oom_msg\";"
echo "  then cmark's context $cxt_after_oom bytes, the same backend ($pid -> $pid_after) converts to $out_after bytes"
rc=0
if [ "$growth" -ge "$CONTENTMEM_MAX_GROWTH_KB" ]; then
  echo "  FAILED: peak memory grew by $growth kB (limit $CONTENTMEM_MAX_GROWTH_KB kB)"; rc=1
fi
[ "$cxt_large" -le "$cxt_small" ] || { echo "  FAILED: cmark's context grew from $cxt_small to $cxt_large bytes"; rc=1; }
[ "$oom_state" = 53200 ] || { echo "  FAILED: out of memory gave SQLSTATE $oom_state, not 53200"; rc=1; }
[[ $oom_msg == *'memory context "confluence_fdw content"'* ]] ||
  { echo "  FAILED: the failure was not in the allocator content.c gives cmark-gfm"; rc=1; }
[ "$pid" = "$pid_after" ] || { echo "  FAILED: the session did not survive"; rc=1; }
[ "$out_after" = "$out_bytes" ] || { echo "  FAILED: after the error the document converts to $out_after bytes, not $out_bytes"; rc=1; }
[ "$cxt_after_oom" -le $((1024 * 1024)) ] || { echo "  FAILED: cmark's context kept $cxt_after_oom bytes after the error"; rc=1; }
[ $rc = 0 ] && echo "content-memory passed"
exit $rc
