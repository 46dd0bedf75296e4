#!/usr/bin/env bash
# make bench: layerfs against baselines measured in the same run.
# Needs root (mounting, dropping the page cache).  Prints a table; every
# number is measured here, now.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
layerfs=${LAYERFS:-$top/build/layerfs}
speed=$top/build/tests/inflate_speed
data=${BENCH_DATA:-$top/build/bench-data}
work=$(mktemp -d /tmp/layerfs-bench.XXXXXX)
mnt=$work/mnt
mkdir -p "$mnt"
cleanup() {
	mountpoint -q "$mnt" 2>/dev/null && { "$layerfs" umount "$mnt" 2>/dev/null || umount -l "$mnt"; }
	rm -rf "$work" /dev/shm/layerfs-bench-big.bin
}
trap cleanup EXIT

"$here/make_data.sh" "$data"
json() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
fmt() { printf '%.*f' "${2:-0}" "$1"; }
drop_page_cache() { sync; echo 3 > /proc/sys/vm/drop_caches; }
warm() { cat "$@" > /dev/null; }   # the zips themselves: we measure inflation, not the disk
mount_stack() { # ZIP OPTIONS
	printf '%s\n' "$1" > "$work/list"
	"$layerfs" mount -o "$2" "$work/list" "$mnt" 2>>"$work/daemon.log"
}
umount_stack() { "$layerfs" umount "$mnt"; }
stat_of() { "$layerfs" stats "$mnt" | awk -v k="$1" '$1 == k { print $2 }'; }
rss_hwm_kb() { awk '/VmHWM/ { print $2 }' "/proc/$(stat_of pid)/status"; }

rows=()
row() { rows+=("$(printf '| %s | %s | %s | %s |' "$1" "$2" "$3" "$4")"); echo "bench: $1: $2 (baseline $3; $4)" >&2; }

