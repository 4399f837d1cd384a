#!/usr/bin/env bash
# busybox.sh [OUT_DIR]: builds OUT_DIR/busybox (default _output/conformance),
# the busybox of the conformance test images (test/conformance): a static
# BusyBox 1.37.0 configured as upstream's busybox image is (docker-library's
# build: `make defconfig` plus a few options; static here, as the images
# carry no libc for it). Idempotent: nothing is done when the binary is there,
# was built by this recipe and passes the check below.
#
# Why not Debian's busybox-static: its ash drops environment variables whose
# names are not shell identifiers ("1-data-1", "$_-data-1", "#@!data-1",
# "* +,-./0123456789"), and [Conformance] tests (ConfigMap's and Secret's
# "should be consumable as environment variable names with various
# prefixes"; Variable Expansion's "allow almost all printable ASCII
# characters as environment variable names" too) run `sh -c env` in the
# busybox image and expect them printed. Upstream's ash keeps them: its
# init() imports every environ entry that has a '=' (commit 9c143ce52da1,
# which undid an earlier name check; see the comment there in shell/ash.c).
# Debian reverts that commit
# (debian/patches/revert-9c143ce52da11ec3d21a3491c3749841d3dc10f0.patch) and
# puts it back behind CONFIG_FEATURE_DI_ENV_HACK (temp-deb-installer-hack.patch),
# which only its debian-installer build (udeb) enables; bookworm's 1.35.0 and
# trixie's 1.37.0 busybox-static both have it off:
#   env 'a-b=1' /bin/busybox sh -c env | grep a-b    # prints nothing
# So this builds upstream's source, unpatched. The only network it uses is
# Debian's archive: trixie's source package carries upstream's tarball
# unchanged as its .orig.tar.bz2, checked here against upstream's SHA-256.
set -euo pipefail
cd "$(dirname "$0")/.."
out_dir=${1:-_output/conformance}
version=1.37.0
sha256=3311dff32e746499f4df0d5df04d7eb396382d7e108bb9250e7b519b837043a4
# docker-library/busybox's glibc variant: defconfig, then these (plus
# CONFIG_STATIC). A change here rebuilds (the recipe is stamped).
set_confs="CONFIG_STATIC=y CONFIG_AR=y CONFIG_FEATURE_AR_CREATE=y CONFIG_FEATURE_AR_LONG_FILENAMES=y CONFIG_LAST_SUPPORTED_WCHAR=0 CONFIG_INOTIFYD=y"
unset_confs="CONFIG_FEATURE_SYNC_FANCY"
recipe="busybox $version $sha256 defconfig $set_confs -$unset_confs"

mkdir -p "$out_dir"
out=$(cd "$out_dir" && pwd)/busybox
work=$(cd "$out_dir" && pwd)/busybox-build
mkdir -p "$work"
# One build at a time (make's target and the unit tests may both run this).
exec 9>"$work/lock"
flock 9

# check BINARY: the behaviour the test images need.
check() {
  [ -x "$1" ] || return 1
  local usage
  usage=$("$1" 2>&1 || :)
  [[ $usage == "BusyBox v$version "* ]] || return 1
  env '1-data-1=value-1' '* +,-./0123456789=value-2' "$1" sh -c 'exec "$0" env' "$1" >"$work/check.out" || return 1
  grep -qx '1-data-1=value-1' "$work/check.out" && grep -qxF '* +,-./0123456789=value-2' "$work/check.out"
}
if [ -f "$work/recipe" ] && [ "$(cat "$work/recipe")" = "$recipe" ] && check "$out"; then
  exit 0
fi

# Upstream's tarball, through Debian's source package (a private apt
# configuration: the machine's own sources are left alone).
tarball=$work/busybox_$version.orig.tar.bz2
if ! echo "$sha256  $tarball" | sha256sum -c --status 2>/dev/null; then
  apt_dir=$work/apt
  echo "busybox.sh: fetching busybox $version source (Debian trixie's source package)"
  source hack/apt-private.sh
  apt_private "$apt_dir" "deb-src http://deb.debian.org/debian trixie main"
  (cd "$work" && apt-get "${apt[@]}" -qq source --download-only busybox)
  rm -rf "$apt_dir" # the index is only needed for this download
  echo "$sha256  $tarball" | sha256sum -c --status || {
    echo "busybox.sh: $tarball is not upstream's busybox-$version.tar.bz2 (sha256 $sha256)" >&2
    exit 1
  }
fi

src=$work/src
rm -rf "$src"
mkdir -p "$src"
tar -xjf "$tarball" -C "$src" --strip-components=1
cd "$src"
# Reproducible: the build date busybox embeds is the tarball's.
SOURCE_DATE_EPOCH=$(stat -c %Y "$src/Makefile")
export SOURCE_DATE_EPOCH
echo "busybox.sh: building busybox $version (defconfig, static)"
make -s defconfig >/dev/null
for conf in $unset_confs; do
  sed -i -e "s!^$conf=.*\$!# $conf is not set!" .config
done
for confV in $set_confs; do
  conf=${confV%=*}
  sed -i -e "s!^$conf=.*\$!$confV!" -e "s!^# $conf is not set\$!$confV!" .config
  grep -qx "$confV" .config || echo "$confV" >>.config
done
{ yes "" || :; } | make -s oldconfig >/dev/null
for confV in $set_confs; do grep -qx "$confV" .config; done
nice make -s -j "$(nproc)" busybox >"$work/build.log" 2>&1 || { tail -30 "$work/build.log" >&2; exit 1; }
cp busybox "$out.tmp"
mv "$out.tmp" "$out"
check "$out" || { echo "busybox.sh: $out drops environment variables with non-identifier names" >&2; exit 1; }
echo "$recipe" >"$work/recipe"
rm -rf "$src"
usage=$("$out" 2>&1 || :)
echo "busybox.sh: $out (${usage%%$'\n'*})"
