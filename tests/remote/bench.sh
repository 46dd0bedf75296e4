#!/usr/bin/env bash
# Chooses the remote source's chunk size: a layer shaped like a Python one
# (4,000 small deflated files in 200 packages, one 24 MiB library) behind
# nginx and the fault proxy's added latency, read by chunk_bench at each
# chunk size in turn, ROUNDS rounds, medians printed.
#   CHUNK_BENCH=build/tests/chunk_bench bash tests/remote/bench.sh [ROUNDS] [LATENCIES_MS] [CHUNKS_KIB]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${CHUNK_BENCH:?set CHUNK_BENCH to build/tests/chunk_bench}"
export BENCH_DIR=$here WORKLOADS=${WORKLOADS:-} CHUNK_BENCH ROUNDS=${1:-5} LATENCIES=${2:-"2 20"} CHUNKS=${3:-"64 128 256 512 1024"}

LFS_REMOTE_CMD='
set -euo pipefail
/usr/bin/python3 "$BENCH_DIR/benchlayer.py" "$LFS_DATA/bench.zip"
ls -l "$LFS_DATA/bench.zip" >&2
for lat in $LATENCIES; do
	url="$LFS_PROXY/_f/lat=$lat/bench.zip"
	for work in ${WORKLOADS:-cold dense seq}; do
		out=$(mktemp)
		for r in $(seq 1 "$ROUNDS"); do
			for c in $CHUNKS; do
				"$CHUNK_BENCH" "$url" "$c" "$work" >>"$out"
			done
		done
		echo "latency ${lat} ms per request, $work, medians of $ROUNDS:"
		for c in $CHUNKS; do
			grep "^chunk *${c}K $work " "$out" | sort -k4 -n | awk -v n="$ROUNDS" "NR == int((n + 1) / 2)"
		done
		rm -f "$out"
	done
done
'
export LFS_REMOTE_CMD
bash "$here/run.sh"
