#!/usr/bin/env python3
"""Checks one mounted hostile case (run by run.sh while the daemon runs).

    check.py OUTDIR CASE MOUNTPOINT LOG LAYER_PATH

OUTDIR/expect.json describes CASE (see make_corpus.py).  LOG is the daemon's
stderr (it runs with -f), LAYER_PATH the hostile layer's path as the list
names it.  Prints "ok NAME" or "FAIL NAME: why" per check; exit status 0.
Environment: LAYERFS (the binary), HOSTILE_ASAN=1 (sanitizer build: memory
bounds get ASan's quarantine and shadow as slack).
"""
import errno
import hashlib
import json
import os
import stat
import subprocess
import sys
import time

MIB = 1 << 20
results = []


def report(name, ok, why=""):
    results.append((name, ok))
    if ok:
        print("ok %s" % name)
    else:
        print("FAIL %s: %s" % (name, why))
    sys.stdout.flush()


def b(p):
    return os.fsencode(p)


def short(p):
    """A path for a check's name: repr, long ones cut in the middle."""
    return repr(p) if len(p) <= 64 else repr(p[:40] + "..." + p[-12:]) + "(%d bytes)" % len(b(p))


class Mount:
    """Path operations relative to the mount that walk one component at a
    time with directory descriptors: paths may be longer than PATH_MAX."""

    def __init__(self, mnt):
        self.mnt = mnt

    def _dir(self, comps):
        fd = os.open(self.mnt, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for c in comps:
                nfd = os.open(c, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _split(self, path):
        comps = b(path).split(b"/")
        return comps[:-1], comps[-1]

    def lstat(self, path):
        d, last = self._split(path)
        fd = self._dir(d)
        try:
            return os.stat(last, dir_fd=fd, follow_symlinks=False)
        finally:
            os.close(fd)

    def stat(self, path):
        d, last = self._split(path)
        fd = self._dir(d)
        try:
            return os.stat(last, dir_fd=fd, follow_symlinks=True)
        finally:
            os.close(fd)

    def readlink(self, path):
        d, last = self._split(path)
        fd = self._dir(d)
        try:
            return os.readlink(last, dir_fd=fd)
        finally:
            os.close(fd)

    def open(self, path, follow=False):
        d, last = self._split(path)
        fd = self._dir(d)
        try:
            return os.open(last, os.O_RDONLY | (0 if follow else os.O_NOFOLLOW), dir_fd=fd)
        finally:
            os.close(fd)

    def listdir(self, path):
        comps = b(path).split(b"/") if path else []
        fd = self._dir(comps)
        try:
            return [os.fsencode(n) for n in os.listdir(fd)]
        finally:
            os.close(fd)


def drop(fd):
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except OSError:
        pass


def read_all(m, path, follow=False, limit=None):
    """sha256 and length of the whole file (1 MiB reads)."""
    fd = m.open(path, follow)
    h = hashlib.sha256()
    n = 0
    try:
        while True:
            chunk = os.read(fd, MIB)
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
            if limit and n > limit:
                break
        drop(fd)
    finally:
        os.close(fd)
    return h.hexdigest(), n


def check_file(m, f, name, follow=False):
    try:
        st = m.stat(f["path"]) if follow else m.lstat(f["path"])
        if not stat.S_ISREG(st.st_mode):
            return report(name, False, "%r is not a regular file (mode %o)" % (f["path"], st.st_mode))
        if st.st_size != f["size"]:
            return report(name, False, "%r: st_size %d, expected %d" % (f["path"], st.st_size, f["size"]))
        h, n = read_all(m, f["path"], follow)
    except OSError as e:
        return report(name, False, "%r: %s" % (f["path"], e))
    report(name, h == f["sha256"] and n == f["size"],
           "%r: read %d bytes, sha256 %s, expected %d bytes %s" % (
               f["path"], n, h[:12], f["size"], f["sha256"][:12]))


def expect_errno(fn, want, what):
    try:
        fn()
    except OSError as e:
        if e.errno == want:
            return None
        return "%s: %s, expected %s" % (what, e, errno.errorcode[want])
    return "%s: succeeded, expected %s" % (what, errno.errorcode[want])


def check_eio(m, f, name):
    p = f["path"]
    try:
        st = m.lstat(p)
    except OSError as e:
        return report(name, False, "%r: lstat: %s (a failing entry stays listed)" % (p, e))
    if st.st_size != f["size"]:
        return report(name, False, "%r: st_size %d, expected the central directory's %d" % (
            p, st.st_size, f["size"]))
    if "head_len" in f:
        try:
            fd = m.open(p)
            try:
                head = os.pread(fd, f["head_len"], 0)
                drop(fd)
            finally:
                os.close(fd)
            if hashlib.sha256(head).hexdigest() != f["head_sha256"]:
                return report(name, False, "%r: the first %d bytes read back wrong" % (p, f["head_len"]))
        except OSError as e:
            if not (f.get("head_may_fail") and e.errno == errno.EIO):
                return report(name, False, "%r: the first %d bytes (before the damage) fail: %s" % (
                    p, f["head_len"], e))
    if "head_len" in f and not f.get("head_may_fail"):
        # Read it all: the head lands in the page cache, then the member
        # fails.  The cached head must go too (the daemon tells the kernel,
        # from another thread, so poll for a while).
        try:
            fd = m.open(p)
        except OSError as e:
            return report(name, False, "%r: open: %s" % (p, e))
        try:
            try:
                while os.read(fd, MIB):
                    pass
                return report(name, False, "%r: a whole read succeeded" % p)
            except OSError as e:
                if e.errno != errno.EIO:
                    return report(name, False, "%r: a whole read failed with %s" % (p, e))
            deadline = time.monotonic() + 5
            while True:
                try:
                    os.pread(fd, 4096, 0)
                except OSError as e:
                    if e.errno == errno.EIO:
                        break
                    return report(name, False, "%r: reread of the head: %s" % (p, e))
                if time.monotonic() > deadline:
                    return report(name, False, "%r: 5 s after the member failed, its head "
                                  "still reads from the page cache" % p)
                time.sleep(0.01)
        finally:
            drop(fd)
            os.close(fd)
    if f.get("far_read"):
        # in a child, so that a read that never returns cannot hang the checks
        code = ("import os,sys\nfd=os.open(sys.argv[1],os.O_RDONLY)\n"
                "try:\n os.pread(fd,4096,%d)\nexcept OSError as e:\n sys.exit(e.errno)\n"
                "sys.exit(0)\n" % (f["size"] - 4096))
        try:
            r = subprocess.run([sys.executable, "-c", code, os.path.join(m.mnt, p)],
                               timeout=10)
            if r.returncode != errno.EIO:
                return report(name, False, "%r: a read of the last 4 KiB gave %s, expected EIO" % (
                    p, "success" if r.returncode == 0 else "errno %d" % r.returncode))
        except subprocess.TimeoutExpired:
            return report(name, False, "%r: a read of the last 4 KiB did not return within "
                          "10 s (work in proportion to the declared size?)" % p)
    # a whole read must fail with EIO, and every later read too
    for attempt in range(3):
        def whole():
            fd = m.open(p)
            try:
                if attempt == 0:
                    n = 0
                    while True:
                        chunk = os.read(fd, MIB)
                        n += len(chunk)
                        if not chunk:
                            break
                else:
                    drop(fd)
                    os.pread(fd, 4096, 0)
            finally:
                drop(fd)
                os.close(fd)
        err = expect_errno(whole, errno.EIO, "%r read #%d" % (p, attempt + 1))
        if err:
            return report(name, False, err)
    report(name, True)


def concurrent_eio(m, case, nthreads, name):
    import threading
    errs = []
    barrier = threading.Barrier(nthreads * len(case["eio"]))

    def reader(p):
        try:
            barrier.wait(30)
            fd = m.open(p)
            try:
                while os.read(fd, MIB):
                    pass
            finally:
                os.close(fd)
            errs.append("%s: a whole read succeeded" % short(p))
        except OSError as e:
            if e.errno != errno.EIO:
                errs.append("%s: %s" % (short(p), e))
        except threading.BrokenBarrierError:
            errs.append("barrier broken")
    ts = [threading.Thread(target=reader, args=(f["path"],), daemon=True)
          for f in case["eio"] for _ in range(nthreads)]
    for t in ts:
        t.start()
    deadline = time.monotonic() + 60
    for t in ts:
        t.join(max(0, deadline - time.monotonic()))
    # a reader still blocked has reported nothing: that is no pass
    hung = sum(t.is_alive() for t in ts)
    if hung:
        errs.append("%d of %d readers still blocked after 60 s" % (hung, len(ts)))
    report(name, not errs, "; ".join(sorted(set(errs))[:6]))


def walk(m, strict_known, case, name):
    """Every node of the mount: lstat, readdir; no setuid/setgid/sticky bit;
    with strict_known, every file and symlink must be expected."""
    bad = []
    seen = {}
    # breadth first, one open descriptor per directory of the frontier: the
    # tree may be deeper than PATH_MAX allows a path to be
    try:
        queue = [(b"", os.open(m.mnt, os.O_RDONLY | os.O_DIRECTORY))]
    except OSError as e:
        return report(name, False, "open the mount: %s" % e)
    while queue:
        d, fd = queue.pop(0)
        try:
            names = [os.fsencode(n) for n in os.listdir(fd)]
        except OSError as e:
            bad.append("listdir %r: %s" % (d[:80], e))
            names = []
        if len(names) != len(set(names)):
            bad.append("duplicate names in %r" % d[:80])
        for n in names:
            rel = d + b"/" + n if d else n
            try:
                st = os.stat(n, dir_fd=fd, follow_symlinks=False)
            except OSError as e:
                bad.append("lstat %r: %s" % (rel[:80], e))
                continue
            seen[rel] = st
            if st.st_mode & 0o7000:
                bad.append("%r has mode %o (setuid/setgid/sticky)" % (rel, st.st_mode))
            if stat.S_ISDIR(st.st_mode):
                try:
                    queue.append((rel, os.open(n, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                                               dir_fd=fd)))
                except OSError as e:
                    bad.append("open dir %r: %s" % (rel[:80], e))
            elif stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                if strict_known is not None and rel not in strict_known:
                    bad.append("unexpected %s %r" % (
                        "file" if stat.S_ISREG(st.st_mode) else "symlink", rel))
            else:
                bad.append("%r has type %o (only dirs, files, symlinks)" % (rel, st.st_mode))
        os.close(fd)
    for a in case["absent"]:
        if b(a["path"]) in seen:
            bad.append("skipped entry %r is in the mount" % a["path"])
    report(name, not bad, "; ".join(bad[:8]))
    return seen


def tree_of(root):
    """{relative path (bytes): sha256} of the regular files below root."""
    out = {}
    rb = os.fsencode(root)
    for d, _, files in os.walk(rb):
        for f in files:
            full = os.path.join(d, f)
            if os.path.isfile(full) and not os.path.islink(full):
                with open(full, "rb") as fp:
                    out[os.path.relpath(full, rb)] = hashlib.sha256(fp.read()).hexdigest()
    return out


def tool_trees(zpath):
    """What unzip, Python's zipfile and bsdtar each extract from the zip:
    {tool: {path: sha256} or an error string}."""
    import shutil
    import tempfile
    import zipfile
    out = {}
    for tool in ("unzip", "bsdtar"):
        d = tempfile.mkdtemp(prefix="layerfs-hostile-%s." % tool)
        try:
            cmd = (["unzip", "-o", "-qq", zpath, "-d", d] if tool == "unzip"
                   else ["bsdtar", "-xf", zpath, "-C", d])
            r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
            # unzip exits 1 for warnings (a truncated comment, say)
            if r.returncode not in ((0, 1) if tool == "unzip" else (0,)):
                out[tool] = "exit %d: %s" % (r.returncode, r.stderr[:200])
            else:
                out[tool] = tree_of(d)
        finally:
            shutil.rmtree(d, ignore_errors=True)
    try:
        with zipfile.ZipFile(zpath) as z:
            out["zipfile"] = {os.fsencode(i.filename): hashlib.sha256(z.read(i)).hexdigest()
                              for i in z.infolist() if not i.is_dir()}
    except Exception as e:  # BadZipFile and anything else it raises
        out["zipfile"] = "%s: %s" % (type(e).__name__, e)
    return out


def check_tools(m, seen, case, good, layer, name):
    """The hostile layer's files in the mount equal what each tool extracts."""
    skip = {b(f["path"]) for f in good}
    mine = {}
    for rel, st in seen.items():
        if stat.S_ISREG(st.st_mode) and rel not in skip:
            try:
                mine[rel] = read_all(m, os.fsdecode(rel))[0]
            except OSError as e:
                mine[rel] = "read: %s" % e
    bad = []
    for tool, tree in sorted(tool_trees(layer).items()):
        if isinstance(tree, str):
            bad.append("%s: %s" % (tool, tree))
        elif tree != mine:
            diff = sorted(set(tree.items()) ^ set(mine.items()))
            bad.append("%s differs: %s" % (tool, ", ".join(
                "%r %s" % (p, "(tool)" if (p, h) in tree.items() else "(layerfs)")
                for p, h in diff[:4])))
    report(name, not bad, "; ".join(bad))


def log_escape(raw, limit=100):
    """An entry name as layerfs logs it: control bytes, bytes >= 0x7f and
    backslashes as \\xNN (no name may forge a log line); long names are cut,
    so only the first `limit` characters are compared."""
    out = "".join(chr(c) if 0x20 <= c < 0x7f and c != 0x5c else "\\x%02x" % c for c in raw)
    return out[:limit].encode()


def log_checks(case, logpath, layer, name):
    with open(logpath, "rb") as f:
        lines = f.read().split(b"\n")
    lay = b(layer)
    problems = []
    needles = []
    for k in ("eio", "absent", "eio_link", "bad"):
        for f in case[k]:
            if f.get("log"):
                needles.append((f["path"], b"entry '" + log_escape(bytes.fromhex(f["log"]))))
    for path, nd in needles:
        hits = [l for l in lines if nd in l and lay in l]
        if len(hits) != 1:
            problems.append("%d log lines name layer and entry %r (expected 1)" % (len(hits), path))
    for l in lines:
        if b"entry '" in l and not any(nd in l for _, nd in needles):
            problems.append("unexpected log line: %r" % l[:200])
    cap = case.get("log_cap")
    if cap:
        named = [l for l in lines if b"entry '" in l and lay in l]
        more = [l for l in lines if bytes.fromhex(cap["more"]) in l and lay in l]
        if len(named) != cap["entry_lines"]:
            problems.append("%d log lines name an entry (expected %d)" % (
                len(named), cap["entry_lines"]))
        if len(more) != 1:
            problems.append("%d log lines say %r (expected 1)" % (
                len(more), bytes.fromhex(cap["more"])))
    for pre in case.get("forbid_log_prefix", []):
        for l in lines:
            if l.startswith(bytes.fromhex(pre)):
                problems.append("forged log line: %r" % l[:200])
    for l in lines:
        if b"AddressSanitizer" in l or b"runtime error:" in l or b"LeakSanitizer" in l:
            problems.append("sanitizer: %r" % l[:200])
            break
    report(name, not problems, "; ".join(problems[:6]))


def stats(mnt):
    out = subprocess.run([os.environ["LAYERFS"], "stats", mnt], capture_output=True,
                         timeout=30)
    if out.returncode != 0:
        raise OSError("layerfs stats: exit %d: %s" % (out.returncode, out.stderr.decode(errors="replace").strip()))
    d = {}
    for line in out.stdout.decode().splitlines():
        k, _, v = line.partition(" ")
        d[k] = v
    return d


def hwm_bytes(pid):
    with open("/proc/%s/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


def main():
    out, case_name, mnt, logpath, layer = sys.argv[1:6]
    with open(os.path.join(out, "expect.json")) as f:
        ex = json.load(f)
    case = next(c for c in ex["cases"] if c["name"] == case_name)
    good = ex["good"]["files"] if case.get("good", True) else []
    m = Mount(mnt)
    asan = os.environ.get("HOSTILE_ASAN") == "1"
    N = case_name

    # mounted lazily: nothing inflated or read yet
    try:
        s0 = stats(mnt)
        pid = s0["pid"]
        report(N + ": nothing inflated at mount", s0.get("bytes_inflated") == "0",
               "bytes_inflated %s right after mount" % s0.get("bytes_inflated"))
        if case.get("bomb"):
            secs = float(s0.get("mount_seconds", "inf"))
            limit = 3.0 if asan else 1.0
            report(N + ": mounted in %.3f s (under %g s)" % (secs, limit), secs < limit,
                   "mount_seconds %s" % s0.get("mount_seconds"))
    except (OSError, KeyError, subprocess.TimeoutExpired) as e:
        report(N + ": layerfs stats after mount", False, str(e))
        pid = None

    # nosuid, nodev, ro
    opts = None
    with open("/proc/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 3 and fields[1] == mnt:
                opts = fields[3].split(",")
    report(N + ": mounted ro,nosuid,nodev",
           opts is not None and {"ro", "nosuid", "nodev"} <= set(opts),
           "options in /proc/mounts: %s" % opts)

    for i, f in enumerate(good):
        check_file(m, f, "%s: good layer %s" % (N, f["path"]))
    for f in case["ok"]:
        check_file(m, f, "%s: reads fine %s" % (N, short(f["path"])))
    for f in case.get("through", []):
        check_file(m, f, "%s: read through symlink %s" % (N, short(f["path"])), follow=True)
    if case.get("concurrent"):
        concurrent_eio(m, case, case["concurrent"], "%s: %d concurrent readers of each bad "
                       "member all get EIO" % (N, case["concurrent"]))
    for f in case["eio"]:
        check_eio(m, f, "%s: EIO %s" % (N, short(f["path"])))
    for f in case.get("bad", []):
        p = f["path"]
        try:
            st = m.lstat(p)
            err = expect_errno(lambda: read_all(m, p), errno.EIO, "read %s" % short(p))
            if err:
                err += " (lstat gave mode %o size %d)" % (st.st_mode, st.st_size)
        except OSError as e:
            err = None if e.errno == errno.ENOENT else "lstat %s: %s" % (short(p), e)
        report("%s: skipped or EIO %s" % (N, short(p)), not err, err or "")
    for f in case["eio_link"]:
        p = f["path"]
        errs = [expect_errno(lambda: m.readlink(p), errno.EIO, "readlink %r #%d" % (p, k))
                for k in range(3)]
        errs = [e for e in errs if e]
        report("%s: readlink EIO %r" % (N, p), not errs, "; ".join(errs))
    for a in case["absent"]:
        try:
            m.lstat(a["path"])
            err = "lstat %s succeeded" % short(a["path"])
        except OSError as e:
            # ENOTDIR: a component is a file (it replaced the directory)
            err = None if e.errno in (errno.ENOENT, errno.ENOTDIR) else "lstat: %s" % e
        report("%s: skipped %s" % (N, short(a["path"])), not err, err or "")
    for d in case["dirs"]:
        try:
            st = m.lstat(d)
            report("%s: directory %r" % (N, d), stat.S_ISDIR(st.st_mode), "mode %o" % st.st_mode)
        except OSError as e:
            report("%s: directory %r" % (N, d), False, str(e))
    for md in case["modes"]:
        try:
            st = m.lstat(md["path"])
            want = stat.S_IFDIR if md["type"] == "dir" else stat.S_IFREG
            report("%s: mode %r" % (N, md["path"]),
                   stat.S_IFMT(st.st_mode) == want and stat.S_IMODE(st.st_mode) == md["perm"],
                   "mode %o, expected type %s perm %o" % (st.st_mode, md["type"], md["perm"]))
        except OSError as e:
            report("%s: mode %r" % (N, md["path"]), False, str(e))
    for ln in case["links"]:
        try:
            st = m.lstat(ln["path"])
            t = m.readlink(ln["path"])
            want = bytes.fromhex(ln["target"])
            report("%s: symlink %s" % (N, short(ln["path"])),
                   stat.S_ISLNK(st.st_mode) and b(t) == want and st.st_size == len(want),
                   "mode %o size %d target %r..." % (st.st_mode, st.st_size, t[:60]))
        except OSError as e:
            report("%s: symlink %s" % (N, short(ln["path"])), False, str(e))
    for p in case["eloop"]:
        err = expect_errno(lambda: os.close(m.open(p, follow=True)), errno.ELOOP, "open %r" % p)
        report("%s: ELOOP %r" % (N, p), not err, err or "")
    for p in case["dangling"]:
        err = expect_errno(lambda: m.stat(p), errno.ENOENT, "stat %r" % p)
        if not err:
            try:
                m.lstat(p)
            except OSError as e:
                err = "lstat %r: %s" % (p, e)
        report("%s: dangling %r" % (N, p), not err, err or "")

    # provenance on a hostile entry
    if case.get("list") is None and case["ok"]:
        p = case["ok"][0]["path"]
        try:
            fd = m.open(p)
            try:
                v = os.getxattr(fd, "user.layerfs.layer")
            finally:
                os.close(fd)
            report("%s: provenance of %r" % (N, p), v == b(layer), "got %r" % v)
        except OSError as e:
            report("%s: provenance of %r" % (N, p), False, str(e))

    # zip bombs: read everything, memory stays bounded
    bomb = case.get("bomb")
    if bomb:
        bad = []
        zeros = bytes(MIB)
        for f in bomb["read"]:
            try:
                fd = m.open(f["path"])
                try:
                    n = 0
                    h = hashlib.sha256()
                    buf = bytearray(MIB)
                    while True:
                        k = os.readv(fd, [buf])
                        if k == 0:
                            break
                        if f.get("zeros"):
                            if buf[:k] != zeros[:k]:
                                bad.append("%r: non-zero bytes near offset %d" % (f["path"], n))
                                break
                        else:
                            h.update(memoryview(buf)[:k])
                        n += k
                        if n % (256 * MIB) == 0:
                            drop(fd)
                    drop(fd)
                finally:
                    os.close(fd)
                if n != f["size"] or (not f.get("zeros") and h.hexdigest() != f["sha256"]):
                    bad.append("%r: read %d bytes (expected %d)%s" % (
                        f["path"], n, f["size"], "" if f.get("zeros") else
                        ", sha256 " + ("ok" if h.hexdigest() == f["sha256"] else "wrong")))
            except OSError as e:
                bad.append("%r: %s" % (f["path"], e))
            if len(bad) > 3:
                break
        if bomb["read"]:
            report("%s: bomb reads back correctly" % N, not bad, "; ".join(bad))
        if pid:
            hwm = hwm_bytes(pid)
            limit = bomb["cache"] + bomb["hwm_slack"] + (768 * MIB if asan else 0)
            report("%s: daemon VmHWM %s MiB, below cache_size + %d MiB%s" % (
                N, hwm and hwm // MIB, bomb["hwm_slack"] // MIB,
                " (+768 MiB for ASan)" if asan else ""),
                hwm is not None and hwm < limit,
                "VmHWM %s MiB, limit %d MiB" % (hwm and hwm // MIB, limit // MIB))

    known = None
    if case.get("strict", True):
        known = set()
        for f in good + case["ok"] + case["eio"] + case["eio_link"] + case["links"]:
            known.add(b(f["path"]))
        known |= {b(p) for p in case["eloop"] + case["dangling"]}
    seen = walk(m, known, case, "%s: walk (lstat, readdir) of the whole mount" % N)
    if case.get("tools"):
        check_tools(m, seen or {}, case, good, layer,
                    "%s: same files as unzip, zipfile and bsdtar extract" % N)

    if case.get("walk", "ls") == "ls":
        cmd = ["ls", "-laR", mnt]
    else:
        cmd = ["find", mnt, "-ls"]
    # symlinks whose target fails with EIO make ls -l complain about them,
    # and about nothing else
    allowed = {b"ls: cannot read symbolic link '%s/%s': Input/output error" % (b(mnt), b(f["path"]))
               for f in case["eio_link"]}
    try:
        r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
        errs = [l for l in r.stderr.split(b"\n") if l]
        if allowed and cmd[0] == "ls":
            good_ls = r.returncode == 1 and errs and all(l in allowed for l in errs)
            what = "ls -laR complains only about the EIO symlinks"
        else:
            good_ls = r.returncode == 0
            what = "%s exits 0" % (" ".join(cmd[:2]) if cmd[0] == "ls" else "find -ls")
        report("%s: %s" % (N, what), good_ls, "exit %d: %s" % (r.returncode, r.stderr[:300]))
    except subprocess.TimeoutExpired:
        report("%s: %s" % (N, cmd[0]), False, "timed out")

    # still alive, and one log line per bad entry however often it was read
    try:
        os.stat(mnt)
        s1 = stats(mnt)
        report("%s: daemon alive after everything" % N, s1.get("pid") == pid,
               "pid %s, was %s" % (s1.get("pid"), pid))
    except (OSError, subprocess.TimeoutExpired) as e:
        report("%s: daemon alive after everything" % N, False, str(e))
    log_checks(case, logpath, layer, "%s: log lines (one per bad entry, naming layer and entry)" % N)


if __name__ == "__main__":
    main()
