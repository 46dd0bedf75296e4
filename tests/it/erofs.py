#!/usr/bin/env python3
"""Try one modifying operation; succeed only if it fails with EROFS.

    erofs.py OP PATH [PATH2]

OPs: write append rdwr trunc_open create mkdir unlink rmdir rename chmod
chown truncate utime symlink link setxattr removexattr mkfifo
"""
import errno
import os
import sys


def op(name, p, q):
    if name == "write":
        os.close(os.open(p, os.O_WRONLY))
    elif name == "append":
        os.close(os.open(p, os.O_WRONLY | os.O_APPEND))
    elif name == "rdwr":
        os.close(os.open(p, os.O_RDWR))
    elif name == "trunc_open":
        os.close(os.open(p, os.O_WRONLY | os.O_TRUNC))
    elif name == "create":
        os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    elif name == "mkdir":
        os.mkdir(p, 0o755)
    elif name == "unlink":
        os.unlink(p)
    elif name == "rmdir":
        os.rmdir(p)
    elif name == "rename":
        os.rename(p, q)
    elif name == "chmod":
        os.chmod(p, 0o600, follow_symlinks=False) if os.path.islink(p) else os.chmod(p, 0o600)
    elif name == "chown":
        os.chown(p, 1, 1, follow_symlinks=False)
    elif name == "truncate":
        os.truncate(p, 0)
    elif name == "utime":
        os.utime(p, (0, 0))
    elif name == "symlink":
        os.symlink("target", p)
    elif name == "link":
        os.link(p, q)
    elif name == "setxattr":
        os.setxattr(p, "user.layerfs.test", b"1")
    elif name == "removexattr":
        os.removexattr(p, "user.layerfs.layer")
    elif name == "mkfifo":
        os.mkfifo(p)
    else:
        raise SystemExit("unknown op %s" % name)


def main(argv):
    name, p = argv[1], argv[2]
    q = argv[3] if len(argv) > 3 else None
    try:
        op(name, p, q)
    except OSError as e:
        if e.errno == errno.EROFS:
            return 0
        print("%s %s: %s (expected EROFS)" % (name, p, e))
        return 1
    print("%s %s: succeeded (expected EROFS)" % (name, p))
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
