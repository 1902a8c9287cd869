#!/usr/bin/env bash
# Prepares a fresh Debian 12 machine (Node.js and npm present) for the demo (`--demo`) or for the
# tests: the kernel tools the backends drive, the VM pieces for the IPVS suite, the pinned pnpm
# and the workspace's dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

export TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1

# package.json's engines.node, checked before anything is installed.
need=$(node -p "require('./package.json').engines.node.replace(/^>=/, '')" 2>/dev/null) || {
  echo "setup: Node.js is required (https://nodejs.org), with npm" >&2; exit 1; }
have=$(node -p 'process.versions.node')
if ! node -e '
  const [a, b] = process.argv.slice(1).map((v) => v.split(".").map(Number));
  for (let i = 0; i < 3; i++) if ((a[i] ?? 0) !== (b[i] ?? 0)) process.exit((a[i] ?? 0) > (b[i] ?? 0) ? 0 : 1);
' "$have" "$need"; then
  echo "setup: Node.js $have is too old; this project needs Node.js >= $need (package.json engines)" >&2
  exit 1
fi

# `--demo`: only what `pnpm demo` drives; without it, also the test-only pieces (the IPVS VM,
# the e2e suites' tools, the real Kubernetes programs).
demo_only=false
[ "${1:-}" = --demo ] && demo_only=true

debs=(iptables nftables ipset conntrack iproute2 ipvsadm kmod procps curl nfacct)
$demo_only || debs+=(socat haproxy cpio qemu-system-x86 busybox-static)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: missing Debian packages (${missing[*]}); run as root to install them" >&2
  fi
fi

if [ "$(pnpm --version 2>/dev/null || true)" != "12.4.2" ]; then
  echo "setup: installing pnpm 12.4.2"
  npm install -g pnpm@12.4.2 >/dev/null
fi

pnpm install --frozen-lockfile

# The IPVS VM's kernel, unpacked into a cache (not installed: the host's boot stays as it is).
if ! $demo_only && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  bash e2e/vm/kernel.sh fetch
fi

# The real Kubernetes programs the e2e suites run (kube-apiserver, etcd, upstream kube-proxy), built
# once from the Go modules pinned in e2e/kubernetes into a cache; nothing to do when they are there.
if ! $demo_only; then
  command -v go >/dev/null || [ ! -x /usr/local/go/bin/go ] || export PATH=$PATH:/usr/local/go/bin
  command -v go >/dev/null || { echo "setup: Go is needed to build the real Kubernetes programs for the e2e suites" >&2; exit 1; }
  bash scripts/build-kubernetes.sh >/dev/null
fi
