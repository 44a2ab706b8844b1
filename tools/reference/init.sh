#!/bin/busybox sh
# /init of the reference initramfs. Mounts what the tests need, configures fault injection the way the
# kernel's own iommufd_fail_nth selftest does, runs every line of /plan under a time limit between markers
# that the host side parses, and powers off.
#
# /plan: one job a line, `<name> <seconds> <command> [args...]`.
# Markers on the console (the host strips everything outside them):
#   @@BEGIN <name>
#   ... the job's stdout and stderr ...
#   @@END <name> rc=<exit code>
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug
mkdir -p /dev/hugepages /tmp
mount -t hugetlbfs hugetlbfs /dev/hugepages
mount -t tmpfs tmpfs /tmp

# Only emergencies on the console: kernel messages must not split the lines of a job's output.
echo 1 >/proc/sys/kernel/printk

# As tools/testing/selftests/iommu/iommufd_fail_nth.c sets up: fail-nth must reach GFP_KERNEL allocations,
# and no fault attribute prints a stack trace when it fires.
dbg=/sys/kernel/debug
echo N >$dbg/failslab/ignore-gfp-wait 2>/dev/null
echo N >$dbg/fail_page_alloc/ignore-gfp-wait 2>/dev/null
echo N >$dbg/fail_page_alloc/ignore-gfp-highmem 2>/dev/null
for v in $dbg/*/verbose; do echo 0 >"$v" 2>/dev/null; done

echo "@@KERNEL $(uname -r)"
echo "@@IOMMU $(ls -l /dev/iommu 2>&1)"
echo "@@HUGEPAGES $(cat /proc/sys/vm/nr_hugepages)"
cd /tmp
while read -r name secs cmd; do
  [ -z "$name" ] && continue
  echo "@@BEGIN $name"
  timeout "$secs" $cmd 2>&1
  rc=$?
  echo "@@END $name rc=$rc"
done </plan
# The kernel's own health after the jobs, which the host side turns into a failure: every warning, BUG,
# oops or taint report in the kernel log (one @@KLOG line each), and the taint mask (0 when clean).
dmesg | grep -e 'WARNING:' -e 'BUG:' -e 'Oops' -e 'Tainted:' -e 'Kernel panic' |
  while IFS= read -r l; do echo "@@KLOG $l"; done
echo "@@TAINTED $(cat /proc/sys/kernel/tainted)"
echo "@@DONE"
sync
poweroff -f
