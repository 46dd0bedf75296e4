#!/usr/bin/env bash
# The host cache (-o cache_dir): a second daemon, after a restart or for
# another stack that shares a layer, serves it with nothing inflated; two
# daemons on one directory; damage of every kind is detected, logged and
# made again; the quota holds; a full disk turns the tier's writes off and
# reads stay right; kill -9 while writing, then `layerfs cache verify`.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lfs_init
lfs_gen
lfs_tmpdir T

# every layer with its sha256=, so digests are known at mount
sha_list() {
	local f=$1 z
	shift
	: >"$f"
	for z in "$@"; do printf '%s sha256=%s\n' "$z" "$(sha "$z")" >>"$f"; done
}
# waits until the daemon has written what it queued for the disk
settle() {
	local _
	for _ in $(seq 300); do
		[[ $(stat_of "$1" disk_writes_pending) == 0 ]] && return 0
		sleep 0.1
	done
	echo "disk writes still pending: $(stat_of "$1" disk_writes_pending)"
	return 1
}
read_all() { find "$1" -type f -exec cat {} + >/dev/null; }
CD=$T/cache
lfs_daemon_dir "$CD"
A=$L/big.zip B=$L/infozip.zip C=$L/py_mixed.zip
sha_list "$T/ab.list" "$A" "$B"
sha_list "$T/bc.list" "$B" "$C"
lfs_ref "$T/ref_ab" "$A" "$B"
lfs_ref "$T/ref_bc" "$B" "$C"
# cache_dir_min=0: every file is kept, so that a second daemon inflates
# nothing at all (the default keeps only larger files: see below)
O=cache_dir=$CD,cache_dir_min=0

# --- first daemon fills the directory; a restarted one inflates nothing ----
if check "first daemon: mounted" lfs_mount -o "$O" "$T/ab.list" "$T/m1"; then
	check "first daemon: tree and bytes match unzip -o" same_manifest "$T/ref_ab" "$T/m1"
	check "first daemon: it inflated" test "$(stat_of "$T/m1" bytes_inflated)" -gt 0
	check "first daemon: writes settle" settle "$T/m1"
	check "first daemon: nothing skipped" eq "$(stat_of "$T/m1" disk_writes_skipped)" 0
	lfs_umount "$T/m1"
fi
if check "restarted daemon: mounted" lfs_mount -o "$O" "$T/ab.list" "$T/m2"; then
	check "restarted daemon: tree and bytes match" same_manifest "$T/ref_ab" "$T/m2"
	check "restarted daemon: 0 bytes inflated" eq "$(stat_of "$T/m2" bytes_inflated)" 0
	check "restarted daemon: served from disk" test "$(stat_of "$T/m2" disk_hits)" -gt 0
	check "restarted daemon: its tree came from cache_dir (no directory parsed)" \
		eq "$(stat_of "$T/m2" tree_cached)" 1
	lfs_umount "$T/m2"
fi
# --- a short-lived daemon: unmounted while its writes are still queued ------
# (one function start, then the environment goes).  Every core is kept busy
# by ordinary work until it has exited, so the writer, in the idle class,
# is behind at the unmount (mostly) and gets nothing after it: the exiting
# daemon does the queued writes itself, so the next one inflates nothing
# either.
CDQ=$T/cache-quick
lfs_daemon_dir "$CDQ"
spin_pids=()
stop_spinning() { kill "${spin_pids[@]}" 2>/dev/null; wait "${spin_pids[@]}" 2>/dev/null; spin_pids=(); }
if check "quick daemon: mounted" lfs_mount -o cache_dir="$CDQ",cache_dir_min=0 "$T/ab.list" "$T/mq1"; then
	for _ in $(seq "$(nproc)"); do
		timeout 60 bash -c 'while :; do :; done' &
		spin_pids+=($!)
	done
	read_all "$T/mq1"
	qpid=$(stat_of "$T/mq1" pid)
	# Whether the starved writer is still behind here depends on the
	# scheduler (an idle-class thread still gets a sliver of each core):
	# said, not checked.  tests/unit/test_pool.c checks the exit path
	# (lfs_pool_run_here) without timing; the checks below hold either way.
	lfs_log "quick daemon: $(stat_of "$T/mq1" disk_writes_pending) writes still queued at the unmount"
	lfs_umount "$T/mq1"
	check "quick daemon: exits once its writes are done, cores still busy" \
		bash -c 'for i in $(seq 300); do kill -0 "$1" 2>/dev/null || exit 0; sleep 0.1; done; exit 1' _ "$qpid"
	stop_spinning
