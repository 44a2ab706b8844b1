#!/usr/bin/env python3
"""Checks a `uiommufd trace` output (docs/trace.md) for the CTest tests of tools/uiommufd.

  check_trace.py [--json SCHEMA] FILE [--min N] [--cmd NAME]... [--only NAME]... [--pids N] [--last NAME]
                 [--grep TEXT]... [--no-grep TEXT]... [--rc N --run UIOMMUFD TRACE-ARGS...]

--json SCHEMA: every line is one JSON object valid against SCHEMA (a small JSON Schema subset: type,
required, properties, additionalProperties, enum, const, minimum, pattern, items); otherwise every line
has the text form. --min: at least N records. --cmd: a record of each NAME (an ioctl command, or a call).
--only: no record other than these. --pids: records from at least N processes. --last: the last record is
NAME. --grep / --no-grep: some line has / no line has TEXT (plain text). --run: first runs `UIOMMUFD trace -o FILE TRACE-ARGS...` (the rest of the command line), whose exit
status must be N (--rc, default 0). Exits 1 with the first problem found.
"""
import argparse
import json
import re
import subprocess
import sys

TEXT = re.compile(r"^\+\d+\.\d{6} (\d+)/(\d+) (open|close|dup|dup2|dup3|fcntl|ioctl)\((.*)\) = (-1 E[A-Z0-9]+ \(.*\)|\d+)"
                  r"( => .*)?$")


def validate(value, schema, where):
    types = schema.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        kinds = {"object": dict, "array": list, "string": str, "null": type(None), "boolean": bool}
        ok = False
        for n in names:
            if n == "integer":
                ok = ok or (isinstance(value, int) and not isinstance(value, bool))
            elif n == "number":
                ok = ok or (isinstance(value, (int, float)) and not isinstance(value, bool))
            else:
                ok = ok or isinstance(value, kinds[n])
        if not ok:
            return f"{where}: {value!r} is not of type {types}"
    if "const" in schema and value != schema["const"]:
        return f"{where}: {value!r} is not {schema['const']!r}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where}: {value!r} is not one of {schema['enum']}"
    if "minimum" in schema and isinstance(value, (int, float)) and value < schema["minimum"]:
        return f"{where}: {value} < {schema['minimum']}"
    if "pattern" in schema and isinstance(value, str) and not re.search(schema["pattern"], value):
        return f"{where}: {value!r} does not match {schema['pattern']}"
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                return f"{where}: no {key!r}"
        props = schema.get("properties", {})
        for key, v in value.items():
            if key in props:
                err = validate(v, props[key], f"{where}.{key}")
                if err:
                    return err
            elif schema.get("additionalProperties") is False:
                return f"{where}: unexpected key {key!r}"
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            err = validate(v, schema["items"], f"{where}[{i}]")
            if err:
                return err
    return None


def main():
    argv = sys.argv[1:]
    run = None
    if "--run" in argv:
        i = argv.index("--run")
        argv, run = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--json")
    ap.add_argument("--min", type=int, default=1)
    ap.add_argument("--cmd", action="append", default=[])
    ap.add_argument("--only", action="append", default=[])
    ap.add_argument("--pids", type=int, default=1)
    ap.add_argument("--last")
    ap.add_argument("--rc", type=int, default=0)
    ap.add_argument("--grep", action="append", default=[])
    ap.add_argument("--no-grep", action="append", default=[])
    a = ap.parse_args(argv)
    if run:
        rc = subprocess.run([run[0], "trace", "-o", a.file] + run[1:], stdout=subprocess.DEVNULL).returncode
        # A signal the program died of reaches us as the shell would report it.
        rc = 128 - rc if rc < 0 else rc
        if rc != a.rc:
            sys.exit(f"uiommufd trace exited {rc}, not {a.rc}")
    schema = json.load(open(a.json)) if a.json else None
    names, pids = [], set()
    for n, line in enumerate(open(a.file), 1):
        line = line.rstrip("\n")
        if line.startswith("# "):
            continue  # a note of the tracer's own
        if schema:
            try:
                rec = json.loads(line)
            except ValueError as e:
                sys.exit(f"{a.file}:{n}: not JSON ({e}): {line}")
            err = validate(rec, schema, f"{a.file}:{n}")
            if err:
                sys.exit(err)
            names.append(rec.get("cmd") or rec["call"])
            pids.add(rec["pid"])
        else:
            m = TEXT.match(line)
            if not m:
                sys.exit(f"{a.file}:{n}: not a trace line: {line}")
            call, args = m.group(3), m.group(4)
            names.append(args.split(", ")[1] if call == "ioctl" else call)
            pids.add(m.group(1))
    if len(names) < a.min:
        sys.exit(f"{a.file}: {len(names)} records, fewer than {a.min}")
    for c in a.cmd:
        if c not in names:
            sys.exit(f"{a.file}: no {c} record")
    if a.only:
        other = sorted(set(names) - set(a.only))
        if other:
            sys.exit(f"{a.file}: records other than {a.only}: {other}")
    if len(pids) < a.pids:
        sys.exit(f"{a.file}: records from {len(pids)} processes, fewer than {a.pids}")
    text = open(a.file).read()
    for g in a.grep:
        if g not in text:
            sys.exit(f"{a.file}: no line has {g}")
    for g in a.no_grep:
        if g in text:
            sys.exit(f"{a.file}: a line has {g}")
    if a.last and names[-1] != a.last:
        sys.exit(f"{a.file}: the last record is {names[-1]}, not {a.last}")
    print(f"{a.file}: {len(names)} records from {len(pids)} processes: ok")


if __name__ == "__main__":
    main()
