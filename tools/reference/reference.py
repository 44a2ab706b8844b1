#!/usr/bin/env python3
"""Runs the same programs on a real Linux kernel (under QEMU) and under `uiommufd run`, and compares them.

  reference.py check            every tests/abi program, a table and `N/M programs agree`
  reference.py fuzz --seeds N   N seeded random ioctl sequences (tests/reference/seqgen.c), the first
                                differing step of each seed that differs

Both sides run the same C source: linked statically for the VM's initramfs, dynamically here (the preload
cannot interpose a static program). Every program prints one `step ...` line per observation; those lines
are what is compared. Known, documented deviations (known-differences.txt) are reported as such, never
hidden: a difference in a step they name does not count as a disagreement, but it is printed.

Standard library only. The kernel comes from tools/reference/kernel.sh (built once, cached in
~/.cache/uiommufd-ref/).
"""

import argparse
import difflib
import fnmatch
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
    """The programs tests/abi/CMakeLists.txt registers, in its order."""
    text = open(os.path.join(ABI_DIR, "CMakeLists.txt")).read()
    m = re.search(r"set\(UIOMMUFD_ABI_PROGRAMS(.*?)\)", text, re.S)
    return m.group(1).split()


# ---- building ---------------------------------------------------------------------------------------------
def build_kernel():
    out = subprocess.run([os.path.join(HERE, "kernel.sh")], stdout=subprocess.PIPE, text=True)
    if out.returncode != 0:
        sys.exit("reference: the reference kernel could not be built (see above)")
    return out.stdout.strip().splitlines()[-1]


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


def build_initramfs(path, binaries, plan):
    """binaries: {name in /progs: host path}. plan: list of (job name, seconds, command line)."""
    d, f, l, c = stat.S_IFDIR | 0o755, stat.S_IFREG, stat.S_IFLNK | 0o777, stat.S_IFCHR | 0o600
    entries = [(n, d, b"", (0, 0)) for n in ["bin", "dev", "proc", "sys", "tmp", "progs"]]
    entries.append(("dev/console", c, b"", (5, 1)))
    entries.append(("dev/null", stat.S_IFCHR | 0o666, b"", (1, 3)))
    busybox = shutil.which("busybox") or "/bin/busybox"
    entries.append(("bin/busybox", f | 0o755, open(busybox, "rb").read(), (0, 0)))
    entries.append(("bin/sh", l, b"busybox", (0, 0)))
    entries.append(("init", f | 0o755, open(os.path.join(HERE, "init.sh"), "rb").read(), (0, 0)))
    for name, host in sorted(binaries.items()):
        entries.append((f"progs/{name}", f | 0o755, open(host, "rb").read(), (0, 0)))
    text = "".join(f"{n} {s} {cmd}\n" for n, s, cmd in plan)
    entries.append(("plan", f | 0o644, text.encode(), (0, 0)))
    with open(path, "wb") as out:
        out.write(cpio_newc(entries))


# ---- running ----------------------------------------------------------------------------------------------
def boot(bzimage, initrd, console_log, timeout):
    """Boots the VM and returns {job: (output lines, rc)} plus the kernel release it reported."""
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
    text = open(console_log, "rb").read().decode("utf-8", "replace").replace("\r", "")
    jobs, current, lines, release = {}, None, [], "?"
    done = False
    for line in text.split("\n"):
        if line.startswith("@@KERNEL "):
            release = line.split(" ", 1)[1]
        elif line.startswith("@@BEGIN "):
            current, lines = line.split(" ", 1)[1], []
        elif line.startswith("@@END ") and current is not None:
            m = re.match(r"@@END (\S+) rc=(\d+)", line)
            jobs[current] = (lines, int(m.group(2)) if m else -1)
            current = None
        elif line.startswith("@@WARNINGS "):
            log(f"kernel log after the jobs: {line[11:]} (warnings/oopses, taint)")
        elif line.startswith("@@DONE"):
            done = True
        elif current is not None:
            lines.append(line)
    if current is not None:
        jobs[current] = (lines, -1)  # began but never ended: the VM died or timed out inside it
    if not done:
        log("the VM did not reach the end of its plan")
    return jobs, release


