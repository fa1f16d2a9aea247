#!/bin/sh
# /init of the phyr guest initramfs, written by phyr-harness (source: harness/guest/init.sh).
# It mounts the kernel filesystems, loads the modules (VFIO, 9p for --share, extra and
# out-of-tree ones) in dependency order, mounts the host folder at /mnt/host (--share), hands
# every device listed in PHYR_BIND to vfio-pci, then opens a shell (run), runs `phyr suite`
# (test), moves the endpoints to phyr.ko and runs `phyr ksuite` (ktest) or runs one command
# (run --guest-cmd), and powers the machine off. Settings come from /etc/phyr.conf.
export PATH=/bin:/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /tmp /run
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
. /etc/phyr.conf

say() { echo "phyr-init: $*"; }
fail_off() { say "ERROR: $*"; say "powering off"; poweroff -f; }

say "kernel $(uname -r), cmdline: $(cat /proc/cmdline)"
# Why an insmod failed, from the kernel's last word on it.
insmod_error() {
    why="$(dmesg | grep -E 'version magic|disagrees about version|Unknown symbol|Invalid module format' | tail -n 1)"
    why="${why#*] }"
    case "$why" in
    *"version magic"*)
        say "ERROR: insmod $1: vermagic mismatch: $why (it was built for another kernel than $(uname -r); rebuild it against this kernel's headers)" ;;
    *"Unknown symbol"* | *"disagrees about version"*)
        say "ERROR: insmod $1: $why (built against other headers, or a module it needs is not loaded)" ;;
    *)
        say "ERROR: insmod $1 failed: $(cat /tmp/insmod.err) (see the kernel messages above)" ;;
    esac
}
for m in $PHYR_MODULES; do
    insmod "/lib/modules/$m" 2>/tmp/insmod.err || insmod_error "$m"
done
for n in $PHYR_CHECK_MODULES; do
    if grep -q "^$n " /proc/modules; then
        say "module $n loaded (out of tree, built by the harness)"
    else
        say "ERROR: module $n is not loaded"
    fi
done

if [ -n "$PHYR_SHARE" ]; then
    mkdir -p /mnt/host
    if mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 "$PHYR_SHARE" /mnt/host; then
        say "host folder $PHYR_SHARE_HOST at /mnt/host (9p, read-write)"
        if [ -n "$PHYR_SHARE_PROBE" ]; then
            echo "$(uname -r) $(cat "/mnt/host/$PHYR_SHARE_PROBE.in")" > "/mnt/host/$PHYR_SHARE_PROBE.out"
        fi
    else
        say "ERROR: mounting the host folder (9p tag $PHYR_SHARE) at /mnt/host failed; see the kernel messages above"
    fi
fi

[ -e /dev/vfio/vfio ] || say "ERROR: /dev/vfio/vfio is missing: the kernel has no VFIO (CONFIG_VFIO, CONFIG_VFIO_PCI)"
if [ -z "$(ls /sys/kernel/iommu_groups 2>/dev/null)" ]; then
    say "ERROR: no IOMMU groups: the kernel has no working IOMMU driver (CONFIG_INTEL_IOMMU, cmdline intel_iommu=on,"
    say "       QEMU -device intel-iommu); vfio-pci cannot give devices to userspace without it"
fi

bound=0
seen=0
for dev in /sys/bus/pci/devices/*; do
    [ -e "$dev/vendor" ] || continue
    id="$(cat "$dev/vendor"):$(cat "$dev/device")"
    for want in $PHYR_BIND; do
        [ "$id" = "$want" ] || continue
        seen=$((seen + 1))
        bdf="${dev##*/}"
        echo vfio-pci > "$dev/driver_override"
        [ -e "$dev/driver" ] && echo "$bdf" > "$dev/driver/unbind"
        echo "$bdf" > /sys/bus/pci/drivers_probe
        if [ "$(basename "$(readlink "$dev/driver")")" = vfio-pci ]; then
            group="$(basename "$(readlink "$dev/iommu_group")")"
            say "$bdf ($id) bound to vfio-pci, IOMMU group $group"
            bound=$((bound + 1))
        else
            say "ERROR: $bdf ($id) did not bind to vfio-pci"
        fi
    done
done
[ "$seen" = 0 ] && say "ERROR: no PCI device with ID $PHYR_BIND: QEMU did not attach the endpoints (see qemu.log and lspci)"
say "READY: $bound device(s) bound to vfio-pci"

# The console is captured and parsed in test and cmd modes: no colour codes there.
[ "$PHYR_MODE" = shell ] || export NO_COLOR=1
case "$PHYR_MODE" in
test)
    echo "=== phyr suite begin ==="
    phyr suite
    rc=$?
    echo "=== phyr suite end: exit $rc ==="
    ;;
ktest)
    echo "=== phyr suite begin ==="
    phyr ksuite --bind
    rc=$?
    echo "=== phyr suite end: exit $rc ==="
    ;;
cmd)
    echo "=== phyr guest-cmd begin ==="
    sh -c "$PHYR_GUEST_CMD"
    rc=$?
    echo "=== phyr guest-cmd end: exit $rc ==="
    ;;
*)
    if [ -x /bin/phyr ] && [ "$bound" != 0 ]; then
        echo "=== phyr list ==="
        phyr list
    fi
    say "shell on the serial console; \`poweroff\` (or Ctrl-D) ends the run, Ctrl-A X kills QEMU"
    # busybox's poweroff/halt/reboot applets signal PID 1 (USR2/USR1/TERM): catch those, so a
    # plain `poweroff` in the shell ends the run. The shell runs in the background so that the
    # `wait` below is interruptible; cttyhack gives it the console as its terminal.
    trap 'say "powering off"; sync; poweroff -f' USR1 USR2 TERM
    setsid cttyhack sh -l &
    wait $!
    ;;
esac
[ -n "$PHYR_SHARE" ] && sync
say "powering off"
poweroff -f
