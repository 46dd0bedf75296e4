#!/usr/bin/env bash
# The merge rules where `unzip -o` is ill-defined or disagrees, checked
# against hand-written expected trees: rule 4 (names) and rule 5 (a file
# and a directory at the same path in different layers).
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lfs_init
lfs_gen
lfs_tmpdir T

# --- rule 4: names ------------------------------------------------------------
# names.zip members (content = raw name + newline); Unix host unless noted.
cat >"$T/names.spec" <<'EOF'
d abs 755
f abs/x 644 '/abs/x\n'
d lead 755
f lead/many 644 '////lead/many\n'
d up 755
f up/y 644 '../up/y\n'
d up2 755
f up2/y2 644 '../../../../../../up2/y2\n'
# "a/../b/z": '..' dropped, not resolved
d a 755
d a/b 755
f a/b/z 644 'a/../b/z\n'
# backslashes are separators, also for a Unix-host member
d c 755
d c/d 755
f c/d/e 644 'c\\d\\e\n'
d bs_up 755
f bs_up/h 644 '..\\..\\bs_up\\h\n'
d dot 755
f dot/f 644 './dot/./f\n'
d e 755
f e/g 644 'e//g\n'
# FAT host, backslashes
d w 755
d w/x 755
f w/x/f 644 'w\\x\\f\n'
d ok 755
f ok/plain.txt 644 'ok/plain.txt\n'
EOF
lfs_expect "$T/names.spec" >"$T/names.expected"
lfs_list "$T/names.list" "$L/names.zip"
if check "rule 4: mount names.zip" lfs_mount "$T/names.list" "$T/names"; then
	check "rule 4: tree equals the hand-written expectation" \
		same_manifest "$T/names.expected" "$T/names"
	check "rule 4: no name with a backslash" \
		bash -c '[[ -z $(find "$1" -name "*\\\\*") ]]' _ "$T/names"
	check "rule 4: absolute name readable" eq "$(cat "$T/names/abs/x" 2>&1)" "/abs/x"
	check "rule 4: backslash name readable" eq "$(cat "$T/names/c/d/e" 2>&1)" 'c\d\e'
fi

# --- rule 5: file vs directory across layers -----------------------------------
# r5_1: d/sub/f d/g e s/inner y/deep/z keep/k1
# r5_2: d (file 0640) e/ (dir 0750) e/g2 x (file) keep/k2
# r5_3: d/new s -> keep (symlink) x/ (dir 0711) y (file 0600) keep/k3
cat >"$T/r5_12.spec" <<'EOF'
# after two layers: layer 2's file d hides layer 1's directory d
f d 640 'l2 d\n'
# layer 2's directory e replaces layer 1's file e
d e 750
f e/g2 644 'l2 e/g2\n'
d keep 755
f keep/k1 644 'l1 keep/k1\n'
f keep/k2 644 'l2 keep/k2\n'
d s 755
f s/inner 644 'l1 s/inner\n'
f x 644 'l2 x\n'
d y 755
d y/deep 755
f y/deep/z 644 'l1 y/deep/z\n'
EOF
cat >"$T/r5_123.spec" <<'EOF'
# layer 3's implicit directory d replaces layer 2's file d; layer 1's
# d/sub and d/g stay hidden (they were replaced as a whole by the file)
d d 755
f d/new 644 'l3 d/new\n'
d e 750
f e/g2 644 'l2 e/g2\n'
d keep 755
f keep/k1 644 'l1 keep/k1\n'
f keep/k2 644 'l2 keep/k2\n'
f keep/k3 644 'l3 keep/k3\n'
# a symlink is a non-directory: it replaces layer 1's directory s
l s 777 keep
# an explicit (empty) directory replaces layer 2's file x
d x 711
# a file replaces layer 1's directory y two layers down
f y 600 'l3 y\n'
EOF
lfs_expect "$T/r5_12.spec" >"$T/r5_12.expected"
lfs_expect "$T/r5_123.spec" >"$T/r5_123.expected"
lfs_list "$T/r5_12.list" "$L/r5_1.zip" "$L/r5_2.zip"
lfs_list "$T/r5_123.list" "$L/r5_1.zip" "$L/r5_2.zip" "$L/r5_3.zip"
if check "rule 5: mount 2 layers" lfs_mount "$T/r5_12.list" "$T/r5_12"; then
	check "rule 5 (2 layers): tree equals the hand-written expectation" \
		same_manifest "$T/r5_12.expected" "$T/r5_12"
	check "rule 5 (2 layers): hidden subtree not reachable by path" \
		bash -c '! cat "$1/d/g" 2>/dev/null && ! stat "$1/d/sub/f" 2>/dev/null' _ "$T/r5_12"
fi
if check "rule 5: mount 3 layers" lfs_mount "$T/r5_123.list" "$T/r5"; then
	M=$T/r5
	check "rule 5 (3 layers): tree equals the hand-written expectation" \
		same_manifest "$T/r5_123.expected" "$M"
	check "rule 5 (3 layers): hidden subtree stays hidden under a new dir" \
		bash -c '[[ ! -e $1/d/sub && ! -e $1/d/g && ! -e $1/y/deep && ! -e $1/s/inner ]]' _ "$M"
	check "rule 5: file that replaced a dir is a regular file" test -f "$M/y"
	check "rule 5: xattr of a dir that replaced a file" xattr_is "$M/e" "$L/r5_2.zip"
	check "rule 5: xattr of a dir re-made over a file (only the new layer)" \
		xattr_is "$M/d" "$L/r5_3.zip"
	check "rule 5: xattr of the explicit dir x" xattr_is "$M/x" "$L/r5_3.zip"
	check "rule 5: xattr of a dir of all layers" \
		xattr_is "$M/keep" "$L/r5_1.zip, $L/r5_2.zip, $L/r5_3.zip"
	check "rule 5: provenance of every path (model)" \
		"$PY" "$LFS_IT_DIR/provenance.py" "$M" \
		"$L/r5_1.zip" "$L/r5_1.zip" "$L/r5_2.zip" "$L/r5_2.zip" "$L/r5_3.zip" "$L/r5_3.zip"
fi

lfs_finish
