#!/usr/bin/env bash
# Boots Debian's kernel (which has IPVS) in a small qemu VM whose root is this machine's root,
# shared read-only over virtio-9p, runs one shell command line inside it and powers it off.
# The guest's console comes out on stdout; its last line is `KPTS-GUEST-EXIT=<code>`.
# This script exits with the guest command's code (or 125 when the VM itself failed).
#
# Usage: run-guest.sh [--timeout SECONDS] -- COMMAND...
#   COMMAND runs under /bin/sh in the guest, in the current directory (seen at the same path).
# Env: KPTS_VM_KERNEL (vmlinuz path) and KPTS_VM_MODULE_ROOT (see kernel.sh), KPTS_VM_MEM (MiB, default 2048), KPTS_VM_SMP (default 2),
#      KPTS_VM_ACCEL (kvm|tcg, default kvm when usable).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
state=$here/../.vm
timeout_s=600
while [ $# -gt 0 ]; do
  case $1 in
    --timeout) timeout_s=$2; shift 2 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "usage: $0 [--timeout S] -- COMMAND..." >&2; exit 2; }

# The kernel: the newest with IPVS modules, from the cache kernel.sh unpacks into, or /boot.
found=$("$here/kernel.sh" find) || { echo "run-guest: no kernel with IPVS modules (run e2e/vm/kernel.sh fetch)" >&2; exit 125; }
kernel=${found% *}
modroot=${found##* }
kver=${kernel##*/vmlinuz-}
# The guest sees the host's root: modules outside /lib/modules are bound there in the guest.
modules_arg=
[ "$modroot" = / ] || modules_arg="kpts.modules=$modroot/lib/modules"

mkdir -p "$state"
initrd=$state/initramfs-$kver.cpio.gz
if [ ! -s "$initrd" ] || [ "$here/build-initramfs.sh" -nt "$initrd" ]; then
  "$here/build-initramfs.sh" "$kver" "$initrd" "$modroot"
fi

# The command file lives on the host; the guest reads it through the shared root.
cmdfile=$(mktemp "$state/cmd.XXXXXX")
console=$(mktemp "$state/console.XXXXXX")
trap 'rm -f "$cmdfile" "$console"' EXIT
{
  printf 'cd %q || exit 126\n' "$PWD"
  printf '%q ' "$@"
  printf '\n'
} >"$cmdfile"

accel=${KPTS_VM_ACCEL:-}
if [ -z "$accel" ]; then
  if [ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -qE 'vmx|svm' /proc/cpuinfo; then accel=kvm; else accel=tcg; fi
fi
cpu=max
[ "$accel" = kvm ] && cpu=host

set +e
timeout --kill-after=5 "$timeout_s" qemu-system-x86_64 \
  -accel "$accel" -cpu "$cpu" -m "${KPTS_VM_MEM:-2048}" -smp "${KPTS_VM_SMP:-2}" \
  -kernel "$kernel" -initrd "$initrd" \
  -append "console=ttyS0 quiet loglevel=3 panic=-1 kpts.stage2=$here/guest-init.sh kpts.cmd=$cmdfile $modules_arg" \
  -fsdev local,id=r,path=/,security_model=none,readonly=on,multidevs=remap \
  -device virtio-9p-pci,fsdev=r,mount_tag=hostroot \
  -nic none -display none -monitor none -serial stdio -no-reboot </dev/null | tee "$console"
status=${PIPESTATUS[0]}
set -e
code=$(sed -n 's/^KPTS-GUEST-EXIT=\([0-9]*\).*/\1/p' "$console" | tail -n1)
if [ -z "$code" ]; then
  echo "run-guest: the VM ended without reporting an exit code (qemu status $status)" >&2
  exit 125
fi
exit "$code"
