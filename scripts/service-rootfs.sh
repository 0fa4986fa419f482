#!/usr/bin/env bash
# Builds the root filesystem of the real-service images (dnsmasq, nginx with openssl, nftables) from Debian's
# packages with debootstrap, as one tar shared by the three images: the Debian base is most of each image, so one
# rootfs is built and loaded once instead of three. src/lab/service-images.ts turns the tar into images.
#
# The cache key is this file's own sha256: change the recipe below and the next run builds anew. The tar lands in
# ${TWINLAYER_CACHE_DIR:-/var/cache/twinlayer}/service-rootfs-<key 16 hex>.tar (outside the clone, so a clean
# clone on the same machine reuses it). Prints the tar's path. Needs root and debootstrap.
set -euo pipefail

SUITE=bookworm
PACKAGES=dnsmasq,nginx-light,openssl,nftables

self=$(readlink -f "$0")
key=$(sha256sum "$self" | cut -c1-16)
cache=${TWINLAYER_CACHE_DIR:-/var/cache/twinlayer}
out="$cache/service-rootfs-$key.tar"
if [ -s "$out" ]; then echo "$out"; exit 0; fi
command -v debootstrap >/dev/null 2>&1 || { echo "service-rootfs: debootstrap not installed" >&2; exit 1; }
mkdir -p "$cache"

# The machine's own Debian mirror (the first of its apt sources), unless given.
mirror=${TWINLAYER_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | grep -v security | head -1 || true)
fi
if [ -z "$mirror" ]; then
  mirror=$(sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]*\)[[:space:]].*/\2/p' /etc/apt/sources.list 2>/dev/null | grep -v security | head -1 || true)
fi
if [ -z "$mirror" ]; then echo "service-rootfs: no Debian mirror in the apt sources; set TWINLAYER_DEBIAN_MIRROR" >&2; exit 1; fi

work=$(mktemp -d "$cache/.build-XXXXXX")
root="$work/root"
cleanup() {
  # The second stage mounts /proc and /sys in the chroot; nothing may stay mounted under the work dir.
  for m in $(awk -v r="$root" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/self/mounts | sort -r); do umount -l "$m" || true; done
  rm -rf "$work"
}
trap cleanup EXIT

t0=$(date +%s)
echo "service-rootfs: debootstrap $SUITE ($PACKAGES) from $mirror" >&2
# First stage only downloads and unpacks; the second stage runs the maintainer scripts. In between, policy-rc.d
# forbids starting services (nginx's and dnsmasq's postinst would start them on this host), and the second stage
# runs without network and in its own mount and pid namespaces, so nothing it starts or mounts outlives it.
debootstrap --variant=minbase --foreign --include="$PACKAGES" "$SUITE" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
unshare --mount --net --pid --fork chroot "$root" /debootstrap/debootstrap --second-stage >>"$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
rm -f "$root/usr/sbin/policy-rc.d"

# What an image does not need: package caches and lists, docs, log files (not their dirs: nginx will not start
# without /var/log/nginx); Docker provides /dev, /proc, /sys, /run.
rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
  "$root"/usr/share/info/* "$root"/tmp/* "$root"/run/* "$root"/dev/* "$root"/proc/* "$root"/sys/*
find "$root/var/log" -type f -delete
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} + 2>/dev/null || true
# Versions of what the images hold, for the record.
chroot "$root" dpkg-query -W -f '${Package} ${Version}\n' dnsmasq-base nginx-light openssl nftables > "$out.versions"

tar --sort=name --numeric-owner --xattrs --xattrs-include='security.capability' -C "$root" -cf "$work/rootfs.tar" .
mv "$work/rootfs.tar" "$out"
# One recipe is cached at a time: the tars and image archives of other keys go (about 200 MB each).
find "$cache" -maxdepth 1 \( -name 'service-rootfs-*' -o -name 'service-images-*' \) ! -name "*-$key.*" -delete
echo "service-rootfs: built $out ($(du -m "$out" | cut -f1) MB) in $(( $(date +%s) - t0 )) s" >&2
echo "$out"
