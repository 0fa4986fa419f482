# Sourced by the project's scripts (setup, test, demo, bench, .ci/run): puts a supported Node (>= 22.18) first on
# PATH, so `node`, `npm` and `npx` below run on it. The machine's node is used when it is recent enough; otherwise
# (Debian 12 packages Node 18, this machine kind has 20) Node 24 comes from the npm registry's node-linux-<arch>
# package (the official binary; pinned version, integrity checked), unpacked once into a cache that every clone of
# the repository on this machine shares: ${TWINLAYER_NODE_CACHE:-~/.cache/twinlayer}. Production hosts install
# Node 24 themselves (README "Running it for real").
TWINLAYER_NODE_VERSION=24.22.3

twinlayer_node_ok() { # is `node` on PATH >= 22.18?
  local v
  v=$(node -p 'process.versions.node' 2>/dev/null) || return 1
  local major=${v%%.*} rest=${v#*.}
  local minor=${rest%%.*}
  [ "$major" -gt 22 ] || { [ "$major" -eq 22 ] && [ "$minor" -ge 18 ]; }
}

twinlayer_provide_node() {
  local arch integrity
  case "$(uname -m)" in
    x86_64) arch=x64; integrity='sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==' ;;
    aarch64) arch=arm64; integrity='sha512-IZx0J52/1NDwAsY2iyWR9nlPIYuYviTWetjj8+ElvYQh2+XRhLfCfkbFEF/2O5vGI2hcUbyPNHV+nz342FbJXw==' ;;
    *) echo "node-env: no Node ${TWINLAYER_NODE_VERSION} package for $(uname -m); install Node >= 22.18 (README)" >&2; return 1 ;;
  esac
  local cache=${TWINLAYER_NODE_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/twinlayer}
  local dir="$cache/node-v${TWINLAYER_NODE_VERSION}-linux-$arch"
  if [ ! -x "$dir/bin/node" ]; then
    mkdir -p "$cache"
    # One installer at a time (parallel test runs on one machine); the loser finds it done.
    (
      flock 9
      [ -x "$dir/bin/node" ] && exit 0
      local tmp
      tmp=$(mktemp -d "$cache/.node-XXXXXX")
      trap 'rm -rf "$tmp"' EXIT
      echo "node-env: $(node --version 2>/dev/null || echo 'no node') is older than 22.18; fetching Node ${TWINLAYER_NODE_VERSION} (npm package node-linux-$arch) into $dir" >&2
      npm pack "node-linux-$arch@${TWINLAYER_NODE_VERSION}" --pack-destination "$tmp" --silent --no-audit --no-fund >/dev/null
      local tgz="$tmp/node-linux-$arch-${TWINLAYER_NODE_VERSION}.tgz"
      local got
      got=$(node -e 'const { createHash } = require("node:crypto"); process.stdout.write("sha512-" + createHash("sha512").update(require("node:fs").readFileSync(process.argv[1])).digest("base64"))' "$tgz")
      if [ "$got" != "$integrity" ]; then
        echo "node-env: node-linux-$arch@${TWINLAYER_NODE_VERSION}: integrity $got, expected $integrity" >&2
        exit 1
      fi
      tar -xzf "$tgz" -C "$tmp" package/bin/node package/LICENSE
      "$tmp/package/bin/node" -e 'process.exit(process.versions.node === process.argv[1] ? 0 : 1)' "${TWINLAYER_NODE_VERSION}"
      mv -T "$tmp/package" "$dir"
    ) 9>"$cache/.node.lock" || return 1
  fi
  export PATH="$dir/bin:$PATH"
}

if ! twinlayer_node_ok; then
  twinlayer_provide_node || { echo "node-env: no usable Node (>= 22.18)" >&2; return 1 2>/dev/null || exit 1; }
  twinlayer_node_ok || { echo "node-env: $(command -v node) is not >= 22.18" >&2; return 1 2>/dev/null || exit 1; }
fi
