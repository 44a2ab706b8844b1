#!/usr/bin/env bash
# The referee's pipeline end to end with fake_vm.py in place of QEMU (so both sides are uiommufd): a clean
# run exits 0 and reports its counts; a kernel warning or a taint exits 1 even though every step agreed, and
# so does a trace that differs.
# Usage: pipeline_test.sh <uiommufd binary>
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
uiommufd=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin"
ln -s "$root/tests/reference/fake_vm.py" "$tmp/bin/qemu-system-x86_64"
# The initramfs needs a busybox file but nothing runs it here: an empty stand-in keeps the test free of it.
install -m 755 /dev/null "$tmp/bin/busybox"
: >"$tmp/bzImage"
export PATH=$tmp/bin:$PATH FAKE_VM_OUT=$tmp/out FAKE_VM_UIOMMUFD=$uiommufd
ref() { "$root/tools/reference/reference.py" --uiommufd "$uiommufd" --out "$tmp/out" --kernel "$tmp/bzImage" "$@"; }
failures=0

# expect <want rc> <pattern in the report> <reference.py args...>
expect() {
  local want=$1 pattern=$2 rc=0
  shift 2
  ref "$@" >"$tmp/report" 2>&1 || rc=$?
  if [[ $rc -eq $want ]] && grep -q -- "$pattern" "$tmp/report"; then
    echo "ok   ${FAKE_WARN:+warn }${FAKE_TAINT:+taint }${FAKE_TRACE_SKEW:+skew }$*: rc=$rc"
  else
    echo "FAIL ${FAKE_WARN:+warn }${FAKE_TAINT:+taint }$*: rc=$rc (want $want), report:"
    sed 's/^/    /' "$tmp/report"
    failures=$((failures + 1))
  fi
}

expect 0 "2/2 programs agree; .* step lines compared, 0 of them excused" check abi_destroy abi_test_layouts
expect 0 "1/1 programs' traces agree; [1-9][0-9]* calls compared" check abi_destroy abi_test_layouts
expect 0 "5/5 sequences agree" fuzz --seeds 5 --steps 40
FAKE_TRACE_SKEW=1 expect 1 "0/1 programs' traces agree" check abi_destroy
FAKE_WARN=1 expect 1 "KERNEL PROBLEMS" check abi_destroy
FAKE_TAINT=512 expect 1 "tainted: /proc/sys/kernel/tainted = 512" fuzz --seeds 2 --steps 20
((failures)) && exit 1
echo "the referee's pipeline behaves"
