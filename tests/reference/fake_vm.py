#!/usr/bin/env python3
"""Stands in for qemu-system-x86_64 in the referee's pipeline test (pipeline_test.sh), never for the kernel:
it reads /plan from the initramfs reference.py built and runs each job's host build (<out>/host/<program>)
under `uiommufd run` (a trace job under `uiommufd trace`, as trace-job.sh would on the kernel), printing
the markers tools/reference/init.sh prints. So both sides are uiommufd and
must agree; what is tested is the plumbing around them: initramfs, console parsing, the comparison, the
report and the exit status. FAKE_WARN=1 adds a kernel warning line, FAKE_TAINT=<n> sets the taint mask, FAKE_TRACE_SKEW=1 changes
an out-value in each trace."""
import gzip
import os
import subprocess
import sys


def cpio_files(path):
    data, files, off = gzip.decompress(open(path, "rb").read()), {}, 0
    while off < len(data):
        f = [int(data[off + 6 + 8 * i:off + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = f[11], f[6]
        name = data[off + 110:off + 110 + namesize - 1].decode()
        off += 110 + namesize
        off += -off % 4
        files[name] = data[off:off + filesize]
        off += filesize
        off += -off % 4
        if name == "TRAILER!!!":
            break
    return files


def main():
    initrd = sys.argv[sys.argv.index("-initrd") + 1]
    out, uiommufd = os.environ["FAKE_VM_OUT"], os.environ["FAKE_VM_UIOMMUFD"]
    print("@@KERNEL fake-vm", flush=True)
    for line in cpio_files(initrd)["plan"].decode().splitlines():
        name, _, cmd = line.split(" ", 2)
        argv = cmd.split()[2:]  # without `/progs/capmirror <mask>`
        print(f"@@BEGIN {name}", flush=True)
        if len(argv) > 1 and argv[1].endswith("trace-job.sh"):
            # trace-job.sh's output, with `uiommufd trace` in place of `uiommufd trace --passthrough`.
            trace = os.path.join(out, "fake-vm.trace")
            prog = os.path.join(out, "host", os.path.basename(argv[2]))
            p = subprocess.run([uiommufd, "trace", "--hide-addresses", "-o", trace, "--", prog],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            lines = open(trace).read().splitlines(keepends=True)
            if os.environ.get("FAKE_TRACE_SKEW"):
                # One decoded value changed, as a kernel that answered differently would.
                i = next(i for i, ln in enumerate(lines) if "IOMMU_IOAS_ALLOC" in ln)
                lines[i] = lines[i].replace("out_ioas_id=", "out_ioas_id=9")
            sys.stdout.write("".join(lines))
            sys.stdout.write("".join("out: " + ln + "\n" for ln in p.stdout.decode("utf-8", "replace").splitlines()))
        else:
            argv[0] = os.path.join(out, "host", os.path.basename(argv[0]))
            p = subprocess.run([uiommufd, "run", "--"] + argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            sys.stdout.write(p.stdout.decode("utf-8", "replace"))
        print(f"@@END {name} rc={p.returncode}", flush=True)
    if os.environ.get("FAKE_WARN"):
        print("@@KLOG [    9.900000] WARNING: CPU: 0 PID: 1 at fake.c:1 f+0x0/0x10")
    print(f"@@TAINTED {os.environ.get('FAKE_TAINT', '0')}")
    print("@@DONE")


if __name__ == "__main__":
    main()
