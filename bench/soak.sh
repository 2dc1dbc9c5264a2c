#!/usr/bin/env bash
# Soak test: ROWS rows (default 100,000) through the pipelined path
# (INSERT ... SELECT without RETURNING, max_concurrency 16) and a tenth as
# many through the one-at-a-time path (INSERT ... RETURNING, in chunks),
# against the local stand-in answering at random 1% of the requests with
# 429 (Retry-After: 0) and 0.1% with 503 (Retry-After: 1), in a throw-away
# cluster.  Then it checks
#   - the stand-in created exactly one page per row, none twice (every title
#     has exactly one answered create, and no 400 "already exists");
#   - requests received = rows + answers made by a fault (nothing resent
#     that was processed, nothing lost);
#   - the INSERTs reported every row (command tag, RETURNING ids);
#   - the backend's memory stays flat: resident memory grows by less than
#     SOAK_MAX_GROWTH_KB over each phase, and its peak by less than that
#     too;
# prints the figures, and exits non-zero if any check fails.
#
#   bash bench/soak.sh [ROWS]
#
# Knobs (environment):
#   SOAK_CONCURRENCY     max_concurrency of the pipelined table (16)
#   SOAK_RATE_429        probability of a 429 answer (0.01)
#   SOAK_RATE_503        probability of a 503 answer (0.001)
#   SOAK_RETURNING_ROWS  rows sent with RETURNING (ROWS / 10)
#   SOAK_CHUNK           rows per RETURNING statement (10000)
#   SOAK_MAX_GROWTH_KB   allowed growth of RSS and of the peak (16384)
#   SOAK_SEED            seed of the stand-in's random faults (random)
#   SOAK_FRONT           h2 or h1: send through the realistic front
#                        (test/front.sh: nginx, TLS, a host name) over HTTP/2
#                        or HTTP/1.1; needs the front's mount namespace, as
#                        test/run-tests.sh sets it up (default: direct)
#   CFDW_SKIP_DEPS=1     do not run test/install-deps.sh
#   CFDW_SKIP_BUILD=1    do not build and install the extension (it must be
#                        installed already, e.g. by test/run-tests.sh)
#
# Run time: the stand-in answers roughly 2,000 requests/s over 16
# connections here; every retry waits its back-off (0.35 s to 0.65 s) or
# Retry-After, holding its slot, so 1.1% of faults on 100,000 rows cost
# about 1,100 waits of ~0.5 s (and 100 of 1 s), spread over 16 slots.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source-path=SCRIPTDIR source=../test/lib.sh
source test/lib.sh
# shellcheck source-path=SCRIPTDIR source=../test/front.sh
source test/front.sh

ROWS=${1:-100000}
if ! [[ $ROWS =~ ^[0-9]+$ ]] || [ "$ROWS" -lt 10 ]; then
  cfdw_die "usage: bash bench/soak.sh [ROWS >= 10]"
fi
export SOAK_ROWS=$ROWS
export SOAK_CONCURRENCY=${SOAK_CONCURRENCY:-16}
export SOAK_RATE_429=${SOAK_RATE_429:-0.01}
export SOAK_RATE_503=${SOAK_RATE_503:-0.001}
export SOAK_RETURNING_ROWS=${SOAK_RETURNING_ROWS:-$((ROWS / 10))}
export SOAK_CHUNK=${SOAK_CHUNK:-10000}
export SOAK_MAX_GROWTH_KB=${SOAK_MAX_GROWTH_KB:-16384}

if [ "${CFDW_SKIP_DEPS:-0}" != 1 ]; then
  bash test/install-deps.sh
fi
if [ "${CFDW_SKIP_BUILD:-0}" != 1 ]; then
  PG_CONFIG=$(cfdw_pg_config)
  make -s PG_CONFIG="$PG_CONFIG" >/dev/null
  make -s PG_CONFIG="$PG_CONFIG" install >/dev/null
fi

