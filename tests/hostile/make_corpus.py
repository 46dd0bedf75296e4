#!/usr/bin/env python3
"""Hostile layer zips and what layerfs must make of each (issue 4).

    make_corpus.py OUTDIR

Writes into OUTDIR:

  zips/good.zip     a well-formed layer (made with zipfile); run.sh mounts
                    [good.zip, hostile.zip] for every case and checks that
                    good.zip's files still read correctly
  zips/*.zip        one hostile zip per case (byte-level edits of valid zips
                    written with struct by the small writer below)
  lists/*.list      hostile layer lists (and one CRLF list that must work)
  special/          a directory, a FIFO, ... named as layers
  expect.json       the expected outcome of every case (see below)

expect.json:
  {"good": {"zip": ..., "files": [FILE...]},
   "cases": [CASE...],
   "tokens": [...]}         names that must never appear outside a mount

  CASE: {"name", "outcome": "refuse" | "mount", "opts": "-o value or ''",
         "zip": path (relative to OUTDIR) of the hostile layer, or null,
         "list": a ready list (relative to OUTDIR), or null: run.sh writes
                 [good.zip, zip],
         "why": what the case is about,
    refuse only:
         "msg_path": the path the one-line message must name,
         "reason": a substring the message must contain (case-insensitive),
    mount only:
         "ok":       [FILE...]   read back exactly (size, sha256)
         "eio":      [{"path", "size" (st_size), "log" (hex of the text that
                      must follow "entry '" in one log line, or null),
                      "head_len", "head_sha256" (optional: a prefix that
                      still reads fine before the failing part; with
                      "head_may_fail" it may fail with EIO instead, for
                      members that could as well be refused whole),
                      "far_read": a read of the last 4 KiB, first, must fail
                      with EIO within 10 s}]
         "eio_link": [{"path", "log"}]   readlink fails with EIO
         "absent":   [{"path", "log"}]   not in the mount (skipped)
         "bad":      [{"path", "log"}]   either skipped, or listed with reads
                                         failing with EIO
         "concurrent": N   N threads read every "eio" member at once first
         "dirs":     [path]              directories
         "links":    [{"path", "target" (hex)}]  readlink gives target
         "eloop":    [path]  open() fails with ELOOP
         "dangling": [path]  stat() fails with ENOENT, lstat() works
         "modes":    [{"path", "perm", "type": "reg"|"dir"}]
         "forbid_log_prefix": [hex]  no log line may start with these
         "walk": "ls" (ls -laR must exit 0) or "find" (paths too long for
                 ls; find -ls must exit 0),
         "strict": every file/symlink in the mount must be listed above,
         "log_cap": {"entry_lines": N, "more": hex}  exactly N log lines name
                  an entry of the layer, and exactly one holds "more"
         "tools": the hostile layer's files in the mount (path, sha256) equal
                  what unzip -o, Python's zipfile and bsdtar -x each extract,
         "bomb": {"cache": bytes, "read": [{"path","size","sha256"|"zeros"}],
                  "hwm_slack": bytes}
  FILE: {"path", "size", "sha256"}
Paths are str with undecodable bytes as surrogate escapes (os.fsencode()
gives the raw bytes back).
"""
import hashlib
import json
import os
import random
import struct
import sys
import zipfile
import zlib

KIB = 1024
MIB = 1024 * 1024
GIB = 1024 * MIB

DOS_TIME = (3 << 11) | (4 << 5) | 3      # 03:04:06
DOS_DATE = ((2024 - 1980) << 9) | (1 << 5) | 2   # 2024-01-02

S_IFREG = 0o100000
S_IFDIR = 0o040000
S_IFLNK = 0o120000


def sha(b):
    return hashlib.sha256(b).hexdigest()


def fsstr(b):
    return os.fsdecode(b) if isinstance(b, bytes) else b


def rnd(seed, n):
    return random.Random(seed).randbytes(n)


def text(seed, n):
    """Compressible, but not trivially: lines of words."""
    r = random.Random(seed)
    words = [r.randbytes(r.randint(2, 9)).hex().encode() for _ in range(300)]
    out = bytearray()
    while len(out) < n:
        out += b" ".join(r.choice(words) for _ in range(r.randint(3, 12))) + b"\n"
    return bytes(out[:n])


def deflate(data, level=6):
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


# --- a small zip writer whose every field can be overridden -----------------

LOCAL_FIELDS = ["sig", "ver", "flags", "method", "time", "date", "crc", "csize",
                "usize", "nlen", "xlen"]
LOCAL_FMT = "<IHHHHHIIIHH"
CD_FIELDS = ["sig", "vmade", "vneed", "flags", "method", "time", "date", "crc",
             "csize", "usize", "nlen", "xlen", "clen", "disk", "iattr", "eattr",
             "lho"]
CD_FMT = "<IHHHHHHIIIHHHHHII"
EOCD_FIELDS = ["sig", "disk", "cd_disk", "n_disk", "n_total", "cd_size",
               "cd_off", "clen"]
EOCD_FMT = "<IHHHHIIH"


class E:
    """One entry.  data: the member's bytes; method 0 or 8; comp: the
    compressed bytes (default: made from data); cd/local: field overrides;
    share: name of an earlier entry whose local record this one reuses."""

    def __init__(self, name, data=b"", method=8, mode=None, kind="file",
                 comp=None, cd=None, local=None, cd_extra=b"", local_extra=b"",
                 eattr=None, vmade=(3 << 8) | 20, share=None, comment=b""):
        self.name = name if isinstance(name, bytes) else name.encode()
        self.data = data
        self.method = method
        self.kind = kind
        if mode is None:
            mode = {"file": S_IFREG | 0o644, "dir": S_IFDIR | 0o755,
                    "link": S_IFLNK | 0o777}[kind]
        self.eattr = eattr if eattr is not None else (
            (mode << 16) | (0x10 if kind == "dir" else 0))
        if comp is None:
            comp = deflate(data) if method == 8 else data
        self.comp = comp
        self.cd = cd or {}
        self.local = local or {}
        self.cd_extra = cd_extra
        self.local_extra = local_extra
        self.vmade = vmade
        self.share = share
        self.comment = comment


def pack(fmt, fields, values, overrides):
    v = dict(values)
    v.update(overrides)
    return struct.pack(fmt, *[v[f] for f in fields])


def build(entries, prefix=b"", eocd=None, zip_comment=b"", adjust_prefix=False,
          cd_edit=None, between=b""):
    """The zip bytes.  prefix: junk in front; adjust_prefix: offsets count
    the prefix (zip -A); cd_edit(cd_bytes) -> bytes edits the central
    directory after it is made (the EOCD keeps the original size/offset);
    between: bytes inserted between the central directory and the EOCD."""
    out = bytearray()
    base = len(prefix) if adjust_prefix else 0
    lho = {}        # name -> offset of its first local record (for share=)
    own = {}        # id(entry) -> offset of its local record
    for e in entries:
        if e.share is not None:
            continue
        crc = zlib.crc32(e.data)
        v = dict(sig=0x04034b50, ver=20, flags=0, method=e.method, time=DOS_TIME,
                 date=DOS_DATE, crc=crc, csize=len(e.comp), usize=len(e.data),
                 nlen=len(e.name), xlen=len(e.local_extra))
        lho.setdefault(e.name, len(out) + base)
        own[id(e)] = len(out) + base
        out += pack(LOCAL_FMT, LOCAL_FIELDS, v, e.local)
        out += e.name + e.local_extra + e.comp
    cd = bytearray()
    for e in entries:
        crc = zlib.crc32(e.data)
        v = dict(sig=0x02014b50, vmade=e.vmade, vneed=20, flags=0, method=e.method,
                 time=DOS_TIME, date=DOS_DATE, crc=crc, csize=len(e.comp),
                 usize=len(e.data), nlen=len(e.name), xlen=len(e.cd_extra),
                 clen=len(e.comment), disk=0, iattr=0, eattr=e.eattr,
                 lho=lho[e.share.encode()] if e.share is not None else own[id(e)])
        cd += pack(CD_FMT, CD_FIELDS, v, e.cd) + e.name + e.cd_extra + e.comment
    cd_off = len(out) + base
    cd_size = len(cd)
    if cd_edit:
        cd = cd_edit(bytes(cd))
    out += cd + between
    v = dict(sig=0x06054b50, disk=0, cd_disk=0, n_disk=len(entries),
             n_total=len(entries), cd_size=cd_size, cd_off=cd_off,
             clen=len(zip_comment))
    out += pack(EOCD_FMT, EOCD_FIELDS, v, eocd or {}) + zip_comment
    return prefix + bytes(out)


