#!/usr/bin/env bash
# A ZIP64 layer with 70,000 entries (> 65,535: ZIP64 end of central
# directory record and locator).
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lfs_init
lfs_gen
lfs_tmpdir T

Z=$L/zip64_many.zip
lfs_ref "$T/ref" "$Z"
lfs_list "$T/z.list" "$Z"
if check "zip64: mount a 70,000-entry layer" lfs_mount "$T/z.list" "$T/m"; then
	M=$T/m
	check "zip64: file count is 70000" eq "$(find "$M" -type f | wc -l)" 70000
	check "zip64: directory count is 72 (root, many/, 70 dirs)" eq "$(find "$M" -type d | wc -l)" 72
	check "zip64: readdir of one directory lists 1000 names" eq "$(ls -f "$M/many/d042" | grep -c '^f')" 1000
	check "zip64: last entry readable" eq "$(cat "$M/many/d069/f0999.txt" 2>&1)" 69999
	check "zip64: entry 65536 readable (past the 16-bit count)" eq "$(cat "$M/many/d065/f0536.txt" 2>&1)" 65536
	check "zip64: tree equals unzip -o" same_manifest "$T/ref" "$M"
	check "zip64: xattr on an entry" xattr_is "$M/many/d069/f0999.txt" "$Z"
fi

lfs_finish
