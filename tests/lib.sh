# shellcheck shell=bash
# The harness every suite that mounts sources (tests/it, tests/hostile,
# tests/systemd, tests/remote, tests/package):
#
#   . "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
#   lfs_init [--no-binary]     traps, the mount and process registries;
#                              checks $LAYERFS unless --no-binary
#   check "name" cmd args...   "ok name", or "FAIL name (exit N)" and the
#                              command's output; returns the command's status
#   lfs_pass/lfs_fail TEXT     a result the suite found out by itself
#   lfs_add_results P F NAME   counts of a sub-run (check.py, boot.sh)
#   lfs_finish                 "N passed, M failed"; exit 1 if any failed
#   lfs_skip WHY               "SKIP: WHY"; exit 77
#
# At exit, also on failure or ^C, in this order: the functions given to
# lfs_on_exit (newest first), every registered mount unmounted (layerfs
# umount, then fusermount3 -u -z, then umount -l), every registered process
# stopped (TERM, then KILL), every temp dir of lfs_tmpdir removed once
# nothing is mounted below it (what is, is unmounted first; a dir that
# still has a mount below it is left, with a warning).  Mounts and
# processes are registered in files, so those a subshell registers (as in
# `check NAME lfs_mount ...`) are cleaned up too.
#
# Environment:
#   LAYERFS         the binary (default: build/layerfs under the repo root)
#   LFS_VERBOSE=1   show the output of passing checks too (also
#                   LFS_IT_VERBOSE, LFS_SD_VERBOSE)
#   LFS_CHECK_SHOW  how much of a failing check's output: "head -n 40"
#                   (default) or e.g. "tail -n 30"
#   LFS_KEEP_TMP=1  keep the temp dirs (their paths are printed)
#   LFS_DAEMON_USER the user a daemon started by root serves as (layerfs)

