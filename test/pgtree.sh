#!/usr/bin/env bash
# Debian root file systems with another PostgreSQL major, for testing
# confluence_fdw on it with that release's own packages.
#
#   bash test/pgtree.sh path MAJOR       print the tree's folder (made or not)
#   bash test/pgtree.sh make MAJOR       make the tree, or reuse it when it is
#                                        already made from the same recipe
#   bash test/pgtree.sh run MAJOR CMD... run CMD as root in the tree, from a
#                                        fresh copy of this work tree (/src)
#   bash test/pgtree.sh test MAJOR [--package | --autopkgtest]
#                                        make, then test there (below)
#
# MAJOR and the Debian release that packages it:
#   17  trixie   (postgresql-17, postgresql-17-cron)
#   18  forky    (postgresql-18, postgresql-18-cron)
#   19  sid with experimental, which has postgresql-19 (no pg_cron yet: the
#       suites run without it, see test/run-tests.sh)
#
# A tree is made with debootstrap (minbase), then the release's PostgreSQL,
# pg_cron, the build dependencies, python3 (the stand-in), nginx and
# tinyproxy (the realistic front) and the Debian packaging tools are
# installed with its own apt.  It takes 1 to 3 minutes and about 1.8 GB, and
# is kept in CFDW_TREE_ROOT (default /var/cache/confluence_fdw/trees, outside
# any clone) with a stamp of the recipe it was made from: a later run reuses
# it, a changed recipe makes it again.  Made in a new folder and renamed
# when complete, so an interrupted make leaves no half tree behind.
#
# The archive copy this machine reaches may be a snapshot: forky's, sid's
# and experimental's Release files then carry a Valid-Until in the past, so
# the trees' apt is told Acquire::Check-Valid-Until "false" (signatures are
# still checked, against the tree's own debian-archive-keyring).
#
# CMD runs in a private mount namespace (unshare -m): /proc, /sys and /dev
# are mounted into the tree there, /tmp and /run are fresh tmpfs, and the
# namespace (with its mounts) ends with CMD, so nothing stays mounted.  The
# network namespace is the machine's: servers in the tree listen on the same
# loopback, and nothing else is reachable.  Services are never started by
# package installs (policy-rc.d), and no "main" cluster is created.
#
# `test` builds the extension in the tree with -Wextra -Werror against that
# release's PostgreSQL and libraries, runs the C unit tests (make unit), and
# then test/run-tests.sh as on the host, but with only the direct run
# (CFDW_FRONT_RUNS=""; front.sql still goes through nginx and the proxy),
# without the contract suite (Prism checks our requests against Atlassian's
# spec, which no PostgreSQL major changes) and with these extra scripts
# only: queue-crash, queue-failover, dump-restore and versions.  With
# --package it builds the Debian package there too (test/package.sh:
# dpkg-buildpackage and lintian); with --autopkgtest, the package's
# autopkgtest instead of the plain run: the whole suite, front runs and
# every extra script included, against the installed package.  Results in
# test/results/pgMAJOR/.
#
# Knobs: CFDW_TREE_ROOT, CFDW_DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail
CFDW_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$CFDW_ROOT/test/lib.sh"

TREE_ROOT=${CFDW_TREE_ROOT:-/var/cache/confluence_fdw/trees}
MIRROR=${CFDW_DEBIAN_MIRROR:-http://deb.debian.org/debian}

# tree_recipe MAJOR: sets SUITE, EXTRA_SUITE (for the PostgreSQL packages
# only) and PKGS.
tree_recipe() {
  local major=$1
  EXTRA_SUITE=''
  case $major in
    17) SUITE=trixie ;;
    18) SUITE=forky ;;
    19) SUITE=sid EXTRA_SUITE=experimental ;;
    *) cfdw_die "no Debian release is known for PostgreSQL $major (17, 18 and 19 are; 15 is the host's)" ;;
  esac
  PKGS=(
    "postgresql-$major" "postgresql-server-dev-$major" postgresql-common
    build-essential libcurl4-openssl-dev libcjson-dev libxml2-dev
    libcmark-gfm-dev libcmark-gfm-extensions-dev
    python3 curl ca-certificates openssl procps util-linux iproute2
    nginx-light tinyproxy
    debhelper dpkg-dev fakeroot lintian autopkgtest git
  )
  # pg_cron where the release has it for this major, and pg_buildext for
  # the Debian package, which is built for the majors the release supports
  # (not 19, which sid does not support yet)
  [ "$major" = 19 ] || PKGS+=("postgresql-$major-cron" postgresql-server-dev-all)
}

