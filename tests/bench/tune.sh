#!/usr/bin/env bash
# How block_size and resume_spacing were chosen: cold sequential speed and
# random-read latency (after a first pass, blocks dropped) of the 256 MiB
# benchmark member for each pair, plus the memory resume points take.
#   tests/bench/tune.sh   (root; uses build/bench-data from make bench)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
layerfs=${LAYERFS:-$top/build/layerfs}
data=${BENCH_DATA:-$top/build/bench-data}
work=$(mktemp -d /tmp/layerfs-tune.XXXXXX)
mnt=$work/mnt
mkdir -p "$mnt"
trap 'mountpoint -q "$mnt" && "$layerfs" umount "$mnt"; rm -rf "$work"' EXIT
"$here/make_data.sh" "$data"
echo "$data/big.zip" > "$work/list"
json() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
echo "| block_size | resume_spacing | cold sequential MB/s | random 4K p50 ms | p99 ms | resume points MiB |"
echo "| --- | --- | --- | --- | --- | --- |"
for block in 64K 128K 256K 1M; do
	for spacing in 512K 1M 4M; do
		case "$block/$spacing" in 1M/512K) continue ;; esac
		sync; echo 3 > /proc/sys/vm/drop_caches; cat "$data/big.zip" > /dev/null
		"$layerfs" mount -o "cache_size=1G,block_size=$block,resume_spacing=$spacing" "$work/list" "$mnt"
		seq=$(python3 "$here/readbench.py" seq "$mnt/big.bin" | json mbps)
		"$layerfs" dropcache "$mnt"; sleep 0.2
		# with blocks and parked streams dropped, what is left is resume points
		rpbytes=$("$layerfs" stats "$mnt" | awk '$1 == "cache_bytes" { print $2 }')
		sync; echo 3 > /proc/sys/vm/drop_caches; cat "$data/big.zip" > /dev/null
		rnd=$(python3 "$here/readbench.py" random "$mnt/big.bin" 300 4096)
		"$layerfs" umount "$mnt"
		printf '| %s | %s | %.0f | %.2f | %.2f | %.1f |\n' "$block" "$spacing" "$seq" \
			"$(echo "$rnd" | json p50_ms)" "$(echo "$rnd" | json p99_ms)" \
			"$(echo "$rpbytes / 1048576" | bc -l)"
	done
done
