#!/usr/bin/python3
"""Cold starts from the object store: a layer behind nginx and the fault
proxy's added latency per request, mounted by layerfs straight from there,
against the same mount from the local zip, against downloading the zip
first (curl) and extracting it (unzip -o: the platform's way) or mounting
it locally.  Run by tests/remote/coldstart.sh with the servers up.

    coldstart.py --layerfs BIN --zip ZIP --cmd CMD [--runs N] [--latencies "2 20"]

CMD names the tree as {root}.  Every run starts with the page cache
dropped (the interpreter's files and the local zip too, for every strategy
alike); the store's copy of the zip lives in tmpfs (/dev/shm), which that
does not touch: an object store's disks are not this host's.  A run is
timed from the start of the mount, download or extraction to the end of
CMD.  Strategies run in turn within each round, so a drift of the machine
spreads over all of them; medians are printed.  --one runs one strategy
once and prints nothing, for timing whole processes from outside.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

LAYERFS = None


def drop_caches():
    subprocess.run(["sync"], check=True)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


def stats(mnt):
    out = run([LAYERFS, "stats", mnt]).stdout.decode()
    d = {}
    for line in out.splitlines():
        k, _, v = line.partition(" ")
        d[k] = v
    return d


def layer_sum(st, key):
    return sum(int(v) for k, v in st.items() if k.startswith("layer.") and k.endswith("." + key))


def settle(mnt):
    for _ in range(600):
        st = stats(mnt)
        pend = int(st.get("disk_writes_pending", 0)) + layer_sum(st, "remote_disk_pending")
        if pend == 0:
            return
        time.sleep(0.05)


class Bench:
    def __init__(self, args, work):
        self.a = args
        self.work = work
        self.name = os.path.basename(args.zip)
        self.data = os.environ["LFS_DATA"]
        self.proxy = os.environ["LFS_PROXY"]
        self.cmd = args.cmd
        self.n = 0

    def tmp(self, what):
        self.n += 1
        d = os.path.join(self.work, f"{what}{self.n}")
        os.makedirs(d)
        return d

    def command(self, root):
        c = self.cmd.replace("{root}", root)
        r = subprocess.run(["sh", "-c", c], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode:
            sys.exit(f"coldstart: command failed on {root}: {r.stdout.decode()[-500:]}")

    def mount(self, lst, mnt, opts=None):
        cmd = [LAYERFS, "mount"] + (["-o", opts] if opts else []) + [lst, mnt]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode:
            sys.exit(f"coldstart: {' '.join(cmd)}: {r.stdout.decode()}")

    def umount(self, mnt):
        run([LAYERFS, "umount", mnt])
        if self.a.one:
            return
        # the daemon exits once its disk writes are done; wait for it so
        # that the next run does not share the machine with it
        for _ in range(200):
            r = subprocess.run(["pgrep", "-f", f"layerfs mount .* {mnt}$"], stdout=subprocess.PIPE)
            if r.returncode:
                break
            time.sleep(0.05)

    def listfile(self, line):
        d = self.tmp("list")
        p = os.path.join(d, "layers.list")
        with open(p, "w") as f:
            f.write(line + "\n")
        return p

    def url(self, lat):
        return f"{self.proxy}/_f/lat={lat}/{self.name}"

    def layerfs_run(self, lst, opts=None, before=None):
        mnt = self.tmp("mnt")
        if before:
            before()
        drop_caches()
        t0 = time.monotonic()
        self.mount(lst, mnt, opts)
        t1 = time.monotonic()
        self.command(mnt)
        t2 = time.monotonic()
        st = stats(mnt)
        if opts and "cache_dir" in opts:
            settle(mnt)
        self.umount(mnt)
        return {"secs": t2 - t0, "mount": t1 - t0, "st": st}

    # --- the strategies ---------------------------------------------------

    def local(self, lat):
        return self.layerfs_run(self.listfile(self.a.zip))

    def local_host_first(self, lat):
        cd = self.tmp("cache")
        os.chmod(cd, 0o700)
        return self.layerfs_run(self.listfile(self.a.zip), f"cache_dir={cd}")

    def opts(self, *more):
        o = [m for m in more + (self.a.mount_opts,) if m]
        return ",".join(o) or None

    def remote(self, lat):
        return self.layerfs_run(self.listfile(self.url(lat)), self.opts())

    def remote_host_first(self, lat):
        cd = self.tmp("cache")
        os.chmod(cd, 0o700)
        self.cache_dir = cd
        return self.layerfs_run(self.listfile(self.url(lat)), self.opts(f"cache_dir={cd}"))

    def remote_host_second(self, lat):
        return self.layerfs_run(self.listfile(self.url(lat)), self.opts(f"cache_dir={self.cache_dir}"))

    def download(self, lat, dest):
        run(["curl", "-sS", "--fail", "-o", dest, self.url(lat)])

    def download_extract(self, lat):
        d = self.tmp("dl")
        root = self.tmp("tree")
        zp = os.path.join(d, self.name)
        drop_caches()
        t0 = time.monotonic()
        self.download(lat, zp)
        t1 = time.monotonic()
        run(["unzip", "-o", "-q", zp, "-d", root])
        self.command(root)
        t2 = time.monotonic()
        shutil.rmtree(d)
        shutil.rmtree(root)
        return {"secs": t2 - t0, "mount": t1 - t0, "st": {}}

    def download_mount(self, lat):
        d = self.tmp("dl")
        zp = os.path.join(d, self.name)
        lst = self.listfile(zp)
        mnt = self.tmp("mnt")
        drop_caches()
        t0 = time.monotonic()
        self.download(lat, zp)
        self.mount(lst, mnt)
        t1 = time.monotonic()
        self.command(mnt)
        t2 = time.monotonic()
        st = stats(mnt)
        self.umount(mnt)
        os.unlink(zp)
        return {"secs": t2 - t0, "mount": t1 - t0, "st": st}


STRATEGIES = [
    ("local", "layerfs, local zip"),
    ("local_host_first", "layerfs, local zip, empty cache_dir"),
    ("remote", "layerfs, remote"),
    ("remote_host_first", "layerfs, remote, empty cache_dir"),
    ("remote_host_second", "layerfs, remote, cache_dir of the run before"),
    ("download_mount", "curl, then layerfs on it"),
    ("download_extract", "curl, then unzip -o"),
]


def main():
    global LAYERFS
    ap = argparse.ArgumentParser()
    ap.add_argument("--layerfs", required=True)
    ap.add_argument("--zip", required=True)
    ap.add_argument("--cmd", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--latencies", default="2 20")
    ap.add_argument("--mount-opts", default="", help="more -o options of the remote mounts")
    ap.add_argument("--strategies", default=" ".join(s for s, _ in STRATEGIES))
    ap.add_argument("--one", metavar="STRATEGY",
                    help="one run of STRATEGY at the first latency, nothing printed (for A/B timing from outside)")
    a = ap.parse_args()
    LAYERFS = a.layerfs
    work = tempfile.mkdtemp(prefix="lfs-coldstart-")
    os.chmod(work, 0o755)
    try:
        a.zip = os.path.abspath(a.zip)
        name = os.path.basename(a.zip)
        store = os.path.join("/dev/shm", "layerfs-coldstart-store")
        os.makedirs(store, exist_ok=True)
        os.chmod(store, 0o755)
        copy = os.path.join(store, name)
        if not os.path.exists(copy) or os.path.getsize(copy) != os.path.getsize(a.zip):
            shutil.copyfile(a.zip, copy)
        link = os.path.join(os.environ["LFS_DATA"], name)
        if not os.path.islink(link):
            os.symlink(copy, link)
        dst = copy
        b = Bench(a, work)
        if a.one:
            getattr(b, a.one)(a.latencies.split()[0])
            return
        wanted = a.strategies.split()
        size = os.path.getsize(dst)
        print(f"layer {os.path.basename(a.zip)}: {size} bytes; command: {a.cmd}")
        print(f"{a.runs} rounds per latency; every run from a dropped page cache\n")
        for lat in a.latencies.split():
            res = {s: [] for s in wanted}
            for r in range(a.runs):
                order = wanted[r % len(wanted):] + wanted[: r % len(wanted)]
                # the second mount needs the first's cache_dir
                if "remote_host_second" in order and "remote_host_first" in order:
                    order.remove("remote_host_second")
                    order.insert(order.index("remote_host_first") + 1, "remote_host_second")
                for s in order:
                    res[s].append(getattr(b, s)(lat))
            report(lat, res, size)
    finally:
        subprocess.run(["umount", "-l"] + [os.path.join(work, d) for d in os.listdir(work)
                                           if d.startswith("mnt")], stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def report(lat, res, size):
    base = med([r["secs"] for r in res.get("local", [])])
    print(f"### {lat} ms added per request, {len(next(iter(res.values())))} runs each\n")
    print("| strategy | seconds (median) | min | max | vs local mount | requests | bytes fetched | of the zip |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for s, title in STRATEGIES:
        if s not in res:
            continue
        secs = [r["secs"] for r in res[s]]
        sts = [r["st"] for r in res[s]]
        reqs = med([layer_sum(st, "remote_requests") for st in sts]) if sts and sts[0] else None
        if s.startswith("remote"):
            fetched = med([layer_sum(st, "remote_bytes_fetched") for st in sts])
        elif s.startswith("download"):
            fetched, reqs = size, 1
        else:
            fetched = None
        print(f"| {title} | {med(secs):.3f} | {min(secs):.3f} | {max(secs):.3f} | "
              f"{med(secs) / base:.2f}x | {'' if reqs is None else int(reqs)} | "
              f"{'' if fetched is None else int(fetched)} | "
              f"{'' if fetched is None else f'{fetched / size:.1%}'} |")
    if "local" in res:
        local_read = med([layer_sum(r["st"], "source_bytes") for r in res["local"]])
        served = med([layer_sum(r["st"], "bytes_served") for r in res["local"]])
        print(f"\nlocal mount read {int(local_read)} bytes of the zip "
              f"({local_read / size:.1%}) and served {int(served)}")
        for s, title in (("remote", "remote mount"), ("remote_host_first", "remote mount, empty cache_dir")):
            if s in res:
                fetched = med([layer_sum(r["st"], "remote_bytes_fetched") for r in res[s]])
                print(f"{title} fetched {int(fetched)}: {fetched / local_read:.2f}x what the local mount read")
    if "remote_host_second" in res:
        sts = [r["st"] for r in res["remote_host_second"]]
        print(f"second mount on the host: requests {[layer_sum(st, 'remote_requests') for st in sts]}, "
              f"bytes fetched {[layer_sum(st, 'remote_bytes_fetched') for st in sts]}, "
              f"304s {[layer_sum(st, 'remote_not_modified') for st in sts]}")
    if "download_extract" in res and "remote" in res:
        print(f"download then extract / remote mount: "
              f"{med([r['secs'] for r in res['download_extract']]) / med([r['secs'] for r in res['remote']]):.2f}x")
    print()


if __name__ == "__main__":
    main()