work=$(mktemp -d /tmp/cfdw-soak.XXXXXX)
chmod 755 "$work"
trap 'cfdw_front_stop; cfdw_stop_standin; rm -rf "$work"' EXIT
# A stand-in of its own, plain HTTP only, with fresh credentials.
unset STANDIN_CA_FILE CFDW_STANDIN_TLS_KEY STANDIN_TLS_URL
cfdw_gen_credentials
# shellcheck disable=SC2034  # read by cfdw_start_standin
CFDW_STANDIN_ARGS=(${SOAK_SEED:+--seed "$SOAK_SEED"})
cfdw_start_standin "$work"
export SOAK_WORK=$work
STANDIN_DIRECT=$STANDIN_URL
if [ -n "${SOAK_FRONT:-}" ]; then
  [ "${CFDW_FRONT_NS:-0}" = 1 ] || cfdw_die "SOAK_FRONT needs the front's namespace (run it from test/run-tests.sh)"
  cfdw_front_start "$work"
  cfdw_front_urls "$SOAK_FRONT"
  cfdw_log "soak through the front: $STANDIN_URL"
fi

cat >"$work/soak.sql" <<'SQL'
\set ON_ERROR_STOP on
\getenv standin_url STANDIN_URL
\getenv user CFDW_USER
\getenv token CFDW_TOKEN
\getenv rows SOAK_ROWS
\getenv concurrency SOAK_CONCURRENCY
\getenv rate429 SOAK_RATE_429
\getenv rate503 SOAK_RATE_503
\getenv returning_rows SOAK_RETURNING_ROWS
\getenv chunk SOAK_CHUNK
\set QUIET on
CREATE EXTENSION confluence_fdw;
-- retries: enough that a row survives a few faults in a row
CREATE SERVER standin FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'standin_url', max_retries '8', max_retry_wait_ms '60000');
CREATE USER MAPPING FOR CURRENT_USER SERVER standin OPTIONS (username :'user', api_token :'token');
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages) FROM SERVER standin INTO public;
ALTER FOREIGN TABLE pages OPTIONS (ADD max_concurrency :'concurrency');

-- resident and peak memory of this backend, in kB, from /proc
CREATE FUNCTION mem(field text) RETURNS bigint LANGUAGE sql AS $$
  SELECT (regexp_match(pg_read_file('/proc/' || pg_backend_pid() || '/status'),
                       field || ':\s+(\d+) kB'))[1]::bigint $$;
