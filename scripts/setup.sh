#!/usr/bin/env bash
# Installs what twinlayer's tests and demo need on a Debian machine that has npm: Node 24 when the machine's Node
# is older than 22.18 (scripts/node-env.sh), Debian packages (Docker engine, busybox for test images, attr tools,
# keepalived, iproute2, curl), Debian 13's Docker 26 unpacked into a cache (scripts/docker-trixie.sh) and the npm
# dependencies. Fast when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/node-env.sh

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
[ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -qx httpd || need+=(busybox-static)
command -v setfattr >/dev/null 2>&1 || need+=(attr)
command -v keepalived >/dev/null 2>&1 || need+=(keepalived)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v curl >/dev/null 2>&1 || need+=(curl)
# The state-dir lock is flock(2) through util-linux's flock(1) (Essential on Debian; checked anyway).
[ -x /usr/bin/flock ] || need+=(util-linux)
# Tests: the split-brain e2e drops VRRP with iptables in the lab hosts; the racy-clean tests loop-mount ext3;
# the systemd units are checked with systemd-analyze verify.
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v mkfs.ext3 >/dev/null 2>&1 || need+=(e2fsprogs)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
# The benchmark's peer (issue 4): lsyncd mirroring with rsync.
if [ "${TWINLAYER_SETUP_BENCH:-0}" = 1 ]; then
  command -v lsyncd >/dev/null 2>&1 || need+=(lsyncd)
  command -v rsync >/dev/null 2>&1 || need+=(rsync)
fi
if [ "${#need[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Docker 26 with the containerd image store (issue 11): Debian 13's docker.io and containerd unpacked into a private
# cached dir, never installed (scripts/docker-trixie.sh); the tests run it beside Debian 12's dockerd 20.10.
bash scripts/docker-trixie.sh >/dev/null

# npm ci only when the lock file changed since the last install.
stamp=node_modules/.twinlayer-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi

# The real-service images of the tests and the demo (issue 9): debootstrap builds one Debian rootfs with dnsmasq,
# nginx, openssl and nftables into /var/cache/twinlayer (outside the clone, so the next clean clone on this machine
# reuses it; scripts/service-rootfs.sh), and the host side gets the clients the tests ask them with: dig
# (bind9-dnsutils), busybox's udhcpc, curl. The first build takes about a minute; cached, nothing.
service_images() {
  local need=()
  command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
  command -v dig >/dev/null 2>&1 || need+=(bind9-dnsutils)
  command -v unshare >/dev/null 2>&1 || need+=(util-linux)
  if [ "${#need[@]}" -gt 0 ]; then
    echo "setup: installing Debian packages: ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  bash scripts/service-rootfs.sh >/dev/null
}
service_images

# The compiled JavaScript that bin/twinlayer.js runs (dist/, `npm run build`), rebuilt when a source or the build
# config is newer than the last build (tsc leaves dist/.tsbuildinfo alone when nothing changed: touched after).
if [ ! -f dist/.tsbuildinfo ] || [ -n "$(find src tsconfig.json tsconfig.build.json package-lock.json -newer dist/.tsbuildinfo -print -quit)" ]; then
  echo "setup: npm run build" >&2
  npm run build --silent
  touch dist/.tsbuildinfo
fi
