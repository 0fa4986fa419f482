#!/usr/bin/env bash
# Provides Docker 26 with the containerd image store (issue 11) on Debian 12, whose own docker.io is 20.10: Debian
# 13's (trixie) `docker.io` and `containerd` packages, fetched with a private apt set-up (its own sources list, lists
# and cache: the machine's apt configuration and package state are untouched), unpacked with `dpkg -x` into a private
# directory and never installed. Trixie's runc needs glibc 2.38, so the unpacked tree has none: Debian 12's own runc
# (/usr/sbin/runc, from the docker.io 20.10 setup.sh installs) runs the containers.
#
# The tree lands in ${TWINLAYER_ENGINE_CACHE:-~/.cache/twinlayer}/docker-trixie (the cache scripts/node-env.sh
# uses, shared by every clone on this machine): root/usr/{bin,sbin}/{dockerd,containerd,ctr,...} and VERSIONS (the
# package versions). It is rebuilt when this file changes (its sha256 is the recipe's key, kept in .key). src/lab/
# engine.ts finds it there (the `containerd` engine kind). Prints the directory. Needs network to deb.debian.org
# the first time; cached, nothing.
set -euo pipefail

SUITE=trixie
PACKAGES=(docker.io containerd)

self=$(readlink -f "$0")
key=$(sha256sum "$self" | cut -c1-16)
cache=${TWINLAYER_ENGINE_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/twinlayer}
out="$cache/docker-$SUITE"
if [ -f "$out/.key" ] && [ "$(cat "$out/.key")" = "$key" ] && [ -x "$out/root/usr/sbin/dockerd" ]; then echo "$out"; exit 0; fi
mkdir -p "$cache"

# One builder at a time (parallel setups on one machine); the loser finds it done.
exec 9>"$cache/.docker-$SUITE.lock"
flock 9
if [ -f "$out/.key" ] && [ "$(cat "$out/.key")" = "$key" ] && [ -x "$out/root/usr/sbin/dockerd" ]; then echo "$out"; exit 0; fi

mirror=${TWINLAYER_DEBIAN_MIRROR:-http://deb.debian.org/debian}
work=$(mktemp -d "$cache/.docker-$SUITE-XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs" "$work/tree/root"
echo "deb $mirror $SUITE main" > "$work/sources.list"
# Private everything: sources (SourceParts=/dev/null hides /etc/apt/sources.list.d), lists and the package cache;
# dpkg's status is read (apt needs one) but nothing is installed, so it is never written. The private dirs are
# root's own, so apt downloads as root rather than as _apt (which could not write them).
apt_private=(
  -o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
  -o APT::Sandbox::User=root
)
t0=$(date +%s)
echo "setup: fetching Debian $SUITE ${PACKAGES[*]} from $mirror into $out" >&2
apt-get "${apt_private[@]}" -qq update >&2
(cd "$work/debs" && apt-get "${apt_private[@]}" -qq download "${PACKAGES[@]}" >&2)
for deb in "$work"/debs/*.deb; do
  dpkg-deb -W --showformat='${Package} ${Version}\n' "$deb" >> "$work/tree/VERSIONS"
  dpkg -x "$deb" "$work/tree/root"
done
rm -f "$work/tree/root/usr/sbin/runc" "$work/tree/root/usr/bin/runc"
for bin in usr/sbin/dockerd usr/bin/containerd usr/bin/containerd-shim-runc-v2 usr/bin/ctr; do
  [ -x "$work/tree/root/$bin" ] || { echo "setup: $SUITE packages lack $bin" >&2; exit 1; }
done
# The binaries must run here (a glibc newer than the machine's would fail like trixie's runc).
"$work/tree/root/usr/sbin/dockerd" --version >/dev/null
"$work/tree/root/usr/bin/containerd" --version >/dev/null
"$work/tree/root/usr/bin/ctr" --version >/dev/null
echo "$key" > "$work/tree/.key"
rm -rf "$out"
mv -T "$work/tree" "$out"
echo "setup: $(paste -sd, "$out/VERSIONS") in $out ($(( $(date +%s) - t0 )) s)" >&2
echo "$out"