# 1. cold sequential read of a 256 MiB deflated member
# in-process baselines, each the median of five runs like the mount's figure
read -r isal zlib libdeflate < <(for _ in 1 2 3 4 5; do "$speed" "$data/big.zip" big.bin; done |
	python3 -c 'import sys, statistics as st
v = {}
for line in sys.stdin:
    k, x = line.split()
    v.setdefault(k, []).append(float(x))
print(*(st.median(v[k]) for k in ("isal", "zlib", "libdeflate")))')
# Median of five cold mounts: one run on a 2-core machine varies by +-7 %.
# The first stays mounted for items 2 and 3, which are measured before the
# other two: page-cache copies ran a third slower right after mounts had
# allocated and freed a few hundred MiB (tmpfs and layerfs alike).
cold_run() {
	drop_page_cache; warm "$data/big.zip"
	mount_stack "$data/big.zip" cache_size=512M
	colds+=("$(python3 "$here/readbench.py" seq "$mnt/big.bin" | json mbps)")
}
colds=()
cold_run

# 2. warm re-read: kernel page cache, then daemon cache only
# A page-cache copy runs as fast as the placement of its pages allows (on
# this VM, by a third either way from one population of the same file to
# the next, tmpfs and layerfs alike: layerfs has no part in a page-cache
# hit).  It follows the order of allocation: of two copies populated one
# after the other, the second read 1.5-2x as fast as the first, whichever
# it was.  So both copies are dropped and populated afresh eight times,
# each going first in four of them, and the means of their best-of-5
# passes are compared.
best_of() { # FILE: the best sequential pass, MB/s
	python3 "$here/readbench.py" best 5 "$1" | json mbps
}
mean() { printf '%s\n' "$@" | awk '{ s += $1 } END { print s / NR }'; }
populate_tmpfs() { cp "$data/big.bin" /dev/shm/layerfs-bench-big.bin; }
populate_layerfs() { warm "$mnt/big.bin"; } # from the daemon's cache
tmpfs_runs=(); pc_runs=()
for round in $(seq 8); do
	python3 "$here/readbench.py" evict "$mnt/big.bin"
	rm -f /dev/shm/layerfs-bench-big.bin
	if ((round % 2)); then
		populate_tmpfs; populate_layerfs
		tmpfs_runs+=("$(best_of /dev/shm/layerfs-bench-big.bin)")
		pc_runs+=("$(best_of "$mnt/big.bin")")
	else
		populate_layerfs; populate_tmpfs
		pc_runs+=("$(best_of "$mnt/big.bin")")
		tmpfs_runs+=("$(best_of /dev/shm/layerfs-bench-big.bin)")
	fi
done
tmpfs=$(mean "${tmpfs_runs[@]}"); warm_pc=$(mean "${pc_runs[@]}")
drop_page_cache; warm "$data/big.zip"
warm_dc=$(python3 "$here/readbench.py" seq "$mnt/big.bin" | json mbps)
rm -f /dev/shm/layerfs-bench-big.bin
row "2a. warm re-read, page cache (MB/s, mean of 8 populations, best of 5 passes each)" \
	"$(fmt "$warm_pc") ($(printf '%.0f ' "${pc_runs[@]}" | sed 's/ $//'))" \
	"extracted copy on tmpfs $(fmt "$tmpfs") ($(printf '%.0f ' "${tmpfs_runs[@]}" | sed 's/ $//'))" \
	"target >= 0.8x ($(fmt "$(echo "$warm_pc / $tmpfs" | bc -l)" 2)x)"
row "2b. warm re-read, page cache dropped, daemon cache hot (MB/s)" "$(fmt "$warm_dc")" \
	"extracted copy on tmpfs $(fmt "$tmpfs")" "$(fmt "$(echo "$warm_dc / $tmpfs" | bc -l)" 2)x"

# 3. random 4 KiB reads after the first pass, with page cache and daemon
# blocks dropped (resume points kept)
"$layerfs" dropcache "$mnt"; sleep 0.2
drop_page_cache; warm "$data/big.zip"
rnd=$(python3 "$here/readbench.py" random "$mnt/big.bin" 1000 4096)
p50=$(echo "$rnd" | json p50_ms); p99=$(echo "$rnd" | json p99_ms); pmax=$(echo "$rnd" | json max_ms)
rp=$(stat_of resume_points)
row "3. 1,000 random 4 KiB reads after first pass, caches dropped (ms)" \
	"p50 $(fmt "$p50" 2), p99 $(fmt "$p99" 2), max $(fmt "$pmax" 1)" "inflating one resume spacing (1 MiB) with ISA-L: $(fmt "$(echo "1.048576 / $isal * 1000" | bc -l)" 2)" \
	"target p99 < 5 ms; $rp resume points held"
umount_stack
for _ in 2 3 4 5; do cold_run; umount_stack; done
cold=$(printf '%s\n' "${colds[@]}" | sort -g | sed -n 3p)
row "1. cold sequential read, 256 MiB deflated member (MB/s, median of 5)" \
	"$(fmt "$cold") ($(printf '%.0f ' "${colds[@]}" | sed 's/ $//'))" \
	"ISA-L in-process $(fmt "$isal"), zlib $(fmt "$zlib"), libdeflate $(fmt "$libdeflate")" \
	"target >= 0.8x ISA-L ($(fmt "$(echo "$cold / $isal" | bc -l)" 2)x), >= 2x zlib ($(fmt "$(echo "$cold / $zlib" | bc -l)" 2)x)"

# 4. 1 GiB of deflated members through a 64 MiB budget: daemon peak RSS
drop_page_cache; warm "$data/four.zip"
mount_stack "$data/four.zip" cache_size=64M
base_rss=$(rss_hwm_kb)
python3 "$here/readbench.py" seq "$mnt/m0.bin" "$mnt/m1.bin" "$mnt/m2.bin" "$mnt/m3.bin" > /dev/null
rss=$(rss_hwm_kb)
row "4. read 1 GiB of deflated members, 64 MiB budget: daemon peak RSS (MiB)" \
	"$(fmt "$(echo "$rss / 1024" | bc -l)")" "budget 64, RSS before reading $(fmt "$(echo "$base_rss / 1024" | bc -l)")" \
	"target <= 96 (budget + 32)"
umount_stack

# 4b. the same with default options (the default budget): the host cache
# issue's bound, cache_size + 32 MiB while a whole stack is read
drop_page_cache; warm "$data/four.zip"
printf '%s\n' "$data/four.zip" > "$work/list"
"$layerfs" mount "$work/list" "$mnt" 2>>"$work/daemon.log"
budget=$(stat_of cache_budget)
python3 "$here/readbench.py" seq "$mnt/m0.bin" "$mnt/m1.bin" "$mnt/m2.bin" "$mnt/m3.bin" > /dev/null
rss=$(rss_hwm_kb)
row "4b. read 1 GiB of deflated members, default options: daemon peak RSS (MiB)" \
	"$(fmt "$(echo "$rss / 1024" | bc -l)")" "budget $(fmt "$(echo "$budget / 1048576" | bc -l)")" \
	"target <= $(fmt "$(echo "$budget / 1048576 + 32" | bc -l)") (budget + 32)"
umount_stack

# 5. mounting a layer of 100,000 entries
best_wall=999; best_open=999
for i in 1 2 3 4 5; do
	drop_page_cache; warm "$data/many.zip"
	t0=$(date +%s.%N)
	mount_stack "$data/many.zip" cache_size=64M
	t1=$(date +%s.%N)
	open=$(stat_of mount_seconds)
	umount_stack
	best_wall=$(echo "w=$t1 - $t0; if (w < $best_wall) w else $best_wall" | bc -l)
	best_open=$(echo "if ($open < $best_open) $open else $best_open" | bc -l)
done
row "5. mount a layer of 100,000 entries (ms, best of 5)" \
	"$(fmt "$(echo "$best_wall * 1000" | bc -l)") end to end, $(fmt "$(echo "$best_open * 1000" | bc -l)") index+tree" \
	"unzip -l of the same zip: $(fmt "$( { /usr/bin/time -f %e unzip -l "$data/many.zip" > /dev/null; } 2>&1 | tail -1 | awk '{ print $1 * 1000 }')")" \
	"target < 150"

# 7. mounting that layer again on a host that mounted it before: with
# cache_dir, the tree cache has its index and merged tree (issue goal:
# <= 10 ms from command start to mount live).  Page cache warm, as on a
# host that mounts the stack often; the first mount makes the cache.
mount_stack "$data/many.zip" cache_size=64M,cache_dir="$work/hostcache"
for _ in $(seq 100); do # the tree is saved once the layer is hashed
	[ "$(stat_of tree_saved)" = 1 ] && break
	sleep 0.1
done
umount_stack
best_known=999
for i in 1 2 3 4 5; do
	t0=$(date +%s.%N)
	mount_stack "$data/many.zip" cache_size=64M,cache_dir="$work/hostcache"
	t1=$(date +%s.%N)
	[ "$(stat_of tree_cached)" = 1 ] || echo "bench: 7. the mount did not come from the tree cache" >&2
	umount_stack
	best_known=$(echo "w=$t1 - $t0; if (w < $best_known) w else $best_known" | bc -l)
done
row "7. mount the 100,000-entry layer again with cache_dir (tree cache; ms, best of 5)" \
	"$(fmt "$(echo "$best_known * 1000" | bc -l)") end to end" \
	"the same mount without it (item 5): $(fmt "$(echo "$best_wall * 1000" | bc -l)")" "target <= 10"

# 6. four parallel readers of different members against one reader
drop_page_cache; warm "$data/four.zip"
mount_stack "$data/four.zip" cache_size=64M
one=$(python3 "$here/readbench.py" seq "$mnt/m0.bin" | json mbps)
umount_stack
drop_page_cache; warm "$data/four.zip"
mount_stack "$data/four.zip" cache_size=64M
four=$(python3 "$here/readbench.py" seq "$mnt/m0.bin" "$mnt/m1.bin" "$mnt/m2.bin" "$mnt/m3.bin" | json mbps)
umount_stack
row "6. four parallel readers, different members, cold (MB/s aggregate)" "$(fmt "$four")" \
	"one reader $(fmt "$one")" "$(fmt "$(echo "$four / $one" | bc -l)" 2)x on $(nproc) cores"

echo
echo "| benchmark | layerfs | baseline (same run) | target / ratio |"
echo "| --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}" | sort # in item order
