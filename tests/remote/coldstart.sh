#!/usr/bin/env bash
# Cold starts from the object store (docs/remote.md has the results):
# a layer behind nginx and the fault proxy with 2 and 20 ms added to every
# request, mounted straight from there by layerfs, against the same mount
# from the local zip, against downloading it first (curl) and extracting it
# (unzip -o) or mounting it locally.  Root (it drops the page cache).
#
#   tests/remote/coldstart.sh [ROUNDS] [LATENCIES_MS]
#
# LAYER   the zip (default: python-datascience.zip from tools/build-layers.sh,
#         built into ~/.cache/layerfs-coldstart/layers when missing)
# CMD     the command, {root} being the tree (default: import pandas)
# LAYERFS the binary (default: build/layerfs)
# MOUNT_OPTS  more -o options of the remote mounts (remote_chunk_size=128K, ...)
# STRATEGIES  which of coldstart.py's to run (default: all)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export BENCH_DIR=$here ROUNDS=${1:-5} LATENCIES=${2:-"2 20"}
export LAYERFS=${LAYERFS:-$root/build/layerfs}
layers=${LAYERFS_COLDSTART_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/layerfs-coldstart}/layers
export LAYER=${LAYER:-$layers/python-datascience.zip}
export CMD=${CMD:-'PYTHONPATH={root}/python LD_LIBRARY_PATH={root}/lib /usr/bin/python3 -c "import pandas"'}
[ -x "$LAYERFS" ] || make -C "$root" >/dev/null
if [ ! -f "$LAYER" ]; then
	"$root/tools/build-layers.sh" "$(dirname "$LAYER")" python >&2
fi
. "$root/tools/ensure-debs.sh"
ensure_debs curl unzip

# coldstart.py keeps the store's copy in tmpfs, out of reach of the page
# cache it drops
trap 'rm -rf /dev/shm/layerfs-coldstart-store' EXIT
export MOUNT_OPTS=${MOUNT_OPTS:-} STRATEGIES=${STRATEGIES:-}
export LFS_REMOTE_CMD='/usr/bin/python3 "$BENCH_DIR/coldstart.py" --layerfs "$LAYERFS" --zip "$LAYER" --cmd "$CMD" --runs "$ROUNDS" --latencies "$LATENCIES" --mount-opts "$MOUNT_OPTS" ${STRATEGIES:+--strategies "$STRATEGIES"}'
bash "$here/run.sh"
