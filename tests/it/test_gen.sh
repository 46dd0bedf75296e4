#!/usr/bin/env bash
# The reference side, without layerfs: the generators really produce what
# the other tests rely on (data descriptors, ZIP64, symlinks, no Unix
# attributes, duplicates...), the producers agree with each other through
# unzip -o, and manifest.py / expect.py work.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lfs_init --no-binary
lfs_gen
lfs_tmpdir T

zinfo() { # ZIP PYTHON-EXPR over `zs` (list of ZipInfo) and `raw` (bytes)
	"$PY" - "$@" <<'EOF'
import sys, zipfile
zp, expr = sys.argv[1], sys.argv[2]
zs = zipfile.ZipFile(zp).infolist()
raw = open(zp, "rb").read()
files = [z for z in zs if not z.filename.endswith("/")]
ok = eval(expr)
if not ok:
    print("%s: not true: %s" % (zp, expr))
    for z in zs[:20]:
        print("  %r sys=%d attr=%08x flag=%x method=%d ver=%d" % (
            z.filename, z.create_system, z.external_attr, z.flag_bits,
            z.compress_type, z.extract_version))
sys.exit(0 if ok else 1)
EOF
}

unzip_t() { # unzip -t; status 1 (warning) allowed only for prefixed.zip
	local rc=0
	unzip -tqq "$1" || rc=$?
	[[ $rc -eq 0 || ($rc -eq 1 && $(basename "$1") == prefixed.zip) ]]
}
for z in "$L"/*.zip; do
	check "gen: $(basename "$z") passes unzip -t" unzip_t "$z"
done
check "gen: prefixed.zip has 5000 bytes before the first local header" zinfo "$L/prefixed.zip" \
	'raw.find(b"PK\x03\x04") == 5000 and zs[0].header_offset == 5000'
check "gen: python layer has an archive comment" zinfo "$L/py_mixed.zip" \
	'len(zipfile.ZipFile(sys.argv[1]).comment) >= 1000'
check "gen: Info-ZIP stream has data descriptors" zinfo "$L/infozip_stream.zip" \
	'all(z.flag_bits & 8 for z in files)'
check "gen: Info-ZIP stdin member has a data descriptor and ZIP64 local extra" zinfo "$L/infozip_stdin.zip" \
	'len(zs) == 1 and zs[0].flag_bits & 8 and zs[0].extract_version >= 45 and zs[0].filename == "-"'
check "gen: bsdtar deflated members have data descriptors" zinfo "$L/bsdtar.zip" \
	'any(z.flag_bits & 8 for z in files) and all(z.flag_bits & 8 for z in files if z.compress_type == 8)'
check "gen: bsdtar names start with ./" zinfo "$L/bsdtar.zip" 'all(z.filename.startswith("./") for z in zs)'
check "gen: zip -y kept symlinks" zinfo "$L/infozip.zip" \
	'sum((z.external_attr >> 16) & 0o170000 == 0o120000 for z in zs) == 4'
check "gen: 7z kept symlinks" zinfo "$L/7z.zip" \
	'sum((z.external_attr >> 16) & 0o170000 == 0o120000 for z in zs) == 4'
check "gen: zip -0 stored everything" zinfo "$L/infozip_stored.zip" 'all(z.compress_type == 0 for z in zs)'
check "gen: jar has no Unix attributes" zinfo "$L/jar.zip" \
	'all(z.create_system == 0 and z.external_attr >> 16 == 0 for z in zs)'
check "gen: python layer has no directory entries, both methods" zinfo "$L/py_mixed.zip" \
	'not any(z.filename.endswith("/") for z in zs) and {z.compress_type for z in zs} == {0, 8}'
check "gen: python dups layer has duplicate names" zinfo "$L/py_dups.zip" \
	'len(zs) - len({z.filename for z in zs}) == 5'
check "gen: ZIP64 layer has > 65535 entries and a ZIP64 end record" zinfo "$L/zip64_many.zip" \
	'len(zs) == 70000 and b"PK\x06\x06" in raw[-200:] and b"PK\x06\x07" in raw[-200:]'
check "gen: big layer has a 40 MiB deflated member" zinfo "$L/big.zip" \
	'any(z.file_size > 40 * 2**20 and z.compress_type == 8 and z.compress_size < z.file_size for z in zs)'
check "gen: attrs layer has FAT, NTFS and VFAT hosts" zinfo "$L/attrs.zip" \
	'{z.create_system for z in zs} == {0, 3, 11, 14}'

# four producers, one tree: their unzip -o extractions must agree
for n in infozip infozip_stored bsdtar 7z; do
	lfs_ref "$T/ref_$n" "$L/$n.zip"
	lfs_manifest "$T/ref_$n" >"$T/$n.man"
done
for n in infozip_stored bsdtar 7z; do
	check "gen: $n extraction equals infozip extraction" cmp "$T/infozip.man" "$T/$n.man"
done
check "gen: reference has the 0700 dir, 0600/0666 files, suid dropped" \
	bash -c 'grep -qP "^empty_dir\td\t0700$" "$1" && grep -qP "^etc/secret.conf\tf\t0600\t" "$1" &&
		grep -qP "^etc/shared.conf\tf\t0666\t" "$1" && grep -qP "^bin/suid\tf\t0755\t" "$1" &&
		grep -qP "^links/dir\tl\t0777\t../deep/a$" "$1"' _ "$T/infozip.man"

# python-made layers are byte-for-byte reproducible
mkdir -p "$T/py2"
"$PY" "$LFS_GEN/pyzips.py" "$T/py2"
for z in "$T"/py2/*.zip; do
	check "gen: $(basename "$z") is reproducible" cmp "$z" "$L/$(basename "$z")"
done

# manifest.py on a tree made here, against expect.py
mkdir -p "$T/mt/sub"
printf 'hello\n' >"$T/mt/sub/f"
chmod 0640 "$T/mt/sub/f"
chmod 0750 "$T/mt/sub"
ln -s sub/f "$T/mt/lnk"
: >"$T/mt/empty"
chmod 0604 "$T/mt/empty"
cat >"$T/mt.spec" <<'EOF'
d sub 750
f sub/f 640 'hello\n'
l lnk 777 sub/f
f empty 604 ''
EOF
check "gen: manifest.py matches expect.py on a known tree" \
	bash -c 'cmp <("$1" "$2/manifest.py" "$3/mt") <("$1" "$2/expect.py" "$3/mt.spec")' _ "$PY" "$LFS_GEN" "$T"
check "gen: manifest.py sees a content change" \
	bash -c 'a=$("$1" "$2/manifest.py" "$3/mt"); echo x >>"$3/mt/sub/f"; b=$("$1" "$2/manifest.py" "$3/mt"); [[ $a != "$b" ]]' _ "$PY" "$LFS_GEN" "$T"

lfs_finish
