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

lfs_finish
