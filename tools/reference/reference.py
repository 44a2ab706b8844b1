#!/usr/bin/env python3
"""Runs the same programs on a real Linux kernel (under QEMU) and under `uiommufd run`, and compares them.

  reference.py check            every tests/abi program, a table and `N/M programs agree`
  reference.py fuzz --seeds N   N seeded random ioctl sequences (tests/reference/seqgen.c), the first
                                differing step of each seed that differs

Both sides run the same C source: linked statically for the VM's initramfs, dynamically here (the preload
cannot interpose a static program). Every program prints one `step ...` line per observation; those lines
are what is compared, in order, and so are the exit statuses. Known, documented deviations
(known-differences.txt) name exact steps of one program; a difference in one of those steps is excused,
printed, and counted per rule. A kernel warning, oops or taint fails the run.

Exit status: 0 agreement, 1 disagreement (or a crash, a timeout, a kernel problem), 3 no reference kernel
(its source could not be fetched or it did not build): nothing was compared.

Standard library only. The kernel comes from tools/reference/kernel.sh (built once, cached in
~/.cache/uiommufd-ref/).
"""

import argparse
import contextlib
import difflib
import glob
import gzip
import io
import os
import re
import shutil
import stat
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
ABI_DIR = os.path.join(ROOT, "tests", "abi")
SEQGEN_SRC = os.path.join(ROOT, "tests", "reference", "seqgen.c")
CFLAGS = ["-std=c11", "-O2", "-Wall", "-Wextra", "-Wno-unused-function", "-Wno-unused-parameter"]
QEMU = ["qemu-system-x86_64", "-accel", "tcg,thread=multi", "-cpu", "max", "-m", "4G", "-smp", "2",
        "-nographic", "-no-reboot"]
APPEND = "console=ttyS0 hugepages=128 panic=5"


def log(msg):
    print(f"reference: {msg}", file=sys.stderr, flush=True)


def abi_programs():
    """The programs tests/abi/CMakeLists.txt registers, in its order: both modes' list, then the programs it
    runs under --shared only (which must be the keys of SHARED_ONLY, so that none is silently left out)."""
    text = open(os.path.join(ABI_DIR, "CMakeLists.txt")).read()
    lists = {}
    for name in ("UIOMMUFD_ABI_PROGRAMS", "UIOMMUFD_ABI_SHARED_ONLY_PROGRAMS"):
        m = re.search(r"set\(" + name + r"\b(.*?)\)", text, re.S)
        if not m:
            sys.exit(f"reference: tests/abi/CMakeLists.txt sets no {name}")
        lists[name] = m.group(1).split()
    shared_only = lists["UIOMMUFD_ABI_SHARED_ONLY_PROGRAMS"]
    if set(shared_only) != set(SHARED_ONLY):
        sys.exit(f"reference: tests/abi's shared-only programs {sorted(shared_only)} are not SHARED_ONLY's "
                 f"{sorted(SHARED_ONLY)}: say why each runs under --shared only")
    return lists["UIOMMUFD_ABI_PROGRAMS"] + shared_only


# ---- building ---------------------------------------------------------------------------------------------
# Exit statuses: 0 every comparison agreed and the kernel stayed healthy; 1 a disagreement, a crash or
# timeout, or a kernel warning/oops/taint; EXIT_UNAVAILABLE when there was no reference kernel to compare
# with (its source could not be fetched or it did not build), so nothing was compared.
EXIT_DIFFER = 1
EXIT_UNAVAILABLE = 3


def build_kernel(given=None):
    """The bzImage: `given` (--kernel) as is, else kernel.sh's cached or fresh build."""
    if given:
        if not os.path.isfile(given):
            sys.exit(f"reference: --kernel {given}: no such file")
        # kernel.sh would have made sure of QEMU and busybox; without it, this does.
        if not shutil.which("qemu-system-x86_64") or not (shutil.which("busybox") or os.path.exists("/bin/busybox")):
            if subprocess.run([os.path.join(HERE, "deps.sh")]).returncode != 0:
                sys.exit("reference: QEMU or busybox is missing (see above)")
        return given
    out = subprocess.run([os.path.join(HERE, "kernel.sh")], stdout=subprocess.PIPE, text=True)
    if out.returncode != 0 or not out.stdout.strip():
        print("\n" + "!" * 100 + "\n"
              "REFERENCE KERNEL UNAVAILABLE: its source could not be fetched or it did not build (see above).\n"
              "Nothing was compared with Linux; this is not an agreement.\n" + "!" * 100, flush=True)
        sys.exit(EXIT_UNAVAILABLE)
    return out.stdout.strip().splitlines()[-1]


