#!/usr/bin/env bash
# How much of Linux's own iommufd selftest suite runs, unmodified, under `uiommufd run`.
#
# Builds tools/testing/selftests/iommu/{iommufd,iommufd_fail_nth}.c of the reference kernel tree that
# tools/reference/kernel.sh left in the cache (~/.cache/uiommufd-ref/<version>-<hash>/linux) into
# build/kselftest/, dynamically linked (the preload cannot interpose a static program), against that
# kernel's own uapi headers, and runs each under `uiommufd run`. Prints one row per test (pass / FAIL /
# skip, and for a failure the first assertion or harness line that reported it) and the totals.
#
# Nothing of the kernel is copied into this repository and the kernel tree is never written to: the uapi
# headers are exported into build/kselftest/usr/include by the kernel's own scripts/headers_install.sh
# (with its scripts/unifdef.c compiled into build/kselftest/hdrtool/), the way `make headers_install`
# would, but only the headers these programs (and the C library headers they pull in) actually include.
#
# It is a measurement, not a gate: it exits 0 when the programs were built and ran, whatever the tests
# said; 1 when something could not be built or run; 3 (loudly) when no reference kernel tree is cached.
#
# Usage: tools/reference/kselftest.sh [--uiommufd PATH] [--only iommufd|iommufd_fail_nth] [--hugepages N]
#                                     [--linux] [--shared] [-- HARNESS ARGS]
#   --shared       runs the programs under `uiommufd run --shared` (one server owns the engine, so the
#                  tests that fork and use the parent's iommufd act on one context: docs/shared.md).
#   --linux        also runs the same sources (linked statically) on the reference kernel under QEMU, as
#                  reference.py does, and adds Linux's verdict beside each test: the tests that pass there
#                  and not here are the ones that say something about uiommufd (about a minute of VM).
#   --hugepages N  raises /proc/sys/vm/nr_hugepages to N for the run (root only) and puts the old value back
#                  afterwards. Two dozen tests map MAP_HUGETLB memory in their setup and fail there
#                  without free huge pages, whoever serves /dev/iommu; the reference VM boots with
#                  hugepages=128.
#   HARNESS ARGS go to the kselftest harness of each program (e.g. -f FIXTURE, -t TEST, -v VARIANT,
#   -r FIXTURE.VARIANT.TEST, -l to list).
# Environment: UIOMMUFD_REF_CACHE (the cache root), KSELFTEST_TREE (a kernel tree to use instead),
#   KSELFTEST_OUT (the build directory, default build/kselftest).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache_root=${UIOMMUFD_REF_CACHE:-$HOME/.cache/uiommufd-ref}
out=${KSELFTEST_OUT:-$repo/build/kselftest}
uiommufd=$repo/build/release/tools/uiommufd/uiommufd
programs=(iommufd iommufd_fail_nth)
harness_args=()
hugepages=
linux=0
run_mode=()

while [[ $# -gt 0 ]]; do
  case $1 in
    --uiommufd) uiommufd=$2; shift 2 ;;
    --only) programs=("$2"); shift 2 ;;
    --hugepages) hugepages=$2; shift 2 ;;
    --linux) linux=1; shift ;;
    --shared) run_mode=(--shared); shift ;;
    --) shift; harness_args=("$@"); break ;;
    -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0"; exit 0 ;;
    *) echo "kselftest: unknown argument $1 (see --help)" >&2; exit 1 ;;
  esac
done

log() { echo "kselftest: $*" >&2; }

