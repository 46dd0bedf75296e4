#!/usr/bin/env python3
"""Random-offset reads from mounted files, compared with reference bytes.

    randread.py [--seed N] [--reads N] [--threads N] [--mmap N]
                MOUNTED_FILE REFERENCE_FILE [MOUNTED_FILE REFERENCE_FILE ...]

For each pair, --reads pread() calls (default 100) in random order:

  - random offsets and lengths (1 B .. 300 KiB)
  - ranges crossing 128 KiB and 1 MiB boundaries (start a little before)
  - reads at EOF, past EOF, ending exactly at EOF, and one byte before EOF
  - a backwards sweep (descending offsets) over the first 1.5 MiB
  - zero-length reads

Before each pread the kernel's cached pages of the file are dropped
(posix_fadvise DONTNEED), so reads reach layerfs.  Each pread must return exactly min(len, size - off) bytes (a short read of a
regular file is reported as an error) equal to the reference.  Then
--threads threads (default 4) read random ranges concurrently, half on a
shared descriptor and half on their own, and --mmap ranges (default 40) are
compared through mmap.  Prints one line per file and a summary; exit 1 on
any mismatch.
"""
import argparse
import mmap
import os
import random
import sys
import threading

KIB = 1024
MIB = 1024 * 1024


def plan(size, n, r):
    ranges = []
    # fixed edge cases
    ranges += [(size, 1), (size, 4096), (size + 1, 10), (size + 10 * MIB, 100),
               (max(size - 1, 0), 1), (max(size - 1, 0), 4096),
               (max(size - 1000, 0), 1000), (max(size - 5000, 0), 6000),
               (0, 1), (0, 0), (size // 2, 0), (0, min(size, 256 * KIB))]
    # backwards sweep
    top = min(size, 3 * MIB // 2)
    step = 100 * KIB + 13
    off = top - step
    while off > 0 and len(ranges) < n // 3:
        ranges.append((off, step))
        off -= step
    while len(ranges) < n:
        k = r.random()
        if k < 0.35:
            off = r.randrange(0, max(size, 1))
            ln = r.choice([1, 7, 512, 4096, 65536, 131072, r.randrange(1, 300 * KIB)])
        elif k < 0.6:
            b = r.randrange(1, max(size // (128 * KIB), 1) + 1) * 128 * KIB
            off = max(b - r.randrange(1, 9000), 0)
            ln = r.randrange(1, 200 * KIB)
        elif k < 0.85:
            b = r.randrange(1, max(size // MIB, 1) + 1) * MIB
            off = max(b - r.randrange(1, 70000), 0)
            ln = r.randrange(1, 300 * KIB)
        else:
            off = max(size - r.randrange(0, 70000), 0)
            ln = r.randrange(1, 140000)
        ranges.append((off, ln))
    r.shuffle(ranges)
    return ranges


def drop_cache(fd):
    # Drop the kernel's cached pages of this file so the read reaches the
    # filesystem instead of the page cache.
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except OSError:
        pass


def check_range(fd, ref, off, ln, drop=True):
    if drop:
        drop_cache(fd)
    got = os.pread(fd, ln, off)
    want = ref[off:off + ln]
    if got == want:
        return None
    if len(got) != len(want):
        return "pread(off=%d, len=%d): %d bytes, expected %d" % (off, ln, len(got), len(want))
    i = next(i for i in range(len(got)) if got[i] != want[i])
    return "pread(off=%d, len=%d): differs from byte %d (file offset %d)" % (off, ln, i, off + i)


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--reads", type=int, default=100)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--mmap", type=int, default=40)
    ap.add_argument("pairs", nargs="+")
    a = ap.parse_args(argv[1:])
    if len(a.pairs) % 2:
        ap.error("files come in pairs")
    total_err = 0
    total_reads = 0
    for mf, rf in zip(a.pairs[0::2], a.pairs[1::2]):
        with open(rf, "rb") as f:
            ref = f.read()
        size = len(ref)
        errs = []
        r = random.Random("%d:%s" % (a.seed, os.path.basename(mf)))
        st = os.stat(mf)
        if st.st_size != size:
            errs.append("st_size %d, expected %d" % (st.st_size, size))
        fd = os.open(mf, os.O_RDONLY)
        try:
            for off, ln in plan(size, a.reads, r):
                total_reads += 1
                e = check_range(fd, ref, off, ln)
                if e:
                    errs.append(e)
            # concurrent readers
            lock = threading.Lock()
            terrs = []

            def worker(seed, shared):
                rr = random.Random(seed)
                myfd = fd if shared else os.open(mf, os.O_RDONLY)
                try:
                    for _ in range(25):
                        off = rr.randrange(0, max(size, 1))
                        ln = rr.randrange(1, 200 * KIB)
                        e = check_range(myfd, ref, off, ln)
                        if e:
                            with lock:
                                terrs.append("thread: " + e)
                except OSError as ex:
                    with lock:
                        terrs.append("thread: %s" % ex)
                finally:
                    if not shared:
                        os.close(myfd)

            ts = [threading.Thread(target=worker, args=(r.random(), i % 2 == 0))
                  for i in range(a.threads)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            total_reads += 25 * a.threads
            errs += terrs
            # mmap
            if a.mmap and size:
                try:
                    mm = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
                except OSError as ex:
                    errs.append("mmap: %s" % ex)
                else:
                    with mm:
                        for _ in range(a.mmap):
                            off = r.randrange(0, size)
                            ln = r.randrange(1, 100 * KIB)
                            if mm[off:off + ln] != ref[off:off + ln]:
                                errs.append("mmap range (off=%d, len=%d) differs" % (off, ln))
        except OSError as ex:
            errs.append("error: %s" % ex)
        finally:
            os.close(fd)
        status = "ok" if not errs else "%d errors" % len(errs)
        print("%s: size %d: %s" % (mf, size, status))
        for e in errs[:10]:
            print("    " + e)
        total_err += len(errs)
    print("%d reads, %d errors" % (total_reads, total_err))
    return 1 if total_err else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
