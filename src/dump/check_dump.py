#!/usr/bin/env python3
"""Checks the documents a dump writes (docs/dump.md), with Python's own parsers, for CTest.

  check_dump.py json FILE [--leak] [--areas N]   every line of FILE is one JSON document of the schema;
                                                 --leak: the last one reports a leak; --areas N: its
                                                 first context's IOASes hold at least N areas in all
  check_dump.py svg DIR [--areas N]              every *.svg in DIR (at least one) is well-formed XML
                                                 with the picture's groups; --areas N: at least N area
                                                 shapes in all

Exit 0 when everything holds; otherwise 1 with the reason on standard error.
"""
import json
import os
import sys
import xml.etree.ElementTree as ET

AREA_STATES = {"building", "unmapping", "mapped", "partly_pinned", "pinned", "dmabuf", "revoked"}
SVG = "{http://www.w3.org/2000/svg}"


def fail(msg):
    print("check_dump: " + msg, file=sys.stderr)
    sys.exit(1)


def need(obj, keys, where):
    for k in keys:
        if k not in obj:
            fail("%s: no field %r" % (where, k))


def hex_range(r, where):
    need(r, ["start", "last"], where)
    try:
        start, last = int(r["start"], 16), int(r["last"], 16)
    except (TypeError, ValueError):
        fail("%s: addresses are not hex strings: %r" % (where, r))
    if not (0 <= start <= last < 2**64):
        fail("%s: bad range %r" % (where, r))
    return start, last


def check_ioas(io, where):
    need(io, ["id", "iova_alignment", "large_pages", "lock_pinned", "accesses", "access_ids", "domains",
              "areas", "reserved", "allowed", "pinned_runs", "access_pins"], where)
    areas = []
    for i, a in enumerate(io["areas"]):
        w = "%s area %d" % (where, i)
        need(a, ["state", "pages", "first_index", "last_index", "readable", "writeable", "pinned_pages",
                 "access_pins", "locks", "prevent_access", "filled"], w)
        if a["state"] not in AREA_STATES:
            fail("%s: unknown state %r" % (w, a["state"]))
        if len(a["filled"]) != len(io["domains"]):
            fail("%s: one fill per domain expected" % w)
        areas.append(hex_range(a, w))
    for r in io["reserved"]:
        hex_range(r, where + " reserved")
        if r.get("owner") not in {"user", "domain", "other"}:
            fail("%s: reserved owner %r" % (where, r.get("owner")))
    for r in io["allowed"]:
        hex_range(r, where + " allowed")
    for name in ("pinned_runs", "access_pins"):
        for r in io[name]:
            s, l = hex_range(r, where + " " + name)
            if not any(a <= s and l <= b for a, b in areas):
                fail("%s: %s run %r outside every area" % (where, name, r))
    for d in io["domains"]:
        need(d, ["hwpt", "auto_domain", "nest_parent", "dirty_tracking", "granule", "aperture", "mapped_bytes",
                 "table_bytes", "devices"], where + " domain")
        hex_range(d["aperture"], where + " aperture")
    return len(areas)


def check_json(path, leak, min_areas):
    with open(path) as f:
        lines = [l for l in f.read().splitlines() if l.strip()]
    if not lines:
        fail("%s: no document" % path)
    for n, line in enumerate(lines):
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as e:
            fail("%s line %d: not JSON: %s" % (path, n + 1, e))
        need(doc, ["uiommufd_dump", "pid", "reason", "sequence", "process_pinned_pages", "contexts", "leaks"],
             "document")
        if doc["uiommufd_dump"] != 1 or doc["reason"] not in {"request", "signal", "exit"}:
            fail("document %d: schema %r, reason %r" % (n + 1, doc["uiommufd_dump"], doc["reason"]))
        areas = 0
        for c in doc["contexts"]:
            need(c, ["context", "account_mode", "mm_account_mode", "vfio_ioas", "pinned_pages", "charged_pages",
                     "objects", "ioases", "pages", "mms"], "context")
            for o in c["objects"]:
                need(o, ["id", "type", "users", "links"], "object")
            for p in c["pages"]:
                need(p, ["id", "kind", "pid", "source_addr", "npages", "npinned", "account_mode", "pin_runs",
                         "access_records"], "pages")
                if sum(r["last"] - r["first"] + 1 for r in p["pin_runs"]) != p["npinned"] and \
                        p["pin_runs_omitted"] == 0:
                    fail("pages %d: pin runs do not add up to npinned" % p["id"])
            for io in c["ioases"]:
                areas += check_ioas(io, "context %d ioas %d" % (c["context"], io["id"]))
    if leak and not (doc["leaks"] and doc["leaks"][0]["line"].startswith("LEAK: context ")):
        fail("%s: no leak reported" % path)
    if areas < min_areas:
        fail("%s: %d areas, expected at least %d" % (path, areas, min_areas))


def check_svg(directory, min_areas):
    files = sorted(f for f in os.listdir(directory) if f.endswith(".svg"))
    if not files:
        fail("%s: no SVG file" % directory)
    areas = 0
    for name in files:
        path = os.path.join(directory, name)
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as e:
            fail("%s: not well-formed XML: %s" % (path, e))
        if root.tag != SVG + "svg":
            fail("%s: root is %s" % (path, root.tag))
        groups = {}
        for g in root.iter(SVG + "g"):
            groups.setdefault(g.get("class"), []).append(g)
        for cls in ("gaps", "allowed", "reserved", "areas", "pinned", "access", "axis", "legend"):
            if cls not in groups:
                fail("%s: no group %r" % (path, cls))
        for rect in root.iter(SVG + "rect"):
            for attr in ("width", "height"):
                if rect.get(attr) is not None and float(rect.get(attr)) < 0:
                    fail("%s: a rectangle of negative %s" % (path, attr))
        for rect in groups["areas"][0].iter(SVG + "rect"):
            title = rect.find(SVG + "title")
            if title is None or not title.text.startswith("area ["):
                fail("%s: an area without its tooltip" % path)
            areas += 1
        if not list(groups["axis"][0].iter(SVG + "text")):
            fail("%s: an axis without labels" % path)
        if len(list(groups["legend"][0].iter(SVG + "rect"))) < 10:
            fail("%s: a legend without its entries" % path)
    if areas < min_areas:
        fail("%s: %d area shapes, expected at least %d" % (directory, areas, min_areas))


def main(argv):
    if len(argv) < 3 or argv[1] not in ("json", "svg"):
        fail(__doc__)
    min_areas = int(argv[argv.index("--areas") + 1]) if "--areas" in argv else 0
    if argv[1] == "json":
        check_json(argv[2], "--leak" in argv, min_areas)
    else:
        check_svg(argv[2], min_areas)


if __name__ == "__main__":
    main(sys.argv)
