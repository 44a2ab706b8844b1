#!/usr/bin/env python3
"""trace.passthrough_here: `uiommufd trace --passthrough` on this machine emulates nothing.

  check_passthrough.py UIOMMUFD PROGRAM TRACE-FILE

Runs tests/trace/passthrough.c under `uiommufd trace --passthrough` and checks that each answer the program
got (/dev/iommu, its fail-nth file) is the one this machine's kernel gives this script, that the trace has
exactly the iommufd calls the program made on the kernel's iommufd (with the kernel's results) and nothing
for the ioctl on /dev/null; then that the same program under plain `uiommufd trace` does get the emulated
iommufd, so the check tells the two apart. The reference VM (tools/reference/reference.py) compares whole
pass-through traces with the kernel's iommufd; this is what a machine without one can check.
"""
import errno
import os
import re
import subprocess
import sys

HEAD = re.compile(r"^\+\d+\.\d{6} \d+/\d+ ")


def kernel_answer(path, flags):
    try:
        os.close(os.open(path, flags))
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]


def run(tool, prog, trace, *opts):
    p = subprocess.run([tool, "trace", *opts, "-o", trace, "--", prog], stdout=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit(f"uiommufd trace {' '.join(opts)} exited {p.returncode}")
    answers = dict(ln.split(": ", 1) for ln in p.stdout.splitlines())
    calls = [HEAD.sub("", ln) for ln in open(trace).read().splitlines()]
    return answers, calls


def main():
    tool, prog, trace = sys.argv[1:4]
    answers, calls = run(tool, prog, trace, "--passthrough")
    problems = []
    iommu = kernel_answer("/dev/iommu", os.O_RDWR)
    nth = kernel_answer(f"/proc/thread-self/fail-nth", os.O_RDWR)
    if answers.get("iommu") != iommu:
        problems.append(f"open(/dev/iommu): the program got {answers.get('iommu')}, the kernel gives {iommu}")
    if answers.get("fail-nth") != nth:
        problems.append(f"open(fail-nth): the program got {answers.get('fail-nth')}, the kernel gives {nth}")
    if iommu == "ok":
        want = [r'open\("/dev/iommu", O_RDWR\) = (\d+)$', r"ioctl\(\d+, IOMMU_IOAS_ALLOC, .*\) = 0 => \{out_ioas_id=\d+\}$",
                r"ioctl\(\d+, IOMMU_DESTROY, \{size=8, id=\d+\}\) = 0$", r"dup\(\d+\) = \d+$", r"close\(\d+\) = 0$",
                r"close\(\d+\) = 0$"]
    else:
        want = [r'open\("/dev/iommu", O_RDWR\) = -1 ' + iommu + r" \(.*\)$"]
    if len(calls) != len(want) or not all(re.match(w, c) for w, c in zip(want, calls)):
        problems.append("the pass-through trace is not the program's calls on the kernel's iommufd:\n  " +
                        "\n  ".join(calls) + "\nexpected:\n  " + "\n  ".join(want))
    # Without --passthrough the same program gets uiommufd's iommufd.
    emulated, calls = run(tool, prog, trace)
    if emulated.get("iommu") != "ok" or emulated.get("ioas_alloc") != "ok" or not calls:
        problems.append(f"plain `uiommufd trace` did not emulate /dev/iommu: {emulated}")
    if problems:
        sys.exit("\n".join(problems))
    print(f"pass-through: /dev/iommu {iommu}, fail-nth {nth}, as the kernel answers; {len(want)} call(s) traced")


if __name__ == "__main__":
    main()
