#!/usr/bin/env python3
"""Print the manifest of a directory tree, one line per path, sorted.

    manifest.py [--root] [-j THREADS] DIR

Each line is tab-separated:

    PATH  d  MODE
    PATH  f  MODE  SIZE  SHA256
    PATH  l  MODE  TARGET

PATH is relative to DIR, MODE is the permission bits (st_mode & 0o777) in
octal.  Directory sizes are not shown.  Symlinks are never followed
(os.lstat / os.readlink).  Any other file type is printed as type "?" so a
comparison fails.  With --root the top directory itself is listed as ".".

Names are printed as raw bytes (no decoding), so odd names compare exactly.
Exit status 2 if the tree cannot be read (an error is printed on stderr).
"""
import hashlib
import os
import stat
import sys


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def entry_line(rel, path):
    st = os.lstat(path)
    mode = "%04o" % (st.st_mode & 0o777)
    m = st.st_mode
    if stat.S_ISDIR(m):
        fields = [b"d", mode.encode()]
    elif stat.S_ISREG(m):
        fields = [b"f", mode.encode(), str(st.st_size).encode(),
                  file_sha256(path).encode()]
    elif stat.S_ISLNK(m):
        fields = [b"l", mode.encode(), os.readlink(path)]
    else:
        fields = [b"?", ("%o" % m).encode()]
    return b"\t".join([rel] + fields)


def walk(top):
    """Yields (relpath_bytes, abspath_bytes) for every path below top."""
    stack = [b""]
    while stack:
        rel = stack.pop()
        d = os.path.join(top, rel) if rel else top
        with os.scandir(d) as it:
            names = [e.name for e in it]
        for n in names:
            r = os.path.join(rel, n) if rel else n
            p = os.path.join(top, r)
            yield r, p
            if stat.S_ISDIR(os.lstat(p).st_mode):
                stack.append(r)


def manifest(top, with_root=False, jobs=1):
    top = os.fsencode(top)
    items = [(b".", top)] if with_root else []
    items += list(walk(top))
    if jobs > 1:
        # stat/open/read of many small files is round-trip bound on FUSE:
        # threads overlap the round trips (hashlib releases the GIL).
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(jobs) as ex:
            lines = list(ex.map(lambda it: entry_line(*it), items, chunksize=256))
    else:
        lines = [entry_line(rel, p) for rel, p in items]
    lines.sort()
    return lines


def main(argv):
    args = argv[1:]
    with_root = False
    jobs = 1
    while args and args[0].startswith("-"):
        if args[0] == "--root":
            with_root = True
            args = args[1:]
        elif args[0] == "-j" and len(args) > 1:
            jobs = int(args[1])
            args = args[2:]
        else:
            break
    if len(args) != 1:
        sys.stderr.write("usage: manifest.py [--root] [-j THREADS] DIR\n")
        return 2
    try:
        lines = manifest(args[0], with_root, jobs)
    except OSError as e:
        sys.stderr.write("manifest.py: %s\n" % e)
        return 2
    out = sys.stdout.buffer
    for l in lines:
        out.write(l + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
