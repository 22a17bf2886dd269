#!/bin/sh
# tools/image/init-fallback.sh - a stand-in /init (busybox sh) for images built before the real
# stage-1 init (rootfs/init.c, build/bin/gatehouse-init) exists. It proves the image pipeline
# and nothing more: mounts the API filesystems, loads the modules in /lib/modules/load.order,
# mounts the GATEHOUSE_DATA partition when there is one, and hands over to s6-svscan (whose
# "network" service runs DHCP). No cloud-config: a configuration can be baked into the image or
# added as an extra initramfs archive (see tools/image/boot-check).
export PATH=/usr/bin:/usr/sbin:/usr/lib/execline/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
exec </dev/console >/dev/console 2>&1
echo "gatehouse-init (fallback): $(. /etc/os-release; echo "$PRETTY_NAME")"

# A module that does not fit this machine (crc32c-intel without SSE4.2, ...) fails to load:
# that is expected, so failures are counted, not fatal.
failed=0
while read -r ko; do insmod "$ko" 2>/dev/null || failed=$((failed + 1)); done < /lib/modules/load.order
echo "gatehouse-init: modules loaded ($failed did not fit this machine)"

mkdir -p /run/gatehouse /run/log
grep -qw debug_shell /proc/cmdline && : > /run/gatehouse/debug_shell
data=$(findfs LABEL=GATEHOUSE_DATA 2>/dev/null) &&
  mount -t ext4 -o noatime "$data" /var/lib/gatehouse && echo "gatehouse-init: data partition $data"

hostname -F /etc/hostname
# Networking (DHCP) is the s6 "network" service.
exec /usr/bin/s6-svscan /etc/s6/services
