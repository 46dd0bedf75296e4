#!/usr/bin/env bash
# The reference merge: extracts each zip in order with `unzip -o` into DEST.
#
#   tests/gen/extract.sh DEST ZIP...
#
# DEST is created if needed and should be empty.  umask 022 and TZ=UTC, as
# the merge rules say.  unzip exit status 1 (warnings, e.g. "skipped ../
# path component") is accepted; anything worse fails.
#
# Directory modes are unzip's own: a directory's mode is set when it is
# created (from its record, or 0755 when a deeper name implies it), and a
# later record for an existing directory leaves it alone; layerfs does the
# same.
set -euo pipefail
if [[ $# -lt 2 ]]; then
	echo "usage: $0 DEST ZIP..." >&2
	exit 2
fi
dest=$1
shift
mkdir -p "$dest"
umask 022
export TZ=UTC LC_ALL=C.UTF-8
for z in "$@"; do
	rc=0
	unzip -o -q "$z" -d "$dest" >/dev/null 2>&1 || rc=$?
	if [[ $rc -gt 1 ]]; then
		echo "extract.sh: unzip -o $z failed with status $rc" >&2
		unzip -o -q "$z" -d "$dest" >&2 || true
		exit 1
	fi
done
