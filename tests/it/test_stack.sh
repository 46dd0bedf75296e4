#!/usr/bin/env bash
# The 3-layer override stack (Info-ZIP, python zipfile, bsdtar) against
# sequential `unzip -o`, the layer list format, and provenance xattrs.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lfs_init
lfs_gen
lfs_tmpdir T

S1=$L/stack1.zip S2=$L/stack2.zip S3=$L/stack3.zip
lfs_ref "$T/ref" "$S1" "$S2" "$S3"

# --- plain list, absolute paths, no names ----------------------------------
lfs_list "$T/plain.list" "$S1" "$S2" "$S3"
if check "stack: mount" lfs_mount "$T/plain.list" "$T/m"; then
	M=$T/m
	check "stack: tree equals sequential unzip -o" same_manifest "$T/ref" "$M"
	check "stack: top layer's file wins" eq "$(cat "$M/common/file.txt" 2>&1)" "from layer 3"
	check "stack: lower layers' files stay visible" \
		eq "$(cat "$M/common/only1.txt" "$M/common/only2.txt" "$M/common/only3.txt" 2>&1)" \
		$'only in layer 1\nonly in layer 2\nonly in layer 3'
	check "stack: directories merge (shared/)" eq "$(ls "$M/shared" 2>&1 | tr '\n' ' ')" "x1.txt x2.txt x3.txt "
	check "stack: middle layer's file and mode win over lower" \
		eq "$(stat -c %a "$M/bin/tool" 2>&1):$(cat "$M/bin/tool" 2>&1 | tail -n1)" "700:echo tool v2"
	check "stack: top layer's mode wins (0444)" eq "$(stat -c %a "$M/conf/app.conf" 2>&1)" 444
	check "stack: explicit dir 0700 kept when a later layer has it implicitly" \
		eq "$(stat -c %a "$M/dirmode1" 2>&1)" 700
	# as unzip -o: a directory's mode is set when it is created
	check "stack: later explicit dir record keeps the first mode (0700, then 0750)" \
		eq "$(stat -c %a "$M/dirmode2" 2>&1)" 700
	check "stack: later explicit dir record keeps the first mode (0711, then 0755)" \
		eq "$(stat -c %a "$M/dirmode3" 2>&1)" 711
	check "stack: later explicit dir record over an earlier implicit dir keeps 0755" \
		eq "$(stat -c %a "$M/later_explicit" 2>&1)" 755
	check "stack: symlink replaced by a later regular file" \
		bash -c '[[ -f $1 && ! -L $1 ]] && grep -q "layer 2 replaced" "$1"' _ "$M/lnk"
	check "stack: regular file replaced by a later symlink" \
		eq "$(readlink "$M/plain.txt" 2>&1)" common/file.txt
	check "stack: symlink resolves inside the mount" eq "$(cat "$M/plain.txt" 2>&1)" "from layer 3"
	check "stack: missing path is ENOENT" \
		"$PY" -c 'import errno,os,sys
try: os.lstat(sys.argv[1])
except OSError as e: sys.exit(0 if e.errno == errno.ENOENT else str(e))
sys.exit("exists")' "$M/common/nope"
	check "stack: path through a file is ENOTDIR" \
		"$PY" -c 'import errno,os,sys
try: os.lstat(sys.argv[1])
except OSError as e: sys.exit(0 if e.errno == errno.ENOTDIR else str(e))
sys.exit("exists")' "$M/common/file.txt/x"
	check "stack: a symlink's st_size is its target's length" eq "$(stat -c %s "$M/plain.txt" 2>&1)" 15
	check "stack: inode numbers unique, files have nlink >= 1" \
		bash -c 'find "$1" -printf "%i %n\n" | awk '"'"'{ if (seen[$1]++) { print "duplicate inode " $1; bad = 1 } if ($2 < 1) bad = 1 } END { exit bad }'"'"'' _ "$M"
	check "stack: readdir has . and .." bash -c 'ls -a "$1" | grep -qx . && ls -a "$1" | grep -qx ..' _ "$M/common"
	check "stack: provenance of every path (unlabelled: resolved paths)" \
		"$PY" "$LFS_IT_DIR/provenance.py" "$M" "$S1" "$S1" "$S2" "$S2" "$S3" "$S3"
	lfs_umount "$M"
fi

# --- list format: comments, blank lines, relative and quoted paths, labels --
mkdir -p "$T/lst/layers" "$T/lst/with space"
cp "$S1" "$T/lst/layers/stack1.zip"
cp "$S2" "$T/lst/with space/stack 2.zip"
cp "$S3" "$T/lst/layers/stack3.zip"
cat >"$T/lst/stack.list" <<'EOF'
# lowest layer first; later lines win

layers/stack1.zip name=base version=3
# a path with a space, quoted, name only
"with space/stack 2.zip" name=middle

layers/stack3.zip
EOF
P3=$T/lst/layers/stack3.zip # no name: the path as resolved
mount_from_root() { cd / && lfs_mount "$@"; } # runs in check's subshell
mkdir -p "$T/m2"
if check "list: mount from another cwd with relative paths" \
	mount_from_root "$T/lst/stack.list" "$T/m2" &&
	mountpoint -q "$T/m2"; then
	M=$T/m2
	check "list: tree equals sequential unzip -o" same_manifest "$T/ref" "$M"
	check "xattr: file from a name+version layer" xattr_is "$M/common/only1.txt" "base:3"
	check "xattr: file from a name-only layer" xattr_is "$M/bin/tool" "middle"
	check "xattr: file from an unnamed layer is its resolved path" \
		xattr_is "$M/common/file.txt" "$P3"
	check "xattr: dir merged from three layers" xattr_is "$M/common" "base:3, middle, $P3"
	check "xattr: dir merged from two layers" xattr_is "$M/dirmode1" "base:3, middle"
	check "xattr: dir of one layer" xattr_is "$M/new3/deep" "$P3"
	check "xattr: root dir" xattr_is "$M" "base:3, middle, $P3"
	check "xattr: file that replaced a symlink" xattr_is "$M/lnk" "middle"
	check "xattr: getfattr sees it" \
		bash -c '[[ $(getfattr --only-values -n user.layerfs.layer "$1") == "base:3" ]]' _ \
		"$M/common/only1.txt"
	check "xattr: listed by listxattr" \
		bash -c 'getfattr -d -m - "$1" | grep -q "^user.layerfs.layer="' _ "$M/common/only1.txt"
	check "xattr: unknown name gives ENODATA" \
		"$PY" -c '