def run_here(uiommufd, argv, timeout):
    try:
        p = subprocess.run([uiommufd, "run", "--"] + argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout)
        return p.stdout.decode("utf-8", "replace").split("\n"), p.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode("utf-8", "replace").split("\n")
        return out, 124


# ---- comparing --------------------------------------------------------------------------------------------
def load_known():
    """known-differences.txt: `<program glob> <step glob> <reason>` per line."""
    known = []
    for raw in open(os.path.join(HERE, "known-differences.txt")):
        line = raw.strip()
        if line and not line.startswith("#"):
            prog, step, reason = line.split(None, 2)
            known.append((prog, step, reason))
    return known


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
    return f"FAIL({fails}{', fatal' if fatal else ''})"


def first_difference(a, b):
    for i in range(max(len(a), len(b))):
        la = a[i] if i < len(a) else "<no more steps>"
        lb = b[i] if i < len(b) else "<no more steps>"
        if la != lb:
            return i, la, lb
    return None


def compare_program(prog, linux, ours, known):
    """Returns (verdict, detail lines). Verdicts: agree, agree*, DIFFER."""
    rules = [(s, r) for p, s, r in known if fnmatch.fnmatch(prog, p)]

    def documented(line):
        name = step_name(line)
        return next((r for s, r in rules if name and fnmatch.fnmatch(name, s)), None)

    ls, us = steps(linux), steps(ours)
    detail = []
    # Documented steps are compared too, and every difference in them is listed with its reason.
    dl = [ln for ln in ls if documented(ln)]
    du = [ln for ln in us if documented(ln)]
    if dl != du:
        reasons = sorted({documented(ln) for ln in dl + du})
        detail.append(f"  documented deviation in {sum(1 for x, y in zip(dl, du) if x != y) + abs(len(dl) - len(du))}"
                      f" step line(s): {'; '.join(reasons)}")
        diff = first_difference(dl, du)
        if diff:
            detail.append(f"    first: linux: {diff[1]}")
            detail.append(f"           ours:  {diff[2]}")
    rest_l = [ln for ln in ls if not documented(ln)]
    rest_u = [ln for ln in us if not documented(ln)]
    diff = first_difference(rest_l, rest_u)
    if diff is None and ls:
        return ("agree*" if dl != du else "agree"), detail
    if not ls:
        detail.append("  no step lines from Linux")
        return "DIFFER", detail
    i, a, b = diff
    detail.append(f"  first differing step (#{i + 1} of the undocumented ones):")
    detail.append(f"    linux: {a}")
    detail.append(f"    ours:  {b}")
    diff_lines = list(difflib.unified_diff(rest_l, rest_u, "linux", "uiommufd", n=1, lineterm=""))
    detail.extend("    " + ln for ln in diff_lines[:16])
    if len(diff_lines) > 16:
        detail.append(f"    ... {len(diff_lines) - 16} more diff lines")
    return "DIFFER", detail


# ---- commands ---------------------------------------------------------------------------------------------
def default_uiommufd():
    return os.path.join(ROOT, "build", "release", "tools", "uiommufd", "uiommufd")


