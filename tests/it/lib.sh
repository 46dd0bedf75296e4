# Helpers for the layerfs integration tests.  Source it from a test file:
#
#   . "$(dirname "$0")/lib.sh"
#   lfs_init [--no-binary]        # checks the binary, sets traps
#   check "name" cmd args...      # prints "ok name" or "FAIL name" + output
#   lfs_finish                    # prints "N passed, M failed", exits
#
# Every temp dir made with lfs_tmpdir and every mountpoint mounted with
# lfs_mount is cleaned up on exit, also when the test fails or is
# interrupted: mounts are unmounted first (layerfs umount, then
# fusermount3 -u -z, then umount -l), and a temp dir that still has a mount
# below it is left alone rather than removed through the mount.
#
# Environment:
#   LAYERFS        the binary (default: build/layerfs under the repo root)
#   LFS_GEN_DIR    generated layers (tests/gen/gen_layers.sh output); made
#                  on demand in a temp dir when unset
#   LFS_IT_VERBOSE=1  print the output of passing checks too

LFS_IT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LFS_REPO=$(cd "$LFS_IT_DIR/../.." && pwd)
LFS_GEN=$LFS_REPO/tests/gen
LAYERFS=${LAYERFS:-$LFS_REPO/build/layerfs}
case $LAYERFS in /*) ;; *) LAYERFS=$PWD/$LAYERFS ;; esac
export LAYERFS
PY=${PYTHON:-python3}
export TZ=UTC LC_ALL=C.UTF-8

LFS_PASS=0
LFS_FAIL=0
LFS_FAILED_NAMES=()
LFS_TMPDIRS=()
LFS_MOUNT_TIMEOUT=${LFS_MOUNT_TIMEOUT:-60}

lfs_log() { printf '# %s\n' "$*"; }

# check NAME CMD [ARGS...]: runs CMD (a command or shell function); exit 0
# is a pass.  Output of a failing check is shown indented.  Returns 0 on a
# pass and 1 on a failure, so `if check ...; then` can skip dependent checks
# (test files do not use set -e).
check() {
	local name=$1
	shift
	local out rc=0
	out=$("$@" 2>&1) || rc=$?
	if [[ $rc -eq 0 ]]; then
		LFS_PASS=$((LFS_PASS + 1))
		echo "ok $name"
		if [[ ${LFS_IT_VERBOSE:-0} == 1 && -n $out ]]; then
			printf '%s\n' "$out" | head -n 40 | sed 's/^/    /'
		fi
	else
		LFS_FAIL=$((LFS_FAIL + 1))
		LFS_FAILED_NAMES+=("$name")
		echo "FAIL $name (exit $rc)"
		if [[ -n $out ]]; then
			printf '%s\n' "$out" | head -n 40 | sed 's/^/    /'
		fi
	fi
	return $((rc != 0))
}

lfs_finish() {
	if [[ $LFS_FAIL -gt 0 ]]; then
		echo "# failed: ${LFS_FAILED_NAMES[*]}"
	fi
	echo "$LFS_PASS passed, $LFS_FAIL failed"
	if [[ $LFS_FAIL -gt 0 ]]; then
		exit 1
	fi
	exit 0
}

lfs_is_mounted() {
	# mountpoint(1) needs the dir to be reachable; /proc/self/mountinfo is the
	# fallback when a dead FUSE daemon makes stat fail with ENOTCONN.
	local m
	m=$(readlink -m "$1")
	mountpoint -q "$m" 2>/dev/null && return 0
	awk -v m="$m" '$5 == m { found = 1 } END { exit !found }' /proc/self/mountinfo
}

lfs_force_umount() {
	local m=$1 i
	for i in 1 2 3; do
		lfs_is_mounted "$m" || return 0
		case $i in
		1) timeout -k 2 10 "$LAYERFS" umount "$m" </dev/null >/dev/null 2>&1 ;;
		2) fusermount3 -u -z "$m" >/dev/null 2>&1 ;;
		3) umount -l "$m" >/dev/null 2>&1 ;;
		esac
	done
	! lfs_is_mounted "$m"
}

# Mountpoints are registered in a file, not a variable, so that a mount made
# inside a subshell (e.g. `check NAME lfs_mount ...`) is cleaned up too.
lfs_register_mount() {
	[[ -n ${LFS_MOUNTS_FILE:-} ]] && readlink -m "$1" >>"$LFS_MOUNTS_FILE"
	return 0
}

lfs_cleanup() {
	local m d
	if [[ -n ${LFS_MOUNTS_FILE:-} && -f $LFS_MOUNTS_FILE ]]; then
		while IFS= read -r m; do
			lfs_force_umount "$m" || echo "# warning: could not unmount $m" >&2
		done < <(tac "$LFS_MOUNTS_FILE")
	fi
	for d in "${LFS_TMPDIRS[@]}"; do
		[[ -d $d ]] || continue
		if awk -v d="$(readlink -m "$d")/" 'index($5 "/", d) == 1 { f = 1 } END { exit !f }' \
			/proc/self/mountinfo; then
			echo "# warning: $d still has a mount below it; not removed" >&2
			continue
		fi
		rm -rf --one-file-system "$d"
	done
}

lfs_init() {
	trap lfs_cleanup EXIT
	trap 'exit 130' INT TERM HUP
	if [[ ${1:-} != --no-binary && ! -x $LAYERFS ]]; then
		echo "FAIL layerfs binary not found or not executable: $LAYERFS"
		LFS_FAIL=$((LFS_FAIL + 1))
		lfs_finish
	fi
	local logdir
	lfs_tmpdir logdir
	LFS_MOUNT_LOG=$logdir/mount.log
	LFS_MOUNTS_FILE=$logdir/mounts
	: >"$LFS_MOUNT_LOG"
	: >"$LFS_MOUNTS_FILE"
	if [[ $(id -u) -ne 0 ]]; then
		lfs_log "warning: not root; mounts may fail"
	fi
}

# lfs_tmpdir: prints a new temp dir (never under /opt), removed at exit.
# Use as: T=$(lfs_tmpdir) -- no: subshell would lose the registration, so
# call it as `lfs_tmpdir T` to set variable T.
lfs_tmpdir() {
	local __var=$1 __d
	__d=$(mktemp -d "${TMPDIR:-/tmp}/layerfs-it.XXXXXX")
	__d=$(readlink -f "$__d")
	LFS_TMPDIRS+=("$__d")
	printf -v "$__var" '%s' "$__d"
}

# lfs_gen: makes sure generated layers exist; sets G (the gen dir) and L
# (its layers/ folder).
lfs_gen() {
	if [[ -n ${LFS_GEN_DIR:-} && -f $LFS_GEN_DIR/layers/stack1.zip ]]; then
		G=$LFS_GEN_DIR
	else
		lfs_tmpdir G
		lfs_log "generating layers in $G"
		bash "$LFS_GEN/gen_layers.sh" "$G" >/dev/null
		export LFS_GEN_DIR=$G
	fi
	L=$G/layers
}

# The user a daemon started by root serves as (-o user=, the default), who
# owns the host cache and writes traces.
LFS_DAEMON_USER=${LFS_DAEMON_USER:-layerfs}

# lfs_daemon_dir DIR: a folder of the daemon's user's (0700), as the unit's
# CacheDirectory= is.
lfs_daemon_dir() {
	mkdir -p -m 700 "$1" && chown "$LFS_DAEMON_USER:" "$1"
}

# lfs_list FILE ZIP...: writes a layer list with absolute paths.
lfs_list() {
	local f=$1
	shift
	: >"$f"
	local z
	for z in "$@"; do
		printf '%s\n' "$z" >>"$f"
	done
}

# lfs_mount [layerfs mount args...] LIST MNT: mounts and registers MNT for
# cleanup.  Creates MNT if needed.  Returns layerfs's exit status.  The
# output of layerfs (and of its daemon, which may keep the descriptors it
# inherited) goes to $LFS_MOUNT_LOG, never to the test's own stdout/stderr,
# so a daemon cannot hold a pipe of the runner open; on failure the log's
# tail is printed.
lfs_mount() {
	local mnt=${*: -1} rc=0 log
	mkdir -p "$mnt"
	lfs_register_mount "$mnt"
	log=/dev/null
	if [[ -n ${LFS_MOUNT_LOG:-} ]]; then
		log=$(mktemp "$LFS_MOUNT_LOG.XXXXXX")
		echo "$* ($log)" >>"$LFS_MOUNT_LOG"
	fi
	timeout -k 5 "$LFS_MOUNT_TIMEOUT" "$LAYERFS" mount "$@" </dev/null >"$log" 2>&1 || rc=$?
	if [[ $rc -ne 0 ]]; then
		echo "layerfs mount $* failed with status $rc:"
		tail -n 5 "$log" 2>/dev/null
	fi
	return $rc
}

lfs_umount() {
	timeout -k 5 30 "$LAYERFS" umount "$1" </dev/null >>"${LFS_MOUNT_LOG:-/dev/null}" 2>&1
}

# lfs_ref DEST ZIP...: the unzip -o reference extraction.
lfs_ref() {
	bash "$LFS_GEN/extract.sh" "$@"
}

lfs_manifest() {
	"$PY" "$LFS_GEN/manifest.py" "$@"
}

# same_manifest REF_DIR_OR_FILE MNT [FILTER]: compares manifests; shows the
# first differences.  A file argument is taken as a ready manifest.
same_manifest() {
	local a=$1 b=$2 ma mb
	ma=$(mktemp)
	mb=$(mktemp)
	if [[ -f $a ]]; then cp "$a" "$ma"; else lfs_manifest "$a" >"$ma" || {
		rm -f "$ma" "$mb"
		return 2
	}; fi
	if ! timeout -k 5 120 "$PY" "$LFS_GEN/manifest.py" -j 4 "$b" >"$mb"; then
		echo "manifest of $b failed"
		rm -f "$ma" "$mb"
		return 2
	fi
	local rc=0
	if [[ -n ${3:-} ]]; then
		grep -v -- "$3" "$ma" >"$ma.f" || true
		grep -v -- "$3" "$mb" >"$mb.f" || true
		mv "$ma.f" "$ma"
		mv "$mb.f" "$mb"
	fi
	if ! cmp -s "$ma" "$mb"; then
		echo "manifest differs (< expected, > mounted; $(wc -l <"$ma") vs $(wc -l <"$mb") lines):"
		diff "$ma" "$mb" | cut -c1-160 | head -n 30
		rc=1
	fi
	rm -f "$ma" "$mb"
	return $rc
}

# expect_manifest SPEC_FILE: a hand-written expectation to manifest lines.
lfs_expect() {
	"$PY" "$LFS_GEN/expect.py" "$@"
}

xattr_is() { # PATH EXPECTED
	local got
	got=$("$PY" -c 'import os,sys; sys.stdout.write(os.getxattr(sys.argv[1], "user.layerfs.layer").decode())' "$1") || return 1
	if [[ $got != "$2" ]]; then
		echo "xattr of $1: got '$got', expected '$2'"
		return 1
	fi
}

eq() { # GOT EXPECTED [WHAT]
	if [[ $1 != "$2" ]]; then
		echo "${3:-value}: got '$1', expected '$2'"
		return 1
	fi
}
