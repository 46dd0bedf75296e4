#!/usr/bin/env python3
"""Check the user.layerfs.layer xattr of every path of a mounted stack.

    provenance.py MNT LABEL ZIP [LABEL ZIP ...]     (lowest layer first)

An independent model of the merge rules, built from the zips' central
directories (not from unzip):

  - names: leading '/' stripped, '\\' is a separator, empty, '.' and '..'
    components dropped; a name ending in a separator is a directory; an
    entry with a Unix S_IFLNK mode is a symlink; within one zip the last
    entry of a name wins;
  - every parent of an entry is a directory of that layer (implicit dirs);
  - a later layer's non-directory replaces whatever is at its path (a
    directory's whole subtree is hidden); a later layer's directory replaces
    a non-directory and merges into a directory;
  - a file's provenance is the label of the layer it comes from; a
    directory's is the comma+space-separated labels of the layers that
    contributed to it (not hidden), lowest first.  The root is a directory.

Checks: (1) the set of paths in the mount equals the model's, (2) the xattr
of every directory and regular file equals the model's.  Symlinks are
skipped: Linux refuses user.* xattrs on symlinks before the filesystem sees
the request.  Exit 1 on any mismatch (the first 30 are printed).
"""
import os
import stat
import sys
import zipfile

XATTR = "user.layerfs.layer"


def normalize(name):
    is_dir = name.endswith("/") or name.endswith("\\")
    parts = [p for p in name.replace("\\", "/").split("/")
             if p not in ("", ".", "..")]
    return "/".join(parts), is_dir


def layer_tree(zpath):
    """{path: 'd' | 'f' | 'l'} for one zip (implicit dirs included)."""
    entries = {}
    with zipfile.ZipFile(zpath) as z:
        for zi in z.infolist():
            raw = zi.orig_filename
            if zi.flag_bits & 0x800 == 0:
                # zipfile decoded as cp437; the bytes are what layerfs sees,
                # and our non-flagged names are UTF-8 (Info-ZIP on Linux).
                try:
                    raw = raw.encode("cp437").decode("utf-8")
                except (UnicodeEncodeError, UnicodeDecodeError):
                    pass
            path, is_dir = normalize(raw)
            if not path:
                continue
            mode = zi.external_attr >> 16
            if is_dir:
                kind = "d"
            elif zi.create_system == 3 and stat.S_ISLNK(mode):
                kind = "l"
            else:
                kind = "f"
            entries.pop(path, None)  # last one wins, keep CD order
            entries[path] = kind
    tree = {}
    for path, kind in entries.items():
        parts = path.split("/")
        for i in range(1, len(parts)):
            tree.setdefault("/".join(parts[:i]), "d")
        tree[path] = kind
    return tree


def merge(layers):
    merged = {"": ("d", [])}
    for label, zpath in layers:
        tree = layer_tree(zpath)
        merged[""][1].append(label)
        for path in sorted(tree, key=lambda p: (p.count("/"), p)):
            kind = tree[path]
            cur = merged.get(path)
            if kind == "d":
                if cur is not None and cur[0] == "d":
                    if label not in cur[1]:
                        cur[1].append(label)
                else:
                    merged[path] = ("d", [label])
            else:
                if cur is not None and cur[0] == "d":
                    prefix = path + "/"
                    for k in [k for k in merged if k.startswith(prefix)]:
                        del merged[k]
                merged[path] = (kind, label)
    return merged


def mounted_paths(mnt):
    out = set()
    for dp, dns, fns in os.walk(mnt):
        for n in dns + fns:
            out.add(os.path.relpath(os.path.join(dp, n), mnt))
    return out


def main(argv):
    if len(argv) < 4 or len(argv) % 2 != 0:
        sys.stderr.write(__doc__)
        return 2
    mnt = argv[1]
    layers = list(zip(argv[2::2], argv[3::2]))
    model = merge(layers)
    errors = []
    want = set(model) - {""}
    have = mounted_paths(mnt)
    for p in sorted(want - have):
        errors.append("missing in mount: %s" % p)
    for p in sorted(have - want):
        errors.append("unexpected in mount: %s" % p)
    checked = 0
    for path in sorted(model):
        kind, who = model[path]
        if kind == "l":
            continue
        full = os.path.join(mnt, path) if path else mnt
        expected = ", ".join(who) if kind == "d" else who
        try:
            got = os.getxattr(full, XATTR, follow_symlinks=False).decode()
        except OSError as e:
            errors.append("%s: getxattr: %s (expected %r)" % (path or ".", e, expected))
            continue
        checked += 1
        if got != expected:
            errors.append("%s: got %r, expected %r" % (path or ".", got, expected))
    for e in errors[:30]:
        print(e)
    if len(errors) > 30:
        print("... %d more" % (len(errors) - 30))
    print("%d paths in model, %d xattrs checked, %d problems"
          % (len(model), checked, len(errors)))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
