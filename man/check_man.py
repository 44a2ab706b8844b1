#!/usr/bin/env python3
"""The manual page says what the tool says: every command `uiommufd help` lists and every environment
variable it names appears in man/uiommufd.1, every command has its own `uiommufd help COMMAND` text, and the
page renders without groff warnings (where groff is installed).

  check_man.py UIOMMUFD MANPAGE
"""
import re
import shutil
import subprocess
import sys


def main():
    tool, page = sys.argv[1], sys.argv[2]
    usage = subprocess.run([tool, "help"], capture_output=True, text=True, check=True).stdout
    man = open(page).read()
    commands = re.findall(r"^  ([a-z][a-z-]*)\b", usage, re.M)
    envs = sorted(set(re.findall(r"\bUIOMMUFD_[A-Z_]+\b", usage)))
    if len(commands) < 5 or not envs:
        sys.exit(f"the usage text lists {commands} and {envs}: not what this check expects to read")
    problems = []
    for c in commands:
        if not re.search(r"^\.(B|TP\n\.B) " + re.escape(c).replace("-", r"\\?-") + r"\b", man, re.M) and \
                f".B {c}" not in man.replace("\\-", "-"):
            problems.append(f"command {c} is not described in {page}")
        one = subprocess.run([tool, "help", c], capture_output=True, text=True)
        if one.returncode != 0 or c not in one.stdout:
            problems.append(f"`uiommufd help {c}` does not describe it (exit {one.returncode})")
    # Every long option the help names (`--json`, `--dump-at-exit`, ...) is in the page too.
    plain = man.replace("\\-", "-").replace("\\fB", "").replace("\\fR", "").replace("\\fI", "")
    for opt in sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z-]*[a-z]", usage))):
        if opt not in plain:
            problems.append(f"option {opt} is not in {page}")
    for e in envs:
        if e not in man.replace("\\-", "-"):
            problems.append(f"environment variable {e} is not in {page}")
    if shutil.which("groff"):
        r = subprocess.run(["groff", "-ww", "-man", "-z", page], capture_output=True, text=True)
        if r.returncode != 0 or r.stderr.strip():
            problems.append(f"groff: {r.stderr.strip()}")
    if problems:
        sys.exit("\n".join(problems))
    print(f"{page}: {len(commands)} commands and {len(envs)} environment variables described")


if __name__ == "__main__":
    main()
