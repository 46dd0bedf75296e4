#!/usr/bin/env python3
"""Mount table queries for tests/systemd (paths may contain spaces).

    mnt.py count MNT     how many mounts sit exactly at MNT (stacked ones too)
    mnt.py top MNT       "FSTYPE OPTIONS" of the topmost mount at MNT; exit 1
                         when there is none
    mnt.py under DIR     every mount point at or below DIR, deepest first
    mnt.py statfs PATH   "ok", or the errno name statfs(2) fails with: ENOTCONN
                         for a mount whose daemon died (stat(2) may still
                         succeed there, from the kernel's attribute cache)
"""
import errno
import os
import sys


def unescape(s):
    # /proc/self/mountinfo writes space, tab, newline and backslash as \ooo
    out, i = "", 0
    while i < len(s):
        if s[i] == "\\" and i + 4 <= len(s) and s[i + 1:i + 4].isdigit():
            out += chr(int(s[i + 1:i + 4], 8))
            i += 4
        else:
            out += s[i]
            i += 1
    return out


def mounts():
    """[(mount point, fstype, mount options, super options)] in table order
    (a later entry at the same point is mounted on top of an earlier one)."""
    res = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.rstrip("\n").split(" - ", 1)
            lf, rf = left.split(" "), right.split(" ")
            res.append((unescape(lf[4]), rf[0], lf[5], rf[2] if len(rf) > 2 else ""))
    return res


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    cmd, path = sys.argv[1], sys.argv[2]
    if cmd == "statfs":
        try:
            os.statvfs(path)
            print("ok")
        except OSError as e:
            print(errno.errorcode.get(e.errno, str(e.errno)))
        return
    path = os.path.abspath(path)
    if cmd == "count":
        print(sum(1 for m in mounts() if m[0] == path))
    elif cmd == "top":
        at = [m for m in mounts() if m[0] == path]
        if not at:
            sys.exit(1)
        print("%s %s,%s" % (at[-1][1], at[-1][2], at[-1][3]))
    elif cmd == "under":
        pts = [m[0] for m in mounts() if m[0] == path or m[0].startswith(path.rstrip("/") + "/")]
        # deepest first, and later (upper) mounts before earlier ones
        for p in sorted(reversed(pts), key=lambda p: -p.count("/")):
            print(p)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
