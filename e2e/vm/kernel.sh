#!/usr/bin/env bash
# The IPVS VM's kernel: Debian's linux-image (IPVS as modules), unpacked into a cache directory
# rather than installed, so the host's /boot and boot loader stay as they are.
#   kernel.sh fetch  downloads the package linux-image-amd64 depends on and unpacks it into
#                    $cache/<package>/ (with modules.dep), unless it is there already.
#   kernel.sh find   prints "<vmlinuz> <module root>" for the newest kernel with IPVS modules
#                    (the root holds lib/modules/<version>): $KPTS_VM_KERNEL (root
#                    $KPTS_VM_MODULE_ROOT or /), else the cache, else /boot; exits 1 when none.
set -euo pipefail
cache=${KPTS_VM_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-proxy-ts/vm-kernel}

has_ipvs() { # ROOT VERSION
  ls "$1/lib/modules/$2/kernel/net/netfilter/ipvs/"ip_vs.ko* >/dev/null 2>&1
}

find_kernel() {
  if [ -n "${KPTS_VM_KERNEL:-}" ]; then
    echo "$KPTS_VM_KERNEL ${KPTS_VM_MODULE_ROOT:-/}"
    return 0
  fi
  local k v root
  for root in $(ls -1d "$cache"/*/ 2>/dev/null | sort -V -r) /; do
    root=${root%/}
    for k in $(ls -1 "${root:-}"/boot/vmlinuz-* 2>/dev/null | sort -V -r); do
      v=${k##*/vmlinuz-}
      if has_ipvs "${root:-}" "$v"; then echo "$k ${root:-/}"; return 0; fi
    done
  done
  return 1
}

fetch_kernel() {
  local pkg
  depends() { apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n1; }
  pkg=$(depends)
  if [ -z "$pkg" ]; then
    apt-get update -qq
    pkg=$(depends)
  fi
  [ -n "$pkg" ] || { echo "kernel.sh: apt knows no linux-image-amd64" >&2; return 1; }
  local dest=$cache/$pkg
  [ -f "$dest/.complete" ] && return 0
  local tmp
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  # apt's download sandbox user cannot write into root's temporary directory; that is expected.
  (cd "$tmp" && apt-get download -qq "$pkg" 2>&1 | grep -v 'unsandboxed as root' >&2 || true)
  local deb
  deb=$(ls "$tmp"/*.deb 2>/dev/null | head -n1)
  [ -n "$deb" ] || { echo "kernel.sh: apt-get download $pkg fetched nothing" >&2; return 1; }
  rm -rf "$dest" && mkdir -p "$dest"
  dpkg-deb -x "$deb" "$dest"
  depmod -b "$dest" "${pkg#linux-image-}"
  has_ipvs "$dest" "${pkg#linux-image-}" || { echo "kernel.sh: $pkg has no IPVS modules" >&2; return 1; }
  touch "$dest/.complete"
  echo "kernel.sh: unpacked $pkg into $dest ($(du -sh "$dest" | cut -f1))" >&2
}

case ${1:-} in
  fetch) fetch_kernel ;;
  find) find_kernel ;;
  *) echo "usage: $0 fetch|find" >&2; exit 2 ;;
esac
