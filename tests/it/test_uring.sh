#!/usr/bin/env bash
# FUSE over io_uring (fs/uring.c): with the fuse module's enable_uring on,
# a mount's requests come through the rings (layerfs stats: uring_requests)
# and the tree, its bytes, a corrupt member's EIO, signals, many readers at
# once and the unmount behave as on /dev/fuse; with it off, or -o uring=off,
# nothing comes through a ring.  The module parameter is the host's: set
# for this file's mounts, put back as it was at exit.  (tests/it/run.sh with
# LFS_URING=1 runs every suite over the rings.)
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lfs_init
PARAM=/sys/module/fuse/parameters/enable_uring
[[ -w $PARAM ]] || lfs_skip "this kernel has no FUSE over io_uring ($PARAM)"
lfs_gen
lfs_tmpdir T

was=$(cat "$PARAM")
restore_param() { echo "$was" >"$PARAM"; }
lfs_on_exit restore_param
set_param() { echo "$1" >"$PARAM" && [[ $(cat "$PARAM") == "$1" ]]; }

lfs_list "$T/stack.list" "$L/stack1.zip" "$L/stack2.zip" "$L/stack3.zip"
lfs_ref "$T/ref" "$L/stack1.zip" "$L/stack2.zip" "$L/stack3.zip"
lfs_list "$T/big.list" "$L/big.zip" "$L/py_mixed.zip"
# the daemon's serving threads named by their policy (field 41 of
# /proc/PID/task/TID/stat: 0 SCHED_OTHER, 3 SCHED_BATCH, 5 SCHED_IDLE)
policies() {
	local pid=$1 t
	for t in /proc/"$pid"/task/*; do
		awk '{ sub(/^.*\) /, ""); print $39 }' "$t/stat"
	done | sort | uniq -c | awk '{ printf "%s:%s ", $2, $1 }'
}

# the rings' threads: 4 per possible CPU up to 8 CPUs (the default)
cpus=$(($(sed 's/.*[-,]//' /sys/devices/system/cpu/possible) + 1))
slots=$((cpus > 8 ? cpus : 4 * cpus))

check "enable_uring set" set_param Y

# --- the tree and its bytes over the rings ----------------------------------------
M=$T/m
if check "uring=auto: mounted" lfs_mount "$T/stack.list" "$M"; then
	check "uring=auto: tree equals sequential unzip -o" same_manifest "$T/ref" "$M"
	n=$(stat_of "$M" uring_requests)
	check "uring=auto: the requests came through the rings ($n)" test "${n:-0}" -gt 20
	check "uring=auto: dropcache (a signal) is answered" timeout 20 "$LAYERFS" dropcache "$M"
	check "uring=auto: after dropcache, bytes still right" \
		bash -c '[[ $(sha256sum <"$1") == $(unzip -p "$2" lib/data/mid.bin | sha256sum) ]]' _ \
		"$M/lib/data/mid.bin" "$L/stack2.zip"
	check "uring=auto: stats answered after the signal" test "$(stat_of "$M" uring_requests)" -gt "$n"
	check "uring=auto: layerfs umount" lfs_umount "$M"
	check "uring=auto: nothing mounted afterwards" bash -c '! mountpoint -q "$1"' _ "$M"
fi

# --- many readers at once: random ranges of large members, each checked ----------
B=$T/b
S=$G/src
RR=("$PY" "$LFS_IT_DIR/randread.py")
if check "readers: mounted (cache_size=16M)" lfs_mount -o cache_size=16M "$T/big.list" "$B"; then
	pids=()
	for seed in 1 2 3 4; do
		timeout 150 "${RR[@]}" --seed "$seed" --reads 60 "$B/big/big40.bin" "$S/big/big/big40.bin" \
			>"$T/rr$seed.log" 2>&1 &
		pids+=($!)
	done
	fails=0
	for p in "${pids[@]}"; do wait "$p" || fails=$((fails + 1)); done
	check "readers: four at once, random ranges of 40 MiB, every byte right" \
		eq "$fails" 0 "failed readers ($(cat "$T"/rr*.log | head -c 300))"
	check "readers: a whole copy reads back right" cmp "$B/big/big40.bin" "$S/big/big/big40.bin"
	check "readers: served through the rings" test "$(stat_of "$B" uring_requests)" -gt 100
	lfs_umount "$B"
fi

# --- a layer changed under the mount: EIO, the mount keeps answering --------------
cp "$L/big.zip" "$T/changing.zip"
lfs_list "$T/changing.list" "$T/changing.zip"
C=$T/c
if check "corrupt: mounted" lfs_fg_mount "$T/chg.log" -o cache_size=16M "$T/changing.list" "$C"; then
	f=$C/big/big40.bin
	flip_middle_byte "$T/changing.zip"
	check "corrupt: reading the changed member fails with EIO" \
		bash -c 'out=$(cat "$1" 2>&1 >/dev/null) && exit 1; [[ $out == *"Input/output error"* ]] || { echo "$out"; exit 1; }' _ "$f"
	check "corrupt: the mount still lists and stats" bash -c '[[ $(ls -l "$1/big" | wc -l) -eq 4 ]]' _ "$C"
	check "corrupt: served through the rings" test "$(stat_of "$C" uring_requests)" -gt 0
	lfs_umount "$C"
fi

# --- -o uring_idle (=on): the ring's threads are SCHED_IDLE ----------------------
I=$T/i
if check "uring_idle: mounted" lfs_mount -o uring_idle "$T/stack.list" "$I"; then
	check "uring_idle: tree equals sequential unzip -o" same_manifest "$T/ref" "$I"
	p=$(policies "$(stat_of "$I" pid)")
	idle=$(grep -o '5:[0-9]*' <<<"$p" | cut -d: -f2)
	check "uring_idle: the $slots ring threads are SCHED_IDLE (threads by policy: $p)" \
		test "${idle:-0}" -ge "$slots"
	check "uring_idle: served through the rings" test "$(stat_of "$I" uring_requests)" -gt 20
	lfs_umount "$I"
fi

# --- -o uring_idle=auto: idle while the host is calm, back under CPU hogs --------
# (user=root: CAP_SYS_NICE lets a thread come back from SCHED_IDLE on any
# host; the default user needs the RLIMIT_NICE only root with
# CAP_SYS_RESOURCE, or the unit's LimitNICE=, gives, checked below)
online=$(getconf _NPROCESSORS_ONLN)
hogs=()
stop_hogs() { local p; for p in "${hogs[@]}"; do kill "$p" 2>/dev/null; done; hogs=(); }
lfs_on_exit stop_hogs
# within SECONDS CMD...: CMD succeeds within SECONDS
within() { local n=$(($1 * 10)); shift; while ! "$@"; do ((n-- > 0)) || return 1; sleep 0.1; done; }
idle_is() { [[ $(stat_of "$1" uring_idle) == "$2" ]]; }
idle_threads() { grep -o '5:[0-9]*' <<<"$(policies "$(stat_of "$1" pid)")" | cut -d: -f2; }
all_idle() { local n; n=$(idle_threads "$1"); ((${n:-0} >= slots)); }
not_all_idle() { ! all_idle "$1"; }
A=$T/a
if check "uring_idle=auto: mounted (user=root)" lfs_mount -o user=root "$T/stack.list" "$A"; then
	cat "$A/lib/data/mid.bin" >/dev/null
	check "uring_idle=auto: on a calm host the threads go SCHED_IDLE" within 10 idle_is "$A" 1
	check "uring_idle=auto: ... all $slots of them" all_idle "$A"
	for ((i = 0; i <= online; i++)); do
		(while :; do :; done) &
		hogs+=($!)
	done
	(for i in $(seq 30); do
		echo 3 >/proc/sys/vm/drop_caches
		timeout 120 tar -cf - -C "$A" . >/dev/null || exit 1
	done) &
	reader=$!
	lfs_register_pid "$reader"
	check "uring_idle=auto: under $((online + 1)) CPU hogs, while the tree is read, the threads come back from SCHED_IDLE" \
		within 120 not_all_idle "$A"
	check "uring_idle=auto: ... and the daemon says so" within 5 idle_is "$A" 0
	kill "$reader" 2>/dev/null
	wait "$reader" 2>/dev/null
	check "uring_idle=auto: ... the tree still equals unzip -o" same_manifest "$T/ref" "$A"
	stop_hogs
	check "uring_idle=auto: the hogs gone, SCHED_IDLE again within the backoff" within 40 idle_is "$A" 1
	check "uring_idle=auto: ... all $slots of them again" within 5 all_idle "$A"
	check "uring_idle=auto: switched at least 3 times ($(stat_of "$A" uring_idle_switches))" \
		test "$(stat_of "$A" uring_idle_switches)" -ge 3
	lfs_umount "$A"
fi
# Neither CAP_SYS_NICE nor RLIMIT_NICE nor a way to raise it (root without
# CAP_SYS_RESOURCE, as the daemon's user): a thread gone idle could not come
# back, so none goes, and the daemon says why.
printf '#!/bin/sh\nexec setpriv --bounding-set=-sys_resource prlimit --nice=0:0 %q "$@"\n' "$LAYERFS" \
	>"$T/nonice"
chmod +x "$T/nonice"
F=$T/f
if LAYERFS="$T/nonice" check "uring_idle=auto, no way back from SCHED_IDLE: mounted" \
	lfs_fg_mount "$T/nonice.log" "$T/stack.list" "$F"; then
	cat "$F/lib/data/mid.bin" >/dev/null
	sleep 1
	check "uring_idle=auto, no way back: one line says why" \
		grep -q "uring_idle=auto: a thread gone SCHED_IDLE could not come back" "$T/nonice.log"
	check "uring_idle=auto, no way back: the ring threads not SCHED_IDLE" not_all_idle "$F"
	check "uring_idle=auto, no way back: never switched" eq "$(stat_of "$F" uring_idle_switches)" 0
	check "uring_idle=auto, no way back: served through the rings" test "$(stat_of "$F" uring_requests)" -gt 0
	lfs_umount "$F"
fi
X=$T/x
if check "uring_idle=off: mounted (user=root)" lfs_mount -o user=root,uring_idle=off "$T/stack.list" "$X"; then
	cat "$X/lib/data/mid.bin" >/dev/null
	sleep 1
	check "uring_idle=off: the ring threads not SCHED_IDLE on a calm host" not_all_idle "$X"
	check "uring_idle=off: never switched" eq "$(stat_of "$X" uring_idle_switches)" 0
	lfs_umount "$X"
fi
check "uring_idle=sometimes: refused in one line naming the option" \
	bash -c 'out=$("$1" mount -o uring_idle=sometimes "$2" "$3" 2>&1) && exit 1; [[ $(wc -l <<<"$out") -eq 1 && $out == *"uring_idle=sometimes"* ]] || { echo "$out"; exit 1; }' \
	_ "$LAYERFS" "$T/stack.list" "$T/never"

# --- a daemon that fails after its rings were made: refused, never a hang ---------
# (metrics_file is written as the daemon's user, after the rings' threads
# are started; a folder only root may write makes that fail)
mkdir -p "$T/closed" && chmod 700 "$T/closed"
check "a start that fails after the rings were made: refused in one line, within 20 s, nothing mounted" \
	bash -c 'mkdir -p "$3"; out=$(timeout 20 "$1" mount -o metrics_file="$4/x.prom" "$2" "$3" 2>&1); rc=$?; [[ $rc -ne 0 && $rc -ne 124 && $(wc -l <<<"$out") -eq 1 ]] && grep -q "metrics_file" <<<"$out" && ! mountpoint -q "$3" || { echo "exit $rc: $out"; exit 1; }' \
	_ "$LAYERFS" "$T/stack.list" "$T/failed" "$T/closed"

# --- off: nothing through a ring ------------------------------------------------
O=$T/o
if check "uring=off: mounted" lfs_mount -o uring=off "$T/stack.list" "$O"; then
	check "uring=off: tree equals sequential unzip -o" same_manifest "$T/ref" "$O"
	check "uring=off: no request came through a ring" eq "$(stat_of "$O" uring_requests)" 0
	lfs_umount "$O"
fi
check "enable_uring cleared" set_param N
N=$T/n
if check "enable_uring=N: mounted (uring=auto)" lfs_mount "$T/stack.list" "$N"; then
	check "enable_uring=N: tree equals sequential unzip -o" same_manifest "$T/ref" "$N"
	check "enable_uring=N: no request came through a ring" eq "$(stat_of "$N" uring_requests)" 0
	lfs_umount "$N"
fi
lfs_finish