LFS_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LAYERFS=${LAYERFS:-$LFS_REPO/build/layerfs}
case $LAYERFS in /*) ;; *) LAYERFS=$PWD/$LAYERFS ;; esac
export LAYERFS
PY=${PYTHON:-python3}
LFS_VERBOSE=${LFS_VERBOSE:-${LFS_IT_VERBOSE:-${LFS_SD_VERBOSE:-0}}}
LFS_CHECK_SHOW=${LFS_CHECK_SHOW:-head -n 40}
# The user a daemon started by root serves as (-o user=, the default), who
# owns the host cache and writes traces.
LFS_DAEMON_USER=${LFS_DAEMON_USER:-layerfs}
LFS_MOUNT_TIMEOUT=${LFS_MOUNT_TIMEOUT:-60}

LFS_PASS=0
LFS_FAIL=0
LFS_FAILED_NAMES=()
LFS_TMPDIRS=()
LFS_EXIT_HOOKS=()
LFS_STATE=

lfs_log() { printf '# %s\n' "$*"; }

# --- results ------------------------------------------------------------------

# check NAME CMD [ARGS...]: runs CMD (a command or shell function) in a
# subshell; exit 0 is a pass.  The output of a failing check is shown
# indented.  So that `if check ...; then` can skip
# dependent checks (the suites do not use set -e).  Returns 0 on a pass, 1
# on a failure.
check() {
	local name=$1
	shift
	local out rc=0
	out=$("$@" 2>&1) || rc=$?
	if [[ $rc -eq 0 ]]; then
		LFS_PASS=$((LFS_PASS + 1))
		echo "ok $name"
		if [[ $LFS_VERBOSE == 1 && -n $out ]]; then
			printf '%s\n' "$out" | head -n 40 | sed 's/^/    /'
		fi
	else
		LFS_FAIL=$((LFS_FAIL + 1))
		LFS_FAILED_NAMES+=("$name")
		echo "FAIL $name (exit $rc)"
		if [[ -n $out ]]; then
			printf '%s\n' "$out" | $LFS_CHECK_SHOW | sed 's/^/    /'
		fi
	fi
	return $((rc != 0))
}

# lfs_pass TEXT / lfs_fail NAME [WHY...]: a result found out without check.
lfs_pass() {
	LFS_PASS=$((LFS_PASS + 1))
	echo "ok $*"
}
lfs_fail() {
	LFS_FAIL=$((LFS_FAIL + 1))
	LFS_FAILED_NAMES+=("$1")
	echo "FAIL $*"
}

# lfs_add_results PASSED FAILED NAME: counts of a sub-run whose own lines
# were printed already; NAME is listed among the failed if it failed.
lfs_add_results() {
	LFS_PASS=$((LFS_PASS + $1))
	LFS_FAIL=$((LFS_FAIL + $2))
	[[ $2 -eq 0 ]] || LFS_FAILED_NAMES+=("$3")
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

# lfs_skip WHY: the suite cannot run here (exit 77, as automake's).
lfs_skip() {
	echo "SKIP: $*"
	echo "0 passed, 0 failed"
	exit 77
}

lfs_need_root() { [[ $(id -u) -eq 0 ]] || lfs_skip "${1:-needs root}"; }

# --- setup and cleanup ----------------------------------------------------------

lfs_init() {
	trap lfs_cleanup EXIT
	trap 'exit 130' INT TERM HUP
	if [[ ${1:-} != --no-binary && ! -x $LAYERFS ]]; then
		echo "FAIL layerfs binary not found or not executable: $LAYERFS"
		LFS_FAIL=$((LFS_FAIL + 1))
		LFS_FAILED_NAMES+=(binary)
		lfs_finish
	fi
	lfs_tmpdir LFS_STATE layerfs-state
	LFS_MOUNT_LOG=$LFS_STATE/mount.log
	: >"$LFS_MOUNT_LOG"
	: >"$LFS_STATE/mounts"
	: >"$LFS_STATE/pids"
	if [[ ${LFS_WARN_NOT_ROOT:-0} == 1 && $(id -u) -ne 0 ]]; then
		lfs_log "warning: not root; mounts may fail"
	fi
}

# lfs_on_exit FUNC [ARGS...]: run at exit, before the mounts and processes
# are cleaned up (newest first).  Call it in the suite's own shell.
lfs_on_exit() {
	local q
	printf -v q '%q ' "$@"
	LFS_EXIT_HOOKS=("$q" "${LFS_EXIT_HOOKS[@]}")
}

# lfs_tmpdir VAR [PREFIX]: sets VAR to a new temp dir, removed at exit.
# PREFIX: a name under $TMPDIR (default layerfs-it), or an absolute path
# prefix.  Call it in the suite's own shell: a subshell's would be lost.
lfs_tmpdir() {
	local __var=$1 __prefix=${2:-layerfs-it} __d
	[[ $__prefix == /* ]] || __prefix=${TMPDIR:-/tmp}/$__prefix
	__d=$(mktemp -d "$__prefix.XXXXXX") || return 1
	__d=$(readlink -f "$__d")
	LFS_TMPDIRS+=("$__d")
	printf -v "$__var" '%s' "$__d"
}

# lfs_register_mount MNT / lfs_register_pid PID: cleaned up at exit.  A
# process is known by its pid and start time: a pid used again by another
# process is left alone.
lfs_register_mount() {
	[[ -n $LFS_STATE ]] && readlink -m "$1" >>"$LFS_STATE/mounts"
	return 0
}
_lfs_started() { # PID: its start time (field 22 of /proc/PID/stat)
	local s
	s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	s=${s##*) }
	read -r -a s <<<"$s"
	echo "${s[19]}"
}
lfs_register_pid() {
	[[ -n $LFS_STATE ]] && echo "$1 $(_lfs_started "$1")" >>"$LFS_STATE/pids"
	return 0
}

# Mount points of /proc/self/mountinfo, one a line, in table order (a
# later one may be on top of, or below, an earlier one), unescaped.
lfs_mount_points() {
	local _a _b _c _d mp _rest
	while read -r _a _b _c _d mp _rest; do
		printf '%b\n' "$mp"
	done </proc/self/mountinfo
}

# lfs_is_mounted MNT: something is mounted at MNT (also when a dead FUSE
# daemon makes stat fail with ENOTCONN).
lfs_is_mounted() {
	local m p
	m=$(readlink -m "$1")
	while IFS= read -r p; do
		[[ $p == "$m" ]] && return 0
	done < <(lfs_mount_points)
	return 1
}

# lfs_mounts_under DIR: the mount points at or below DIR, newest first.
lfs_mounts_under() {
	local d p
	d=$(readlink -m "$1")
	lfs_mount_points | tac | while IFS= read -r p; do
		[[ $p == "$d" || $p == "$d"/* ]] && printf '%s\n' "$p"
	done
	return 0
}

lfs_force_umount() {
	local m=$1 i
	for i in 1 2 3; do
		lfs_is_mounted "$m" || return 0
		case $i in
		1) [[ -x $LAYERFS ]] && timeout -k 2 10 "$LAYERFS" umount "$m" </dev/null >/dev/null 2>&1 ;;
		2) fusermount3 -u -z "$m" >/dev/null 2>&1 ;;
		3) umount -l "$m" >/dev/null 2>&1 ;;
		esac
	done
	! lfs_is_mounted "$m"
}

# lfs_wait_exit PID SECONDS: 0 once PID is gone, 1 if it still runs then.
lfs_wait_exit() {
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.1
	done
	! kill -0 "$1" 2>/dev/null
}

# lfs_stop_pid PID [SECONDS]: TERM, KILL if still there after SECONDS (2).
lfs_stop_pid() {
	kill -0 "$1" 2>/dev/null || return 0
	kill -TERM "$1" 2>/dev/null
	lfs_wait_exit "$1" "${2:-2}" || kill -KILL "$1" 2>/dev/null
	return 0
}

lfs_cleanup() {
	local h m p t d left
	set +e
	for h in "${LFS_EXIT_HOOKS[@]}"; do
		eval "$h"
	done
	if [[ -n $LFS_STATE && -f $LFS_STATE/mounts ]]; then
		while IFS= read -r m; do
			lfs_force_umount "$m" || echo "# warning: could not unmount $m" >&2
		done < <(tac "$LFS_STATE/mounts")
	fi
	if [[ -n $LFS_STATE && -f $LFS_STATE/pids ]]; then
		while read -r p t; do
			[[ -n $t && $(_lfs_started "$p") == "$t" ]] && lfs_stop_pid "$p"
		done <"$LFS_STATE/pids"
		while read -r p t; do
			wait "$p" 2>/dev/null
		done <"$LFS_STATE/pids"
	fi
	for d in "${LFS_TMPDIRS[@]}"; do
		[[ -d $d ]] || continue
		while IFS= read -r m; do
			lfs_force_umount "$m"
		done < <(lfs_mounts_under "$d")
		left=$(lfs_mounts_under "$d")
		if [[ -n $left ]]; then
			echo "# warning: $d still has a mount below it; not removed" >&2
		elif [[ ${LFS_KEEP_TMP:-0} == 1 ]]; then
			echo "# kept $d"
		else
			rm -rf --one-file-system "$d"
		fi
	done
}

# --- mounting -------------------------------------------------------------------

# lfs_wait_mounted MNT [SECONDS [PID]]: 0 once MNT is mounted (within 10 s
# by default); 1 on timeout, or as soon as PID (the daemon) is gone.
lfs_wait_mounted() {
	local mnt=$1 secs=${2:-10} pid=${3:-} i
	for ((i = 0; i < secs * 20; i++)); do
		mountpoint -q "$mnt" 2>/dev/null && return 0
		[[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null && break
		sleep 0.05
	done
	mountpoint -q "$mnt" 2>/dev/null
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

# lfs_fg_mount LOG [layerfs mount args...] LIST MNT: the daemon in the
# foreground (mount -f, in the background of this shell; killed after
# $LFS_FG_TIMEOUT seconds, 300, if still running), its stdout and stderr in
# LOG; waits until MNT is mounted.  LFS_FG_PID is its pid (lost when run in
# a subshell such as check's; `layerfs stats MNT` has it too).
lfs_fg_mount() {
	local log=$1 mnt=${*: -1}
	shift
	mkdir -p "$mnt"
	lfs_register_mount "$mnt"
	timeout -k 5 "${LFS_FG_TIMEOUT:-300}" "$LAYERFS" mount -f "$@" </dev/null >"$log" 2>&1 &
	LFS_FG_PID=$!
	lfs_register_pid "$LFS_FG_PID"
	lfs_wait_mounted "$mnt" 10 "$LFS_FG_PID" && return 0
	echo "not mounted: $(tail -n 3 "$log")"
	return 1
}

lfs_umount() {
	timeout -k 5 30 "$LAYERFS" umount "$1" </dev/null >>"${LFS_MOUNT_LOG:-/dev/null}" 2>&1
}

# --- the daemon's user ------------------------------------------------------------

# lfs_daemon_dir DIR: a folder of the daemon's user's (0700), as the unit's
# CacheDirectory= is.
lfs_daemon_dir() {
	mkdir -p -m 700 "$1" && chown "$LFS_DAEMON_USER:" "$1"
}

# lfs_fuse_for_all: /dev/fuse usable by any user (0666, as udev's rule
# makes it on a host), for daemons started as another user that open it
# themselves; its mode is put back at exit.  1 if that cannot be done.
lfs_fuse_for_all() {
	local mode
	mode=$(stat -c %a /dev/fuse) || return 1
	[[ $mode == 666 ]] && return 0
	chmod 666 /dev/fuse || return 1
	lfs_on_exit chmod "$mode" /dev/fuse
}