def check_errno_table():
    """The programs name errnos from a table generated from the reference kernel's headers: it must be
    current. Checked when that kernel's source is unpacked (kernel.sh's cache); the installed uapi headers
    of an older kernel would miss the newest errnos."""
    cache = os.environ.get("UIOMMUFD_REF_CACHE", os.path.expanduser("~/.cache/uiommufd-ref"))
    trees = sorted(glob.glob(os.path.join(cache, "*", "linux", "include", "uapi", "asm-generic", "errno.h")))
    if not trees:
        log("no unpacked reference kernel source: the errno table is not re-checked")
        return
    src = os.path.dirname(trees[-1])
    if subprocess.run([os.path.join(HERE, "gen-errno.py"), "--check", "--source", src]).returncode != 0:
        sys.exit(EXIT_DIFFER)


def compile_c(src, out, static, includes):
    """Compiles one program; skipped when the output is newer than the source and every header."""
    deps = [src] + [os.path.join(d, f) for d in includes for f in os.listdir(d) if f.endswith(".h")]
    if os.path.exists(out) and all(os.path.getmtime(out) >= os.path.getmtime(d) for d in deps):
        return out
    os.makedirs(os.path.dirname(out), exist_ok=True)
    cmd = ["gcc"] + CFLAGS + [f"-I{d}" for d in includes] + (["-static"] if static else []) + [src, "-o", out]
    subprocess.run(cmd, check=True)
    return out


def cpio_newc(entries):
    """A gzip'd newc archive from (name, mode, data, rdev) tuples; no root or mknod needed for devices."""
    buf = io.BytesIO()

    def put(name, mode, data=b"", rdev=(0, 0), ino=[1]):
        nameb = name.encode() + b"\0"
        fields = [ino[0], mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(nameb), 0]
        ino[0] += 1
        buf.write(b"070701" + b"".join(b"%08X" % f for f in fields))
        buf.write(nameb)
        buf.write(b"\0" * (-(110 + len(nameb)) % 4))
        buf.write(data)
        buf.write(b"\0" * (-len(data) % 4))

    for name, mode, data, rdev in entries:
        put(name, mode, data, rdev)
    put("TRAILER!!!", 0)
    return gzip.compress(buf.getvalue(), compresslevel=6)


def host_capeff():
    """The effective capabilities the programs get here, in hex, for capmirror in the VM."""
    for ln in open("/proc/self/status"):
        if ln.startswith("CapEff:"):
            return ln.split()[1]
    return "ffffffffffffffff"


def vm_binaries(out, progs):
    """Adds capmirror to the static programs; returns the command prefix every VM job runs under."""
    progs["capmirror"] = compile_c(os.path.join(HERE, "capmirror.c"), os.path.join(out, "static", "capmirror"),
                                   True, [])
    return f"/progs/capmirror {host_capeff()} "