# ---- the kernel tree ------------------------------------------------------------------------------------
# A tree qualifies when it has the selftests and the uapi headers its build generates (asm/unistd_64.h and
# the asm-generic wrappers): kernel.sh's `built` marker says the build finished.
tree=${KSELFTEST_TREE:-}
if [[ -z $tree ]]; then
  for t in $(ls -d "$cache_root"/*/linux 2>/dev/null | sort -V); do
    [[ -f $t/../built && -f $t/tools/testing/selftests/iommu/iommufd.c &&
       -f $t/arch/x86/include/generated/uapi/asm/unistd_64.h ]] && tree=$t
  done
fi
if [[ -z $tree || ! -f $tree/tools/testing/selftests/iommu/iommufd.c ]]; then
  printf '%s\n' "$(printf '!%.0s' {1..100})" \
    "NO REFERENCE KERNEL TREE IN $cache_root: the kernel's iommufd selftests cannot be built." \
    "Nothing was measured. Build the reference kernel first (tools/reference/kernel.sh, or make reference-check)." \
    "$(printf '!%.0s' {1..100})"
  exit 3
fi
tree=$(cd "$tree" && pwd)
selftests=$tree/tools/testing/selftests
log "kernel tree: $tree ($(cat "$tree/../version" 2>/dev/null || echo 'version unknown'))"

if [[ ! -x $uiommufd ]]; then
  log "no uiommufd at $uiommufd (build it: make build-release, or pass --uiommufd PATH)"
  exit 1
fi
uiommufd=$(cd "$(dirname "$uiommufd")" && pwd)/$(basename "$uiommufd")

# gcc, and libcap's header (iommufd.c drops CAP_IPC_LOCK with it); installed as root, else explained.
"$repo/tools/ensure-deps.sh" gcc libcap-dev >&2

# ---- uapi headers ---------------------------------------------------------------------------------------
# Where `make headers_install` takes a header from, in its order of precedence (scripts/Makefile.headersinst:
# include/uapi, then arch/x86/include/uapi, each before its generated counterpart).
uapi_roots=("$tree/include/uapi" "$tree/include/generated/uapi"
            "$tree/arch/x86/include/uapi" "$tree/arch/x86/include/generated/uapi")
hdr=$out/usr/include
mkdir -p "$hdr" "$out/hdrtool/scripts"
if [[ ! -x $out/hdrtool/scripts/unifdef || $out/hdrtool/scripts/unifdef -ot "$tree/scripts/unifdef.c" ]]; then
  gcc -O2 -w "$tree/scripts/unifdef.c" -o "$out/hdrtool/scripts/unifdef"
fi

# Exports one header by its include name (linux/vfio.h); returns 1 when the kernel does not export it.
export_header() {
  local name=$1 root
  [[ -f $hdr/$name ]] && return 0
  for root in "${uapi_roots[@]}"; do
    if [[ -f $root/$name ]]; then
      mkdir -p "$(dirname "$hdr/$name")"
      # headers_install.sh runs scripts/unifdef relative to its working directory.
      (cd "$out/hdrtool" && sh "$tree/scripts/headers_install.sh" "$root/$name" "$hdr/$name")
      return 0
    fi
  done
  return 1
}

cflags=(-Wall -O2 -Wno-unused-function -D_GNU_SOURCE= -isystem "$hdr" -I"$selftests")

# The closure of what the programs include: preprocess with the exported set first on the path; every
# header that still resolves to the system's copy of a kernel header (or not at all) and that this kernel
# exports is exported and the round repeated, until none is left.
for round in $(seq 1 20); do
  added=0
  for p in "${programs[@]}"; do
    deps=$(gcc "${cflags[@]}" -M -MG "$selftests/iommu/$p.c" | tr -d '\\' | tr ' ' '\n' | sed '/^$/d;/:$/d')
    while read -r d; do
      case $d in
        "$hdr"/*|"$selftests"/*|"$tree"/*) continue ;;
        /usr/include/x86_64-linux-gnu/*) name=${d#/usr/include/x86_64-linux-gnu/} ;;
        /usr/include/*) name=${d#/usr/include/} ;;
        /*) continue ;;
        *) name=$d ;;   # not found anywhere (-MG prints it as written)
      esac
      if [[ ! -f $hdr/$name ]] && export_header "$name"; then added=$((added + 1)); fi
    done <<<"$deps"
  done
  [[ $added -eq 0 ]] && break
  log "exported $added uapi header(s) (round $round)"
done

# ---- build ----------------------------------------------------------------------------------------------
for p in "${programs[@]}"; do
  src=$selftests/iommu/$p.c
  bin=$out/$p
  newest=$(ls -t "$src" "$selftests/iommu/iommufd_utils.h" "$selftests/kselftest_harness.h" \
    "$tree/drivers/iommu/iommufd/iommufd_test.h" | head -1)
  if [[ ! -x $bin || $bin -ot $newest || $bin -ot $0 ]]; then
    log "building $p"
    gcc "${cflags[@]}" "$src" -lcap -o "$bin"
  fi
done

# ---- huge pages -----------------------------------------------------------------------------------------
nr_file=/proc/sys/vm/nr_hugepages
if [[ -n $hugepages && -w $nr_file ]]; then
  old_nr=$(cat "$nr_file")
  if (( old_nr < hugepages )); then
    trap 'echo "$old_nr" >"$nr_file" 2>/dev/null || true' EXIT
    echo "$hugepages" >"$nr_file" 2>/dev/null || true
    log "nr_hugepages raised from $old_nr to $(cat "$nr_file") for this run"
  fi
fi
free_huge=$(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo)
if (( ${free_huge:-0} < 64 )); then
  log "WARNING: only ${free_huge:-0} free huge pages: the tests that map MAP_HUGETLB memory will fail in their"
  log "WARNING: setup (environment, not uiommufd). As root: --hugepages 128 (make kselftest does this)."
fi

# ---- Linux's column (--linux) ---------------------------------------------------------------------------
# The same sources linked statically, run in the reference VM by reference.py's own machinery (initramfs,
# capmirror so both sides have the same capabilities, hugepages=128, the fail-nth debugfs set-up).
if [[ $linux -eq 1 ]]; then
  mkdir -p "$out/static" "$out/logs"
  for p in "${programs[@]}"; do
    if [[ ! -x $out/static/$p || $out/static/$p -ot $out/$p ]]; then
      log "building $p (static, for the VM)"
      gcc "${cflags[@]}" -static "$selftests/iommu/$p.c" -lcap -o "$out/static/$p"
    fi
  done
  vm_rc=0
  PYTHONDONTWRITEBYTECODE=1 python3 - "$here" "$out" "${harness_args[*]}" "${programs[@]}" <<'PY' >&2 || vm_rc=$?
import os, sys
here, out, hargs, progs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
sys.path.insert(0, here)
import reference as ref
bzimage = ref.build_kernel(None)  # exits 3 (loudly) when there is no reference kernel
static = {p: os.path.join(out, "static", p) for p in progs}
prefix = ref.vm_binaries(os.path.join(out, "vm"), static)
initrd = os.path.join(out, "vm", "kselftest-initramfs.cpio.gz")
ref.build_initramfs(initrd, static, [(p, 3000, f"{prefix}/progs/{p} {hargs}".rstrip()) for p in progs])
jobs, release, health = ref.boot(bzimage, initrd, os.path.join(out, "logs", "vm-console.log"), 3600)
for p in progs:
    lines, rc = jobs.get(p, ([], -1))
    with open(os.path.join(out, "logs", p + ".linux.log"), "w") as f:
        f.write("\n".join(lines) + "\n")
ok = ref.report_kernel(health)
sys.exit(0 if ok and health.done else 1)
PY
  if [[ $vm_rc -eq 3 ]]; then
    log "WARNING: NO REFERENCE KERNEL TO BOOT: the Linux column is left out"
    linux=0
  elif [[ $vm_rc -ne 0 ]]; then
    log "WARNING: the Linux run had problems (above): its column may be incomplete"
  fi
fi

# ---- run and tabulate -----------------------------------------------------------------------------------
# The harness prints, per test, `#  RUN  NAME ...`, its assertion lines (`# FILE:LINE:NAME:Expected ...`)
# or a verdict of its own (`# NAME: Test terminated by timeout`), then the TAP line `ok N NAME` (with
# `# SKIP reason` for a skip) or `not ok N NAME`. One line per test out: NAME<TAB>VERDICT<TAB>NOTE.
tabulate() {
  awk '
    /^#  RUN / { first = ""; next }
    /^# [^ :]+\.[ch]:[0-9]+:/ {
      # __FILE__ is the source path the program was compiled from: keep its last component.
      if (first == "") { first = $0; sub(/^# [^ :]*\//, "", first); sub(/^# /, "", first) }
      next
    }
    /^# .*: Test (terminated|failed|exited|ended)/ {
      if (first == "") { first = $0; sub(/^# /, "", first) }
      next
    }
    /^(not )?ok [0-9]+ / {
      line = $0
      ok = (line !~ /^not /)
      sub(/^(not )?ok [0-9]+ /, "", line)
      verdict = ok ? "pass" : "FAIL"; note = ""
      if (ok && match(line, / # SKIP */)) { verdict = "skip"; note = substr(line, RSTART + RLENGTH); line = substr(line, 1, RSTART - 1) }
      else if (match(line, / # (XFAIL|XPASS) */)) { verdict = substr(line, RSTART + 3, 5); line = substr(line, 1, RSTART - 1) }
      if (verdict == "FAIL") note = first
      printf "%s\t%s\t%s\n", line, verdict, note
      first = ""
    }
  ' "$1"
}

