#!/usr/bin/env python3
"""Layers made with Python's zipfile (stdlib only).

    pyzips.py OUTDIR

Writes into OUTDIR:

  py_mixed.zip    stored and deflated members, NO directory entries (every
                  directory is implicit), UTF-8 and odd names, an empty
                  file, a 1.5 MiB stored file, a 2 MiB deflated file, a
                  1 KB archive comment
  py_dups.zip     the same name twice in one zip (the last one must win),
                  also for directory records
  zip64_many.zip  70,000 tiny files (> 65,535 entries: ZIP64 end records)
  stack2.zip      middle layer of the 3-layer override stack
  names.zip       raw names: absolute, '..', backslashes, '.', '//'
  attrs.zip       no Unix attributes (FAT/NTFS/VFAT hosts, DOS read-only
                  bit), setuid/setgid/sticky bits
  r5_1.zip r5_2.zip r5_3.zip
                  file-vs-directory conflicts across layers (rule 5)

Every member has a fixed timestamp, so the output is the same on each run
(apart from zlib version differences in deflated bytes).
"""
import os
import sys
import warnings
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from semidata import semi_bytes  # noqa: E402

DT = (2024, 1, 2, 3, 4, 6)
UNIX = 3
FAT = 0
NTFS = 11
VFAT = 14
S_IFREG = 0o100000
S_IFDIR = 0o040000
S_IFLNK = 0o120000


def info(name, mode=None, system=UNIX, dos=0, method=zipfile.ZIP_DEFLATED):
    """A ZipInfo with exactly the attributes given (name is used raw)."""
    zi = zipfile.ZipInfo(name, DT)
    zi.create_system = system
    zi.external_attr = ((mode or 0) << 16) | dos
    zi.compress_type = method
    return zi


def add_file(z, name, data, perm=0o644, method=zipfile.ZIP_DEFLATED):
    z.writestr(info(name, S_IFREG | perm, method=method), data)


def add_dir(z, name, perm=0o755):
    assert name.endswith("/")
    z.writestr(info(name, S_IFDIR | perm, dos=0x10, method=zipfile.ZIP_STORED), b"")


def add_link(z, name, target):
    z.writestr(info(name, S_IFLNK | 0o777, method=zipfile.ZIP_STORED), target)


def open_zip(path, **kw):
    return zipfile.ZipFile(path, "w", **kw)


def py_mixed(out):
    with open_zip(os.path.join(out, "py_mixed.zip")) as z:
        add_file(z, "pm/readme.txt", b"made by python zipfile, no dir entries\n")
        add_file(z, "pm/stored/s1.txt", b"stored one\n" * 50, method=zipfile.ZIP_STORED)
        add_file(z, "pm/deflated/d1.txt", b"deflated one\n" * 500)
        add_file(z, "pm/empty_stored", b"", method=zipfile.ZIP_STORED)
        add_file(z, "pm/empty_deflated", b"")
        add_file(z, "pm/exec.sh", b"#!/bin/sh\necho py\n", perm=0o755)
        add_file(z, "pm/private", b"secret\n", perm=0o600)
        add_file(z, "pm/world", b"rw for all\n", perm=0o666)
        add_file(z, "pm/ünïcödé/日本語.txt", "utf-8 name\n".encode())
        add_file(z, "pm/name with spaces/and 'quotes'.txt", b"spaces\n")
        add_file(z, "pm/long/" + "x" * 200 + ".txt", b"long name\n")
        add_file(z, "pm/a/b/c/d/e/f/g/h/deep.txt", b"deep\n")
        add_file(z, "pm/big_stored.bin", semi_bytes(1536 * 1024 + 7, 11),
                 method=zipfile.ZIP_STORED)
        add_file(z, "pm/big_deflated.bin", semi_bytes(2 * 1024 * 1024 + 3, 12))
        # sizes exactly on block / resume-point boundaries (EOF off-by-ones)
        add_file(z, "pm/exact_128k.bin", semi_bytes(128 * 1024, 13))
        add_file(z, "pm/exact_256k.bin", semi_bytes(256 * 1024, 16))
        add_file(z, "pm/exact_1m.bin", semi_bytes(1024 * 1024, 14))
        add_file(z, "pm/exact_1m_stored.bin", semi_bytes(1024 * 1024, 15),
                 method=zipfile.ZIP_STORED)
        add_link(z, "pm/link_to_readme", b"readme.txt")
        z.comment = b"py_mixed: an archive comment after the end record " * 20


def py_dups(out):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name" UserWarning
        with open_zip(os.path.join(out, "py_dups.zip")) as z:
            add_file(z, "dup.txt", b"first copy\n", perm=0o644)
            add_file(z, "other.txt", b"between\n")
            add_file(z, "dup.txt", b"second copy, this one wins\n", perm=0o600)
            add_file(z, "dd/x", b"a" * 1000)
            add_file(z, "dd/x", b"stored and last\n", method=zipfile.ZIP_STORED,
                     perm=0o640)
            add_file(z, "tri", b"1\n")
            add_file(z, "tri", b"2\n")
            add_file(z, "tri", b"3 wins\n", perm=0o755)
            # directory records: after a member inside (still sets the
            # mode), and twice (the last record wins)
            add_file(z, "ddir/f", b"in ddir\n")
            add_dir(z, "ddir/", perm=0o700)
            add_dir(z, "g2/", perm=0o700)
            add_file(z, "g2/f", b"in g2\n")
            add_dir(z, "g2/", perm=0o750)


