#!/usr/bin/env bash
# Content: what converting and checking a 100 KB Markdown document costs,
# against sending it to a loopback server.
#
#   bash bench/content.sh [KB] [N]        (default 100 KB, 20 documents)
#
# One generated Markdown document of about KB kilobytes (release notes:
# headings, paragraphs with emphasis and links, lists, task lists, tables,
# fenced code, alerts), and, each timed BENCH_RUNS (3) times, interleaved,
# median taken, in one run on this machine:
#   convert   confluence_fdw.storage_is_well_formed(
#                      confluence_fdw.markdown_to_storage(md)), N times in a
#             PL/pgSQL loop over the document in a variable (conversion
#             with cmark-gfm, then the libxml2 check; timed in the server)
#   check     confluence_fdw.storage_is_well_formed(storage) the same way,
#             on the converted body (the check alone)
#   curl      N POSTs of the converted page as JSON (the body the FDW
#             sends) to the local stand-in, by one curl process over one
#             kept-alive connection
#   fdw_md    INSERT of N rows with representation 'markdown' (convert,
#             check and send) through the FDW, one request at a time
#   fdw_st    the same with the storage body as written (check and send)
# Prints each per document and the ratio convert / curl (target below 1:
# converting costs less than sending).  Writes bench/results/content.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source-path=SCRIPTDIR source=../test/lib.sh
source test/lib.sh

export CB_KB=${1:-100} CB_N=${2:-20} CB_RUNS=${BENCH_RUNS:-3}
[ "${CFDW_SKIP_DEPS:-0}" = 1 ] || bash test/install-deps.sh
if [ "${CFDW_SKIP_BUILD:-0}" != 1 ]; then
  PG_CONFIG=$(cfdw_pg_config)
  make -s PG_CONFIG="$PG_CONFIG" >/dev/null
  make -s PG_CONFIG="$PG_CONFIG" install >/dev/null
fi

work=$(mktemp -d /tmp/cfdw-cbench.XXXXXX)
chmod 755 "$work"
trap 'cfdw_stop_standin; rm -rf "$work"' EXIT
unset STANDIN_CA_FILE CFDW_STANDIN_TLS_KEY STANDIN_TLS_URL
cfdw_gen_credentials
cfdw_start_standin "$work"
export CB_WORK=$work
mkdir -p bench/results

# The document: sections of a release log until it reaches CB_KB kB.
python3 - "$work/doc.md" "$CB_KB" <<'PY'
import sys
out, kb = sys.argv[1], int(sys.argv[2])
parts, n = [], 0
while sum(len(p) for p in parts) < kb * 1024:
    n += 1
    parts.append(f"""## Release 2.{n}

Shipped on *day {n}* by the **platform team**; see [the ticket](https://jira.example.com/browse/OPS-{n})
and `deploy --version 2.{n}` for details & rollback.

- fixed a leak in the worker
- faster `COPY` into foreign tables
  - nested: {n} rows/s more
- [ ] update the runbook
- [x] notify on-call

| metric | before | after |
|---|--:|--:|
| p50 ms | {n % 97} | {n % 89} |
| errors | {n % 7} | 0 |

```sql
SELECT count(*) FROM pages WHERE title = 'Release 2.{n}';
```

> [!NOTE]
> Upgrade the replicas first.

""")
open(out, "w").write("".join(parts))
PY

cat >"$work/inside.sh" <<'INSIDE'
set -euo pipefail
# JIT compiles the timing loop's expressions on the fly, which is no part
# of either side's cost: off for every statement here
export PGOPTIONS="-c jit=off"
psql_q() { psql -X -q -v ON_ERROR_STOP=1 -At -d postgres "$@"; }
ms() { echo $(( $(date +%s%N) / 1000000 )); }
auth=$(printf '%s:%s' "$CFDW_USER" "$CFDW_TOKEN" | base64 -w0)
psql_q <<SQL
CREATE EXTENSION confluence_fdw;
CREATE SERVER s FOREIGN DATA WRAPPER confluence_fdw OPTIONS (base_url '$STANDIN_URL');
CREATE USER MAPPING FOR CURRENT_USER SERVER s
  OPTIONS (username '$CFDW_USER', api_token '$CFDW_TOKEN');
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages) FROM SERVER s INTO public;
-- stored uncompressed: the timings are of the conversion, not of pglz
CREATE TABLE doc (md text, storage text);
ALTER TABLE doc ALTER md SET STORAGE EXTERNAL, ALTER storage SET STORAGE EXTERNAL;
SQL
chmod 644 "$CB_WORK/doc.md"
psql_q -c "INSERT INTO doc (md) VALUES (pg_read_file('$CB_WORK/doc.md'))" >/dev/null
psql_q -c "UPDATE doc SET storage = confluence_fdw.markdown_to_storage(md)" >/dev/null
# The helpers N times on values already in memory (a PL/pgSQL variable
# holds them detoasted): the work itself, not reading the row N times.
psql_q <<'SQL'
CREATE FUNCTION time_helpers(what text, n int) RETURNS bigint LANGUAGE plpgsql AS $f$
DECLARE
  md text := (SELECT d.md FROM doc d);
  st text := (SELECT d.storage FROM doc d);
  ok int := 0;
  t0 timestamptz := clock_timestamp();