def zip64_extra(*values):
    return struct.pack("<HH", 1, 8 * len(values)) + b"".join(
        struct.pack("<Q", x) for x in values)


def upath_extra(orig_name, unicode_name, good_crc=True):
    crc = zlib.crc32(orig_name) ^ (0 if good_crc else 1)
    body = b"\x01" + struct.pack("<I", crc) + unicode_name
    return struct.pack("<HH", 0x7075, len(body)) + body


# --- the corpus --------------------------------------------------------------

class Corpus:
    def __init__(self, out):
        self.out = out
        self.cases = []
        self.tokens = set()
        for d in ("zips", "lists", "special"):
            os.makedirs(os.path.join(out, d), exist_ok=True)

    def write(self, name, data):
        p = os.path.join("zips", name)
        with open(os.path.join(self.out, p), "wb") as f:
            f.write(data)
        return p

    def refuse(self, name, data, reason, opts="", why="", zipname=None):
        p = self.write(zipname or name + ".zip", data) if data is not None else None
        self.cases.append(dict(name=name, outcome="refuse", zip=p, list=None,
                               opts=opts, msg_path=p, reason=reason, why=why))

    def refuse_list(self, name, list_rel, reason, msg_path=None, opts="", why=""):
        self.cases.append(dict(name=name, outcome="refuse", zip=None, list=list_rel,
                               opts=opts, msg_path=msg_path or list_rel,
                               reason=reason, why=why))

    def mount(self, name, data, why="", opts="", list_rel=None, **kw):
        p = self.write(name + ".zip", data) if data is not None else None
        c = dict(name=name, outcome="mount", zip=p, list=list_rel, opts=opts, why=why,
                 ok=[], eio=[], eio_link=[], absent=[], dirs=[], links=[], eloop=[],
                 dangling=[], modes=[], forbid_log_prefix=[], walk="ls", strict=True, bad=[],
                 good=list_rel is None)
        c.update(kw)
        self.cases.append(c)
        return c


def okf(path, data):
    return dict(path=fsstr(path), size=len(data), sha256=sha(data))


def eiof(path, size, log=True, head=None, head_may_fail=False):
    p = path if isinstance(path, bytes) else path.encode()
    d = dict(path=fsstr(p), size=size,
             log=(p + b"'").hex() if log is True else (log.hex() if log else None))
    if head is not None:
        d["head_len"] = len(head)
        d["head_sha256"] = sha(head)
        d["head_may_fail"] = head_may_fail
    return d


def absentf(path, log=True):
    p = path if isinstance(path, bytes) else path.encode()
    if log is True:
        # the warning quotes at most 200 bytes of a name
        log = p + b"'" if len(p) <= 200 else p[:200]
    return dict(path=fsstr(p), log=log.hex() if log else None)


# Fine entries that go into most mounted hostile zips: they must keep
# working whatever else the zip holds.
FINE_SMALL = text(1, 5000)
FINE_STORED = text(2, 3000)
FINE_LARGE = text(3, 400 * KIB)          # > one 128K block: streamed


def fine_entries():
    return [E("fine/small.txt", FINE_SMALL), E("fine/stored.txt", FINE_STORED, method=0),
            E("fine/large.txt", FINE_LARGE)]


def fine_ok():
    return [okf("fine/small.txt", FINE_SMALL), okf("fine/stored.txt", FINE_STORED),
            okf("fine/large.txt", FINE_LARGE)]


def make_good(c):
    files = {
        "good/a.txt": (b"hello from the good layer\n" * 10, zipfile.ZIP_STORED),
        "good/b.txt": (text(10, 20000), zipfile.ZIP_DEFLATED),
        "good/big.bin": (text(11, 700 * KIB), zipfile.ZIP_DEFLATED),
        "good/stored-big.bin": (rnd(12, 300 * KIB), zipfile.ZIP_STORED),
        "good/dir/c.txt": (b"c\n", zipfile.ZIP_DEFLATED),
    }
    path = os.path.join(c.out, "zips", "good.zip")
    with zipfile.ZipFile(path, "w") as z:
        for name, (data, method) in files.items():
            zi = zipfile.ZipInfo(name, (2024, 1, 2, 3, 4, 6))
            zi.compress_type = method
            zi.external_attr = (S_IFREG | 0o644) << 16
            zi.create_system = 3
            z.writestr(zi, data)
    return dict(zip="zips/good.zip", files=[okf(n, d) for n, (d, _) in files.items()])


def valid_zip(n=3):
    return build(fine_entries()[:n])


def eocd_pos(b):
    return b.rindex(b"PK\x05\x06")


def patch_eocd(b, **fields):
    i = eocd_pos(b)
    v = dict(zip(EOCD_FIELDS, struct.unpack_from(EOCD_FMT, b, i)))
    v.update(fields)
    return b[:i] + struct.pack(EOCD_FMT, *[v[f] for f in EOCD_FIELDS]) + b[i + 22:]


