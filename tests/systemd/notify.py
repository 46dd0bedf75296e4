#!/usr/bin/env python3
"""A stand-in for systemd's side of sd_notify(3), for tests.

    notify.py SOCKET LOG [--read PATH --expect FILE] [--no-store]

Binds an AF_UNIX SOCK_DGRAM socket at SOCKET (the NOTIFY_SOCKET to give
the daemon) with SO_PASSCRED, as systemd does, and appends one line per
received assignment to LOG:

    <monotonic seconds> <sender pid> KEY=VALUE

With --read, the moment the first
READY=1 arrives - before anything else is received - PATH is read and
compared with FILE's bytes, and one more line is logged:

    <t> <pid> READCHECK=ok            or   READCHECK=fail <reason>

so a daemon that says READY=1 before its mount serves files is caught.

Descriptors sent with FDSTORE=1 are kept open, as systemd's file
descriptor store keeps them (FileDescriptorStoreMax=), until SIGTERM, and
logged as "<t> <pid> FDSTORED=<count>"; FDSTOREREMOVE=1 closes those of its
FDNAME=.  With --no-store they are closed at once, as a unit without a
store would (the daemon's connection then dies with it).
Creates SOCKET.bound once listening; runs until SIGTERM, or until SOCKET
is removed (checked every second).
"""
import os
import signal
import socket
import struct
import sys
import time


def main():
    args = sys.argv[1:]
    read_path = expect_file = None
    if "--read" in args:
        i = args.index("--read")
        read_path = args[i + 1]
        del args[i:i + 2]
    if "--expect" in args:
        i = args.index("--expect")
        expect_file = args[i + 1]
        del args[i:i + 2]
    store = "--no-store" not in args
    if not store:
        args.remove("--no-store")
    if len(args) != 2 or (read_path is None) != (expect_file is None):
        sys.exit(__doc__)
    sock_path, log_path = args
    expect = open(expect_file, "rb").read() if expect_file else None

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    try:
        os.unlink(sock_path)
    except FileNotFoundError:
        pass
    s.bind(sock_path)
    os.chmod(sock_path, 0o777)
    log = open(log_path, "a", buffering=1)
    open(sock_path + ".bound", "w").close()
    ready_seen = False
    cmsg_space = socket.CMSG_SPACE(struct.calcsize("3i")) + socket.CMSG_SPACE(8 * 4)
    stored = {}  # FDNAME -> [fd]
    s.settimeout(1.0)
    while True:
        try:
            data, anc, _, _ = s.recvmsg(65536, cmsg_space)
        except socket.timeout:
            # never outlive the test: its temp dir (and our socket) is gone
            if not os.path.exists(sock_path):
                return
            continue
        now = time.monotonic()
        pid = 0
        fds = []
        for level, typ, payload in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS:
                pid = struct.unpack("3i", payload[:12])[0]
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                fds += list(struct.unpack("%di" % (len(payload) // 4), payload[:len(payload) // 4 * 4]))
        text = data.decode("utf-8", "replace")
        items = [l for l in text.split("\n") if l]
        for item in items:
            log.write("%.6f %d %s\n" % (now, pid, item))
        name = next((i[7:] for i in items if i.startswith("FDNAME=")), "stored")
        if "FDSTORE=1" in items and store:
            stored.setdefault(name, []).extend(fds)
            fds = []
            log.write("%.6f %d FDSTORED=%d\n" % (now, pid, sum(len(v) for v in stored.values())))
        if "FDSTOREREMOVE=1" in items:
            for fd in stored.pop(name, []):
                os.close(fd)
        for fd in fds:
            os.close(fd)
        if "READY=1" in items and not ready_seen:
            ready_seen = True
            if read_path is not None:
                try:
                    with open(read_path, "rb") as f:
                        got = f.read()
                    res = "ok" if got == expect else "fail content %r" % got[:80]
                except OSError as e:
                    res = "fail %s" % e
                log.write("%.6f %d READCHECK=%s\n" % (time.monotonic(), pid, res))


if __name__ == "__main__":
    main()
