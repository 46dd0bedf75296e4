#!/usr/bin/env bash
# Runs every integration test file (tests/it/test_*.sh) and prints the
# combined "N passed, M failed" line; exits non-zero if anything failed.
#
#   tests/it/run.sh [TEST_FILE...]
#
# LAYERFS      the binary (default: build/layerfs under the repo root)
# LFS_GEN_DIR  reuse layers made by tests/gen/gen_layers.sh (otherwise they
#              are generated once into a temp dir and removed at the end)
# LFS_URING=1  every mount over FUSE's io_uring queues: the fuse module's
#              enable_uring is set for the run and put back at the end
#              (a kernel without it: nothing to run, said so, a pass)
# Needs root (FUSE mounts), zip, unzip, bsdtar, 7z, jar, fusermount3,
# getfattr, python3; node and cc are optional.
set -uo pipefail
IT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$IT/../.." && pwd)
LAYERFS=${LAYERFS:-$REPO/build/layerfs}
case $LAYERFS in /*) ;; *) LAYERFS=$REPO/$LAYERFS ;; esac
export LAYERFS

start=$(date +%s)

# tools the suite needs (Debian packages: zip unzip libarchive-tools
# p7zip-full openjdk-17-jdk-headless attr fuse3 util-linux; optional: nodejs,
# gcc).  A missing one is a failure, not a silent skip.
missing=()
for tool in zip unzip bsdtar 7z jar fusermount3 getfattr mountpoint timeout "${PYTHON:-python3}"; do
	command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [[ ${#missing[@]} -gt 0 ]]; then
	echo "FAIL missing tools: ${missing[*]}"
	echo "0 passed, 1 failed"
	exit 1
fi
uring_param=/sys/module/fuse/parameters/enable_uring uring_was=
if [[ ${LFS_URING:-0} == 1 ]]; then
	if [[ ! -w $uring_param ]]; then
		echo "## LFS_URING=1: this kernel has no FUSE over io_uring ($uring_param): nothing to run"
		echo "0 passed, 0 failed"
		exit 0
	fi
	uring_was=$(cat "$uring_param")
	echo Y >"$uring_param"
	echo "## every mount over io_uring (enable_uring was $uring_was)"
fi
gen_tmp=
cleanup() {
	if [[ -n $uring_was ]]; then echo "$uring_was" >"$uring_param"; fi
	if [[ -n $gen_tmp ]]; then rm -rf --one-file-system "$gen_tmp"; fi
	if [[ -n ${logdir:-} ]]; then rm -rf "$logdir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

if [[ -z ${LFS_GEN_DIR:-} ]]; then
	gen_tmp=$(mktemp -d "${TMPDIR:-/tmp}/layerfs-gen.XXXXXX")
	echo "## generating layers in $gen_tmp"
	if ! bash "$REPO/tests/gen/gen_layers.sh" "$gen_tmp" >"$gen_tmp/gen.log" 2>&1; then
		cat "$gen_tmp/gen.log"
		echo "FAIL layer generation"
		echo "0 passed, 1 failed"
		exit 1
	fi
	export LFS_GEN_DIR=$gen_tmp
fi

if [[ $# -gt 0 ]]; then
	tests=("$@")
else
	tests=("$IT"/test_*.sh)
fi
logdir=$(mktemp -d "${TMPDIR:-/tmp}/layerfs-itlog.XXXXXX")
pass=0 fail=0
summary=()
for t in "${tests[@]}"; do
	name=$(basename "$t" .sh)
	echo "## $name"
	log=$logdir/$name.log
	# output goes to a file, not a pipe: a FUSE daemon that inherits a pipe
	# must not be able to stall the runner
	rc=0
	t0=$(date +%s)
	timeout -k 10 600 bash "$t" >"$log" 2>&1 </dev/null || rc=$?
	secs=$(($(date +%s) - t0))
	cat "$log"
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
	if [[ -n $line ]]; then
		p=${line%% passed*}
		f=${line#*passed, }
		f=${f%% failed*}
	else
		echo "FAIL $name: ended without a summary line (exit $rc)"
		p=0 f=1
	fi
	if [[ $rc -eq 77 && $f -eq 0 ]]; then
		summary+=("$(printf '%-16s skipped: %s' "$name" "$(grep -m1 '^SKIP: ' "$log" | cut -c7-)")")
		continue
	fi
	if [[ $rc -ne 0 && $f -eq 0 ]]; then
		echo "FAIL $name: exit status $rc"
		f=1
	fi
	pass=$((pass + p))
	fail=$((fail + f))
	summary+=("$(printf '%-16s %4d passed, %d failed  (%d s)' "$name" "$p" "$f" "$secs")")
done
echo "## summary ($(($(date +%s) - start)) s)"
printf '%s\n' "${summary[@]}"
echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
