#!/usr/bin/python3
"""Writes the chunk benchmark's layer: shaped like a Python one, 4,000 small
deflated files in 200 packages (log-normal sizes, median 3.6 KB) and one
24 MiB shared library, partly compressible.  benchlayer.py OUT.zip"""
import random
import sys
import zipfile

rnd = random.Random(7)


def blob(n):
    words = b"def f(x):\n    return np.asarray(x) * 2\n"
    out = bytearray()
    while len(out) < n:
        out += words if rnd.random() < 0.6 else rnd.randbytes(48)
    return bytes(out[:n])


with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    for p in range(200):
        for f in range(20):
            n = int(min(rnd.lognormvariate(8.2, 1.3), 2 << 20))
            z.writestr(f"python/pkg{p:03d}/mod{f:02d}.py", blob(n))
        if p == 100:
            z.writestr("python/pkg100/_core.so", blob(24 << 20))