def structural(c):
    v = valid_zip()
    i = eocd_pos(v)
    cd_size, cd_off = struct.unpack_from("<II", v, i + 12)
    c.refuse("empty", b"", "empty", why="a 0-byte file")
    c.refuse("tiny", b"PK\x05\x06", "too short", why="4 bytes")
    c.refuse("not_zip_random", rnd(20, 64 * KIB), "not a zip", why="64 KiB of random bytes")
    c.refuse("not_zip_text", text(21, 10000), "not a zip", why="a text file")
    c.refuse("not_zip_local_only", v[:cd_off], "not a zip",
             why="local records only: no central directory, no end record")
    c.refuse("truncated_end_record", v[:-10], "not a zip",
             why="cut inside the end record")
    c.refuse("truncated_half", v[:len(v) // 2], "not a zip", why="cut in half")
    end_records(c)
    # The central directory cut, the end record kept as it was.
    c.refuse("cd_cut", v[:cd_off + cd_size // 2] + v[i:], "corrupt",
             why="the second half of the central directory is missing")
    c.refuse("cd_missing", v[:cd_off] + v[i:], "corrupt",
             why="the whole central directory is missing, the end record kept")
    c.refuse("cd_offset_past_eof", patch_eocd(v, cd_off=len(v) + 4096), "past",
             why="central directory offset past the end of the file")
    c.refuse("cd_offset_huge", patch_eocd(v, cd_off=0xfffffff0), "past",
             why="central directory offset 0xfffffff0")
    c.refuse("cd_size_past_start", patch_eocd(v, cd_size=0x7fffffff), "past",
             why="central directory size larger than the file")
    c.refuse("cd_size_bigger", patch_eocd(v, cd_size=cd_size + 100), "past",
             why="central directory size 100 bytes too large")
    c.refuse("count_more", patch_eocd(v, n_disk=4, n_total=4), "declares",
             why="end record declares 4 entries, the directory holds 3")
    c.refuse("count_fewer", patch_eocd(v, n_disk=2, n_total=2), "declares",
             why="end record declares 2 entries, the directory holds 3")
    c.refuse("count_huge", patch_eocd(v, n_disk=0xffff, n_total=0xffff), "corrupt",
             why="65535 entries declared for a 3-entry directory")
    c.refuse("count_zero", patch_eocd(v, n_disk=0, n_total=0), "declares",
             why="end record declares 0 entries, the directory holds 3")

    def long_comment(cd):
        # the last record's comment length runs past the directory
        j = cd.rindex(b"PK\x01\x02")
        return cd[:j + 32] + struct.pack("<H", 0xffff) + cd[j + 34:]
    c.refuse("cd_entry_overrun", build(fine_entries(), cd_edit=long_comment), "corrupt",
             why="the last central record's comment length runs past the directory")

    def bad_sig(cd):
        j = cd.index(b"PK\x01\x02", 4)
        return cd[:j] + b"PK\x01\x03" + cd[j + 4:]
    c.refuse("cd_bad_signature", build(fine_entries(), cd_edit=bad_sig), "declares",
             why="the second central record's signature is broken")

    # ZIP64: a locator in front of the end record pointing at garbage.
    def loc(off):
        return struct.pack("<IIQI", 0x07064b50, 0, off, 1)
    c.refuse("zip64_locator_garbage", build(fine_entries(), between=loc(0)), "ZIP64",
             why="ZIP64 locator pointing at a local header")
    c.refuse("zip64_locator_past_eof", build(fine_entries(), between=loc(1 << 62)), "ZIP64",
             why="ZIP64 locator pointing past the end of the file")
    c.refuse("zip64_locator_wrap", build(fine_entries(), between=loc((1 << 64) - 16)),
             "ZIP64", why="ZIP64 locator offset that wraps around 2^64")

    def z64_record(count, size, off):
        return struct.pack("<IQHHIIQQQQ", 0x06064b50, 44, 45, 45, 0, 0, count, count,
                           size, off)
    ents = fine_entries()
    base = build(ents)
    bi = eocd_pos(base)
    bsize, boff = struct.unpack_from("<II", base, bi + 12)
    rec = z64_record(500000, bsize, boff)
    c.refuse("zip64_count_absurd",
             base[:bi] + rec + loc(bi) + base[bi:], "corrupt",
             why="a well-placed ZIP64 end record declaring 500000 entries for 3 records")
    rec = z64_record(1 << 40, bsize, boff)
    c.refuse("zip64_count_2e40",
             base[:bi] + rec + loc(bi) + base[bi:], "entries",
             why="a well-placed ZIP64 end record declaring 2^40 entries")
    rec = z64_record(3, bsize, 1 << 50)
    c.refuse("zip64_offset_absurd", base[:bi] + rec + loc(bi) + base[bi:], "past",
             why="a ZIP64 end record with a central directory offset of 2^50")
    c.refuse("multidisk_disk", patch_eocd(v, disk=1), "multi-disk",
             why="end record: this is disk 1")
    c.refuse("multidisk_cd_disk", patch_eocd(v, cd_disk=2), "multi-disk",
             why="end record: the central directory starts on disk 2")
    c.refuse("multidisk_counts", patch_eocd(v, n_disk=1), "multi-disk",
             why="end record: entries on this disk differ from the total")

    # Multi-disk markers that only the ZIP64 end record or its locator carry
    # (the classic end record says one disk).
    def z64(disk=0, cd_disk=0, n_disk=3, n_total=3, loc_disk=0, loc_total=1, eocd=None):
        rec = struct.pack("<IQHHIIQQQQ", 0x06064b50, 44, 45, 45, disk, cd_disk, n_disk,
                          n_total, bsize, boff)
        lc = struct.pack("<IIQI", 0x07064b50, loc_disk, bi, loc_total)
        tail = base[bi:] if eocd is None else struct.pack(EOCD_FMT, 0x06054b50, *eocd)
        return base[:bi] + rec + lc + tail
    for name, kw, why in [
            ("multidisk_zip64_disk", dict(disk=1), "ZIP64 end record: this is disk 1"),
            ("multidisk_zip64_cd_disk", dict(cd_disk=2),
             "ZIP64 end record: the central directory starts on disk 2"),
            ("multidisk_zip64_counts", dict(n_disk=2),
             "ZIP64 end record: 2 entries on this disk, 3 in all"),
            ("multidisk_locator_disk", dict(loc_disk=1),
             "ZIP64 locator: the ZIP64 end record is on disk 1"),
            ("multidisk_locator_total", dict(loc_total=2), "ZIP64 locator: 2 disks in all")]:
        c.refuse(name, z64(**kw), "multi-disk", why=why + " (the classic end record says one)")
    c.mount("zip64_saturated_end", z64(eocd=(0xffff, 0xffff, 0xffff, 0xffff, 0xffffffff,
                                             0xffffffff, 0)),
            ok=fine_ok(), tools=True,
            why="a ZIP64 archive whose classic end record has every field at its "
                "all-ones placeholder, disk numbers included: the ZIP64 end record "
                "says one disk, so it mounts (as unzip, zipfile and bsdtar list it)")

    many = [E("many/%03d.txt" % k, b"x%d\n" % k) for k in range(40)]
    c.refuse("max_entries", build(many), "max_entries", opts="max_entries=10",
             why="40 entries with -o max_entries=10")
    c.refuse("max_entries_lying_count", patch_eocd(build(many), n_disk=5, n_total=5),
             "max_entries", opts="max_entries=10",
             why="end record says 5 entries, the directory holds 40, max_entries=10")
    c.refuse("max_name", build([E("n/" + "a" * 120 + "/" + "b" * 178, b"x")]),
             "max_name", opts="max_name=100",
             why="a 300-byte name with -o max_name=100")
    # Names the kernel can never look up are skipped, as unzip skips a
    # component over 255 bytes; max_name (default 65535) is only the guard
    # against absurd names.
    long_path = b"n/" + b"a/" * 2100 + b"x"
    long_comp = b"n/" + b"e" * 300 + b"/f.txt"
    c.mount("max_name_default",
            build(fine_entries() + [E(long_path, b"x"), E(long_comp, b"y")]),
            ok=fine_ok(), absent=[absentf(long_path), absentf(long_comp)],
            why="a 4203-byte name and a 300-byte component with the default "
                "max_name=65535: both skipped with a warning each, the rest mounted")
    short = b"upath-short.txt"
    c.refuse("max_name_unicode_path",
             build([E(short, b"x", cd_extra=upath_extra(short, b"u/" + (b"c" * 98 + b"/") * 2
                                                         + b"c" * 100))]),
             "max_name", opts="max_name=100",
             why="a 15-byte name whose Info-ZIP Unicode path extra field (the name "
                 "layerfs uses) is 300 bytes, with -o max_name=100")
    warn = [E("w/encrypted.txt", b"x", cd={"flags": 1}), E("w/method.txt", b"x", cd={"method": 12}),
            E("w/" + "e" * 300, b"x")]
    c.refuse("refused_after_warnings",
             patch_eocd(build(fine_entries() + warn), n_disk=5, n_total=5), "declares",
             why="entries that would be logged (encrypted, bzip2, a 300-byte component) "
                 "in a zip then refused: still exactly one line")
    c.refuse("max_total_after_warnings",
             build(warn + [E("t/%03d.txt" % k, b"") for k in range(300)]),
             "max_total_entries", opts="max_total_entries=100",
             why="entries that would be logged, then too many entries: one line")
    big = [E("t/%03d.txt" % k, b"") for k in range(300)]
    c.refuse("max_total_entries", build(big), "max_total_entries",
             opts="max_total_entries=100",
             why="a 300-entry layer on top of good.zip with -o max_total_entries=100")


def end_records(c):
    """Where the end record is: the last signature in the file's last
    64 KiB + 22 bytes, whatever its comment length says, as unzip, Python's
    zipfile and bsdtar all take it (tools=True: check.py compares the
    mount with what each of them extracts)."""
    v = valid_zip()
    c.mount("eocd_comment_past_eof", patch_eocd(v, clen=500), ok=fine_ok(), tools=True,
            why="the end record's comment length runs past the end of the file: "
                "the comment is not used, and unzip, zipfile and bsdtar all "
                "list the zip")

    # Local records of the fine entries and of two more; directory A holds
    # the fine entries and in-a.txt, directory B (inside A's end record's
    # comment, with an end record of its own) the fine entries and in-b.txt.
    ina, inb = text(56, 3000), text(57, 4000)
    ents = fine_entries() + [E("forged/in-a.txt", ina), E("forged/in-b.txt", inb)]
    full = build(ents)
    i = eocd_pos(full)
    cd_size, cd_off = struct.unpack_from("<II", full, i + 12)
    recs, p = [], cd_off
    while p < cd_off + cd_size:
        nlen, xlen, clen = struct.unpack_from("<HHH", full, p + 28)
        recs.append(full[p:p + 46 + nlen + xlen + clen])
        p += 46 + nlen + xlen + clen
    locs = full[:cd_off]
    cd_a = b"".join(recs[:3] + [recs[3]])
    cd_b = b"".join(recs[:3] + [recs[4]])

    def eocd(n, size, off, clen):
        return struct.pack(EOCD_FMT, 0x06054b50, 0, 0, n, n, size, off, clen)

    def forged(comment_tail, forged_clen):
        b_off = len(locs) + len(cd_a) + 22        # B starts the comment
        comment = cd_b + eocd(4, len(cd_b), b_off, forged_clen) + comment_tail
        return locs + cd_a + eocd(4, len(cd_a), len(locs), len(comment)) + comment
    tree_b = dict(ok=fine_ok() + [okf("forged/in-b.txt", inb)],
                  absent=[absentf("forged/in-a.txt", log=None)])
    c.mount("eocd_forged_in_comment", forged(b"", 0x1000), tools=True, **tree_b,
            why="a second central directory and end record inside the real end "
                "record's comment, the forged record's comment length running past "
                "the end of the file: unzip, zipfile and bsdtar all take the last "
                "end record and list the second directory, so layerfs must too")
    c.mount("eocd_forged_fits", forged(b"", 0), tools=True, **tree_b,
            why="the same with the forged record's comment length 0, so that it "
                "ends the file exactly (zipfile's fast path): the second directory")
    c.mount("eocd_forged_short", forged(b"trailing bytes", 0), tools=True, **tree_b,
            why="the same with bytes after the forged record that its comment "
                "length does not cover: still the second directory")
    junk = struct.pack(EOCD_FMT, 0x06054b50, 0, 0, 4, 4, 99999, 0x7ffffff0, 0x1000)
    c.refuse("eocd_forged_garbage",
             locs + cd_a + eocd(4, len(cd_a), len(locs), len(junk) + 2) + b"xx" + junk,
             "past",
             why="an end record inside the comment that points at nothing: it is the "
                 "last one, so the zip is refused (unzip and zipfile fail on it "
                 "too; bsdtar gives up on the directory and reads the local headers)")


def special_layers(c):
    sp = os.path.join(c.out, "special")
    os.makedirs(os.path.join(sp, "dir.zip"), exist_ok=True)
    fifo = os.path.join(sp, "fifo.zip")
    if not os.path.exists(fifo):
        os.mkfifo(fifo)
    lists = os.path.join(c.out, "lists")

    def lst(name, lines, raw=None):
        with open(os.path.join(lists, name), "wb") as f:
            f.write(raw if raw is not None else "".join(l + "\n" for l in lines).encode())
        return os.path.join("lists", name)
    good = "../zips/good.zip"
    c.refuse_list("layer_is_directory", lst("layer_dir.list", [good, "../special/dir.zip"]),
                  "directory", msg_path="special/dir.zip",
                  why="a layer path that is a directory")
    c.refuse_list("layer_missing", lst("layer_missing.list", [good, "../zips/nonexistent.zip"]),
                  "No such file", msg_path="zips/nonexistent.zip",
                  why="a layer that does not exist")
    c.refuse_list("layer_is_fifo", lst("layer_fifo.list", [good, "../special/fifo.zip"]),
                  "regular file", msg_path="special/fifo.zip",
                  why="a layer path that is a FIFO nobody writes to (must not hang)")
    c.refuse_list("layer_is_dev_zero", lst("layer_devzero.list", [good, "/dev/zero"]),
                  "regular file", msg_path="/dev/zero",
                  why="/dev/zero as a layer")
    # list problems
    c.refuse_list("list_missing", "lists/does-not-exist.list", "No such file",
                  why="the list does not exist")
    os.makedirs(os.path.join(lists, "dir.list"), exist_ok=True)
    c.refuse_list("list_is_directory", "lists/dir.list", "directory",
                  why="the list is a directory")
    lf = os.path.join(lists, "fifo.list")
    if not os.path.exists(lf):
        os.mkfifo(lf)
    c.refuse_list("list_is_fifo", "lists/fifo.list", "regular file",
                  why="the list is a FIFO nobody writes to (must not hang)")
    c.refuse_list("list_empty", lst("empty.list", [], raw=b""), "no layers",
                  why="an empty list")
    c.refuse_list("list_only_comments",
                  lst("comments.list", ["# nothing here", "", "   ", "\t# indented"]),
                  "no layers", why="only comments and blank lines")
    c.refuse_list("list_long_line", lst("long.list", [good + " name=" + "x" * 9000]),
                  "longer than", why="a 9000-byte line")
    c.refuse_list("list_twice", lst("twice.list", [good, "../zips/fine.zip", good]),
                  "twice", why="the same layer twice")
    c.refuse_list("list_twice_name",
                  lst("twice_name.list", [good + " name=x version=1",
                                          "../zips/fine.zip name=x version=1"]),
                  "twice", why="two layers with the same name and version")
    c.refuse_list("list_six_layers",
                  lst("six.list", [good] + ["../zips/fine%d.zip" % k for k in range(5)]),
                  "more than 5 layers", why="6 layers, the default limit is 5")
    c.refuse_list("list_unknown_key", lst("key.list", [good + " colour=red"]),
                  "unknown key", why="an unknown key=value")
    c.refuse_list("list_nul", lst("nul.list", [], raw=good.encode() + b"\n\x00\n"),
                  "NUL", why="a NUL byte in the list")
    c.refuse_list("list_bad_quote", lst("quote.list", ['"' + good]), "quoted",
                  why="an unterminated quoted path")
    c.refuse_list("list_version_no_name", lst("version.list", [good + " version=3"]),
                  "needs name", why="version= without name=")
    # fine layers used by the lists above, and a CRLF list that must mount
    c.write("fine.zip", build(fine_entries()))
    for k in range(5):
        c.write("fine%d.zip" % k, build([E("f%d.txt" % k, b"%d\n" % k)]))
    crlf = lst("crlf.list", [], raw=("# a list written on Windows\r\n" + good +
                                     " name=good version=1\r\n\r\n"
                                     '"../zips/fine.zip" name=fine\r\n').encode())
    c.mount("list_crlf", None, list_rel=crlf, ok=fine_ok(), good=True,
            why="CRLF line endings, a comment and a quoted path: accepted")


def sfx(c):
    v = build(fine_entries())
    junk = rnd(30, 4 * KIB)
    c.mount("sfx_junk", junk + v, ok=fine_ok(), tools=True,
            why="4 KiB of random bytes in front of a zip (offsets not adjusted)")
    c.mount("sfx_adjusted", build(fine_entries(), prefix=junk, adjust_prefix=True),
            ok=fine_ok(), tools=True, why="4 KiB stub in front, offsets adjusted (zip -A)")
    c.mount("sfx_junk_with_pk", (b"PK\x03\x04" + b"PK\x01\x02" * 200 + junk) + v,
            ok=fine_ok(), tools=True, why="junk in front that holds local and central signatures")


def data_failures(c):
    # corrupt deflate data
    small = text(40, 6000)
    sc = bytearray(deflate(small))
    sc[len(sc) // 3: len(sc) // 3 + 40] = b"\xff" * 40
    large = text(41, 900 * KIB)
    lc = bytearray(deflate(large))
    cut = int(len(lc) * 0.8)
    lc[cut:cut + 64] = b"\xff" * 64
    c.mount("corrupt_deflate", build(fine_entries() + [
        E("bad/corrupt-small.txt", small, comp=bytes(sc)),
        E("bad/corrupt-large.txt", large, comp=bytes(lc))]),
        ok=fine_ok(),
        eio=[eiof("bad/corrupt-small.txt", len(small)),
             eiof("bad/corrupt-large.txt", len(large), head=large[:64 * KIB])],
        why="deflate data overwritten with 0xff: small (whole) and large (streamed, "
            "the head before the damage still reads)")

    # CRC mismatches: the central directory's CRC edited
    s1, s2 = text(42, 4000), text(43, 3000)
    l1 = text(44, 3 * MIB)
    l2 = rnd(45, 300 * KIB)
    c.mount("crc_mismatch", build(fine_entries() + [
        E("bad/crc-small-deflated.txt", s1, cd={"crc": zlib.crc32(s1) ^ 1}),
        E("bad/crc-small-stored.txt", s2, method=0, cd={"crc": zlib.crc32(s2) ^ 0x80000000}),
        E("bad/crc-large-deflated.txt", l1, cd={"crc": zlib.crc32(l1) ^ 1}),
        E("crc-large-stored.bin", l2, method=0, cd={"crc": zlib.crc32(l2) ^ 1})]),
        ok=fine_ok(),
        eio=[eiof("bad/crc-small-deflated.txt", len(s1)),
             eiof("bad/crc-small-stored.txt", len(s2)),
             eiof("bad/crc-large-deflated.txt", len(l1), head=l1[:64 * KIB]),
             eiof("crc-large-stored.bin", len(l2), head=l2[:64 * KIB])],
        why="central directory CRC edited: small members fail on the first read, "
            "large ones when the reads have covered them, and from then on")

    # declared size larger than the data / smaller: both headers edited
    def sized(name, data, delta):
        n = len(data) + delta
        return E(name, data, cd={"usize": n}, local={"usize": n})
    a, b = text(46, 4000), text(47, 600 * KIB)
    c.mount("size_larger", build(fine_entries() + [
        sized("bad/larger-small.txt", a, 1000), sized("bad/larger-large.txt", b, 300000),
        sized("bad/larger-by-one.txt", a, 1)]),
        ok=fine_ok(),
        eio=[eiof("bad/larger-small.txt", len(a) + 1000),
             eiof("bad/larger-large.txt", len(b) + 300000, head=b[:64 * KIB]),
             eiof("bad/larger-by-one.txt", len(a) + 1)],
        why="declared uncompressed size larger than the stream: it ends early")
    c.mount("size_smaller", build(fine_entries() + [
        sized("bad/smaller-small.txt", a, -1000), sized("bad/smaller-large.txt", b, -200000),
        sized("bad/smaller-by-one.txt", a, -1), sized("bad/smaller-zero.txt", a, -len(a))]),
        ok=fine_ok(),
        eio=[eiof("bad/smaller-small.txt", len(a) - 1000),
             eiof("bad/smaller-large.txt", len(b) - 200000, head=b[:64 * KIB]),
             eiof("bad/smaller-by-one.txt", len(a) - 1)],
        why="declared uncompressed size smaller than the stream: it runs long "
            "(a member declared empty reads as empty: nothing is inflated)")
    c.cases[-1]["ok"].append(okf("bad/smaller-zero.txt", b""))

    # compressed sizes
    d = text(48, 5000)
    comp = deflate(d)
    s3 = text(49, 2000)
    c.mount("comp_size", build(fine_entries() + [
        E("bad/csize-huge.txt", d, cd={"csize": 0x7ffffff0}),
        E("bad/csize-short.txt", d, cd={"csize": len(comp) // 2}, local={"csize": len(comp) // 2}),
        E("bad/csize-zero.txt", d, cd={"csize": 0}, local={"csize": 0}),
        E("bad/stored-size-mismatch.txt", s3, method=0, cd={"usize": len(s3) + 10}),
        E("bad/lho-past-cd.txt", d, cd={"lho": 0x7fff0000}),
        E("bad/zip64-extra-short.txt", d, cd={"usize": 0xffffffff},
          cd_extra=struct.pack("<HHI", 1, 4, len(d)))]),
        ok=fine_ok(),
        eio=[eiof("bad/csize-huge.txt", len(d)), eiof("bad/csize-short.txt", len(d)),
             eiof("bad/csize-zero.txt", len(d)),
             eiof("bad/stored-size-mismatch.txt", len(s3) + 10),
             eiof("bad/lho-past-cd.txt", len(d)),
             eiof("bad/zip64-extra-short.txt", 0xffffffff)],
        why="compressed size running past the end of the file, too short, zero; "
            "stored sizes that differ; a local header offset past everything; a "
            "saturated size whose ZIP64 extra field is too short")

    # encryption and unsupported methods
    e1 = text(50, 3000)
    ents = fine_entries() + [
        E("bad/encrypted-cd.txt", e1, cd={"flags": 1}, local={"flags": 1}),
        E("bad/encrypted-local-only.txt", e1, local={"flags": 1}),
        E("encdir/", kind="dir", method=0, cd={"flags": 1}),
        E("encdir/plain.txt", FINE_SMALL)]
    eio = [eiof("bad/encrypted-cd.txt", len(e1)),
           eiof("bad/encrypted-local-only.txt", len(e1))]
    for m in (1, 6, 9, 12, 14, 93, 95, 98, 99, 0xffff):
        nm = "bad/method-%d.bin" % m
        ents.append(E(nm, e1, cd={"method": m}, local={"method": m}))
        # 11 problems found at mount: the 11th is only counted
        eio.append(eiof(nm, len(e1), log=None if m == 0xffff else True))
    c.mount("encrypted_and_methods", build(ents), ok=fine_ok() + [okf("encdir/plain.txt", FINE_SMALL)],
            eio=eio, dirs=["encdir"],
            log_cap=dict(entry_lines=11, more=b": 1 more entry with".hex()),
            why="encrypted flag (central+local, local only), methods shrink/implode/"
                "deflate64/bzip2/lzma/zstd/xz/ppmd/AES/65535; a directory record "
                "flagged encrypted is still a directory; 10 of the 11 problems "
                "found at mount are logged, one line counts the 11th (the "
                "local-only encryption is found, and logged, at the first read)")

    # 20,000 entries in an unsupported method: 10 log lines name entries,
    # one sums up the other 19,990 (at every mount, 20,001 lines before)
    ents = fine_entries() + [E("cap/m-%05d.bin" % k, b"x", method=12, cd={"method": 12},
                               local={"method": 12}) for k in range(20000)]
    c.mount("warn_cap", build(ents), ok=fine_ok(), strict=False,
            eio=[eiof("cap/m-%05d.bin" % k, 1) for k in range(10)] +
                [eiof("cap/m-%05d.bin" % k, 1, log=None) for k in (10, 5000, 19999)],
            log_cap=dict(entry_lines=10, more=b": 19990 more entries with".hex()),
            why="20,000 entries in an unsupported method: all listed, reads fail with "
                "EIO; the first 10 are logged and one line counts the rest")

    # local header problems
    l3 = text(51, 2500)

    ents = fine_entries() + [
        E("bad/local-bad-sig.txt", l3, local={"sig": 0x04034b51}),
        E("bad/local-method-differs.txt", l3, local={"method": 0}),
        E("bad/local-method-differs2.txt", l3, method=0, local={"method": 8}),
        E("bad/local-extra-past-eof.txt", l3, local={"xlen": 0xffff}),
        E("bad/local-name-len-huge.txt", l3, local={"nlen": 0xffff}),
    ]
    # one more entry whose local header offset points into another member's data
    e_mid = E("bad/lho-mid-data.txt", l3, cd={"lho": 100})
    raw = build(ents + [e_mid])
    c.mount("local_header", raw, ok=fine_ok(),
            eio=[eiof(n, len(l3)) for n in (
                "bad/local-bad-sig.txt", "bad/local-method-differs.txt",
                "bad/local-method-differs2.txt", "bad/local-extra-past-eof.txt",
                "bad/local-name-len-huge.txt", "bad/lho-mid-data.txt")],
            why="local header signature wrong, local method different from the "
                "central one (both ways), local extra/name length running past the "
                "end of the file, a local header offset into another member's data")

    # A local header whose name and extra lengths (10000 and 65535, neither
    # written) move the data of a 70 KiB stored member 3.8 KiB into the
    # central directory; the directory's comments make the file long
    # enough for the whole member.  With 64 KiB blocks the member is more
    # than one block, so nothing but a range check stops a partial read
    # from serving directory bytes.
    d = rnd(54, 70 * KIB)
    name = b"bad/data-in-cd.bin"
    ents = [E("fine/small.txt", FINE_SMALL, comment=b"C" * 65000),
            E("fine/stored.txt", FINE_STORED, method=0, comment=b"D" * 12000),
            E("fine/large.txt", FINE_LARGE),
            E(name, d, method=0, local={"nlen": 10000, "xlen": 0xffff})]
    raw = build(ents)
    cd_off = struct.unpack_from("<I", raw, eocd_pos(raw) + 16)[0]
    lho = cd_off - len(d) - len(name) - 30
    assert lho + 30 + 10000 + 0xffff > cd_off          # data starts in the directory
    assert lho + 30 + 10000 + 0xffff + len(d) <= len(raw)  # and fits in the file
    far = eiof(name, len(d), head=d[:4 * KIB], head_may_fail=True)
    far["far_read"] = True
    c.mount("data_in_cd", raw, opts="block_size=64K", ok=fine_ok(), eio=[far],
            why="a local header whose name and extra lengths put a 70 KiB stored "
                "member's data inside the central directory (still inside the "
                "file): every read fails with EIO, the first 4 KiB and the last "
                "as well as a whole read (64 KiB blocks: more than one block, so "
                "no CRC check stops a partial read)")

    # the same local record shared by entries declaring different sizes
    real = text(52, 300 * KIB)
    ents = [E("ov/real.txt", real),
            E("ov/declared-long.txt", real, share="ov/real.txt", cd={"usize": 2 * MIB}),
            E("ov/declared-short.txt", real, share="ov/real.txt", cd={"usize": 1000}),
            E("ov/declared-one-block.txt", real, share="ov/real.txt",
              cd={"usize": 200 * KIB}),
            E("ov/declared-bad-crc.txt", real, share="ov/real.txt",
              cd={"crc": zlib.crc32(real) ^ 1})]
    c.mount("overlap_mismatch", build(ents), ok=[okf("ov/real.txt", real)],
            eio=[eiof("ov/declared-long.txt", 2 * MIB, head=real[:64 * KIB], head_may_fail=True),
                 eiof("ov/declared-short.txt", 1000),
                 eiof("ov/declared-one-block.txt", 200 * KIB, head=real[:64 * KIB],
                      head_may_fail=True),
                 eiof("ov/declared-bad-crc.txt", len(real), head=real[:64 * KIB],
                      head_may_fail=True)],
            why="four central records share one local record and stream but declare "
                "different sizes or CRCs; the correct one is read first, then the "
                "others must still fail with EIO (and never serve bytes past a block)")

    # declared sizes that no off_t can hold
    z = bytes(4096)
    ents = fine_entries() + [
        E("bad/size-2e64-1.bin", z, cd={"usize": 0xffffffff}, cd_extra=zip64_extra(2 ** 64 - 1)),
        E("bad/size-2e63.bin", z, cd={"usize": 0xffffffff}, cd_extra=zip64_extra(2 ** 63)),
        E("bad/stored-2e64-1.bin", z, method=0, cd={"usize": 0xffffffff, "csize": 0xffffffff},
          cd_extra=zip64_extra(2 ** 64 - 1, 2 ** 64 - 1))]
    c.mount("size_over_2e63", build(ents), ok=fine_ok(),
            bad=[absentf("bad/size-2e64-1.bin"), absentf("bad/size-2e63.bin"),
                 absentf("bad/stored-2e64-1.bin")],
            why="ZIP64 sizes of 2^63 and 2^64-1 (no off_t holds them): the entry must "
                "be skipped, or listed with reads failing with EIO; either way with "
                "one log line, and ls -laR must work")

    # many readers hit the same bad members at once: still one log line each
    ents = fine_entries()
    eio = []
    for k in range(6):
        d = text(200 + k, 3000 + k)
        ents.append(E("bad/c-crc-%d.txt" % k, d, cd={"crc": zlib.crc32(d) ^ 1}))
        eio.append(eiof("bad/c-crc-%d.txt" % k, len(d)))
    for k in range(3):
        d = text(210 + k, 1500 * KIB + k)
        ents.append(E("bad/c-crc-large-%d.txt" % k, d, cd={"crc": zlib.crc32(d) ^ 1}))
        eio.append(eiof("bad/c-crc-large-%d.txt" % k, len(d)))
    for k in range(3):
        d = text(220 + k, 2000 + k)
        ents.append(E("bad/c-sig-%d.txt" % k, d, local={"sig": 0}))
        eio.append(eiof("bad/c-sig-%d.txt" % k, len(d)))
    for k in range(2):
        d = text(230 + k, 700 * KIB)
        cd_ = bytearray(deflate(d))
        cd_[len(cd_) // 2:len(cd_) // 2 + 32] = b"\xee" * 32
        ents.append(E("bad/c-corrupt-%d.txt" % k, d, comp=bytes(cd_)))
        eio.append(eiof("bad/c-corrupt-%d.txt" % k, len(d)))
    c.mount("eio_concurrent", build(ents), ok=fine_ok(), eio=eio, concurrent=6,
            why="6 threads read each of 14 bad members at the same time, first access "
                "included: every whole read fails with EIO, one log line per member")

    # log injection: a failing entry whose name holds a newline and escapes
    inj = b"bad/inj\nlayerfs: info: FORGED by a hostile zip\x1b[2J.txt"
    d2 = text(53, 1000)
    c.mount("log_injection", build(fine_entries() + [E(inj, d2, cd={"crc": 1})]),
            ok=fine_ok(), eio=[eiof(inj, len(d2), log=b"bad/inj")],
            forbid_log_prefix=[b"layerfs: info: FORGED".hex()],
            why="a corrupt entry whose name holds a newline and a terminal escape: "
                "still one log line, no forged line")


def bombs(c):
    # many central records sharing one stream
    pat = rnd(60, 16 * KIB) * 256                  # 4 MiB, deflates to ~16 KiB
    n = 200
    ents = [E("bomb/000.bin", pat)] + [
        E("bomb/%03d.bin" % k, pat, share="bomb/000.bin") for k in range(1, n)]
    c.mount("bomb_overlap", build(ents), opts="cache_size=64M", strict=False,
            bomb=dict(cache=64 * MIB, hwm_slack=64 * MIB,
                      read=[dict(path="bomb/%03d.bin" % k, size=len(pat),
                                 sha256=sha(pat)) for k in range(n)]),
            why="200 central records sharing one 4 MiB stream (800 MiB to read): "
                "nothing inflated at mount, memory bounded, correct bytes")
    # 2 GiB of zeros in one member, written without holding it
    size = 2 * GIB
    path = os.path.join(c.out, "zips", "bomb_ratio.zip")
    write_zero_bomb(path, b"zeros.bin", size)
    c.cases.append(dict(name="bomb_ratio", outcome="mount", zip="zips/bomb_ratio.zip",
                        list=None, opts="cache_size=64M", ok=[], eio=[], eio_link=[],
                        absent=[], dirs=[], links=[], eloop=[], dangling=[], modes=[], bad=[],
                        forbid_log_prefix=[], walk="ls", strict=False, good=True,
                        bomb=dict(cache=64 * MIB, hwm_slack=64 * MIB,
                                  read=[dict(path="zeros.bin", size=size, zeros=True)]),
                        why="2 GiB of zeros deflated to ~2 MiB (ratio ~1000:1)"))
    # a member declaring 1 TiB (ZIP64 extra) that holds 1 MiB of zeros
    z = bytes(MIB)
    e = E("claims-1TiB.bin", z, cd={"usize": 0xffffffff},
          cd_extra=zip64_extra(1 << 40))
    far = eiof("claims-1TiB.bin", 1 << 40, head=z[:64 * KIB], head_may_fail=True)
    far["far_read"] = True
    c.mount("bomb_declared_1tib", build(fine_entries() + [e]), opts="cache_size=64M",
            ok=fine_ok(), eio=[far],
            bomb=dict(cache=64 * MIB, hwm_slack=64 * MIB, read=[]),
            why="a member declaring 1 TiB (ZIP64) whose stream holds 1 MiB: nothing "
                "sized by the declaration is allocated; a read at the far end fails")
    e = E("claims-64PiB.bin", z, cd={"usize": 0xffffffff}, cd_extra=zip64_extra(1 << 56))
    far = eiof("claims-64PiB.bin", 1 << 56)
    far["far_read"] = True
    c.mount("bomb_declared_64pib", build(fine_entries() + [e]), opts="cache_size=64M",
            ok=fine_ok(), eio=[far],
            why="a member declaring 2^56 bytes whose stream holds 1 MiB: a read at "
                "the far end fails with EIO within 10 s (no work in proportion to "
                "the declared size)")


def write_zero_bomb(path, name, size):
    chunk = MIB
    zeros = bytes(chunk)
    n = size // chunk
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    second = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    third = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    # CRC of n chunks of zeros: the CRC engine, one chunk at a time
    for _ in range(n):
        crc = zlib.crc32(zeros, crc)
    with open(path, "wb") as f:
        hdr_len = 30 + len(name)
        f.write(b"\0" * hdr_len)
        comp = 0
        if second == third:
            # after a full flush with a window of zeros every chunk compresses
            # to the same bytes: no need to run zlib 2048 times
            parts = [first] + [second] * (n - 2)
            for p in parts:
                f.write(p)
                comp += len(p)
            last = c.compress(zeros) + c.flush()
        else:
            c = zlib.compressobj(9, zlib.DEFLATED, -15)
            for k in range(n - 1):
                p = c.compress(zeros)
                f.write(p)
                comp += len(p)
            last = c.compress(zeros) + c.flush()
        f.write(last)
        comp += len(last)
        assert comp < 0xffffffff and size <= 0xffffffff
        cd_off = hdr_len + comp
        cd = struct.pack(CD_FMT, 0x02014b50, (3 << 8) | 20, 20, 0, 8, DOS_TIME, DOS_DATE,
                         crc, comp, size & 0xffffffff, len(name), 0, 0, 0, 0,
                         (S_IFREG | 0o644) << 16, 0) + name
        f.write(cd)
        f.write(struct.pack(EOCD_FMT, 0x06054b50, 0, 0, 1, 1, len(cd), cd_off, 0))
        f.seek(0)
        f.write(struct.pack(LOCAL_FMT, 0x04034b50, 20, 0, 8, DOS_TIME, DOS_DATE, crc,
                            comp, size & 0xffffffff, len(name), 0) + name)


def names(c):
    d = {k: text(70 + i, 200 + i) for i, k in enumerate([
        "evil", "tmp", "abs", "ds", "bs", "dot", "mid", "ctl", "nl", "utf", "esc",
        "c255", "dup1", "dup2", "dup3", "dup4", "up", "upbad", "trail"])}
    c255 = b"c" * 255
    d256 = b"d" * 256
    nul = b"lfsx-nul\x00byte.txt"
    ents = fine_entries() + [
        E("../../lfsx-evil.txt", d["evil"]),
        E("../../../../../../../../tmp/lfsx-tmp.txt", d["tmp"]),
        E("/etc/lfsx-abs.txt", d["abs"]),
        E("//lfsx-double//slash///lfsx-ds.txt", d["ds"]),
        E("lfsx-a\\b\\lfsx-bs.txt", d["bs"]),
        E("./lfsx-dot/./lfsx-dot.txt", d["dot"]),
        E("lfsx-x/../lfsx-mid.txt", d["mid"]),
        E(b"ctl\x01name.txt", d["ctl"]),
        E(b"nl\nname.txt", d["nl"]),
        E(b"bad\xff\xfeutf8.txt", d["utf"]),
        E(b"esc\x1b[31mred.txt", d["esc"]),
        E(b"long/" + c255, d["c255"]),
        E(b"long/" + d256, b"too long"),
        E(nul, b"nul"),
        E("../", kind="dir", method=0), E("/", kind="dir", method=0),
        E(".", b"dot file"), E("..", b"dotdot file"), E("./", kind="dir", method=0),
        E("", b"empty name"),
        E("dup.txt", d["dup1"]), E("dup.txt", d["dup2"]),
        E("dup2.txt", d["dup3"]), E("./dup2.txt", d["dup4"]),
        E("upath-ascii.txt", d["up"], cd_extra=upath_extra(
            b"upath-ascii.txt", "../../lfsx-\u00fcpath.txt".encode())),
        E("upath-wrongcrc.txt", d["upbad"], cd_extra=upath_extra(
            b"upath-wrongcrc.txt", b"../../lfsx-upath-ignored.txt", good_crc=False)),
        E("lfsx-trail\\", kind="dir", method=0),
        E("lfsx-trail\\t.txt", d["trail"]),
    ]
    ok = fine_ok() + [
        okf("lfsx-evil.txt", d["evil"]), okf("tmp/lfsx-tmp.txt", d["tmp"]),
        okf("etc/lfsx-abs.txt", d["abs"]), okf("lfsx-double/slash/lfsx-ds.txt", d["ds"]),
        okf("lfsx-a/b/lfsx-bs.txt", d["bs"]), okf("lfsx-dot/lfsx-dot.txt", d["dot"]),
        okf("lfsx-x/lfsx-mid.txt", d["mid"]), okf(b"ctl\x01name.txt", d["ctl"]),
        okf(b"nl\nname.txt", d["nl"]), okf(b"bad\xff\xfeutf8.txt", d["utf"]),
        okf(b"esc\x1b[31mred.txt", d["esc"]), okf(b"long/" + c255, d["c255"]),
        okf("dup.txt", d["dup2"]), okf("dup2.txt", d["dup4"]),
        okf("lfsx-\u00fcpath.txt".encode(), d["up"]),
        okf("upath-wrongcrc.txt", d["upbad"]),
        okf("lfsx-trail/t.txt", d["trail"]),
    ]
    c.mount("names", build(ents), ok=ok,
            absent=[absentf(b"long/" + d256), absentf(b"lfsx-nul", log=nul + b"'"),
                    absentf(b"upath-ascii.txt", log=None),
                    absentf(b"lfsx-upath-ignored.txt", log=None)],
            dirs=["tmp", "etc", "lfsx-double/slash", "lfsx-a/b", "lfsx-trail"],
            why="'..' dropped, leading '/' stripped, backslashes are separators, "
                "empty and '.' components dropped, control bytes and invalid UTF-8 "
                "served as-is, a 256-byte component and a NUL byte skipped, names "
                "that normalise to nothing ignored, repeated names (last wins), "
                "Info-ZIP Unicode path (with '..') used only when its CRC matches")

    # long paths: exactly 4095 bytes served, 4096 skipped; '..' dropped before
    # the length counts; a deep tree
    comp = [b"p" * 254] * 16            # 16*254 + 15 = 4079
    p4095 = b"/".join(comp) + b"/" + b"q" * 15
    assert len(p4095) == 4095
    p4096 = b"/".join(comp) + b"/" + b"r" * 16
    assert len(p4096) == 4096
    p_dotdot = b"../" + b"/".join([b"s" * 254] * 16) + b"/" + b"t" * 13
    assert len(p_dotdot) == 4096 and len(p_dotdot) - 3 <= 4095
    deep = b"d/" * 1500 + b"deep.txt"
    c.mount("long_paths", build(fine_entries() + [
        E(p4095, b"4095"), E(p4096, b"4096"), E(p_dotdot, b"dotdot"), E(deep, b"deep")]),
        ok=fine_ok() + [okf(p4095, b"4095"), okf(p_dotdot[3:], b"dotdot"),
                        okf(deep, b"deep")],
        absent=[absentf(p4096)],
        walk="find",
        why="a 4095-byte path is served, a 4096-byte one skipped with a warning, a "
            "4096-byte name that is 4093 bytes without its '../' served, a tree 1500 "
            "directories deep (ls -laR cannot walk paths this long: find -ls does)")

    # file/directory conflicts and symlinks in the middle of paths
    a = {k: text(90 + i, 100 + i) for i, k in enumerate(
        ["fd", "dfc", "df", "fx", "lp", "l2"])}
    c.mount("conflicts", build(fine_entries() + [
        E("fd", b"file first"), E("fd/", kind="dir", method=0), E("fd/child.txt", a["fd"]),
        E("df/", kind="dir", method=0), E("df/child.txt", a["dfc"]), E("df", a["df"]),
        E("fx", b"file then implicit dir"), E("fx/deep/c.txt", a["fx"]),
        E("lnk", b"/etc", kind="link", method=0), E("lnk/lfsx-passwd", a["lp"]),
        E("lnk2/lfsx-x.txt", a["l2"]), E("lnk2", b"/tmp", kind="link", method=0),
    ]),
        ok=fine_ok() + [okf("fd/child.txt", a["fd"]), okf("df", a["df"]),
                        okf("fx/deep/c.txt", a["fx"]), okf("lnk/lfsx-passwd", a["lp"])],
        absent=[absentf("df/child.txt", log=None), absentf("lnk2/lfsx-x.txt", log=None)],
        dirs=["fd", "fx", "lnk"], links=[dict(path="lnk2", target=b"/tmp".hex())],
        why="a file then a directory at the same path (the directory wins), a "
            "directory then a file (the file wins, hiding what was below), a file "
            "replaced by an implicit directory, a symlink to /etc followed by an "
            "entry below it (a directory replaces the symlink: nothing is written "
            "through it), entries below a later symlink (hidden)")


def modes(c):
    m = {}
    ents = fine_entries()
    spec = [("suid", 0o104755, 0o755), ("sgid", 0o102755, 0o755),
            ("sticky-file", 0o101644, 0o644), ("all-bits", 0o107777, 0o777),
            ("chardev", 0o020644, 0o644), ("blockdev", 0o060600, 0o600),
            ("fifo", 0o010644, 0o644), ("socket", 0o140640, 0o640),
            ("type-15", 0o170644, 0o644), ("perm-000", 0o100000, 0o000),
            ("no-type-bits", 0o4755, 0o755)]
    ok = fine_ok()
    mo = []
    for i, (n, mode, perm) in enumerate(spec):
        data = b"%s\n" % n.encode()
        ents.append(E("m/" + n, data, eattr=mode << 16))
        ok.append(okf("m/" + n, data))
        mo.append(dict(path="m/" + n, perm=perm, type="reg"))
    ents += [E("sticky-dir/", kind="dir", method=0, mode=0o41777),
             E("setgid-dir/", kind="dir", method=0, mode=0o42755),
             E("link-as-dir/", kind="dir", method=0, eattr=(0o120777 << 16)),
             E("dos-readonly.txt", b"ro\n", eattr=0x01, vmade=20),
             E("dos-dir", kind="file", method=0, eattr=0x10, vmade=20)]
    ok.append(okf("dos-readonly.txt", b"ro\n"))
    # timestamps at and past the ends of every format
    times = [E("t/ut-min.txt", b"t", cd_extra=struct.pack("<HHBi", 0x5455, 5, 1, -2 ** 31)),
             E("t/ut-short.txt", b"t", cd_extra=struct.pack("<HHB", 0x5455, 1, 1)),
             E("t/ntfs-max.txt", b"t", cd_extra=struct.pack(
                 "<HHIHHQQQ", 0x000a, 32, 0, 1, 24, 2 ** 64 - 1, 0, 0)),
             E("t/ntfs-zero.txt", b"t", cd_extra=struct.pack(
                 "<HHIHHQQQ", 0x000a, 32, 0, 1, 24, 0, 0, 0)),
             E("t/dos-garbage.txt", b"t", cd={"time": 0xffff, "date": 0xffff}),
             E("t/dos-zero.txt", b"t", cd={"time": 0, "date": 0}),
             E("t/extra-overrun.txt", b"t", cd_extra=struct.pack("<HH", 0x5455, 200) + b"x")]
    ents += times
    ok += [okf(e.name, b"t") for e in times]
    mo += [dict(path="sticky-dir", perm=0o777, type="dir"),
           dict(path="setgid-dir", perm=0o755, type="dir"),
           dict(path="link-as-dir", perm=0o777, type="dir"),
           dict(path="dos-readonly.txt", perm=0o444, type="reg"),
           dict(path="dos-dir", perm=0o755, type="dir")]
    c.mount("modes", build(ents), ok=ok, modes=mo,
            dirs=["sticky-dir", "setgid-dir", "link-as-dir", "dos-dir"],
            why="setuid/setgid/sticky dropped; device, fifo, socket and unknown types "
                "served as regular files; DOS attributes; the mount is nosuid,nodev; "
                "timestamps out of every range, extra fields that overrun")


def symlinks(c):
    t4000 = b"/".join([b"x" * 199] * 20)
    t4000 = t4000 + b"y" * (4000 - len(t4000))
    assert len(t4000) == 4000
    t4095 = t4000 + b"z" * 95
    t4096 = t4095 + b"w"
    d1 = text(95, 800)
    ents = fine_entries() + [
        E("l/abs", b"/etc/passwd", kind="link", method=0),
        E("l/dangling", b"does/not/exist", kind="link", method=0),
        E("l/loop-a", b"loop-b", kind="link", method=0),
        E("l/loop-b", b"loop-a", kind="link", method=0),
        E("l/self", b"self", kind="link", method=0),
        E("l/up", b"../../../../../../../../etc/shadow", kind="link", method=0),
        E("l/long-4000", t4000, kind="link"),
        E("l/long-4095", t4095, kind="link"),
        E("l/long-4096", t4096, kind="link"),
        E("l/empty", b"", kind="link", method=0),
        E("l/deflated", b"../fine/small.txt" * 1, kind="link", method=8),
        E("l/nul-target", b"abc\x00def", kind="link", method=0),
        E("l/crc-bad", b"../fine/small.txt", kind="link", method=0, cd={"crc": 7}),
        E("l/corrupt-deflated", b"../fine/small.txt", kind="link", method=8,
          comp=b"\xff" * 12),
        E("l/in-mount", b"../fine/stored.txt", kind="link", method=0),
        E("l/dir-target", b"../fine", kind="link", method=0),
        E("lfsx-target.txt", d1),
    ]
    c.mount("symlinks", build(ents), ok=fine_ok() + [okf("lfsx-target.txt", d1)],
            links=[dict(path="l/abs", target=b"/etc/passwd".hex()),
                   dict(path="l/dangling", target=b"does/not/exist".hex()),
                   dict(path="l/loop-a", target=b"loop-b".hex()),
                   dict(path="l/loop-b", target=b"loop-a".hex()),
                   dict(path="l/self", target=b"self".hex()),
                   dict(path="l/up", target=b"../../../../../../../../etc/shadow".hex()),
                   dict(path="l/long-4000", target=t4000.hex()),
                   dict(path="l/long-4095", target=t4095.hex()),
                   dict(path="l/deflated", target=b"../fine/small.txt".hex()),
                   dict(path="l/in-mount", target=b"../fine/stored.txt".hex()),
                   dict(path="l/dir-target", target=b"../fine".hex())],
            eloop=["l/loop-a", "l/loop-b", "l/self"],
            dangling=["l/dangling"],
            through=[dict(path="l/in-mount", size=len(FINE_STORED), sha256=sha(FINE_STORED)),
                     dict(path="l/deflated", size=len(FINE_SMALL), sha256=sha(FINE_SMALL))],
            absent=[absentf("l/long-4096"), absentf("l/empty")],
            eio_link=[dict(path="l/nul-target", log=b"l/nul-target'".hex()),
                      dict(path="l/crc-bad", log=b"l/crc-bad'".hex()),
                      dict(path="l/corrupt-deflated", log=b"l/corrupt-deflated'".hex())],
            why="absolute, dangling, looping, self, escaping, 4000- and 4095-byte "
                "targets served (never followed by the daemon); 4096-byte and empty "
                "targets skipped; targets with a NUL byte or a bad CRC fail with EIO")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_corpus.py OUTDIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    c = Corpus(out)
    good = make_good(c)
    structural(c)
    special_layers(c)
    sfx(c)
    data_failures(c)
    names(c)
    modes(c)
    symlinks(c)
    bombs(c)
    names_seen = set()
    for case in c.cases:
        if case["outcome"] == "mount":
            for k in ("ok", "eio", "absent"):
                for f in case[k]:
                    for comp in os.fsencode(f["path"]).split(b"/"):
                        if b"lfsx" in comp:
                            names_seen.add(os.fsdecode(comp))
    # names a traversal would create outside the mount
    c.tokens = sorted(names_seen | {"lfsx"})
    with open(os.path.join(out, "expect.json"), "w") as f:
        json.dump(dict(good=good, cases=c.cases, tokens=c.tokens), f, indent=1)
    print("%d cases in %s" % (len(c.cases), out))


if __name__ == "__main__":
    main()
