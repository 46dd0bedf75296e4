#!/usr/bin/env python3
"""Checks a Prometheus text exposition (format 0.0.4) the way a scraper
would read it, for tests: every sample belongs to a family declared by
# HELP and # TYPE before it, names and labels are well formed, values are
numbers, no series repeats, counters are not negative, and histograms have
cumulative buckets ending in le="+Inf" equal to _count.

    promcheck.py FILE      exit 0, or the first problem on stderr
"""
import math
import re
import sys

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
SAMPLE = re.compile(r"^(%s)(\{(.*)\})? (\S+)$" % NAME)
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')


def labels(text):
    out, pos = {}, 0
    while pos < len(text):
        m = LABEL.match(text, pos)
        if not m:
            raise ValueError("bad labels %r" % text)
        out[m.group(1)] = m.group(2)
        pos = m.end()
    return out


def main():
    types, helps, seen, hist = {}, set(), set(), {}
    for n, line in enumerate(open(sys.argv[1], encoding="utf-8"), 1):
        line = line.rstrip("\n")
        where = "line %d: %s" % (n, line[:120])
        if line.startswith("# HELP "):
            helps.add(line.split()[2])
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            if name in types or typ not in ("counter", "gauge", "histogram", "summary", "untyped"):
                sys.exit("%s: TYPE again or unknown" % where)
            types[name] = typ
            continue
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            sys.exit("%s: not a sample" % where)
        name, lab, value = m.group(1), labels(m.group(3) or ""), float(m.group(4))
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        if family not in types or family not in helps:
            sys.exit("%s: no HELP/TYPE before it" % where)
        key = (name, tuple(sorted(lab.items())))
        if key in seen:
            sys.exit("%s: repeated" % where)
        seen.add(key)
        if math.isnan(value) or (types[family] == "counter" and value < 0):
            sys.exit("%s: bad value" % where)
        if types[family] == "histogram":
            series = tuple(sorted((k, v) for k, v in lab.items() if k != "le"))
            h = hist.setdefault((family, series), {"buckets": [], "count": None})
            if name.endswith("_bucket"):
                le = float("inf") if lab["le"] == "+Inf" else float(lab["le"])
                h["buckets"].append((le, value))
            elif name.endswith("_count"):
                h["count"] = value
    for (family, series), h in hist.items():
        b = h["buckets"]
        if not b or b[-1][0] != float("inf"):
            sys.exit("%s%s: no +Inf bucket" % (family, series))
        if any(b[i][0] >= b[i + 1][0] or b[i][1] > b[i + 1][1] for i in range(len(b) - 1)):
            sys.exit("%s%s: buckets not cumulative" % (family, series))
        if h["count"] != b[-1][1]:
            sys.exit("%s%s: _count %s, +Inf %s" % (family, series, h["count"], b[-1][1]))
    if not seen:
        sys.exit("no samples")


if __name__ == "__main__":
    main()
