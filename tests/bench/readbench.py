#!/usr/bin/env python3
"""Timed reads for the benchmarks.

  readbench.py seq FILE...        sequential 1 MiB reads; FILEs in parallel threads
  readbench.py best N FILE        N sequential passes over FILE; the fastest
  readbench.py evict FILE         drop FILE's pages from the page cache
  readbench.py random FILE N SIZE N random reads of SIZE bytes, readahead off
prints one JSON object."""
import json
import os
import random
import sys
import threading
import time

CHUNK = 1 << 20


def seq(path, out, i):
    fd = os.open(path, os.O_RDONLY)
    # One reused buffer: a fresh 1 MiB object per read would measure
    # Python's allocator and page faults instead of the file system.
    buf = [bytearray(CHUNK)]
    total = 0
    t0 = time.perf_counter()
    while True:
        n = os.readv(fd, buf)
        if not n:
            break
        total += n
    out[i] = (total, time.perf_counter() - t0)
    os.close(fd)


def cmd_seq(paths):
    out = [None] * len(paths)
    threads = [threading.Thread(target=seq, args=(p, out, i)) for i, p in enumerate(paths)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    total = sum(o[0] for o in out)
    print(json.dumps({"bytes": total, "seconds": wall, "mbps": total / wall / 1e6}))


def cmd_random(path, n, size):
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
    length = os.fstat(fd).st_size
    rng = random.Random(12345)
    lat = []
    for _ in range(n):
        off = rng.randrange(0, length - size) // 4096 * 4096
        t0 = time.perf_counter()
        b = os.pread(fd, size, off)
        lat.append((time.perf_counter() - t0) * 1e3)
        assert len(b) == size
    os.close(fd)
    lat.sort()
    print(json.dumps({"n": n, "p50_ms": lat[n // 2], "p99_ms": lat[int(n * 0.99) - 1],
                      "max_ms": lat[-1]}))


def cmd_best(n, path):
    out = [None]
    best = 0.0
    for _ in range(n):
        seq(path, out, 0)
        best = max(best, out[0][0] / out[0][1] / 1e6)
    print(json.dumps({"passes": n, "mbps": best}))


if __name__ == "__main__":
    if sys.argv[1] == "seq":
        cmd_seq(sys.argv[2:])
    elif sys.argv[1] == "best":
        cmd_best(int(sys.argv[2]), sys.argv[3])
    elif sys.argv[1] == "evict":
        fd = os.open(sys.argv[2], os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
    else:
        cmd_random(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
