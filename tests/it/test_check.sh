#!/usr/bin/env bash
# layerfs check: reports a stack without mounting it, warns about the
# platform's limits, refuses what mount would refuse.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lfs_init
lfs_gen
lfs_tmpdir T

lfs_list "$T/ok.list" "$L/stack1.zip" "$L/stack2.zip" "$L/stack3.zip"
out=$("$LAYERFS" check "$T/ok.list" 2>&1); rc=$?
check "check: a good stack is mountable (exit 0)" eq "$rc" 0
check "check: one line per layer" eq "$(grep -c 'stack[123].zip' <<<"$out")" 3
check "check: no warnings for a small stack" grep -q "mountable, 0 warnings" <<<"$out"
check "check: mounts nothing" bash -c "! grep -q layerfs /proc/self/mountinfo || ! grep -q '$T' /proc/self/mountinfo"

# seven layers: more than the platform's five is a warning here
for i in 1 2 3 4 5 6 7; do cp "$L/stack1.zip" "$T/copy$i.zip"; done
lfs_list "$T/seven.list" "$T"/copy{1,2,3,4,5,6,7}.zip
out=$("$LAYERFS" check "$T/seven.list" 2>&1); rc=$?
check "check: 7 layers still mountable with -o max_layers (exit 0)" eq "$rc" 0
check "check: warns about more than 5 layers" grep -q "warning: 7 layers, the platform allows 5" <<<"$out"

# more than 262,144,000 bytes unzipped: a sparse-looking member declared big
python3 - "$T/huge.zip" <<'PY'
import sys, zipfile, zlib
# 300 MB of zeros deflate to ~300 KB; written in chunks, never held whole
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED, allowZip64=True) as z:
    with z.open("zeros.bin", "w", force_zip64=True) as f:
        chunk = bytes(1 << 20)
        for _ in range(300):
            f.write(chunk)
PY
lfs_list "$T/huge.list" "$T/huge.zip"
out=$("$LAYERFS" check "$T/huge.list" 2>&1); rc=$?
check "check: big unzipped size is a warning, exit 0" eq "$rc" 0
check "check: warns about the unzipped limit" grep -q "more than the platform's 262144000" <<<"$out"

printf "not a zip file, but long enough to look for an end record in it\n" >"$T/bad.zip"
lfs_list "$T/bad.list" "$L/stack1.zip" "$T/bad.zip"
out=$("$LAYERFS" check "$T/bad.list" 2>&1); rc=$?
check "check: a bad layer is refused (exit 1)" eq "$rc" 1
check "check: the refusal names the file" grep -q "$T/bad.zip: .*zip" <<<"$out"
lfs_finish
