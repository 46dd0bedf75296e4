#!/usr/bin/env bash
# Random-offset reads of large members (deflated, stored, data descriptors,
# ZIP64 local extra) compared with the reference bytes; `layerfs stats`.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lfs_init
lfs_gen
lfs_tmpdir T

S=$G/src
lfs_ref "$T/ref_pm" "$L/py_mixed.zip"
lfs_ref "$T/ref_iz" "$L/infozip.zip"
RR=("$PY" "$LFS_IT_DIR/randread.py")

# one mount per producer's big member; big.zip and py_mixed.zip stacked
lfs_list "$T/big.list" "$L/big.zip" "$L/py_mixed.zip"
lfs_list "$T/iz.list" "$L/infozip.zip"
lfs_list "$T/izs.list" "$L/infozip_stored.zip"
lfs_list "$T/bsd.list" "$L/bsdtar.zip"
lfs_list "$T/stdin.list" "$L/infozip_stdin.zip"
lfs_list "$T/7z.list" "$L/7z.zip"
lfs_list "$T/jar.list" "$L/jar.zip"
ok=1
for n in big iz izs bsd stdin 7z jar; do
	lfs_mount "$T/$n.list" "$T/$n" || ok=0
done
check "read: all mounts up" eq "$ok" 1

MID=$S/common/lib/data/mid.bin
# ~1,000 preads in all; each file also gets 4 threads x 25 reads and mmap reads
check "read: 40 MiB deflated (Info-ZIP), random ranges" \
	timeout 150 "${RR[@]}" --seed 1 --reads 250 "$T/big/big/big40.bin" "$S/big/big/big40.bin"
check "read: 6 MiB deflated and stored copies" \
	timeout 60 "${RR[@]}" --seed 2 --reads 80 "$T/big/big/mid6.bin" "$S/big/big/mid6.bin" \
	"$T/big/big/mid6_stored.bin" "$S/big/big/mid6.bin"
check "read: python stored 1.5 MiB and deflated 2 MiB" \
	timeout 60 "${RR[@]}" --seed 3 --reads 60 \
	"$T/big/pm/big_stored.bin" "$T/ref_pm/pm/big_stored.bin" \
	"$T/big/pm/big_deflated.bin" "$T/ref_pm/pm/big_deflated.bin"
check "read: files of exactly 128 KiB, 256 KiB and 1 MiB (EOF on a boundary)" \
	timeout 60 "${RR[@]}" --seed 12 --reads 40 \
	"$T/big/pm/exact_128k.bin" "$T/ref_pm/pm/exact_128k.bin" \
	"$T/big/pm/exact_256k.bin" "$T/ref_pm/pm/exact_256k.bin" \
	"$T/big/pm/exact_1m.bin" "$T/ref_pm/pm/exact_1m.bin" \
	"$T/big/pm/exact_1m_stored.bin" "$T/ref_pm/pm/exact_1m_stored.bin"
check "read: Info-ZIP deflated mid.bin" \
	timeout 60 "${RR[@]}" --seed 4 --reads 60 "$T/iz/lib/data/mid.bin" "$MID"
check "read: Info-ZIP stored mid.bin" \
	timeout 60 "${RR[@]}" --seed 5 --reads 60 "$T/izs/lib/data/mid.bin" "$MID"
check "read: bsdtar (data descriptors) mid.bin" \
	timeout 60 "${RR[@]}" --seed 6 --reads 60 "$T/bsd/lib/data/mid.bin" "$MID"
check "read: Info-ZIP from stdin (data descriptor, ZIP64 extra)" \
	timeout 60 "${RR[@]}" --seed 7 --reads 60 "$T/stdin/-" "$S/stdin.bin"
check "read: 7z mid.bin" \
	timeout 60 "${RR[@]}" --seed 8 --reads 60 "$T/7z/lib/data/mid.bin" "$MID"
check "read: jar mid.bin" \
	timeout 60 "${RR[@]}" --seed 9 --reads 60 "$T/jar/lib/data/mid.bin" "$MID"
check "read: small incompressible file" \
	timeout 60 "${RR[@]}" --seed 10 --reads 40 "$T/iz/lib/data/small.bin" "$S/common/lib/data/small.bin"
check "read: whole 40 MiB file sequentially (cat | sha256)" \
	bash -c '[[ $(cat "$1" | sha256sum) == $(sha256sum <"$2") ]]' _ "$T/big/big/big40.bin" "$S/big/big/big40.bin"

# --- parallel tree walks agree ----------------------------------------------------
par_walks() {
	local i
	for i in 1 2 3 4 5 6; do
		"$PY" "$LFS_GEN/manifest.py" "$1" >"$T/par.$i" &
	done
	wait
	for i in 2 3 4 5 6; do
		cmp "$T/par.1" "$T/par.$i" || return 1
	done
	lfs_manifest "$2" | cmp - "$T/par.1"
}
check "read: 6 parallel manifests of the same mount agree with unzip" par_walks "$T/iz" "$T/ref_iz"

# --- stats -------------------------------------------------------------------
stats_ok() {
	local out
	out=$(timeout 20 "$LAYERFS" stats "$1" 2>&1) || {
		echo "layerfs stats exited $?: $out"
		return 1
	}
	printf '%s\n' "$out" | "$PY" -c '
import sys
kv = {}
for line in sys.stdin:
    parts = line.split()
    if len(parts) != 2:
        sys.exit("not a key value line: %r" % line)
    kv[parts[0]] = parts[1]
for k in ("hits", "misses", "bytes_inflated", "bytes_read"):
    if k not in kv:
        sys.exit("missing key %s in %s" % (k, sorted(kv)))
    if not kv[k].isdigit():
        sys.exit("%s is not a count: %r" % (k, kv[k]))
if int(kv["bytes_read"]) == 0 or int(kv["bytes_inflated"]) == 0:
    sys.exit("nothing counted after reads: %s" % kv)
print(kv)'
}
check "stats: key value lines with counters after reads" stats_ok "$T/big"
check "stats: fails on a path that is not a layerfs mount" \
	bash -c '! timeout 20 "$LAYERFS" stats "$1" >/dev/null 2>&1' _ "$T"

# --- small cache, small blocks: eviction and resume points ----------------------
lfs_list "$T/small.list" "$L/big.zip"
if check "read: mount with a 2 MiB cache and 16 KiB blocks" \
	lfs_mount -o cache_size=2M,block_size=16K,resume_spacing=256K "$T/small.list" "$T/small"; then
	check "read: random ranges with a tiny cache" \
		timeout 150 "${RR[@]}" --seed 11 --reads 150 "$T/small/big/big40.bin" "$S/big/big/big40.bin" \
		"$T/small/big/mid6_stored.bin" "$S/big/big/mid6.bin"
fi

lfs_finish
