#!/usr/bin/env bash
# Each producer's layer mounted alone equals its `unzip -o` extraction
# (merge rule 1): paths, types, permission bits, sizes, sha256, symlink
# targets.  Also rules 2 (implicit dirs 0755), 3 (duplicate names: last
# wins) and 6 (special bits dropped, no Unix attrs -> 0644/0444/0755) where
# they coincide with unzip.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lfs_init
lfs_gen
lfs_tmpdir T

# name of the layer (layers/NAME.zip) and what it exercises
PRODUCERS=(
	"infozip:Info-ZIP zip -ry (deflate, symlinks, extra fields)"
	"infozip_stored:Info-ZIP zip -0 (stored)"
	"infozip_stream:Info-ZIP to a pipe (data descriptors)"
	"infozip_stdin:Info-ZIP stdin to pipe (data descriptor, ZIP64 local extra)"
	"bsdtar:bsdtar --format zip ('./' names, data descriptors)"
	"7z:7z a -tzip"
	"jar:jar cf (no Unix attributes)"
	"prefixed:5000 junk bytes before the zip, offsets not adjusted"
	"prefixed_adj:5000 junk bytes before the zip, zip -A adjusted"
	"py_mixed:python zipfile stored+deflated, no dir entries"
	"py_dups:python zipfile, duplicate names"
	"attrs:FAT/NTFS/VFAT hosts, DOS read-only, setuid/setgid/sticky"
	"runtime:Info-ZIP runtime layer"
	"stack1:stack layer 1 alone"
	"stack2:stack layer 2 alone"
	"stack3:stack layer 3 alone"
)

for p in "${PRODUCERS[@]}"; do
	n=${p%%:*}
	lfs_log "$n: ${p#*:}"
	lfs_ref "$T/ref_$n" "$L/$n.zip"
	lfs_list "$T/$n.list" "$L/$n.zip"
	rc=0
	lfs_mount "$T/$n.list" "$T/mnt_$n" >"$T/$n.mount.log" 2>&1 || rc=$?
	check "$n: mount exits 0" eq "$rc" 0 "exit status ($(head -c 300 "$T/$n.mount.log"))"
	if [[ $rc -ne 0 ]]; then
		continue
	fi
	if [[ $n == jar ]]; then
		# unzip turns the UTF-8 name of a FAT-host member (jar sets the
		# UTF-8 flag 0x800) into cp437 mojibake; the flag says the bytes are
		# UTF-8, so that one name is checked separately.
		check "$n: tree equals unzip -o (ASCII names)" \
			same_manifest "$T/ref_$n" "$T/mnt_$n" '[^ -~	]'
		check "$n: UTF-8 flagged name shown as UTF-8" \
			eq "$(cat "$T/mnt_$n/ünïcödé.txt" 2>&1)" unicode
	else
		check "$n: tree equals unzip -o" same_manifest "$T/ref_$n" "$T/mnt_$n"
	fi
	# no setuid/setgid/sticky bit anywhere (the manifest only shows 0777)
	check "$n: no setuid/setgid/sticky bits" \
		bash -c 'out=$(find "$1" -perm /7000 2>&1); [[ -z $out ]] || { echo "$out"; exit 1; }' _ "$T/mnt_$n"
	lfs_umount "$T/mnt_$n" >/dev/null 2>&1 || lfs_force_umount "$T/mnt_$n"
done

# --- explicit spot checks, so a failure names the rule ----------------------
lfs_list "$T/spot.list" "$L/py_mixed.zip"
mkdir -p "$T/spot_attrs"
lfs_list "$T/attrs.list" "$L/attrs.zip"
if lfs_mount "$T/spot.list" "$T/spot" && lfs_mount "$T/attrs.list" "$T/spot_attrs"; then
	mode() { stat -c %a "$1" 2>&1; }
	check "rule 2: implicit dir pm/ is 0755" eq "$(mode "$T/spot/pm")" 755
	check "rule 2: implicit deep dir is 0755" eq "$(mode "$T/spot/pm/a/b/c/d/e/f/g/h")" 755
	check "rule 2: implicit dir is a directory" test -d "$T/spot/pm/deflated"
	check "rule 6: setuid file -> 0755" eq "$(mode "$T/spot_attrs/special/suid")" 755
	check "rule 6: setgid file -> 0750" eq "$(mode "$T/spot_attrs/special/sgid")" 750
	check "rule 6: 07777 file -> 0777" eq "$(mode "$T/spot_attrs/special/all")" 777
	check "rule 6: sticky dir -> 0777" eq "$(mode "$T/spot_attrs/special/sticky_dir")" 777
	check "rule 6: setgid dir -> 0770" eq "$(mode "$T/spot_attrs/special/sgid_dir")" 770
	check "rule 6: FAT file -> 0644" eq "$(mode "$T/spot_attrs/win/file.txt")" 644
	check "rule 6: FAT read-only file -> 0444" eq "$(mode "$T/spot_attrs/win/ro.txt")" 444
	check "rule 6: FAT dir -> 0755" eq "$(mode "$T/spot_attrs/win/sub")" 755
	check "rule 6: NTFS read-only file -> 0444" eq "$(mode "$T/spot_attrs/ntfs/ro.txt")" 444
	check "rule 6: FAT backslash names are dirs" test -f "$T/spot_attrs/implicit/deeper/f.txt"
fi

lfs_list "$T/dups.list" "$L/py_dups.zip"
if lfs_mount "$T/dups.list" "$T/dups"; then
	check "rule 3: duplicate name, last wins (content)" \
		eq "$(cat "$T/dups/dup.txt" 2>&1)" "second copy, this one wins"
	check "rule 3: duplicate name, last wins (mode)" eq "$(stat -c %a "$T/dups/dup.txt" 2>&1)" 600
	check "rule 3: duplicate name, last wins (stored after deflated)" \
		eq "$(cat "$T/dups/dd/x" 2>&1)" "stored and last"
	check "rule 3: triplicate name, last wins" eq "$(cat "$T/dups/tri" 2>&1)" "3 wins"
	check "rule 3: duplicate listed once in readdir" \
		eq "$(ls -a "$T/dups" | grep -c '^dup.txt$')" 1
	# directories, as unzip -o: the mode is set when the directory is created
	check "rule 3: dir record after a member inside it leaves 0755" \
		eq "$(stat -c %a "$T/dups/ddir" 2>&1)" 755
	check "rule 3: duplicate dir record, the creating one wins" eq "$(stat -c %a "$T/dups/g2" 2>&1)" 700
fi

lfs_finish
