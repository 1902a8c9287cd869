#!/usr/bin/env bash
# Prepares a fresh Debian 12 machine (Node.js and npm present) for the demo and the tests:
# the kernel tools the backends drive, the VM pieces for the IPVS suite, the pinned pnpm and
# the workspace's dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

export TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1

debs=(iptables nftables ipset conntrack iproute2 ipvsadm kmod procps curl socat haproxy cpio
      qemu-system-x86 linux-image-amd64 busybox-static)
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