# Counts of a tabulated run: "PASS FAIL SKIP" (XFAIL counts as a skip, XPASS as a failure, as the harness
# itself reports them).
count() {
  awk -F'\t' '$2 == "pass" {p++} $2 == "FAIL" || $2 == "XPASS" {f++} $2 == "skip" || $2 == "XFAIL" {s++}
              END {print p + 0, f + 0, s + 0}' <<<"$1"
}

mkdir -p "$out/logs"
if [[ $linux -eq 1 ]]; then
  printf '%-17s %-66s %-8s %-5s %s\n' program test uiommufd linux "first failing assertion (uiommufd) / skip reason"
else
  printf '%-17s %-66s %-8s %s\n' program test uiommufd "first failing assertion / skip reason"
fi
broken=0 total_pass=0 total_fail=0 total_skip=0 rows=() regressions=()
for p in "${programs[@]}"; do
  logf=$out/logs/$p.log
  rc=0
  (cd "$out" && "$uiommufd" run "${run_mode[@]}" -- "./$p" "${harness_args[@]}") >"$logf" 2>&1 || rc=$?
  table=$(tabulate "$logf")
  if [[ $linux -eq 1 ]]; then
    ltable=$(tabulate "$out/logs/$p.linux.log")
    # Each test with Linux's verdict beside ours ("-": Linux did not report it).
    joined=$(awk -F'\t' -v OFS='\t' 'NR == FNR {lv[$1] = $2; next} {print $1, $2, ($1 in lv ? lv[$1] : "-"), $3}' \
      <(printf '%s\n' "$ltable") <(printf '%s\n' "$table"))
    [[ -n $table ]] && awk -F'\t' -v prog="$p" '{printf "%-17s %-66s %-8s %-5s %s\n", prog, $1, $2, $3, $4}' <<<"$joined"
    while IFS=$'\t' read -r name v lv _; do
      [[ $lv == pass && $v != pass ]] && regressions+=("$p $name")
    done <<<"$joined"
  else
    [[ -n $table ]] && awk -F'\t' -v prog="$p" '{printf "%-17s %-66s %-8s %s\n", prog, $1, $2, $3}' <<<"$table"
  fi
  read -r npass nfail nskip <<<"$(count "$table")"
  planned=$(sed -n 's/^1\.\.\([0-9]*\)$/\1/p' "$logf" | head -1)
  reported=$((npass + nfail + nskip))
  summary="$p under uiommufd: $npass passed, $nfail failed, $nskip skipped (exit $rc; log $logf)"
  if [[ -n $planned && $reported -ne $planned ]]; then
    summary+=" -- only $reported of $planned planned tests reported: the run ended early"
  elif [[ -z $planned ]]; then
    # Listing (-l) or help (-h) prints no plan by design: show it. Anything else means the program did
    # not run.
    if [[ " ${harness_args[*]} " == *" -l "* || " ${harness_args[*]} " == *" -h "* ]]; then
      cat "$logf"
    else
      summary+=" -- the harness printed no plan: see the log"
      broken=1
    fi
  fi
  rows+=("$summary")
  if [[ $linux -eq 1 ]]; then
    read -r lp lf ls <<<"$(count "$ltable")"
    rows+=("$p on Linux:     $lp passed, $lf failed, $ls skipped (log $out/logs/$p.linux.log)")
  fi
  total_pass=$((total_pass + npass)); total_fail=$((total_fail + nfail)); total_skip=$((total_skip + nskip))
done

echo
printf '%s\n' "${rows[@]}"
if [[ $linux -eq 1 ]]; then
  echo "passing on Linux but not under uiommufd: ${#regressions[@]}"
fi
echo "kselftest totals under uiommufd: $total_pass passed, $total_fail failed, $total_skip skipped" \
  "($((total_pass + total_fail + total_skip)) tests)"
# A measurement: failing tests do not fail this script; a program that did not run does.
exit $broken