tree_path() {
  tree_recipe "$1"
  printf '%s/pg%s-%s\n' "$TREE_ROOT" "$1" "$SUITE${EXTRA_SUITE:++$EXTRA_SUITE}"
}

# The stamp: everything the tree is made from.  Bump the "recipe" line when
# the steps below change in a way the package list does not show.
tree_stamp() {
  tree_recipe "$1"
  printf 'recipe 1\nsuite %s\nextra %s\nmirror %s\npackages %s\n' \
    "$SUITE" "$EXTRA_SUITE" "$MIRROR" "${PKGS[*]}"
}

# in_tree DIR CMD...: run CMD chrooted in DIR, in a private mount namespace
# with /proc, /sys, /dev, fresh /tmp and /run, and CFDW_TREE_SRC (a folder
# of this machine's, when set) as /src.
in_tree() {
  local dir=$1
  shift
  unshare -m --propagation private -- bash -euo pipefail -c '
    dir=$1; shift
    # the tree on itself: its / is then a mount point, so that unshare -m
    # works inside too (test/run-tests.sh makes its own namespace)
    mount --bind "$dir" "$dir"
    mount -t proc proc "$dir/proc"
    mount --rbind /sys "$dir/sys"
    mount --rbind /dev "$dir/dev"
    mount -t tmpfs -o mode=1777 tmpfs "$dir/tmp"
    mount -t tmpfs -o mode=755 tmpfs "$dir/run"
    # the CAs this machine trusts (an egress proxy'"'"'s, say), as any program
    # run here would: npm reaches its registry through them
    # (by content, from the fresh /run: in a test run this machine'"'"'s
    # bundle is itself a bind mount, whose source may be gone)
    if [ -f /etc/ssl/certs/ca-certificates.crt ] && [ -f "$dir/etc/ssl/certs/ca-certificates.crt" ]; then
      cat /etc/ssl/certs/ca-certificates.crt >"$dir/run/cfdw-ca-bundle.crt"
      mount --bind -o ro "$dir/run/cfdw-ca-bundle.crt" "$dir/etc/ssl/certs/ca-certificates.crt"
    fi
    if [ -n "${CFDW_TREE_SRC:-}" ]; then
      mkdir -p "$dir/src"
      mount --bind "$CFDW_TREE_SRC" "$dir/src"
    fi
    mkdir -p "$dir/run/lock" "$dir/run/postgresql"
    if chroot "$dir" getent passwd postgres >/dev/null 2>&1; then
      chroot "$dir" chown postgres:postgres /run/postgresql
      chmod 2775 "$dir/run/postgresql"
    fi
    exec chroot "$dir" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      HOME=/root LANG=C.UTF-8 TERM=dumb CFDW_IN_TREE=1 ${CFDW_TREE_ENV:-} "$@"
  ' in-tree "$dir" "$@"
}

