#!/usr/bin/env bash
# Reproduces docs/coldstart.md in one command (as root, for dropping the page
# cache): installs what is missing, builds layerfs and the real-package layers
# if missing, and runs tools/coldstart on each experiment.
#
#   tools/coldstart-all.sh                 all experiments, RUNS runs each
#   RUNS=3 tools/coldstart-all.sh python-pandas
#
# Experiments: python-pandas, python-scipy, node-aws-sdk (one layer each),
# stack-find (find over the whole tree) and stack-read (every file read,
# tar -cf - . | wc -c) on the stack of all three layers of
# tools/build-layers.sh (Python, Node, 40,000 small files).
# Environment:
#   RUNS=10               runs per strategy
#   OUT=docs/coldstart    where the CSV/MD/PNG files go
#   LAYERS=DIR            where the layer zips are built (default
#                         ~/.cache/layerfs-coldstart/layers; rebuilt only if missing)
#   LAYERFS=build/layerfs the binary under test (built with make if missing)
#   STRATEGIES=extract,cold,hostfirst,hostwarm,hostauto,traced,warm,hot,disk,floor
#                         (hostfirst/hostwarm: cold with an empty or a filled host
#                         cache; hostauto: a filled one with prefetch=auto, replaying
#                         the start recorded in it; traced: cold replaying a trace
#                         of an earlier run)
#   MOUNT_OPTS=...        passed to layerfs mount -o
#   WAIT_IDLE=5           before each run, wait up to this many seconds for the
#                         rest of the machine to go idle (other builds skew timings)
#   URING=1               set the fuse module's enable_uring for the run (put back
#                         at the end): every mount serves through io_uring (-o uring)
# The results of every experiment are also gathered in OUT/results.md.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
# shellcheck source-path=SCRIPTDIR source=ensure-debs.sh
. "$HERE/ensure-debs.sh"

case "${1:-}" in -h | --help)
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
	exit 0
	;;
esac

RUNS=${RUNS:-10}
OUT=${OUT:-$REPO/docs/coldstart}
CACHE=${LAYERFS_COLDSTART_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/layerfs-coldstart}
LAYERS=${LAYERS:-$CACHE/layers}
LAYERFS=${LAYERFS:-$REPO/build/layerfs}
STRATEGIES=${STRATEGIES:-extract,cold,hostfirst,hostwarm,hostauto,traced,warm,hot,disk,floor}
MOUNT_OPTS=${MOUNT_OPTS:-}
WAIT_IDLE=${WAIT_IDLE:-5}
URING=${URING:-0}
export LAYERFS_COLDSTART_CACHE=$CACHE
URING_PARAM=/sys/module/fuse/parameters/enable_uring

ALL=(python-pandas python-scipy node-aws-sdk stack-find stack-read)
WANT=("$@")
[ ${#WANT[@]} -gt 0 ] || WANT=("${ALL[@]}")

if [ "$(id -u)" != 0 ]; then
	echo "coldstart-all: not root: the page cache cannot be dropped, so the 'cold' numbers will not be cold" >&2
fi

# unzip/zip: extraction and layers; gnuplot-nox: charts; fuse3: fusermount3
# for the fallback unmount; python3: Debian's, which the Python layer targets.
ensure_debs zip unzip gnuplot-nox fuse3 python3

case ",$STRATEGIES," in
*,cold,* | *,warm,* | *,hot,* | *,host*,* | *,traced,*)
	if [ ! -x "$LAYERFS" ]; then
		echo "coldstart-all: $LAYERFS missing, running make" >&2
		make -C "$REPO" >&2
	fi
	[ -x "$LAYERFS" ] || { echo "coldstart-all: no layerfs binary at $LAYERFS" >&2; exit 1; }
	;;
esac

# The experiments all use one private copy of the binary, so a rebuild while
# they run cannot mix two builds in one set of results.
BIN=$(mktemp -d "${TMPDIR:-/tmp}/coldstart-bin.XXXXXX")
uring_was=
trap 'rm -rf "$BIN"; [ -z "$uring_was" ] || echo "$uring_was" >"$URING_PARAM"' EXIT
if [ "$URING" = 1 ]; then
	[ -w "$URING_PARAM" ] || { echo "coldstart-all: URING=1: this kernel has no FUSE over io_uring ($URING_PARAM)" >&2; exit 1; }
	uring_was=$(cat "$URING_PARAM")
	echo Y >"$URING_PARAM"
fi
if [ -x "$LAYERFS" ]; then
	for try in 1 2 3 4 5; do # a build may be writing it right now
		cp -p "$LAYERFS" "$BIN/layerfs"
		"$BIN/layerfs" --version >/dev/null 2>&1 && break
		[ $try = 5 ] && { echo "coldstart-all: $LAYERFS --version fails" >&2; exit 1; }
		sleep 3
	done
else
	: >"$BIN/layerfs" # not needed: no layerfs strategy asked for
fi

need_py=0 need_node=0 need_small=0
for e in "${WANT[@]}"; do
	case "$e" in
	python-* | stack-*) [ -f "$LAYERS/python-datascience.zip" ] || need_py=1 ;;&
	node-* | stack-*) [ -f "$LAYERS/nodejs-aws-sdk.zip" ] || need_node=1 ;;&
	stack-*) [ -f "$LAYERS/small-files.zip" ] || need_small=1 ;;
	esac