BEGIN
  FOR i IN 1..n LOOP
    IF what = 'convert' THEN
      ok := ok + confluence_fdw.storage_is_well_formed(confluence_fdw.markdown_to_storage(md))::int;
    ELSE
      ok := ok + confluence_fdw.storage_is_well_formed(st)::int;
    END IF;
  END LOOP;
  IF ok <> n THEN RAISE EXCEPTION '% of % well formed', ok, n; END IF;
  RETURN (extract(epoch FROM clock_timestamp() - t0) * 1000)::bigint;
END $f$;
SQL
psql_q -c "SELECT length(md) || ' ' || length(storage) || ' ' || confluence_fdw.storage_is_well_formed(storage) FROM doc" >"$CB_WORK/sizes"
read -r md_len st_len ok <"$CB_WORK/sizes"
[ "$ok" = true ] || { echo "the converted document is not well formed ($ok)"; exit 1; }

# curl's requests: the page as the FDW sends it, a new title each
psql_q -c "SELECT json_build_object('spaceId', '98306', 'title', 'Curl %s', 'body',
             json_build_object('representation', 'storage', 'value', storage))::text FROM doc" >"$CB_WORK/body.tmpl"
make_curl_cfg() {
  local run=$1
  {
    # "next" starts over: each request carries its own headers
    for i in $(seq 1 "$CB_N"); do
      echo "header = \"Authorization: Basic $auth\""
      echo 'header = "Content-Type: application/json"'
      echo 'header = "Accept: application/json"'
      sed "s/Curl %s/Curl $run-$i/" "$CB_WORK/body.tmpl" >"$CB_WORK/body-$run-$i.json"
      echo "url = \"$STANDIN_URL/wiki/api/v2/pages\""
      echo "data-binary = \"@$CB_WORK/body-$run-$i.json\""
      echo "output = /dev/null"
      echo "write-out = \"%{http_code}\\n\""
      if [ "$i" -lt "$CB_N" ]; then echo "next"; fi
    done
  } >"$CB_WORK/curl-$run.cfg"
}

psql_q -c "SELECT confluence_fdw.storage_is_well_formed(confluence_fdw.markdown_to_storage(md)) FROM doc" >/dev/null  # warm-up
for run in $(seq 1 "$CB_RUNS"); do
  make_curl_cfg "$run"
  echo "convert $(psql_q -c "SELECT time_helpers('convert', $CB_N)")" >>"$CB_WORK/times"
  echo "check $(psql_q -c "SELECT time_helpers('check', $CB_N)")" >>"$CB_WORK/times"
  t0=$(ms)
  got=$(curl -sS -K "$CB_WORK/curl-$run.cfg" | grep -c '^200$')
  t1=$(ms)
  [ "$got" = "$CB_N" ] || { echo "curl: $got of $CB_N answered 200"; exit 1; }
  echo "curl $((t1 - t0))" >>"$CB_WORK/times"
  t0=$(ms)
  got=$(psql_q -c "WITH r AS (INSERT INTO pages (space_id, title, body, representation)
                     SELECT '98306', 'Md $run-' || i, md, 'markdown' FROM doc, generate_series(1, $CB_N) i
                     RETURNING http_status) SELECT count(*) FILTER (WHERE http_status = 200) FROM r")
  t1=$(ms)
  [ "$got" = "$CB_N" ] || { echo "fdw markdown: $got"; exit 1; }
  echo "fdw_md $((t1 - t0))" >>"$CB_WORK/times"
  t0=$(ms)
  got=$(psql_q -c "WITH r AS (INSERT INTO pages (space_id, title, body)
                     SELECT '98306', 'St $run-' || i, storage FROM doc, generate_series(1, $CB_N) i
                     RETURNING http_status) SELECT count(*) FILTER (WHERE http_status = 200) FROM r")
  t1=$(ms)
  [ "$got" = "$CB_N" ] || { echo "fdw storage: $got"; exit 1; }
  echo "fdw_st $((t1 - t0))" >>"$CB_WORK/times"
done
echo "$md_len $st_len" >"$CB_WORK/sizes"
INSIDE

CFDW_LOG_MIN_MESSAGES=warning CFDW_LOG_STATEMENT=none CFDW_CRON_DB=postgres \
  cfdw_pg_virtualenv bash "$work/inside.sh"

python3 - "$work/times" "$work/sizes" "$CB_N" <<'PY' | tee bench/results/content.txt
import statistics, sys
t = {}
for line in open(sys.argv[1]):
    k, v = line.split()
    t.setdefault(k, []).append(int(v))
md_len, st_len = (int(x) for x in open(sys.argv[2]).read().split())
n = int(sys.argv[3])
per = {k: statistics.median(v) / n for k, v in t.items()}
print(f"content benchmark: a {md_len / 1024:.0f} kB Markdown document ({st_len / 1024:.0f} kB as storage),"
      f" {n} per run, median of {len(t['convert'])} runs, per document")
for k, label in (("convert", "convert + check (SQL helpers)"), ("check", "check alone"),
                 ("curl", "curl POST of the page, loopback"),
                 ("fdw_md", "FDW INSERT, markdown"), ("fdw_st", "FDW INSERT, storage")):
    print(f"  {label:34s} {per[k]:8.2f} ms")
ratio = per["convert"] / per["curl"]
print(f"  convert + check / curl send = {ratio:.2f}   target below 1: {'holds' if ratio < 1 else 'MISSED'}")
print(f"  convert + check / FDW INSERT of the storage body = {per['convert'] / per['fdw_st']:.2f}")
print(f"  FDW markdown INSERT / FDW storage INSERT = {per['fdw_md'] / per['fdw_st']:.2f}")
PY