tree_make() {
  local major=$1 dir new stamp lock
  dir=$(tree_path "$major")
  stamp=$(tree_stamp "$major")
  if [ -f "$dir/.cfdw-tree-stamp" ] && [ "$(cat "$dir/.cfdw-tree-stamp")" = "$stamp" ]; then
    cfdw_log "PostgreSQL $major: reusing $dir"
    return 0
  fi
  command -v debootstrap >/dev/null || cfdw_die "debootstrap is not installed (apt-get install debootstrap; test/install-deps.sh does)"
  mkdir -p "$TREE_ROOT"
  exec 9>"$TREE_ROOT/.lock-pg$major"
  flock 9
  # another run may have made it while this one waited
  if [ -f "$dir/.cfdw-tree-stamp" ] && [ "$(cat "$dir/.cfdw-tree-stamp")" = "$stamp" ]; then
    exec 9>&-
    return 0
  fi
  tree_recipe "$major"
  new=$dir.new
  rm -rf "$new"
  cfdw_log "PostgreSQL $major: debootstrap $SUITE into $new (2 to 6 minutes)"
  # debootstrap 1.0.128 has no script named forky: sid's does for any
  # release that is not yet stable.
  debootstrap --variant=minbase --include=ca-certificates,debian-archive-keyring \
    "$SUITE" "$new" "$MIRROR" /usr/share/debootstrap/scripts/sid >"$TREE_ROOT/debootstrap-pg$major.log" 2>&1 ||
    { tail -30 "$TREE_ROOT/debootstrap-pg$major.log" >&2; cfdw_die "debootstrap $SUITE failed (log: $TREE_ROOT/debootstrap-pg$major.log)"; }
  {
    echo "deb $MIRROR $SUITE main"
    [ -z "$EXTRA_SUITE" ] || echo "deb $MIRROR $EXTRA_SUITE main"
  } >"$new/etc/apt/sources.list"
  cat >"$new/etc/apt/apt.conf.d/99confluence-fdw" <<'EOF'
// A snapshot of the archive: Release files may be past their Valid-Until.
Acquire::Check-Valid-Until "false";
APT::Install-Recommends "false";
APT::Install-Suggests "false";
EOF
  if [ -n "$EXTRA_SUITE" ]; then
    # PostgreSQL's own packages from the extra suite (apt would otherwise
    # keep the base release's libpq and postgresql-common), the rest from
    # the base release.
    cat >"$new/etc/apt/preferences.d/confluence-fdw" <<EOF
Package: postgresql-$major postgresql-client-$major postgresql-server-dev-$major libpq5 libpq-dev
Pin: release a=$EXTRA_SUITE
Pin-Priority: 990
EOF
  fi
  printf '#!/bin/sh\nexit 101\n' >"$new/usr/sbin/policy-rc.d"
  chmod 755 "$new/usr/sbin/policy-rc.d"
  mkdir -p "$new/etc/postgresql-common"
  echo "create_main_cluster = false" >"$new/etc/postgresql-common/createcluster.conf"
  cfdw_log "PostgreSQL $major: apt-get install in the tree (${#PKGS[@]} packages and their dependencies)"
  CFDW_TREE_ENV="DEBIAN_FRONTEND=noninteractive" in_tree "$new" bash -c \
    'apt-get update -qq && apt-get install -y -qq "$@" && apt-get clean' apt "${PKGS[@]}" \
    >"$TREE_ROOT/apt-pg$major.log" 2>&1 ||
    { tail -30 "$TREE_ROOT/apt-pg$major.log" >&2; cfdw_die "apt-get install in the $SUITE tree failed (log: $TREE_ROOT/apt-pg$major.log)"; }
  [ -x "$new/usr/lib/postgresql/$major/bin/pg_config" ] ||
    cfdw_die "the $SUITE tree has no /usr/lib/postgresql/$major/bin/pg_config after installing"
  printf '%s\n' "$stamp" >"$new/.cfdw-tree-stamp"
  rm -rf "$dir"
  mv "$new" "$dir"
  # (no server the tests start may hold the lock)
  exec 9>&-
  cfdw_log "PostgreSQL $major: made $dir ($(du -sh "$dir" | cut -f1))"
}

# tree_copy_src: a fresh copy of this work tree in a new folder of this
# machine (/var/tmp, removed on exit), which the run sees as /src: the
# files git knows and the new ones it does not ignore (no build products,
# no node_modules, no results).  Runs from several clones at once do not
# share it.  Sets and exports CFDW_TREE_SRC.
tree_copy_src() {
  CFDW_TREE_SRC=$(mktemp -d /var/tmp/cfdw-tree-src.XXXXXX)
  export CFDW_TREE_SRC
  trap 'rm -rf "$CFDW_TREE_SRC"' EXIT
  chmod 755 "$CFDW_TREE_SRC"
  (cd "$CFDW_ROOT" && git ls-files -z --cached --others --exclude-standard |
     while IFS= read -r -d '' f; do if [ -e "$f" ]; then printf '%s\0' "$f"; fi; done) >"$CFDW_TREE_SRC/.cfdw-files"
  # (test/package.sh reads the list: the copy has no .git)
  (cd "$CFDW_ROOT" && tar --null -T "$CFDW_TREE_SRC/.cfdw-files" -cf -) | tar -C "$CFDW_TREE_SRC" -xf -
}