done
build=()
[ $need_py = 0 ] || build+=(python)
[ $need_node = 0 ] || build+=(node)
[ $need_small = 0 ] || build+=(small)
if [ ${#build[@]} -gt 0 ]; then
	"$HERE/build-layers.sh" "$LAYERS" "${build[@]}"
fi
printf '# Python data-science layer (tools/build-layers.sh)\npython-datascience.zip name=python-datascience version=1\n' \
	>"$LAYERS/python.list"
printf '# Node.js AWS SDK layer (tools/build-layers.sh)\nnodejs-aws-sdk.zip name=nodejs-aws-sdk version=1\n' \
	>"$LAYERS/node.list"
printf '# The three layers of tools/build-layers.sh, stacked\npython-datascience.zip name=python-datascience version=1\nnodejs-aws-sdk.zip name=nodejs-aws-sdk version=1\nsmall-files.zip name=small-files version=1\n' \
	>"$LAYERS/stack.list"

# The function commands.  Each checks that what it loaded came from {root},
# and prints where from (compared across strategies by coldstart).
PY_ENV='PYTHONPATH={root}/python LD_LIBRARY_PATH={root}/lib'
PY_CHECK='assert pandas.__file__.startswith(sys.argv[1] + "/"), pandas.__file__; print(pandas.__file__)'
NODE_ENV='NODE_PATH={root}/nodejs/node_modules NODE_NO_WARNINGS=1 AWS_SDK_JS_SUPPRESS_MAINTENANCE_MODE_MESSAGE=1'
NODE_JS='const AWS = require("aws-sdk"); new AWS.S3(); new AWS.DynamoDB.DocumentClient();
const { S3Client } = require("@aws-sdk/client-s3"); new S3Client({ region: "us-east-1" });
require("@aws-sdk/lib-dynamodb"); require("lodash"); require("moment");
const p = require.resolve("aws-sdk"); if (!p.startsWith(process.argv[1] + "/")) throw new Error(p);
console.log(p);'

list_of() {
	case "$1" in
	python-*) echo "$LAYERS/python.list" ;;
	node-*) echo "$LAYERS/node.list" ;;
	stack-*) echo "$LAYERS/stack.list" ;;
	esac
}
cmd_of() {
	case "$1" in
	python-pandas) echo "$PY_ENV /usr/bin/python3 -c 'import sys, pandas; $PY_CHECK' {root}" ;;
	python-scipy) echo "$PY_ENV /usr/bin/python3 -c 'import sys, pandas, scipy.stats; $PY_CHECK' {root}" ;;
	node-aws-sdk) echo "$NODE_ENV node -e '$NODE_JS' {root}" ;;
	stack-find) echo "find {root} -printf . | wc -c" ;;
	stack-read) echo "tar -cf - -C {root} . | wc -c" ;;
	*) return 1 ;;
	esac
}

mkdir -p "$OUT"
status=0
start=$(date +%s)
for e in "${WANT[@]}"; do
	cmd=$(cmd_of "$e") || { echo "coldstart-all: unknown experiment $e (have: ${ALL[*]})" >&2; exit 2; }
	echo "coldstart-all: $e" >&2
	opts=()
	[ -z "$MOUNT_OPTS" ] || opts=(--mount-opts "$MOUNT_OPTS")
	"$HERE/coldstart" --list "$(list_of "$e")" --label "$e" --cmd "$cmd" --runs "$RUNS" \
		--strategies "$STRATEGIES" --layerfs "$BIN/layerfs" --layerfs-name "$LAYERFS" \
		--out "$OUT" --wait-idle "$WAIT_IDLE" \
		"${opts[@]}" >/dev/null || status=$?
done

{
	echo "# Cold-start results"
	echo
	echo "Written by \`tools/coldstart-all.sh\` (RUNS=$RUNS${MOUNT_OPTS:+, MOUNT_OPTS=$MOUNT_OPTS}$([ "$URING" = 1 ] && echo ', URING=1')); see ../coldstart.md for what they mean."
	for e in "${ALL[@]}"; do
		[ -f "$OUT/$e.md" ] || continue
		echo
		cat "$OUT/$e.md"
	done
} >"$OUT/results.md"
echo "coldstart-all: done in $(($(date +%s) - start))s; results in $OUT/results.md" >&2
exit $status