fi
stop_spinning
if check "after it: mounted" lfs_mount -o cache_dir="$CDQ",cache_dir_min=0 "$T/ab.list" "$T/mq2"; then
	check "after it: tree and bytes match" same_manifest "$T/ref_ab" "$T/mq2"
	check "after it: 0 bytes inflated" eq "$(stat_of "$T/mq2" bytes_inflated)" 0
	lfs_umount "$T/mq2"
fi
# a tree file that fails its checks is dropped, and the stack built again
tree=$(ls "$CD"/trees/* | head -n 1)
python3 -c 'import sys; f = open(sys.argv[1], "r+b"); f.seek(-10, 2); b = f.read(1); f.seek(-10, 2); f.write(bytes([b[0] ^ 1]))' "$tree"
if check "damaged tree file: mounted" lfs_mount -o "$O" "$T/ab.list" "$T/m2b"; then
	check "damaged tree file: not used" eq "$(stat_of "$T/m2b" tree_cached)" 0
	check "damaged tree file: tree and bytes match" same_manifest "$T/ref_ab" "$T/m2b"
	check "damaged tree file: written again" eq "$(stat_of "$T/m2b" tree_saved)" 1
	lfs_umount "$T/m2b"
fi
# no sha256= in the list: digests are made in the background, and the
# tree is kept once they are all known
lfs_list "$T/plain.list" "$A" "$B"
lfs_daemon_dir "$T/cache3"
if check "digests in the background: mounted" lfs_mount -o cache_dir="$T/cache3" "$T/plain.list" "$T/m4"; then
	for _ in $(seq 100); do [[ $(stat_of "$T/m4" tree_saved) == 1 ]] && break; sleep 0.1; done
	check "digests in the background: the tree is kept once they are known" \
		eq "$(stat_of "$T/m4" tree_saved)" 1
	lfs_umount "$T/m4"
	if lfs_mount -o cache_dir="$T/cache3" "$T/plain.list" "$T/m5"; then
		check "digests in the background: the next mount takes the tree" \
			eq "$(stat_of "$T/m5" tree_cached)" 1
		check "digests in the background: tree and bytes match" same_manifest "$T/ref_ab" "$T/m5"
		lfs_umount "$T/m5"
	fi
fi
# Blocks made while the digests are still being made (every core busy:
# the hashing runs in the idle class) are written to the disk tier once
# they are known, so the next mount inflates nothing.  Whether the reads
# come before the digests depends on the scheduler (said, not checked);
# tests/unit/test_reader.c (test_disk_later) checks the noting and the
# late writes without timing.
CDL=$T/cache-later
lfs_daemon_dir "$CDL"
for _ in $(seq "$(nproc)"); do
	timeout 60 bash -c 'while :; do :; done' &
	spin_pids+=($!)
done
if check "blocks before the digest: mounted" lfs_mount -o cache_dir="$CDL",cache_dir_min=0 "$T/plain.list" "$T/m6"; then
	read_all "$T/m6"
	lfs_log "blocks before the digest: layer 0's digest $(stat_of "$T/m6" layer.0.sha256 | cut -c1-12) when read"
	stop_spinning
	for _ in $(seq 300); do
		[[ $(stat_of "$T/m6" tree_saved) == 1 && $(stat_of "$T/m6" disk_writes_pending) == 0 ]] && break
		sleep 0.1
	done
	check "blocks before the digest: the digests are known, the writes done" bash -c \
		'[[ $1 == 1 && $2 == 0 ]] || { echo "tree_saved $1, writes pending $2"; exit 1; }' _ \
		"$(stat_of "$T/m6" tree_saved)" "$(stat_of "$T/m6" disk_writes_pending)"
	lfs_umount "$T/m6"
	if check "blocks before the digest: the next mount" lfs_mount -o cache_dir="$CDL",cache_dir_min=0 "$T/plain.list" "$T/m7"; then
		check "blocks before the digest: tree and bytes match" same_manifest "$T/ref_ab" "$T/m7"
		check "blocks before the digest: 0 bytes inflated (all from the disk tier)" \
			eq "$(stat_of "$T/m7" bytes_inflated)" 0
		lfs_umount "$T/m7"
	fi
fi
stop_spinning
# another stack, sharing layer B (now the lowest): B inflates nothing
if check "other stack sharing a layer: mounted" lfs_mount -o "$O" "$T/bc.list" "$T/m3"; then
	check "other stack: tree and bytes match" same_manifest "$T/ref_bc" "$T/m3"
	check "other stack: the shared layer inflated nothing" eq "$(stat_of "$T/m3" layer.0.bytes_inflated)" 0
	check "other stack: the new layer inflated" test "$(stat_of "$T/m3" layer.1.bytes_inflated)" -gt 0
	settle "$T/m3" >/dev/null
	lfs_umount "$T/m3"
fi

# --- files smaller than cache_dir_min (256K by default) stay in the layer:
# a record each would cost a random read of its own, and in the layer they
# come in with their neighbours.  One layer: 40 small files and a 1 MiB one
# (four blocks of 256K).
"$PY" - "$T/sizes.zip" <<'EOF'
import random, sys, zipfile
rng = random.Random(7)
words = [bytes(rng.choice(b"abcdefghij") for _ in range(rng.randint(2, 9))) for _ in range(500)]
def text(n):
	out = bytearray()
	while len(out) < n:
		out += rng.choice(words) + b" "
	return bytes(out[:n])
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
	for i in range(40):
		z.writestr("small/s%02d.txt" % i, text(4096))
	z.writestr("large.txt", text(1 << 20))
EOF
sha_list "$T/sizes.list" "$T/sizes.zip"
lfs_ref "$T/ref_sizes" "$T/sizes.zip"
CDS=$T/cache-sizes
lfs_daemon_dir "$CDS"
SBLK=$CDS/v1/$(sha "$T/sizes.zip")/262144
block_records() { ls "$SBLK" 2>/dev/null | grep -cE '^[0-9a-f]{16}\.[0-9a-f]+$'; }
if check "cache_dir_min: first mount" lfs_mount -o cache_dir="$CDS" "$T/sizes.list" "$T/z1"; then
	read_all "$T/z1"
	settle "$T/z1" >/dev/null
	lfs_umount "$T/z1"
fi
check "cache_dir_min: only the large file's four blocks were written" eq "$(block_records)" 4
if check "cache_dir_min: second mount" lfs_mount -o cache_dir="$CDS" "$T/sizes.list" "$T/z2"; then
	check "cache_dir_min: tree and bytes match" same_manifest "$T/ref_sizes" "$T/z2"
	check "cache_dir_min: the large file from disk (4 hits)" eq "$(stat_of "$T/z2" disk_hits)" 4
	check "cache_dir_min: the small files inflated from the layer" \
		eq "$(stat_of "$T/z2" bytes_inflated)" $((40 * 4096))
	lfs_umount "$T/z2"
fi
if check "cache_dir_min=2M: mounted" lfs_mount -o cache_dir="$CDS",cache_dir_min=2M "$T/sizes.list" "$T/z3"; then
	check "cache_dir_min=2M: tree and bytes match" same_manifest "$T/ref_sizes" "$T/z3"
	check "cache_dir_min=2M: nothing from disk" eq "$(stat_of "$T/z3" disk_hits)" 0
	check "cache_dir_min=2M: everything inflated" eq "$(stat_of "$T/z3" bytes_inflated)" $((40 * 4096 + (1 << 20)))
	lfs_umount "$T/z3"
fi
if check "cache_dir_min=0: mounted" lfs_mount -o cache_dir="$CDS",cache_dir_min=0 "$T/sizes.list" "$T/z4"; then
	read_all "$T/z4"
	settle "$T/z4" >/dev/null
	lfs_umount "$T/z4"
fi
check "cache_dir_min=0: every file's block written" eq "$(block_records)" 44

# --- two daemons on one directory, 8 readers each ---------------------------
RR=("$PY" "$LFS_IT_DIR/randread.py")
lfs_daemon_dir "$T/cache2"
if lfs_mount -o cache_dir="$T/cache2" "$T/ab.list" "$T/d1" &&
	lfs_mount -o cache_dir="$T/cache2" "$T/ab.list" "$T/d2"; then
	pids=() logs=()
	for m in d1 d2; do
		for i in 1 2 3 4; do
			timeout 300 "${RR[@]}" --seed "$i" --reads 60 "$T/$m/big/big40.bin" "$T/ref_ab/big/big40.bin" \
				>"$T/$m.$i.log" 2>&1 &
			pids+=($!) logs+=("$T/$m.$i.log")
			(timeout 300 bash -c 'cmp "$1" "$2" && cmp "$3" "$4"' _ "$T/$m/big/mid6.bin" \
				"$T/ref_ab/big/mid6.bin" "$T/$m/big/mid6_stored.bin" "$T/ref_ab/big/mid6_stored.bin" \
				>"$T/$m.c$i.log" 2>&1) &
			pids+=($!) logs+=("$T/$m.c$i.log")
		done
	done
	bad=0 why=
	for i in "${!pids[@]}"; do
		wait "${pids[$i]}"
		rc=$?
		[[ $rc -eq 0 ]] && continue
		bad=$((bad + 1))
		why+="${logs[$i]##*/} (exit $rc): $(tail -n 3 "${logs[$i]}" | tr '\n' ' ') "
	done
	check "two daemons, 8 readers each: every byte right" eq "$bad" 0 "readers that failed: $why"
	settle "$T/d1" >/dev/null
	settle "$T/d2" >/dev/null
	drop_all "$T/d1"
	check "two daemons: what they wrote together reads back right" same_manifest "$T/ref_ab" "$T/d1"
	lfs_umount "$T/d1"
	lfs_umount "$T/d2"
