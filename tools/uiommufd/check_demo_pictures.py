#!/usr/bin/env python3
"""`uiommufd demo` ends by writing a picture of each part and saying where: part 1's IOAS as SVG, part 2's
lock graph as DOT (and SVG when Graphviz is installed). Runs the demo with TMPDIR=DIR and checks them.

  check_demo_pictures.py UIOMMUFD DIR      (exit 77 when the demo skips: validator compiled out)
"""
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET


def main():
    tool, work = sys.argv[1], sys.argv[2]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    r = subprocess.run([tool, "demo"], capture_output=True, text=True, env=dict(os.environ, TMPDIR=work))
    if r.returncode == 77:
        sys.exit(77)
    if r.returncode != 0:
        sys.exit(f"demo exited {r.returncode}:\n{r.stdout}{r.stderr}")
    named = re.findall(r"^    (/\S+)$", r.stdout, re.M)
    svg1 = [p for p in named if p.endswith("part1-ioas.svg")]
    dot = [p for p in named if p.endswith("part2-locks.dot")]
    if not svg1 or not dot:
        sys.exit(f"the demo did not name both pictures:\n{r.stdout}")
    for p in named:
        if not p.startswith(work + "/"):
            sys.exit(f"{p} is not under TMPDIR {work}")
    root = ET.parse(svg1[0]).getroot()
    if not root.tag.endswith("svg") or len(list(root.iter())) < 20:
        sys.exit(f"{svg1[0]}: not an SVG picture of an IOAS")
    text = open(dot[0]).read()
    if not text.lstrip().startswith(("digraph", "//", "/*")) or "buggy_driver.lock" not in text or "red" not in text:
        sys.exit(f"{dot[0]}: not the lock graph with the reported cycle")
    svg2 = [p for p in named if p.endswith("part2-locks.svg")]
    if shutil.which("dot"):
        if not svg2:
            sys.exit("Graphviz is installed but the demo rendered no part2-locks.svg")
        ET.parse(svg2[0])
    print(f"pictures: {', '.join(named)}")


if __name__ == "__main__":
    main()