# tree_test MAJOR [--package | --autopkgtest]: see the top.
tree_test() {
  local major=$1 mode=${2:-} dir out rc=0 regress
  tree_make "$major"
  dir=$(tree_path "$major")
  tree_copy_src
  out=$CFDW_ROOT/test/results/pg$major
  rm -rf "$out"
  mkdir -p "$out"
  regress=$(sed -n 's/^REGRESS = //p' "$CFDW_ROOT/Makefile" | tr ' ' '\n' | grep -vx contract | paste -sd' ' -)
  cfdw_log "PostgreSQL $major: testing in $dir (${mode:-suites})"
  CFDW_TREE_ENV="CFDW_TREE_MAJOR=$major CFDW_TREE_MODE=$mode" in_tree "$dir" bash -c '
    set -euo pipefail
    cd /src
    export LC_ALL=C.UTF-8 PG_CONFIG=/usr/lib/postgresql/$CFDW_TREE_MAJOR/bin/pg_config
    echo "== $("$PG_CONFIG" --version), libxml2 $(xml2-config --version), libcurl $(curl-config --version | cut -d" " -f2)"
    make -s PG_CONFIG="$PG_CONFIG" COPT="-Wextra -Werror -Wno-unused-parameter" 2>&1
    make -s install PG_CONFIG="$PG_CONFIG" >/dev/null
    make -s unit PG_CONFIG="$PG_CONFIG" 2>&1 | grep -v "^ok" || exit 1
    case $CFDW_TREE_MODE in
      --autopkgtest) CFDW_SKIP_DEPS=1 bash test/package.sh --autopkgtest ;;
      *)
        CFDW_SKIP_DEPS=1 CFDW_SKIP_BUILD=1 CFDW_FRONT_RUNS="" CFDW_REGRESS="$1" \
          CFDW_EXTRAS_ONLY="test/queue-crash.sh test/queue-failover.sh test/dump-restore.sh test/versions.sh" \
          bash test/run-tests.sh
        [ "$CFDW_TREE_MODE" != --package ] || CFDW_SKIP_DEPS=1 bash test/package.sh
        ;;
    esac
  ' tree-test "$regress" 2>&1 | tee "$out/run.log" || rc=$?
  # what the run left: pg_regress's results, the runner's logs, the package's
  cp -r "$CFDW_TREE_SRC/test/results/." "$out/" 2>/dev/null || true
  [ -f "$CFDW_TREE_SRC/regression.diffs" ] && cp "$CFDW_TREE_SRC/regression.diffs" "$out/"
  [ -d "$CFDW_TREE_SRC/results" ] && cp -r "$CFDW_TREE_SRC/results" "$out/pg_regress-results"
  if [ "$rc" = 0 ]; then
    cfdw_log "PostgreSQL $major: passed"
  else
    cfdw_log "PostgreSQL $major: FAILED (test/results/pg$major/)"
  fi
  return $rc
}

cmd=${1:-}
major=${2:-}
[ -n "$cmd" ] && [ -n "$major" ] || { sed -n '2,12p' "$0" >&2; exit 2; }
shift 2
case $cmd in
  path) tree_path "$major" ;;
  make) tree_make "$major" ;;
  run)
    tree_make "$major"
    dir=$(tree_path "$major")
    tree_copy_src
    in_tree "$dir" bash -c 'cd /src && exec "$@"' run "$@"
    ;;
  test) tree_test "$major" "$@" ;;
  *) sed -n '2,12p' "$0" >&2; exit 2 ;;
esac
