#!/usr/bin/env python3
"""Deterministic semi-compressible bytes.

    semidata.py SIZE SEED OUT

Writes SIZE bytes to OUT.  The data is a mix of 4 KiB chunks: random bytes
(incompressible), random bytes over a 4-letter alphabet (compresses ~4:1)
and repeated text lines (compresses very well), so deflate produces blocks
of every kind and the compressed stream is neither trivial nor pure stored
blocks.  The same SIZE and SEED give the same bytes on every run.
"""
import random
import sys

WORDS = (b"layer zip inflate offset window block stored deflate symlink "
         b"directory python node java ruby runtime lambda merge provenance").split()


def semi_bytes(size, seed):
    r = random.Random(seed)
    out = bytearray()
    table = bytes.maketrans(bytes(range(256)), b"ACGT" * 64)
    while len(out) < size:
        k = r.random()
        if k < 0.35:
            out += r.randbytes(4096)
        elif k < 0.7:
            out += r.randbytes(4096).translate(table)
        else:
            line = b" ".join(r.choice(WORDS) for _ in range(8)) + b"\n"
            out += (line * (4096 // len(line) + 1))[:4096]
    return bytes(out[:size])


def main(argv):
    if len(argv) != 4:
        sys.stderr.write("usage: semidata.py SIZE SEED OUT\n")
        return 2
    data = semi_bytes(int(argv[1]), int(argv[2]))
    with open(argv[3], "wb") as f:
        f.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
