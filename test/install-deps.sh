#!/usr/bin/env bash
# Installs what building and testing confluence_fdw needs on Debian 12, and
# nothing when it is already there.  Safe to run again.
set -euo pipefail

pkgs=(
  build-essential
  postgresql-15
  postgresql-server-dev-15
  postgresql-15-cron
  postgresql-common
  libcurl4-openssl-dev
  libcjson-dev
  libxml2-dev
  python3
  curl
  ca-certificates
)

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