CREATE FUNCTION standin(method text, what text, payload text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
  cmd text := format('curl -sS --fail-with-body -X %s %s/_standin/%s', method,
                     current_setting('soak.url'), what);
BEGIN
  IF payload IS NOT NULL THEN
    cmd := cmd || ' --data-binary ' || quote_literal(payload);
  END IF;
  IF to_regclass('pg_temp.s') IS NULL THEN
    CREATE TEMP TABLE s (line text);
  END IF;
  TRUNCATE s;
  EXECUTE format('COPY s FROM PROGRAM %L WITH (FORMAT csv, DELIMITER E''\x01'', QUOTE E''\x02'')', cmd);
  RETURN (SELECT line::jsonb FROM s LIMIT 1);
END $$;
SELECT set_config('soak.url', :'standin_url', false) \gset
CREATE TABLE result (phase text, rows_sent bigint, rows_reported bigint, seconds numeric,
                     rss_before_kb bigint, rss_after_kb bigint, peak_before_kb bigint,
                     peak_after_kb bigint, requests bigint, faulted bigint, pages bigint);

-- warm-up: caches, connections, the first allocations
INSERT INTO pages (space_id, title) SELECT '98306', 'warm-up ' || g FROM generate_series(1, 2000) g;
WITH sent AS (INSERT INTO pages (space_id, title)
              SELECT '98306', 'warm-up r ' || g FROM generate_series(1, 200) g RETURNING id)
SELECT count(*) FROM sent \gset
SELECT standin('POST', 'reset') \gset
SELECT standin('POST', 'fault', json_build_array(
  json_build_object('kind', 'status', 'status', 429, 'headers', json_build_object('Retry-After', '0'),
                    'rate', :'rate429'::float8, 'times', -1, 'match', '/wiki/api/v2/pages'),
  json_build_object('kind', 'status', 'status', 503, 'headers', json_build_object('Retry-After', '1'),
                    'rate', :'rate503'::float8, 'times', -1, 'match', '/wiki/api/v2/pages'))::text) \gset

SELECT set_config('soak.rows', :'rows', false), set_config('soak.returning_rows', :'returning_rows', false),
       set_config('soak.chunk', :'chunk', false) \gset
-- 1. pipelined: one statement of ROWS rows, no RETURNING
DO $$
DECLARE
  n bigint := current_setting('soak.rows')::bigint;
  rss0 bigint := mem('VmRSS');
  hwm0 bigint := mem('VmHWM');
  t0 timestamptz := clock_timestamp();
  got bigint;
  st jsonb;
BEGIN
  INSERT INTO pages (space_id, title, body)
    SELECT '98306', 'soak p ' || g, '<p>pipelined row ' || g || '</p>' FROM generate_series(1, n) g;
  GET DIAGNOSTICS got = ROW_COUNT;
  st := standin('GET', 'stats');
  INSERT INTO result VALUES ('pipelined', n, got,
    round(extract(epoch FROM clock_timestamp() - t0)::numeric, 1),
    rss0, mem('VmRSS'), hwm0, mem('VmHWM'),
    (st->>'requests')::bigint, (st->>'faulted')::bigint, (st->>'pages')::bigint);
END $$;
-- 2. one at a time: RETURNING, in chunks
DO $$
DECLARE
  n bigint := current_setting('soak.returning_rows')::bigint;
  chunk bigint := current_setting('soak.chunk')::bigint;
  rss0 bigint := mem('VmRSS');
  hwm0 bigint := mem('VmHWM');
  t0 timestamptz := clock_timestamp();
  got bigint := 0;
  part bigint;
  first bigint := 1;
  st jsonb;
BEGIN
  WHILE first <= n LOOP
    WITH sent AS (
      INSERT INTO pages (space_id, title, body)
        SELECT '98306', 'soak r ' || g, '<p>returned row ' || g || '</p>'
          FROM generate_series(first, least(first + chunk - 1, n)) g
        RETURNING id, http_status)
    SELECT count(*) INTO part FROM sent WHERE id ~ '^[0-9]+$' AND http_status = 200;
    got := got + part;
    first := first + chunk;
  END LOOP;
  st := standin('GET', 'stats');
  INSERT INTO result VALUES ('returning', n, got,
    round(extract(epoch FROM clock_timestamp() - t0)::numeric, 1),
    rss0, mem('VmRSS'), hwm0, mem('VmHWM'),
    (st->>'requests')::bigint, (st->>'faulted')::bigint, (st->>'pages')::bigint);
END $$;
\pset footer off
\pset format unaligned
\pset fieldsep ' '
\o :soak_out
SELECT phase, rows_sent, rows_reported, seconds, rss_before_kb, rss_after_kb, peak_before_kb,
       peak_after_kb, requests, faulted, pages FROM result ORDER BY phase DESC;
\o
SQL
chmod 644 "$work/soak.sql"

cfdw_log "soak: $ROWS rows pipelined (max_concurrency $SOAK_CONCURRENCY) + $SOAK_RETURNING_ROWS with RETURNING;" \
  "faults: 429 at $SOAK_RATE_429, 503 at $SOAK_RATE_503"
t0=$SECONDS
# Quiet logging: debug5 and log_statement = all would write a line per row.
# shellcheck disable=SC2016
CFDW_LOG_MIN_MESSAGES=warning CFDW_LOG_STATEMENT=none CFDW_CRON_DB=postgres \
  cfdw_pg_virtualenv bash -c 'psql -X -q -v soak_out="$SOAK_WORK/result.txt" -d postgres -f "$SOAK_WORK/soak.sql"'
elapsed=$((SECONDS - t0))

curl -fsS --max-time 300 -o "$work/requests.jsonl" "$STANDIN_DIRECT/_standin/requests"
curl -fsS --max-time 30 -o "$work/stats.json" "$STANDIN_DIRECT/_standin/stats"

python3 - "$work/result.txt" "$work/requests.jsonl" "$work/stats.json" "$elapsed" <<'PY'
import collections, json, os, sys

result_path, log_path, stats_path, elapsed = sys.argv[1:5]
rows = int(os.environ["SOAK_ROWS"])
rrows = int(os.environ["SOAK_RETURNING_ROWS"])
max_growth = int(os.environ["SOAK_MAX_GROWTH_KB"])
stats = json.load(open(stats_path))
phases = {}
cols = ("phase rows_sent rows_reported seconds rss_before_kb rss_after_kb peak_before_kb "
        "peak_after_kb requests faulted pages").split()
for line in open(result_path):
    f = line.split()
    if len(f) == len(cols) and f[0] != "phase":
        phases[f[0]] = dict(zip(cols, [f[0]] + [float(x) for x in f[1:]]))

per_title = collections.defaultdict(collections.Counter)
statuses = collections.Counter()
faulted = total = 0
for line in open(log_path):
    r = json.loads(line)
    total += 1
    title = (r.get("body_json") or {}).get("title")
    key = ("fault %s" % r["status"]) if r["fault"] else str(r["status"])
    statuses[key] += 1
    if r["fault"]:
        faulted += 1
    per_title[title][key] += 1

expected_titles = {"soak p %d" % g for g in range(1, rows + 1)} | \
                  {"soak r %d" % g for g in range(1, rrows + 1)}
created_once = sum(1 for t, c in per_title.items() if c.get("200") == 1)
problems = []


def check(ok, what):
    print("  [%s] %s" % ("ok" if ok else "FAILED", what))
    if not ok:
        problems.append(what)


print()
print("soak: %d rows pipelined + %d rows with RETURNING, %s s in all" % (rows, rrows, elapsed))
for name in ("pipelined", "returning"):
    p = phases.get(name)
    if not p:
        check(False, "phase %s ran" % name)
        continue
    n = p["rows_sent"]
    print("  %-9s %7d rows in %6.1f s (%5.0f rows/s); RSS %d -> %d kB (%+d), peak %d -> %d kB (%+d)"
          % (name, n, p["seconds"], n / max(p["seconds"], 0.1), p["rss_before_kb"], p["rss_after_kb"],
             p["rss_after_kb"] - p["rss_before_kb"], p["peak_before_kb"], p["peak_after_kb"],
             p["peak_after_kb"] - p["peak_before_kb"]))
print("  stand-in: %d requests, %d answered by a fault (%s), %d pages"
      % (total, faulted, ", ".join("%s: %d" % kv for kv in sorted(statuses.items())), stats["pages"]))
print()
for name, n in (("pipelined", rows), ("returning", rrows)):
    p = phases.get(name)
    if p:
        check(p["rows_reported"] == n, "%s: the INSERTs reported all %d rows (got %d)"
              % (name, n, p["rows_reported"]))
        check(p["rss_after_kb"] - p["rss_before_kb"] < max_growth,
              "%s: resident memory grew by less than %d kB" % (name, max_growth))
        check(p["peak_after_kb"] - p["peak_before_kb"] < max_growth,
              "%s: peak memory grew by less than %d kB" % (name, max_growth))
check(stats["pages"] == rows + rrows, "the stand-in created %d pages (expected %d)" % (stats["pages"], rows + rrows))
check(set(per_title) == expected_titles, "every row's title arrived, and nothing else (%d distinct titles)" % len(per_title))
check(created_once == len(expected_titles), "every title was created exactly once (%d)" % created_once)
check(total == rows + rrows + faulted, "requests (%d) = rows (%d) + answers made by a fault (%d)"
      % (total, rows + rrows, faulted))
check(set(statuses) <= {"200", "fault 429", "fault 503"}, "no answer other than 200 and the faults")
check(stats["faulted"] == faulted and stats["requests"] == total, "the stand-in's counters agree with its log")
print()
if problems:
    print("SOAK FAILED: %d check(s)" % len(problems))
    sys.exit(1)
print("soak passed")
PY