import errno, os, sys
try:
    os.getxattr(sys.argv[1], "user.nonexistent")
except OSError as e:
    sys.exit(0 if e.errno == errno.ENODATA else "errno %d" % e.errno)
sys.exit("no error")' "$M/common/only1.txt"
	check "xattr: provenance of every path (labelled)" \
		"$PY" "$LFS_IT_DIR/provenance.py" "$M" "base:3" "$S1" "middle" "$S2" "$P3" "$S3"
fi

# --- CRLF line endings ----------------------------------------------------------
printf '# made on Windows\r\n%s name=one version=1\r\n\r\n%s name=two\r\n' "$S1" "$S2" >"$T/crlf.list"
if check "list: CRLF line endings accepted" lfs_mount "$T/crlf.list" "$T/m3"; then
	check "list: CRLF labels have no carriage return" xattr_is "$T/m3/common" "one:1, two"
	check "list: CRLF file from the last line" xattr_is "$T/m3/common/file.txt" "two"
fi

# --- layers opened ahead -------------------------------------------------------
# A thread reads and parses the next layer's central directory while the
# tree takes the last one in: what each layer logs (its index's warnings,
# then its tree's) must still come out in layer order, a refusal must be one
# line naming the first bad layer, and indexes opened ahead of it must not
# be left behind (the ASan run sees leaks).
A=$T/ahead
"$PY" - "$A" <<'EOF'
import os, sys, zipfile
d = sys.argv[1]
os.makedirs(d, exist_ok=True)
for k in (1, 2, 3):
    with zipfile.ZipFile(f"{d}/w{k}.zip", "w") as z:
        z.writestr(f"l{k}/ok.txt", f"layer {k}\n")
        # warned by the index: reads fail with EIO
        z.writestr(f"l{k}/bz.txt", b"x" * 100, compress_type=zipfile.ZIP_BZIP2)
        # warned by the tree: no lookup can reach it
        z.writestr(f"l{k}/" + "e" * 300, b"y")
with zipfile.ZipFile(f"{d}/many.zip", "w") as z:
    for n in range(300):
        z.writestr(f"t/{n:03d}.txt", b"")
with open(f"{d}/notazip.zip", "wb") as f:
    f.write(b"not a zip file\n" * 10)
EOF
ahead_mount() { # NAME ok|fail LIST [mount args]: stderr in $A/NAME.err
	local name=$1 want=$2 list=$3 rc=0
	shift 3
	mkdir -p "$A/m_$name"
	lfs_register_mount "$A/m_$name"
	timeout -k 5 60 "$LAYERFS" mount "$@" "$list" "$A/m_$name" </dev/null \
		>/dev/null 2>"$A/$name.err" || rc=$?
	[[ $rc -eq 0 ]] && lfs_umount "$A/m_$name" >/dev/null 2>&1
	[[ $want == ok && $rc -eq 0 ]] || [[ $want == fail && $rc -ne 0 && $rc -lt 124 ]] ||
		{ echo "exit status $rc"; cat "$A/$name.err"; return 1; }
}
one_line_naming() { # ERRFILE TEXT
	local n
	n=$(wc -l <"$1")
	grep -qF -- "$2" "$1" && [[ $n -eq 1 ]] || { echo "stderr ($n lines):"; cat "$1"; return 1; }
}
lfs_list "$A/warn.list" "$A/w1.zip" "$A/w2.zip" "$A/w3.zip"
check "ahead: a stack whose three layers warn mounts" ahead_mount warn ok "$A/warn.list"
check "ahead: each layer's warnings in layer order, the index's before the tree's" \
	eq "$(sed -n 's/.*\/\(w[0-9]\)\.zip: entry .l[0-9]\/\(..\).*/\1 \2/p' "$A/warn.err" | tr '\n' ' ')" \
	"w1 bz w1 ee w2 bz w2 ee w3 bz w3 ee "
lfs_list "$A/midbad.list" "$A/w1.zip" "$A/notazip.zip" "$A/w3.zip"
check "ahead: a bad middle layer is refused" ahead_mount midbad fail "$A/midbad.list"
check "ahead: in one line naming it, the first layer's warnings dropped" \
	one_line_naming "$A/midbad.err" notazip.zip
lfs_list "$A/firstbad.list" "$A/notazip.zip" "$A/w2.zip" "$A/w3.zip"
check "ahead: a bad first layer is refused" ahead_mount firstbad fail "$A/firstbad.list"
check "ahead: in one line naming it" one_line_naming "$A/firstbad.err" notazip.zip
lfs_list "$A/total.list" "$A/many.zip" "$A/w2.zip" "$A/notazip.zip"
check "ahead: max_total_entries in the first layer is refused" \
	ahead_mount total fail "$A/total.list" -o max_total_entries=100
check "ahead: in one line naming that layer, not a later bad one" \
	one_line_naming "$A/total.err" "many.zip: the merged tree would have more than max_total_entries=100"

lfs_finish
