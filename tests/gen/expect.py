#!/usr/bin/env python3
"""Turn a hand-written expected tree into manifest lines (see manifest.py).

    expect.py SPEC_FILE        (or - for stdin)

SPEC lines (tab- or space-separated; '#' comments and blank lines ignored):

    d PATH MODE
    f PATH MODE CONTENT     CONTENT is a Python string literal, e.g. 'l1 x\\n'
    l PATH MODE TARGET

PATH may not contain whitespace.  The output is sorted like manifest.py's,
so the two can be compared with cmp/diff.
"""
import ast
import hashlib
import sys


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: expect.py SPEC_FILE\n")
        return 2
    src = sys.stdin if argv[1] == "-" else open(argv[1], encoding="utf-8")
    lines = []
    for n, raw in enumerate(src, 1):
        raw = raw.strip()
        if not raw or raw.startswith("#"):
            continue
        parts = raw.split(None, 3)
        kind, path, mode = parts[0], parts[1], int(parts[2], 8)
        p = path.encode()
        m = ("%04o" % mode).encode()
        if kind == "d":
            lines.append(b"\t".join([p, b"d", m]))
        elif kind == "f":
            content = ast.literal_eval(parts[3])
            if isinstance(content, str):
                content = content.encode()
            lines.append(b"\t".join([p, b"f", m, str(len(content)).encode(),
                                     hashlib.sha256(content).hexdigest().encode()]))
        elif kind == "l":
            lines.append(b"\t".join([p, b"l", m, parts[3].encode()]))
        else:
            sys.stderr.write("expect.py: line %d: unknown kind %r\n" % (n, kind))
            return 2
    lines.sort()
    out = sys.stdout.buffer
    for l in lines:
        out.write(l + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
