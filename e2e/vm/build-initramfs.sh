#!/usr/bin/env bash
# Builds a tiny initramfs for the IPVS test VM: static busybox, the modules needed to mount the
# host's root over virtio-9p, and an /init that mounts it read-only and switches into it.
# Usage: build-initramfs.sh KERNEL_VERSION OUTPUT.cpio.gz [MODULE_ROOT]
#   MODULE_ROOT holds lib/modules/KERNEL_VERSION (default /).
set -euo pipefail
kver=$1
out=$2
modroot=${3:-/}
busybox=$(command -v busybox)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir -p "$work"/{bin,dev,proc,sys,newroot,lib/modules}
cp "$busybox" "$work/bin/busybox"
for applet in sh mount insmod switch_root sed poweroff; do
  ln -s busybox "$work/bin/$applet"
done

# Module files in load order (dependencies first), as modprobe would insert them.
: >"$work/modules.order"
for mod in virtio_pci 9pnet_virtio 9p; do
  # modprobe prints paths under MODULE_ROOT; inside the initramfs they live under /lib/modules.
  modprobe -d "$modroot" -S "$kver" -D "$mod" | awk '$1 == "insmod" { print $2 }' | while read -r src; do
    path=/lib/modules/${src#*/lib/modules/}
    grep -qxF "$path" "$work/modules.order" && continue
    mkdir -p "$work$(dirname "$path")"
    case $path in
      *.ko.xz) xz -dc "$src" >"$work${path%.xz}"; path=${path%.xz} ;;
      *.ko.zst) zstd -qdc "$src" >"$work${path%.zst}"; path=${path%.zst} ;;
      *) cp "$src" "$work$path" ;;
    esac
    echo "$path" >>"$work/modules.order"
  done
done

cat >"$work/init" <<'INIT'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
while read -r mod; do insmod "$mod" || echo "kpts-init: insmod $mod failed"; done </modules.order
if ! mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot /newroot; then
  echo "kpts-init: cannot mount the host root"; poweroff -f
fi
stage2=$(sed -n 's/.*kpts.stage2=\([^ ]*\).*/\1/p' /proc/cmdline)
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
mount --move /dev /newroot/dev
exec switch_root /newroot /bin/sh "$stage2"
INIT
chmod +x "$work/init"
(cd "$work" && find . | cpio --quiet -o -H newc | gzip -1) >"$out.tmp"
mv "$out.tmp" "$out"
