#!/usr/bin/env bash
# The Debian package: built from the tree as it is (tracked and new files,
# nothing ignored) with dpkg-buildpackage, checked by lintian, and, with
# --autopkgtest, installed and tested by autopkgtest (debian/tests: every
# suite against the installed package).
#
#   bash test/package.sh [--autopkgtest]
#
# Fails on a build failure, on any lintian error or warning (E: or W:), or
# a failed autopkgtest.  After --autopkgtest the package is removed again
# and the tree's build reinstalled, so the machine is as before.  Artifacts
# in test/results/package/.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source-path=SCRIPTDIR source=lib.sh
source test/lib.sh

autopkgtest=0
[ "${1:-}" = --autopkgtest ] && autopkgtest=1
if [ "$autopkgtest" = 1 ] && [ "${CFDW_INSTALLED:-0}" = 1 ]; then
  # an installcheck run would start itself again here
  echo "package: --autopkgtest is not run from an installcheck run (CFDW_INSTALLED=1)"
  exit 1
fi
[ "${CFDW_SKIP_DEPS:-0}" = 1 ] || bash test/install-deps.sh

out=$PWD/test/results/package
rm -rf "$out"
mkdir -p "$out"
work=$(mktemp -d /tmp/cfdw-package.XXXXXX)
trap 'rm -rf "$work"' EXIT
version=$(dpkg-parsechangelog -l debian/changelog -S Version)
src="$work/confluence-fdw-$version"
mkdir -p "$src"
# the files git knows and the new ones it does not ignore; in a copy
# without .git (a Debian tree's /src, test/pgtree.sh), the list of them
# that the copy was made from
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git ls-files -co --exclude-standard -z
elif [ -f .cfdw-files ]; then
  cat .cfdw-files
else
  cfdw_die "package: neither a git work tree nor a copy made by test/pgtree.sh"
fi | xargs -0 cp --parents -t "$src"

# debian/control lists one binary package per PostgreSQL major of
# debian/pgversions (15 and later) that this release supports: the build
# writes it for the release it runs on (postgresql-15-confluence-fdw here,
# postgresql-17-... in a trixie tree of test/pgtree.sh).
cfdw_log "package: dpkg-buildpackage -us -uc ($version; PostgreSQL $(pg_buildext supported-versions | paste -sd' ' -))"
if ! (cd "$src" && PG_UPDATECONTROL=yes dpkg-buildpackage -us -uc) >"$out/build.log" 2>&1; then
  tail -30 "$out/build.log"
  echo "package: FAILED: dpkg-buildpackage (log: $out/build.log)"
  exit 1
fi
cp "$work"/*.deb "$work"/*.changes "$work"/*.dsc "$out"/
deb=$(ls "$out"/postgresql-*-confluence-fdw_"$version"_*.deb)
echo "package: built $(basename "$deb"): $(dpkg-deb -f "$deb" Depends)"
dpkg-deb -c "$deb" | awk '{print $6}' | grep -E '\.(so|sql|control)$' | sed 's/^/  /'

# lintian (as root it says so on stderr; that is no finding)
lintian --pedantic --display-info "$work"/*.changes >"$out/lintian.txt" 2>"$out/lintian.stderr" || true
errors=$(grep -cE '^[EW]: ' "$out/lintian.txt" || true)
echo "package: lintian: $errors errors or warnings; $(grep -cE '^[IPX]: ' "$out/lintian.txt" || true) info, pedantic or experimental tags (test/results/package/lintian.txt)"
if [ "$errors" != 0 ]; then
  grep -E '^[EW]: ' "$out/lintian.txt"
  echo "package: FAILED: lintian"
  exit 1
fi

if [ "$autopkgtest" = 1 ]; then
  cfdw_log "package: autopkgtest (the whole suite against the installed package)"
  rc=0
  (cd "$src" && autopkgtest --no-built-binaries "$deb" . -- null) >"$out/autopkgtest.log" 2>&1 || rc=$?
  grep -E '^(installcheck|.*(PASS|FAIL))' "$out/autopkgtest.log" | tail -5 || true
  # back to the tree's own build
  dpkg -r "$(dpkg-deb -f "$deb" Package)" >/dev/null 2>&1 || true
  make -s install PG_CONFIG="$(cfdw_pg_config)" >/dev/null
  if [ "$rc" != 0 ]; then
    tail -40 "$out/autopkgtest.log"
    echo "package: FAILED: autopkgtest (exit $rc; log: $out/autopkgtest.log)"
    exit 1
  fi
  echo "package: autopkgtest passed"
fi
echo "package passed"
