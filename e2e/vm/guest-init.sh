#!/bin/sh
# Second stage of the IPVS test VM, run as PID 1 from the host's root (read-only over 9p).
# Makes the few writable places a test needs, runs the command file named on the kernel
# command line and prints its exit code on a marker line the host looks for, then powers off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/tmp TMPDIR=/tmp
mount -t tmpfs tmpfs /run
# A kernel unpacked into a cache (kernel.sh) brings its modules from there.
modules=$(sed -n 's/.*kpts.modules=\([^ ]*\).*/\1/p' /proc/cmdline)
[ -z "$modules" ] || mount --bind "$modules" /lib/modules
cmdfile=$(sed -n 's/.*kpts.cmd=\([^ ]*\).*/\1/p' /proc/cmdline)
# The guest needs a writable /tmp, but a checkout may itself live under the host's /tmp: keep
# that top-level directory visible at its own path through a bind mount.
case $cmdfile in
  /tmp/?*)
    top=${cmdfile#/tmp/}; top=/tmp/${top%%/*}
    mkdir -p /run/host-tmp && mount --bind /tmp /run/host-tmp
    mount -t tmpfs tmpfs /tmp
    mkdir -p "$top" && mount --bind "/run/host-tmp/${top#/tmp/}" "$top" ;;
  *) mount -t tmpfs tmpfs /tmp ;;
esac
mount -t tmpfs tmpfs /var/tmp 2>/dev/null
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts && mount -t tmpfs tmpfs /dev/shm
ip link set lo up
echo "KPTS-GUEST-START"
sh "$cmdfile"
echo "KPTS-GUEST-EXIT=$?"
sync
busybox poweroff -f
