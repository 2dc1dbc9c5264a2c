#!/usr/bin/env bash
# The main job of confluence_fdw, end to end on a fresh Debian 12 machine:
# installs what is missing, builds and installs the extension, starts a
# throw-away PostgreSQL cluster, creates a page and a footer comment on it
# with INSERT ... RETURNING, and prints what Confluence answered.
#
#   bash demo/run.sh
#
# With CONFLUENCE_DOMAIN, CONFLUENCE_USER and CONFLUENCE_API_TOKEN set (and
# CONFLUENCE_SPACE_ID, or the first space the account can see is used), it
# talks to that real site.  Otherwise it starts the local Confluence
# stand-in (test/standin.py) with fresh random credentials.
set -euo pipefail
cd "$(dirname "$0")/.."
source test/lib.sh

cfdw_build_and_install

work=$(mktemp -d /tmp/cfdw-demo.XXXXXX)
chmod 755 "$work"
trap 'cfdw_stop_standin; rm -rf "$work"' EXIT

if [ -n "${CONFLUENCE_DOMAIN:-}" ] && [ -n "${CONFLUENCE_USER:-}" ] && [ -n "${CONFLUENCE_API_TOKEN:-}" ]; then
  cfdw_log "using the real site https://$CONFLUENCE_DOMAIN"
  export DEMO_SERVER_OPTION=domain DEMO_SERVER_VALUE=$CONFLUENCE_DOMAIN
  export DEMO_USER=$CONFLUENCE_USER DEMO_TOKEN=$CONFLUENCE_API_TOKEN
  if [ -z "${CONFLUENCE_SPACE_ID:-}" ]; then
    # curl reads the credentials from stdin, so they never show in ps.
    CONFLUENCE_SPACE_ID=$(printf 'user = "%s:%s"\n' "$CONFLUENCE_USER" "$CONFLUENCE_API_TOKEN" |
      curl -fsS -K - -H 'Accept: application/json' \
        "https://$CONFLUENCE_DOMAIN/wiki/api/v2/spaces?limit=1" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["results"][0]["id"])')
  fi
  export DEMO_SPACE_ID=$CONFLUENCE_SPACE_ID
else
  cfdw_log "no CONFLUENCE_DOMAIN/USER/API_TOKEN set: using the local Confluence stand-in"
  cfdw_gen_credentials
  cfdw_start_standin "$work"
  export DEMO_SERVER_OPTION=base_url DEMO_SERVER_VALUE=$STANDIN_URL
  export DEMO_USER=$CFDW_USER DEMO_TOKEN=$CFDW_TOKEN DEMO_SPACE_ID=98306
fi
export DEMO_TITLE="confluence_fdw demo $(date -u +%Y-%m-%dT%H:%M:%SZ)"

cp demo/demo.sql "$work/demo.sql"
chmod 644 "$work/demo.sql"
CFDW_PGVE_PLAIN=1 cfdw_pg_virtualenv psql -X -q -v ON_ERROR_STOP=1 -d postgres -f "$work/demo.sql"