fi
check "two daemons: cache verify clean" \
	bash -c 'out=$("$1" cache verify -o cache_dir="$2") && [[ $out == *", 0 bad"* ]] || { echo "$out"; exit 1; }' \
	_ "$LAYERFS" "$T/cache2"

# --- damage: detected, logged, made again, right bytes ----------------------
hex=$(sha "$A")
BLK=$CD/v1/$hex/262144
records=("$BLK"/*.[0-9a-f]*)
check "damage: the layer has records on disk" test "${#records[@]}" -gt 10
blocks=($(cd "$BLK" && ls | grep -E '^[0-9a-f]{16}\.[0-9a-f]+$' | head -n 4))
points=($(cd "$BLK" && ls | grep -E '\.p[0-9a-f]+$' | head -n 1))
crcs=($(cd "$BLK" && ls | grep -E '\.crc$' | head -n 1))
check "damage: records of each kind to damage (4 blocks, a resume point, a CRC index)" \
	eq "${#blocks[@]} ${#points[@]} ${#crcs[@]}" "4 1 1" "blocks, points, CRC indexes"
truncate -s -7 "$BLK/${blocks[0]}"
python3 -c 'import sys; f = open(sys.argv[1], "r+b"); f.seek(200); b = f.read(1); f.seek(200); f.write(bytes([b[0] ^ 1]))' "$BLK/${blocks[1]}"
mv "$BLK/${blocks[2]}" "$BLK/${blocks[3]}" # a block of the wrong index (and size, at the end)
rm -f "$BLK/${points[0]:-none}" "$BLK/${crcs[0]:-none}" # an index gone
lfs_fg_mount "$T/dmg.log" -o "$O" "$T/ab.list" "$T/dmg"
check "damage: tree and bytes match" same_manifest "$T/ref_ab" "$T/dmg"
check "damage: three bad records dropped (stats)" eq "$(stat_of "$T/dmg" disk_bad_records)" 3
check "damage: one log line each" \
	bash -c '[[ $(grep -c "failed its checks" "$1") -eq 3 ]] || { cat "$1"; exit 1; }' _ "$T/dmg.log"
check "damage: what was dropped is made again" test "$(stat_of "$T/dmg" bytes_inflated)" -gt 0
settle "$T/dmg" >/dev/null
lfs_umount "$T/dmg"
check "damage: cache verify clean afterwards" \
	bash -c 'out=$("$1" cache verify -o cache_dir="$2") && [[ $out == *", 0 bad"* ]] || { echo "$out"; exit 1; }' \
	_ "$LAYERFS" "$CD"

# a layer changed in place has another digest: never its old entries
cp "$A" "$T/changing.zip"
sha_list "$T/ch.list" "$T/changing.zip"
if lfs_mount -o "$O" "$T/ch.list" "$T/ch1"; then
	read_all "$T/ch1"
	settle "$T/ch1" >/dev/null
	lfs_umount "$T/ch1"
fi
python3 - "$T/changing.zip" <<'EOF'
import sys, zipfile, os
# rewrite one member's bytes with others of the same size: a valid zip
# with other content
src = sys.argv[1]
tmp = src + ".new"
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zout:
    for info in zin.infolist():
        data = zin.read(info)
        if info.filename.endswith("mid6.bin"):
            data = bytes(b ^ 0x5a for b in data)
        zout.writestr(info, data)
os.replace(tmp, src)
EOF
sha_list "$T/ch.list" "$T/changing.zip"
lfs_ref "$T/ref_ch" "$T/changing.zip"
if check "changed zip: mounted" lfs_mount -o "$O" "$T/ch.list" "$T/ch2"; then
	check "changed zip: the new bytes are served, not the old entries" same_manifest "$T/ref_ch" "$T/ch2"
	lfs_umount "$T/ch2"
fi

# --- the quota holds under load ---------------------------------------------
lfs_daemon_dir "$T/small"
if check "quota: mounted with cache_dir_size=4M" \
	lfs_mount -o cache_dir="$T/small",cache_dir_size=4M "$T/ab.list" "$T/q"; then
	read_all "$T/q"
	settle "$T/q" >/dev/null
	drop_all "$T/q"
	read_all "$T/q"
	# measured once the writes are done: a record in flight is counted
	# (and pruned for) only once it is in place
	check "quota: writes settle" settle "$T/q"
	# the quota covers the records (v1/), not the kept tree and digests
	# beside them; 64 KiB is for v1's own folders
	used=$(du -sk "$T/small/v1" | cut -f1)
	lfs_log "quota: v1/ $used KiB, the whole directory $(du -sk "$T/small" | cut -f1) KiB"
	check "quota: the records take at most the quota ($used KiB)" test "$used" -le $((4096 + 64))
	check "quota: records were evicted" test "$(stat_of "$T/q" disk_evictions)" -gt 0
	lfs_umount "$T/q"
fi

# --- a tiny tmpfs fills up (a quota larger than the disk): writes turn off,
# one line, reads stay right
mkdir -p "$T/tiny"
if mount -t tmpfs -o size=2m,mode=0700 tmpfs "$T/tiny" 2>/dev/null; then
	lfs_register_mount "$T/tiny"
	chown "$LFS_DAEMON_USER:" "$T/tiny"
	lfs_fg_mount "$T/full.log" -o cache_dir="$T/tiny",cache_dir_size=64M "$T/ab.list" "$T/full"
	check "full disk: tree and bytes match" same_manifest "$T/ref_ab" "$T/full"
	settle "$T/full" >/dev/null
	check "full disk: writes turned off" eq "$(stat_of "$T/full" disk_writing)" 0
	check "full disk: one log line says so" \
		bash -c '[[ $(grep -c "writes no more" "$1") -eq 1 ]] || { cat "$1"; exit 1; }' _ "$T/full.log"
	drop_all "$T/full"
	check "full disk: bytes still right afterwards" same_manifest "$T/ref_ab" "$T/full"
	lfs_umount "$T/full"
	umount "$T/tiny"
fi

# --- kill -9 while writing heavily, then a restart ---------------------------
lfs_daemon_dir "$T/crash"
lfs_fg_mount "$T/k.log" -o cache_dir="$T/crash",cache_level=3 "$T/ab.list" "$T/k"
# the daemon itself: $LFS_FG_PID is the timeout(1) around it, whose death
# leaves the daemon running (to shut down cleanly at the umount below)
kpid=$(stat_of "$T/k" pid)
(cat "$T/k/big/big40.bin" >/dev/null 2>&1) &
reader=$!
# killed once it has written a record (the writer runs in the idle class,
# so on a busy machine that may take a while), while it still reads
for _ in $(seq 300); do
	[[ $(stat_of "$T/k" disk_records_written) -gt 0 ]] && break
	sleep 0.1
done
kill -9 "$kpid"
wait "$LFS_FG_PID" "$reader" 2>/dev/null
check "kill -9 while writing: the daemon is gone at once" lfs_wait_exit "$kpid" 2
umount -l "$T/k" 2>/dev/null
# records are written under a temporary name and renamed into place: a
# kill leaves none half-written, so verify finds records and none bad
check "kill -9 while writing: cache verify finds the records written before the kill, none bad" \
	bash -c 'out=$("$1" cache verify -o cache_dir="$2") || { echo "$out"; exit 1; }; echo "$out"
		[[ $out =~ ": "([0-9]+)" records checked, 0 bad" && ${BASH_REMATCH[1]} -gt 0 ]]' \
	_ "$LAYERFS" "$T/crash"
check "kill -9 while writing: after verify, verify is clean" \
	bash -c 'out=$("$1" cache verify -o cache_dir="$2") && [[ $out == *", 0 bad"* ]] || { echo "$out"; exit 1; }' \
	_ "$LAYERFS" "$T/crash"
if check "kill -9 while writing: restarted" lfs_mount -o cache_dir="$T/crash" "$T/ab.list" "$T/k2"; then
	check "kill -9 while writing: every byte right" same_manifest "$T/ref_ab" "$T/k2"
	lfs_umount "$T/k2"
fi

# --- layerfs cache --------------------------------------------------------
check "cache stats: size, layers, hit rate" \
	bash -c 'out=$("$1" cache stats -o cache_dir="$2") && [[ $out == *"layer versions     4"* && $out == *"% hits"* ]] || { echo "$out"; exit 1; }' \
	_ "$LAYERFS" "$CD"
# the bytes the block records hold, as a census of the records' heads: the
# layers' blocks (text, zstd level 1) take less room than they hold, and
# each of the four layer versions has its line
check "cache stats: disk bytes per layer and the zstd ratio" \
	bash -c 'out=$("$1" cache stats -o cache_dir="$2") || exit 1
		[[ $out =~ "zstd ratio "([0-9]+)\.[0-9]+ && ${BASH_REMATCH[1]} -ge 1 &&
			$(grep -c "^layer [0-9a-f]\{16\} .* on disk, [0-9]* blocks holding" <<<"$out") -eq 4 ]] ||
			{ echo "$out"; exit 1; }
		[[ $(grep -o "ratio [0-9.]*)" <<<"$out" | head -n 1) != "ratio 0.00)" ]] || { echo "$out"; exit 1; }' \
	_ "$LAYERFS" "$CD"
check "cache prune: down to cache_dir_size" \
	bash -c '"$1" cache prune -o cache_dir="$2",cache_dir_size=1M >/dev/null && [[ $(du -sk "$2" | cut -f1) -le 1100 ]]' \
	_ "$LAYERFS" "$CD"
check "cache clear: nothing left but the digests" \
	bash -c '"$1" cache clear -o cache_dir="$2" >/dev/null && [[ ! -e "$2/v1" && -d "$2/digests" && -z $(ls "$2/trees") ]]' \
	_ "$LAYERFS" "$CD"
check "cache stats of a missing default directory: one line, exit 1" \
	bash -c 'out=$("$1" cache stats -o cache_dir="$2/nope/deeper" 2>&1) && exit 1; [[ $(wc -l <<<"$out") -eq 1 ]] || { echo "$out"; exit 1; }' \
	_ "$LAYERFS" "$T"

lfs_finish