def shared_libraries(paths):
    """The shared libraries (and the dynamic loader) the dynamic executables `paths` load, as ldd finds them:
    {absolute path: host file}, each at the path the loader will look for it."""
    libs = {}
    for exe in paths:
        out = subprocess.run(["ldd", exe], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout
        for ln in out.splitlines():
            m = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", ln)
            if m:
                libs[m.group(1)] = os.path.realpath(m.group(1))
            elif "not found" in ln:
                sys.exit(f"reference: ldd {exe}: {ln.strip()}")
    return libs


def build_initramfs(path, binaries, plan, files=None):
    """binaries: {name in /progs (may hold '/'): host path}. plan: list of (job name, seconds, command line).
    files: {absolute path in the VM: host path}, for the shared libraries of dynamic programs."""
    d, f, l, c = stat.S_IFDIR | 0o755, stat.S_IFREG, stat.S_IFLNK | 0o777, stat.S_IFCHR | 0o600
    entries = [(n, d, b"", (0, 0)) for n in ["bin", "dev", "proc", "sys", "tmp", "progs"]]
    placed = dict(("progs/" + n, h) for n, h in binaries.items())
    placed.update((a.lstrip("/"), h) for a, h in (files or {}).items())
    made = {e[0] for e in entries}
    for name in sorted(placed):
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parent = "/".join(parts[:i])
            if parent not in made:
                made.add(parent)
                entries.append((parent, d, b"", (0, 0)))
    entries.append(("dev/console", c, b"", (5, 1)))
    entries.append(("dev/null", stat.S_IFCHR | 0o666, b"", (1, 3)))
    busybox = shutil.which("busybox") or "/bin/busybox"
    entries.append(("bin/busybox", f | 0o755, open(busybox, "rb").read(), (0, 0)))
    entries.append(("bin/sh", l, b"busybox", (0, 0)))
    entries.append(("init", f | 0o755, open(os.path.join(HERE, "init.sh"), "rb").read(), (0, 0)))
    for name, host in sorted(placed.items()):
        entries.append((name, f | 0o755, open(host, "rb").read(), (0, 0)))
    text = "".join(f"{n} {s} {cmd}\n" for n, s, cmd in plan)
    entries.append(("plan", f | 0o644, text.encode(), (0, 0)))
    with open(path, "wb") as out:
        out.write(cpio_newc(entries))


# ---- running ----------------------------------------------------------------------------------------------
# Boots that crash before the first program begins are booted again, at most this many times. Under QEMU's
# multi-threaded TCG the kernel's live code patching (text_poke_bp(): an int3 put in, then the new bytes)
# can now and then leave another vCPU running a stale translation that still holds the int3, an Oops in
# early boot that has nothing to do with iommufd (seen once, in ktime_get_update_offsets_now() right
# after the switch to the TSC clocksource). Nothing has been compared at that point; the rerun is checked
# in full, and the report names every crashed boot.
BOOT_RETRIES = 2


def boot(bzimage, initrd, console_log, timeout):
    """Boots the VM; returns {job: (output lines, rc)}, the kernel release it reported and its KernelHealth."""
    crashed = []
    for attempt in range(BOOT_RETRIES + 1):
        jobs, release, health = boot_once(bzimage, initrd, console_log, timeout)
        if jobs or not health.lines or attempt == BOOT_RETRIES:
            break
        kept = f"{console_log}.boot-crash-{attempt + 1}"
        os.replace(console_log, kept)
        crashed.append(f"{health.lines[0].strip()} (console kept in {kept})")
        log(f"WARNING: the VM crashed while booting, before any program ran: {health.lines[0].strip()}; "
            "booting again")
    health.boot_crashes = crashed
    return jobs, release, health


def boot_once(bzimage, initrd, console_log, timeout):
    log(f"booting the reference kernel ({os.path.basename(initrd)}); console in {console_log}")
    start = time.time()
    with open(console_log, "wb") as out:
        proc = subprocess.Popen(QEMU + ["-kernel", bzimage, "-initrd", initrd, "-append", APPEND],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            log(f"the VM did not power off within {timeout} s")
    log(f"VM ran {time.time() - start:.0f} s")
    jobs, release, health = parse_console(open(console_log, "rb").read().decode("utf-8", "replace"))
    if not health.done:
        log("the VM did not reach the end of its plan")
    return jobs, release, health


def parse_console(text):
    """The console of one VM run: {job: (output lines, rc)}, the kernel release, and its KernelHealth."""
    text = text.replace("\r", "")
    jobs, current, lines, release = {}, None, [], "?"
    health = KernelHealth()
    kernel_pattern = re.compile(r"WARNING:|BUG:|Oops|Tainted:|Kernel panic")
    for line in text.split("\n"):
        if line.startswith("@@KERNEL "):
            release = line.split(" ", 1)[1]
        elif line.startswith("@@BEGIN "):
            current, lines = line.split(" ", 1)[1], []
        elif line.startswith("@@END ") and current is not None:
            m = re.match(r"@@END (\S+) rc=(\d+)", line)
            jobs[current] = (lines, int(m.group(2)) if m else -1)
            current = None
        elif line.startswith("@@KLOG "):
            health.lines.append(line[7:])
        elif line.startswith("@@TAINTED "):
            health.tainted = int(line.split()[1]) if line.split()[1].isdigit() else -1
        elif line.startswith("@@DONE"):
            health.done = True
        elif current is not None:
            lines.append(line)
        elif kernel_pattern.search(line) and line not in health.lines:
            # Outside every job (boot, or a panic that ended the VM): the console is the only witness.
            health.lines.append(line)
    if current is not None:
        jobs[current] = (lines, -1)  # began but never ended: the VM died or timed out inside it
    return jobs, release, health


# Programs that map MAP_HUGETLB memory (abi_dirty_huge) need free huge pages on this host too; the VM boots
# with hugepages=128. As root, the check raises vm.nr_hugepages for its run and puts the old value back.
HOST_HUGEPAGES = 16


@contextlib.contextmanager
def host_hugepages(wanted):
    path = "/proc/sys/vm/nr_hugepages"
    old = None
    try:
        with open(path) as f:
            cur = int(f.read())
        if cur < wanted and os.access(path, os.W_OK):
            with open(path, "w") as f:
                f.write(str(wanted))
            old = cur
            log(f"reference: vm.nr_hugepages raised from {cur} for this run")
    except OSError as e:
        log(f"reference: cannot raise vm.nr_hugepages ({e}); programs that need huge pages will skip here")
    try:
        yield
    finally:
        if old is not None:
            with open(path, "w") as f:
                f.write(str(old))


# Programs not yet run under --shared, each with the reason; the report names them as not compared.
SHARED_NOT_YET = {}
# Programs only the server can answer as Linux does (one iommufd across processes), never run in-process.
SHARED_ONLY = {
    "abi_fork": "in-process mode gives a forked child its own copy of the context (docs/shared.md)",
}


def runs_in(p, shared):
    return p not in (SHARED_NOT_YET if shared else SHARED_ONLY)


def run_here(uiommufd, argv, timeout, shared=False):
    try:
        p = subprocess.run([uiommufd, "run"] + (["--shared"] if shared else []) + ["--"] + argv,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
        return p.stdout.decode("utf-8", "replace").split("\n"), p.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode("utf-8", "replace").split("\n")
        return out, 124


# ---- pass-through traces ----------------------------------------------------------------------------------
# `uiommufd trace --passthrough` runs a program on the VM's kernel and decodes its /dev/iommu calls; the same
# program under `uiommufd trace` here must give the same decoded calls. Both sides hide the program's
# addresses (--hide-addresses), which two address spaces never share.
TRACE_JOB = os.path.join(HERE, "trace-job.sh")
TRACE_LINE = re.compile(r"^\+\d+\.\d{6} (\d+)/(\d+) (.+)$")
# Programs whose traces are not compared, each with the reason; programs with known differences
# (known-differences.txt) are left out too, as their calls differ where their steps do.
TRACE_NOT_COMPARED = {
    "abi_fail_nth": "it injects faults, and the kernel's fault sites are not the engine's: which call fails "
                    "at each nth differs by design (docs/fault-injection.md)",
}


def trace_compared(progs, rules, shared):
    """The programs whose traces are compared, and {program: why not} for the others."""
    ruled = {r.program: r.name for r in rules}
    out, skipped = [], {}
    for p in progs:
        if p in TRACE_NOT_COMPARED:
            skipped[p] = TRACE_NOT_COMPARED[p]
        elif p in ruled:
            skipped[p] = f"its steps have known differences (rule {ruled[p]}), so its calls differ there too"
        elif runs_in(p, shared):
            out.append(p)
    return out, skipped


def trace_threads(lines):
    """A trace as each thread's calls in order, without times and ids, the threads sorted by their calls:
    the threads and processes of a program interleave differently on every run."""
    threads = {}
    for ln in lines:
        m = TRACE_LINE.match(ln)
        if m:
            threads.setdefault((m.group(1), m.group(2)), []).append(m.group(3))
    return sorted(threads.values())


def compare_traces(linux, ours, rc_l, rc_u):
    """(verdict, lines compared, detail) of two traces of one program."""
    a, b = trace_threads(linux), trace_threads(ours)
    detail = []
    if not a:
        detail.append("  no trace lines from Linux")
    if rc_l != rc_u or abnormal(rc_l) or abnormal(rc_u):
        detail.append(f"  exit status: linux rc={rc_l}, ours rc={rc_u}")
    if len(a) != len(b):
        detail.append(f"  linux traced {len(a)} thread(s), ours {len(b)}")
    compared = 0
    for t, (ta, tb) in enumerate(zip(a, b)):
        for i in range(max(len(ta), len(tb))):
            la = ta[i] if i < len(ta) else "<no more calls>"
            lb = tb[i] if i < len(tb) else "<no more calls>"
            if la != lb:
                detail += [f"  thread {t + 1}, call {i + 1}: first differing call", f"    linux: {la}",
                           f"    ours:  {lb}"]
                break
            compared += 1
        else:
            continue
        break
    return ("DIFFER" if detail else "agree"), compared, detail


def run_trace_here(uiommufd, prog, out_file, timeout, shared):
    """`uiommufd trace --hide-addresses` of one program here: (trace lines, the program's exit status)."""
    cmd = [uiommufd, "trace", "--hide-addresses", "-o", out_file] + (["--shared"] if shared else []) + ["--", prog]
    try:
        rc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        rc = 124
    try:
        return open(out_file).read().split("\n"), rc
    except OSError:
        return [], rc


def stripped(path, out):
    """A copy of `path` in `out` without its debugging sections (the build's carry tens of megabytes that the
    initramfs need not)."""
    os.makedirs(out, exist_ok=True)
    dest = os.path.join(out, os.path.basename(path))
    subprocess.run(["objcopy", "--strip-debug", path, dest], check=True)
    return dest


def passthrough_files(uiommufd, dynamic, out):
    """What the VM needs for `uiommufd trace --passthrough`: the tool and its preload in /progs/trace, the
    dynamic programs in /progs/host, and everything they load."""
    # Where the build tree puts it, and where the tool looks first.
    preload = os.path.join(os.path.dirname(os.path.realpath(uiommufd)), "libuiommufd-preload.so")
    if not os.path.isfile(preload):
        sys.exit(f"reference: no {os.path.basename(preload)} beside {uiommufd}")
    binaries = {"trace/uiommufd": stripped(os.path.realpath(uiommufd), os.path.join(out, "trace")),
                "trace/" + os.path.basename(preload): stripped(preload, os.path.join(out, "trace")),
                "trace-job.sh": TRACE_JOB}
    binaries.update((f"host/{p}", path) for p, path in dynamic.items())
    return binaries, shared_libraries([uiommufd, preload] + list(dynamic.values()))


def save_sides(out, stem, linux, ours, shared):
    """Both sides' full output, as <stem>.linux.txt and <stem>.ours[.shared].txt."""
    for side, lines in (("linux", linux), ("ours.shared" if shared else "ours", ours)):
        with open(os.path.join(out, f"{stem}.{side}.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")


def print_details(details, what=""):
    for p, detail in details:
        print(f"\n{p}{what}:")
        print("\n".join(detail))


def report_traces(vm, here_traces, progs, rules, modes, out):
    """Prints the trace comparison of each mode; True when every compared program agrees."""
    all_agree = True
    for name, shared in modes:
        compared_progs, skipped = trace_compared(progs, rules, shared)
        print(f"\nTrace: `uiommufd trace --passthrough` on Linux vs `uiommufd trace{' --shared' if shared else ''}`"
              " (--hide-addresses; each thread's calls in order)\n")
        print(f"{'program':<20} {'calls':>6}  verdict")
        agree, total, details = 0, 0, []
        for p in compared_progs:
            lines_l, rc_l = vm.get(f"trace-{p}", ([], -1))
            lines_u, rc_u = here_traces[(name, p)]
            verdict, n, detail = compare_traces(lines_l, lines_u, rc_l, rc_u)
            total += n
            agree += verdict == "agree"
            print(f"{p:<20} {n:>6}  {verdict}")
            if detail:
                details.append((p, detail))
            save_sides(out, f"{p}.trace", lines_l, lines_u, shared)
        print_details(details, " (trace)")
        print(f"\ntrace vs {name}: {agree}/{len(compared_progs)} programs' traces agree; {total} calls compared")
        for p, why in skipped.items():
            print(f"TRACE NOT COMPARED: {p}: {why}")
        all_agree = all_agree and agree == len(compared_progs)
    return all_agree


# ---- comparing --------------------------------------------------------------------------------------------
class Rule:
    """One stanza of known-differences.txt: exact step names of one program, and why they differ."""

    def __init__(self, name, program, steps, reason):
        self.name, self.program, self.steps, self.reason = name, program, set(steps), reason
        self.excused = 0          # step lines it excused, over the whole run
        self.programs_excused = 0  # runs (programs or seeds) in which it excused anything


def load_known(path=os.path.join(HERE, "known-differences.txt")):
    """Parses the stanzas; a malformed rule is an error, never silently ignored."""
    rules, fields, key = [], {}, None

    def flush():
        if not fields:
            return
        missing = [k for k in ("rule", "program", "steps", "reason") if not fields.get(k)]
        if missing:
            sys.exit(f"reference: {path}: rule {fields.get('rule', '?')} lacks {', '.join(missing)}")
        steps_ = fields["steps"].split()
        if any(ch in s for s in steps_ for ch in "*?[") or any(ch in fields["program"] for ch in "*?["):
            sys.exit(f"reference: {path}: rule {fields['rule']}: programs and steps are exact names, not globs")
        rules.append(Rule(fields["rule"], fields["program"], steps_, " ".join(fields["reason"].split())))
        fields.clear()

    for raw in open(path):
        line = raw.rstrip("\n")
        if line.startswith("#"):
            continue
        if not line.strip():
            flush()
            key = None
        elif line[0] in " \t" and key:
            fields[key] += " " + line.strip()
        else:
            k, _, v = line.partition(":")
            key = k.strip().lower()
            if key not in ("rule", "program", "steps", "reason"):
                sys.exit(f"reference: {path}: unknown field {k!r}")
            fields[key] = v.strip()
    flush()
    return rules


def step_name(line):
    m = re.match(r"step (\S+?):", line)
    return m.group(1) if m else None


def steps(lines):
    return [ln for ln in lines if ln.startswith("step ")]


def summarize(lines, rc):
    fails = sum(1 for ln in lines if ln.startswith("FAIL "))
    fatal = any(ln.startswith("FATAL ") for ln in lines)
    if rc == 0 and not fails:
        return "PASS"
    if rc in (124, 143):
        return "TIMEOUT"
    if rc == -1:
        return "NO END"
    if rc >= 128 or rc < 0:
        return f"SIGNAL {rc - 128 if rc >= 128 else -rc}"
    return f"FAIL({fails}{', fatal' if fatal else ''})"


def abnormal(rc):
    """A crash, a kill, a timeout or a run that never reported its end: never an agreement."""
    return rc < 0 or rc >= 124


def failed_steps(lines):
    return {m.group(1) for m in (re.match(r"FAIL (\S+?):", ln) for ln in lines) if m}


class Verdict:
    """What compare_program() found: `agree`, `agree*` (agrees apart from excused step lines) or `DIFFER`."""

    def __init__(self):
        self.verdict, self.detail, self.compared, self.excused = "agree", [], 0, {}

    def differ(self, *lines):
        self.verdict = "DIFFER"
        self.detail.extend(lines)


def compare_program(prog, linux, ours, rc_l, rc_u, rules):
    """Compares the step lines in order and the exit statuses. Rules excuse a differing line only where both
    sides printed the same step name at the same position; see known-differences.txt."""
    v = Verdict()
    mine = [r for r in rules if r.program == prog]
    by_step = {s: r for r in mine for s in r.steps}
    ls, us = steps(linux), steps(ours)
    for side, rc, lines in (("linux", rc_l, linux), ("ours", rc_u, ours)):
        if rc == 77:
            why = next((ln for ln in lines if ln.startswith("SKIP ")), "SKIP")
            v.differ(f"  {side}: not run ({why}): a program that skipped is never an agreement")
        if abnormal(rc):
            v.differ(f"  {side}: {summarize([], rc)} (rc={rc}): a crash, kill or timeout is never an agreement")
    if not ls:
        v.differ("  no step lines from Linux")
    excused_here = {}
    first = None
    for i in range(max(len(ls), len(us))):
        la = ls[i] if i < len(ls) else "<no more steps>"
        lb = us[i] if i < len(us) else "<no more steps>"
        if la == lb:
            v.compared += 1
            continue
        name = step_name(la)
        rule = by_step.get(name) if name and name == step_name(lb) else None
        if rule:
            v.compared += 1
            excused_here[rule] = excused_here.get(rule, 0) + 1
            continue
        first = (i, la, lb)
        break
    if first:
        i, a, b = first
        v.differ(f"  first differing step (line {i + 1} of the step lines):",
                 f"    linux: {a}", f"    ours:  {b}")
        diff_lines = list(difflib.unified_diff(ls, us, "linux", "uiommufd", n=1, lineterm=""))
        v.detail.extend("    " + ln for ln in diff_lines[:16])
        if len(diff_lines) > 16:
            v.detail.append(f"    ... {len(diff_lines) - 16} more diff lines")
    # Every step a rule names must be there on both sides: an excuse for a step that never ran is a hole.
    for r in mine:
        for side, lst in (("linux", ls), ("ours", us)):
            names = {step_name(ln) for ln in lst}
            absent = sorted(r.steps - names)
            if absent:
                v.differ(f"  rule {r.name}: {side} printed no line for {', '.join(absent)}")
    if rc_l != rc_u and not abnormal(rc_l) and not abnormal(rc_u):
        # Excused only when the failing side's exit status comes from FAIL lines of excused steps alone
        # (abi_finish() exits 1 for them); a FATAL or an unexplained status is a disagreement.
        def explained(lines, rc):
            fails = failed_steps(lines)
            if rc == 0:
                return not fails
            return rc == 1 and fails and fails <= set(by_step) and not any(ln.startswith("FATAL ") for ln in lines)
        covered = explained(linux, rc_l) and explained(ours, rc_u)
        if not covered or not mine:
            v.differ(f"  exit status: linux rc={rc_l}, ours rc={rc_u}")
        else:
            v.detail.append(f"  exit status linux rc={rc_l}, ours rc={rc_u}: every FAIL line names an excused step")
    for r, n in excused_here.items():
        v.excused[r] = n
        v.detail.append(f"  rule {r.name} excused {n} step line(s): {r.reason}")
    if v.verdict != "DIFFER" and (excused_here or rc_l != rc_u):
        v.verdict = "agree*"
    return v


def tally(v):
    """Adds a program's excuses to its rules' totals."""
    for r, n in v.excused.items():
        r.excused += n
        r.programs_excused += 1


def print_rules(rules, programs):
    """The per-rule account: what each rule excused in this run."""
    mine = [r for r in rules if r.program in programs]
    if not mine:
        return
    print("\nKnown differences (tools/reference/known-differences.txt):")
    for r in mine:
        print(f"  {r.name} ({r.program}, {len(r.steps)} named steps): excused {r.excused} step line(s)"
              f" in {r.programs_excused} run(s)" + ("" if r.excused else "  [excused nothing: stale?]"))


# ---- the kernel's own health ----------------------------------------------------------------------------
class KernelHealth:
    """What /init reported about the kernel after the jobs: warning/oops lines and the taint mask."""

    def __init__(self):
        self.lines, self.tainted, self.done = [], None, False
        self.boot_crashes = []  # earlier boots that crashed before any program ran (boot())

    def problems(self):
        out = []
        if not self.done:
            out.append("the VM did not reach the end of its plan (no @@DONE on the console)")
        if self.tainted is None:
            out.append("the VM did not report its taint mask")
        elif self.tainted != 0:
            out.append(f"the kernel is tainted: /proc/sys/kernel/tainted = {self.tainted}")
        if self.lines:
            out.append(f"{len(self.lines)} kernel warning/bug/oops line(s):")
            out.extend("    " + ln for ln in self.lines[:40])
        return out


def report_kernel(health):
    """Prints the kernel's problems; True when there are none."""
    for crash in health.boot_crashes:
        print(f"Kernel: NOTE: an earlier boot crashed before any program ran and was booted again: {crash}")
    problems = health.problems()
    if not problems:
        print("Kernel: no WARNING, BUG, Oops or taint during the run")
        return True
    print("\nKERNEL PROBLEMS (these fail the run):")
    print("\n".join("  " + p for p in problems))
    return False


# ---- commands ---------------------------------------------------------------------------------------------
def default_uiommufd():
    return os.path.join(ROOT, "build", "release", "tools", "uiommufd", "uiommufd")


def cmd_check(args):
    rules = load_known()
    stray = [r.name for r in rules if r.program not in abi_programs() + ["seqgen"]]
    if stray:
        sys.exit(f"reference: known-differences.txt: rule(s) {', '.join(stray)} name no program that runs")
    progs = abi_programs() if not args.only else args.only
    out = args.out
    bzimage = build_kernel(args.kernel)
    check_errno_table()
    static, dynamic = {}, {}
    for p in progs:
        src = os.path.join(ABI_DIR, p + ".c")
        static[p] = compile_c(src, os.path.join(out, "static", p), True, [ABI_DIR])
        dynamic[p] = compile_c(src, os.path.join(out, "host", p), False, [ABI_DIR])
    initrd = os.path.join(out, "abi-initramfs.cpio.gz")
    prefix = vm_binaries(out, static)
    plan = [(p, args.program_timeout, f"{prefix}/progs/{p}") for p in progs]
    # The same programs again under `uiommufd trace --passthrough`, dynamically linked, with what they load.
    modes = [("uiommufd run", False)] + ([("uiommufd run --shared", True)] if args.shared else [])
    traced = sorted({p for _, shared in modes for p in trace_compared(progs, rules, shared)[0]}, key=progs.index)
    binaries, libs = passthrough_files(args.uiommufd, {p: dynamic[p] for p in traced}, out)
    binaries.update(static)
    plan += [(f"trace-{p}", args.program_timeout, f"{prefix}/bin/sh /progs/trace-job.sh /progs/host/{p}")
             for p in traced]
    build_initramfs(initrd, binaries, plan, libs)
    vm, release, health = boot(bzimage, initrd, os.path.join(out, "abi-console.log"), args.vm_timeout)

    # One kernel run, compared with uiommufd in-process and (--shared) with the engine in a server process.
    here, here_traces = {}, {}
    with host_hugepages(HOST_HUGEPAGES):
        for name, shared in modes:
            for p in progs:
                if not runs_in(p, shared):
                    continue
                here[(name, p)] = run_here(args.uiommufd, [dynamic[p]], args.program_timeout, shared)
            for p in trace_compared(progs, rules, shared)[0]:
                here_traces[(name, p)] = run_trace_here(args.uiommufd, dynamic[p], os.path.join(out, "trace.tmp"),
                                                        args.program_timeout, shared)

    all_agree = True
    for name, shared in modes:
        print(f"\nReference: Linux {release} (QEMU, IOMMUFD_TEST mock domains) vs {name}\n")
        print(f"{'program':<20} {'linux':<12} {'uiommufd':<12} {'steps':>6} {'excused':>7}  verdict")
        agree, details, compared, excused = 0, [], 0, 0
        mode_progs = [p for p in progs if runs_in(p, shared)]
        for p in mode_progs:
            lines_l, rc_l = vm.get(p, ([], -1))
            lines_u, rc_u = here[(name, p)]
            v = compare_program(p, lines_l, lines_u, rc_l, rc_u, rules)
            tally(v)
            n_exc = sum(v.excused.values())
            compared += v.compared
            excused += n_exc
            if v.verdict != "DIFFER":
                agree += 1
            print(f"{p:<20} {summarize(lines_l, rc_l):<12} {summarize(lines_u, rc_u):<12} "
                  f"{v.compared:>6} {n_exc:>7}  {v.verdict}")
            if v.detail:
                details.append((p, v.detail))
            save_sides(out, p, lines_l, lines_u, shared)
        print_details(details)
        print(f"\n{name}: {agree}/{len(mode_progs)} programs agree; {compared} step lines compared, {excused} of "
              "them excused by known differences")
        for p in progs:
            if p not in mode_progs:
                print(f"NOT COMPARED under {name}: {p}: {(SHARED_NOT_YET if shared else SHARED_ONLY)[p]}")
        all_agree = all_agree and agree == len(mode_progs)
    traces_agree = report_traces(vm, here_traces, progs, rules, modes, out)
    print_rules(rules, progs)
    print()
    healthy = report_kernel(health)
    if not healthy:
        print("FAILED: the kernel reported problems (above)")
    print("(agree* = agrees apart from the excused step lines listed above; full outputs in "
          f"{os.path.relpath(out, ROOT)}/<program>.<linux|ours|ours.shared>.txt)")
    return 0 if all_agree and traces_agree and healthy else EXIT_DIFFER


def cmd_fuzz(args):
    rules = load_known()
    out = args.out
    bzimage = build_kernel(args.kernel)
    check_errno_table()
    static = compile_c(SEQGEN_SRC, os.path.join(out, "static", "seqgen"), True, [ABI_DIR])
    dynamic = compile_c(SEQGEN_SRC, os.path.join(out, "host", "seqgen"), False, [ABI_DIR])
    seeds = list(range(args.first, args.first + args.seeds))
    vm, problems = {}, []
    for b in range(0, len(seeds), args.batch):
        batch = seeds[b:b + args.batch]
        initrd = os.path.join(out, "fuzz-initramfs.cpio.gz")
        binaries = {"seqgen": static}
        prefix = vm_binaries(out, binaries)
        plan = [(f"seed-{s}", 60, f"{prefix}/progs/seqgen {s} {args.steps}") for s in batch]
        build_initramfs(initrd, binaries, plan)
        jobs, release, health = boot(bzimage, initrd, os.path.join(out, f"fuzz-console-{batch[0]}.log"),
                                     args.vm_timeout)
        vm.update(jobs)
        problems.append(health)
    log(f"running {len(seeds)} sequences under uiommufd run")
    differing, documented_only, compared, excused = [], 0, 0, 0
    for s in seeds:
        lines_l, rc_l = vm.get(f"seed-{s}", ([], -1))
        lines_u, rc_u = run_here(args.uiommufd, [dynamic, str(s), str(args.steps)], 60)
        v = compare_program("seqgen", lines_l, lines_u, rc_l, rc_u, rules)
        tally(v)
        compared += v.compared
        excused += sum(v.excused.values())
        if v.verdict == "DIFFER" or rc_l != 0 or rc_u != 0:
            differing.append((s, rc_l, rc_u, v.detail))
        elif v.verdict == "agree*":
            documented_only += 1
    print(f"\nReference fuzz: {len(seeds)} sequences (seeds {seeds[0]}..{seeds[-1]}, {args.steps} operations "
          f"each); {compared} step lines compared, {excused} excused by known differences")
    for s, rc_l, rc_u, detail in differing[:args.show]:
        print(f"\nseed {s}: linux rc={rc_l}, ours rc={rc_u}; replay: "
              f"tools/reference/reference.py fuzz --first {s} --seeds 1 --steps {args.steps}")
        print("\n".join(detail))
    if len(differing) > args.show:
        print(f"\n... and {len(differing) - args.show} more differing seeds")
    print_rules(rules, ["seqgen"])
    print()
    healthy = all([report_kernel(h) for h in problems])
    print(f"\n{len(seeds) - len(differing)}/{len(seeds)} sequences agree"
          + (f" ({documented_only} only through documented deviations)" if documented_only else "")
          + ("" if healthy else "; FAILED: the kernel reported problems (above)"))
    return 0 if not differing and healthy else EXIT_DIFFER


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--uiommufd", default=default_uiommufd(), help="the uiommufd binary (for `uiommufd run`)")
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "reference"), help="work and output directory")
    ap.add_argument("--vm-timeout", type=int, default=1800, help="seconds before a VM is killed")
    ap.add_argument("--kernel", help="a bzImage to boot instead of kernel.sh's build (it must have IOMMUFD_TEST)")
    ap.add_argument("--shared", action="store_true",
                    help="check: also run every program under `uiommufd run --shared` (docs/shared.md) and compare "
                         "it with the same kernel output")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="every tests/abi program on both sides")
    c.add_argument("--program-timeout", type=int, default=300)
    c.add_argument("only", nargs="*", help="only these programs")
    f = sub.add_parser("fuzz", help="seeded random ioctl sequences on both sides")
    f.add_argument("--seeds", type=int, default=100)
    f.add_argument("--first", type=int, default=1)
    f.add_argument("--steps", type=int, default=60)
    f.add_argument("--batch", type=int, default=1000, help="seeds per VM boot")
    f.add_argument("--show", type=int, default=10, help="differing seeds to print in full")
    args = ap.parse_args()
    args.out = os.path.abspath(args.out)
    os.makedirs(args.out, exist_ok=True)
    if not os.access(args.uiommufd, os.X_OK):
        sys.exit(f"reference: {args.uiommufd} is missing: build it first (make build-release)")
    sys.exit(cmd_check(args) if args.cmd == "check" else cmd_fuzz(args))


if __name__ == "__main__":
    main()