def zip64_many(out, count=70000):
    # 70 directories of 1000 files; names and contents are small so the
    # archive stays a few MB and writing it takes about a second.
    with open_zip(os.path.join(out, "zip64_many.zip"), allowZip64=True,
                  compression=zipfile.ZIP_STORED) as z:
        for i in range(count):
            d, f = divmod(i, 1000)
            name = "many/d%03d/f%04d.txt" % (d, f)
            z.writestr(info(name, S_IFREG | 0o644, method=zipfile.ZIP_STORED),
                       b"%d\n" % i)


def stack2(out):
    # Middle layer: no directory entries except dirmode2/ (explicit 0750).
    with open_zip(os.path.join(out, "stack2.zip")) as z:
        add_file(z, "common/file.txt", b"from layer 2\n")
        add_file(z, "common/only2.txt", b"only in layer 2\n")
        add_file(z, "bin/tool", b"#!/bin/sh\necho tool v2\n", perm=0o700)
        add_file(z, "conf/app.conf", b"version = 2\n", perm=0o600)
        add_file(z, "dirmode1/b.txt", b"b\n")      # dirmode1 implicit here
        add_dir(z, "dirmode2/", perm=0o750)         # explicit, overrides 0700
        add_file(z, "dirmode2/b.txt", b"b\n")
        add_file(z, "lnk", b"layer 2 replaced the symlink with a file\n")
        add_file(z, "shared/x2.txt", b"x2\n")
        add_file(z, "lib/data/mid.bin", semi_bytes(300000, 21))
        add_file(z, "later_explicit/f2.txt", b"f2\n")  # implicit here, 0700 in layer 3


def names(out):
    # Raw names.  create_system 3 (Unix) unless noted.
    with open_zip(os.path.join(out, "names.zip")) as z:
        def f(name, system=UNIX, perm=0o644, dos=0):
            mode = (S_IFREG | perm) if system == UNIX else 0
            z.writestr(info(name, mode, system=system, dos=dos),
                       name.encode() + b"\n")
        f("/abs/x")
        f("////lead/many")
        f("../up/y")
        f("../../../../../../up2/y2")
        f("a/../b/z")
        f("c\\d\\e")
        f("..\\..\\bs_up\\h")
        f("./dot/./f")
        f("e//g")
        f("w\\x\\f", system=FAT, dos=0x20)
        f("ok/plain.txt")


def attrs(out):
    with open_zip(os.path.join(out, "attrs.zip")) as z:
        def fat(name, dos, system=FAT):
            z.writestr(info(name, 0, system=system, dos=dos),
                       b"" if name.endswith(("/", "\\")) else name.encode() + b"\n")
        fat("win\\file.txt", 0x20)
        fat("win\\ro.txt", 0x21)
        fat("win\\hidden.txt", 0x22)
        fat("win\\ro_hidden.txt", 0x23)
        fat("win\\sub\\", 0x10)
        fat("win\\sub\\inner.txt", 0x20)
        fat("win2/fwd_slash.txt", 0x20)
        fat("win2/ro_fwd.txt", 0x01)
        fat("win2/dir/", 0x10)
        fat("ntfs/file.txt", 0x20, system=NTFS)
        fat("ntfs/ro.txt", 0x21, system=NTFS)
        fat("ntfs/dir/", 0x10, system=NTFS)
        fat("vfat/ro.txt", 0x21, system=VFAT)
        fat("vfat/file.txt", 0x20, system=VFAT)
        # implicit parents of FAT members: 0755
        fat("implicit\\deeper\\f.txt", 0x20)
        # special bits, Unix host
        add_file(z, "special/suid", b"suid\n", perm=0o4755)
        add_file(z, "special/sgid", b"sgid\n", perm=0o2750)
        add_file(z, "special/sticky_file", b"sticky\n", perm=0o1644)
        add_file(z, "special/all", b"all\n", perm=0o7777)
        add_dir(z, "special/sticky_dir/", perm=0o1777)
        add_dir(z, "special/sgid_dir/", perm=0o2770)
        add_file(z, "special/sgid_dir/in.txt", b"in\n")


def r5(out):
    with open_zip(os.path.join(out, "r5_1.zip")) as z:
        add_file(z, "d/sub/f", b"l1 d/sub/f\n")
        add_file(z, "d/g", b"l1 d/g\n")
        add_file(z, "e", b"l1 e\n")
        add_file(z, "s/inner", b"l1 s/inner\n")
        add_file(z, "y/deep/z", b"l1 y/deep/z\n")
        add_file(z, "keep/k1", b"l1 keep/k1\n")
    with open_zip(os.path.join(out, "r5_2.zip")) as z:
        add_file(z, "d", b"l2 d\n", perm=0o640)
        add_dir(z, "e/", perm=0o750)
        add_file(z, "e/g2", b"l2 e/g2\n")
        add_file(z, "x", b"l2 x\n")
        add_file(z, "keep/k2", b"l2 keep/k2\n")
    with open_zip(os.path.join(out, "r5_3.zip")) as z:
        add_file(z, "d/new", b"l3 d/new\n")
        add_link(z, "s", b"keep")
        add_dir(z, "x/", perm=0o711)
        add_file(z, "y", b"l3 y\n", perm=0o600)
        add_file(z, "keep/k3", b"l3 keep/k3\n")


ALL = [py_mixed, py_dups, zip64_many, stack2, names, attrs, r5]


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: pyzips.py OUTDIR\n")
        return 2
    out = argv[1]
    os.makedirs(out, exist_ok=True)
    for fn in ALL:
        fn(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
