#!/usr/bin/env bash
# Installs what confluence_fdw needs on Debian 12, and nothing when it is
# already there.  Safe to run again.
#
#   bash test/install-deps.sh          building and the whole test suite
#   bash test/install-deps.sh --main   building and the main job only
#                                      (demo/run.sh): PostgreSQL 15, pg_cron,
#                                      the libraries, python3 for the stand-in
set -euo pipefail

main_pkgs=(
  build-essential
  postgresql-15
  postgresql-server-dev-15
  postgresql-15-cron
  postgresql-common
  libcurl4-openssl-dev
  libcjson-dev
  libxml2-dev
  libcmark-gfm-dev
  libcmark-gfm-extensions-dev
  python3
  curl
  ca-certificates
)
test_pkgs=(
  openssl
  git
  clang
  libclang-rt-14-dev
  valgrind
  locales
  nginx-light
  tinyproxy
  util-linux
  # the Debian package (test/package.sh)
  debhelper
  postgresql-server-dev-all
  lintian
  autopkgtest
  fakeroot
  # the other PostgreSQL majors, in Debian trees (test/pgtree.sh)
  debootstrap
)
pkgs=("${main_pkgs[@]}")
[ "${1:-}" = --main ] || pkgs+=("${test_pkgs[@]}")

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  # Debian's postgresql-common creates a "main" cluster on install; we only
  # ever use throwaway clusters, so ask it not to.
  if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    "${sudo_cmd[@]}" mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" | "${sudo_cmd[@]}" tee /etc/postgresql-common/createcluster.conf >/dev/null
  fi
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

[ "${1:-}" != --main ] || exit 0

# ---- contract test (test/contract/): node and npm for Stoplight Prism ----
# Debian 12's nodejs (18.x; Prism's pinned version needs >= 18.20.1) and npm,
# only when there is no node (or no npm) at all: a node installed some other
# way, with its own npm, is kept.  Then Prism itself: `npm ci` into
# test/contract/node_modules, nothing when it is already installed from the
# current package-lock.json.  A failure there does not stop the other tests:
# test/run-tests.sh tries again when it starts Prism, and only the contract
# test fails without it.
node_pkgs=()
command -v node >/dev/null 2>&1 || node_pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || node_pkgs+=(npm)
if [ ${#node_pkgs[@]} -gt 0 ]; then
  echo "installing: ${node_pkgs[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${node_pkgs[@]}"
fi
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
cfdw_contract_npm_ci || echo "WARNING: could not install Prism (test/contract); the contract test will fail" >&2
