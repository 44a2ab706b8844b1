#!/usr/bin/env python3
"""Stands in for qemu-system-x86_64 in the referee's pipeline test (pipeline_test.sh), never for the kernel:
it reads /plan from the initramfs reference.py built and runs each job's host build (<out>/host/<program>)
under `uiommufd run`, printing the markers tools/reference/init.sh prints. So both sides are uiommufd and
must agree; what is tested is the plumbing around them: initramfs, console parsing, the comparison, the
report and the exit status. FAKE_WARN=1 adds a kernel warning line, FAKE_TAINT=<n> sets the taint mask."""
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
        argv[0] = os.path.join(out, "host", os.path.basename(argv[0]))
        print(f"@@BEGIN {name}", flush=True)
        p = subprocess.run([uiommufd, "run", "--"] + argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        sys.stdout.write(p.stdout.decode("utf-8", "replace"))
        print(f"@@END {name} rc={p.returncode}", flush=True)
    if os.environ.get("FAKE_WARN"):
        print("@@KLOG [    9.900000] WARNING: CPU: 0 PID: 1 at fake.c:1 f+0x0/0x10")
    print(f"@@TAINTED {os.environ.get('FAKE_TAINT', '0')}")
    print("@@DONE")


if __name__ == "__main__":
    main()