def cmd_check(args):
    known = load_known()
    progs = abi_programs() if not args.only else args.only
    out = args.out
    bzimage = build_kernel()
    static, dynamic = {}, {}
    for p in progs:
        src = os.path.join(ABI_DIR, p + ".c")
        static[p] = compile_c(src, os.path.join(out, "static", p), True, [ABI_DIR])
        dynamic[p] = compile_c(src, os.path.join(out, "host", p), False, [ABI_DIR])
    initrd = os.path.join(out, "abi-initramfs.cpio.gz")
    prefix = vm_binaries(out, static)
    build_initramfs(initrd, static, [(p, args.program_timeout, f"{prefix}/progs/{p}") for p in progs])
    vm, release = boot(bzimage, initrd, os.path.join(out, "abi-console.log"), args.vm_timeout)

    here = {}
    for p in progs:
        here[p] = run_here(args.uiommufd, [dynamic[p]], args.program_timeout)

    print(f"\nReference: Linux {release} (QEMU, IOMMUFD_TEST mock domains) vs uiommufd run\n")
    print(f"{'program':<20} {'linux':<12} {'uiommufd':<12} {'steps':>6}  verdict")
    agree, details = 0, []
    for p in progs:
        lines_l, rc_l = vm.get(p, ([], -1))
        lines_u, rc_u = here[p]
        verdict, detail = compare_program(p, lines_l, lines_u, known)
        if verdict != "DIFFER":
            agree += 1
        print(f"{p:<20} {summarize(lines_l, rc_l):<12} {summarize(lines_u, rc_u):<12} "
              f"{len(steps(lines_l)):>6}  {verdict}")
        if detail:
            details.append((p, detail))
        for side, lines in (("linux", lines_l), ("ours", lines_u)):
            with open(os.path.join(out, f"{p}.{side}.txt"), "w") as f:
                f.write("\n".join(lines) + "\n")
    for p, detail in details:
        print(f"\n{p}:")
        print("\n".join(detail))
    print(f"\n{agree}/{len(progs)} programs agree")
    print("(agree* = agree apart from documented deviations, listed above; full outputs in "
          f"{os.path.relpath(out, ROOT)}/<program>.<linux|ours>.txt)")
    return 0 if agree == len(progs) else 1


def cmd_fuzz(args):
    known = load_known()
    out = args.out
    bzimage = build_kernel()
    static = compile_c(SEQGEN_SRC, os.path.join(out, "static", "seqgen"), True, [ABI_DIR])
    dynamic = compile_c(SEQGEN_SRC, os.path.join(out, "host", "seqgen"), False, [ABI_DIR])
    seeds = list(range(args.first, args.first + args.seeds))
    vm = {}
    for b in range(0, len(seeds), args.batch):
        batch = seeds[b:b + args.batch]
        initrd = os.path.join(out, "fuzz-initramfs.cpio.gz")
        binaries = {"seqgen": static}
        prefix = vm_binaries(out, binaries)
        plan = [(f"seed-{s}", 60, f"{prefix}/progs/seqgen {s} {args.steps}") for s in batch]
        build_initramfs(initrd, binaries, plan)
        jobs, release = boot(bzimage, initrd, os.path.join(out, f"fuzz-console-{batch[0]}.log"),
                             args.vm_timeout)
        vm.update(jobs)
    log(f"running {len(seeds)} sequences under uiommufd run")
    differing, documented_only, total_steps = [], 0, 0
    for s in seeds:
        lines_l, rc_l = vm.get(f"seed-{s}", ([], -1))
        lines_u, rc_u = run_here(args.uiommufd, [dynamic, str(s), str(args.steps)], 60)
        total_steps += len(steps(lines_l))
        verdict, detail = compare_program("seqgen", lines_l, lines_u, known)
        if verdict == "DIFFER" or rc_l != 0 or rc_u != 0:
            differing.append((s, rc_l, rc_u, detail))
        elif verdict == "agree*":
            documented_only += 1
    print(f"\nReference fuzz: {len(seeds)} sequences (seeds {seeds[0]}..{seeds[-1]}, {args.steps} steps each), "
          f"{total_steps} steps on Linux")
    for s, rc_l, rc_u, detail in differing[:args.show]:
        print(f"\nseed {s}: linux rc={rc_l}, ours rc={rc_u}; replay: "
              f"tools/reference/reference.py fuzz --first {s} --seeds 1 --steps {args.steps}")
        print("\n".join(detail))
    if len(differing) > args.show:
        print(f"\n... and {len(differing) - args.show} more differing seeds")
    print(f"\n{len(seeds) - len(differing)}/{len(seeds)} sequences agree"
          + (f" ({documented_only} only through documented deviations)" if documented_only else ""))
    return 0 if not differing else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--uiommufd", default=default_uiommufd(), help="the uiommufd binary (for `uiommufd run`)")
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "reference"), help="work and output directory")
    ap.add_argument("--vm-timeout", type=int, default=1800, help="seconds before a VM is killed")
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
