#!/usr/bin/env bash
# The secrets check must be able to fail: feed it a log where a token sits
# in a user mapping statement (allowed) and then one where it sits in an
# ordinary message (a leak), and check both verdicts.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
export CFDW_TOKEN=cfdwtok-selftest-aaaaaaaaaaaaaaaa CFDW_TOKEN2=cfdwtok-selftest-bbbbbbbbbbbbbbbb
export CFDW_BEARER=cfdwtok-selftest-cccccccccccccccc CFDW_BAD_TOKEN=cfdwtok-selftest-dddddddddddddddd

cat > "$dir/ok.log" <<LOG
2026-11-29 01:00:00.000 UTC [42] LOG:  statement: CREATE USER MAPPING FOR CURRENT_USER SERVER s
	  OPTIONS (username 'u@example.com', api_token '$CFDW_TOKEN');
2026-11-29 01:00:01.000 UTC [42] LOG:  statement: alter user mapping for current_user server s options (set api_token '$CFDW_TOKEN2');
2026-11-29 01:00:02.000 UTC [42] LOG:  statement: SELECT 1;
LOG
cp "$dir/ok.log" "$dir/leak.log"
echo "2026-11-29 01:00:03.000 UTC [42] DEBUG:  something with $CFDW_BEARER in it" >> "$dir/leak.log"
cp "$dir/ok.log" "$dir/leak2.log"
echo "2026-11-29 01:00:03.000 UTC [42] LOG:  statement: SELECT '$CFDW_BAD_TOKEN';" >> "$dir/leak2.log"
echo "an output line with $CFDW_TOKEN" > "$dir/out.txt"

python3 test/check_secrets.py --server-log "$dir/ok.log" >/dev/null
! python3 test/check_secrets.py --server-log "$dir/leak.log" >/dev/null
! python3 test/check_secrets.py --server-log "$dir/leak2.log" >/dev/null
! python3 test/check_secrets.py --server-log "$dir/ok.log" "$dir/out.txt" >/dev/null
# an access token the stand-in issued, and a client secret
echo "2026-11-29 01:00:04.000 UTC [42] DEBUG:  token cfdwat-0123456789abcdef0123456789abcdef" > "$dir/tok.log"
! python3 test/check_secrets.py --server-log "$dir/tok.log" >/dev/null
echo "client_secret cfdwtok-selftest-eeeeeeeeeeeeeeee" > "$dir/sec.txt"
python3 test/check_secrets.py --server-log "$dir/ok.log" "$dir/sec.txt" >/dev/null
! CFDW_CLIENT_SECRET=cfdwtok-selftest-eeeeeeeeeeeeeeee python3 test/check_secrets.py --server-log "$dir/ok.log" "$dir/sec.txt" >/dev/null
echo "check_secrets self-test: passes a user mapping statement, catches 5 leaks"
