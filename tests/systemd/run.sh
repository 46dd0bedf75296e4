#!/bin/bash
# tests/systemd/run.sh: layerfs as systemd runs it, without systemd.
#
# Every command is taken from systemd/layerfs@.service itself (ExecStartPre=,
# ExecStart=, ExecStopPost=, with the unit's Environment= and a config in the
# format of systemd/example.conf, expanded by unitcmd.py the way systemd
# does) and run the way systemd runs it: empty environment plus the unit's,
# cwd /, stdin /dev/null, a NOTIFY_SOCKET that notify.py listens on (it also
# records the sender's pid, as NotifyAccess=main needs), WATCHDOG_USEC and
# WATCHDOG_PID.  Checked:
#   - systemd-analyze verify passes (and fails on a broken copy)
#   - the unit has no option that would hide the mount in a private mount
#     namespace
#   - READY=1 comes from the main pid and only once the mount serves files
#     (notify.py reads a file in the mount the instant READY=1 arrives);
#     STATUS= names the layers; WATCHDOG=1 keeps coming every WATCHDOG_USEC/2
#   - logs: stderr only, every line with a <N> priority, none per read
#   - SIGTERM, even with the mount busy: STOPPING=1, unmounted, exit 0
#   - SIGKILL leaves a stale mount (ENOTCONN); the next start detaches it and
#     serves again; ExecStopPost= detaches it too, but never touches a live
#     file system under the mount point
#   - ExecStartPre= refuses an incomplete config, creates the mount point
#   - make install / uninstall (PREFIX, DESTDIR, configs kept), and the
#     installed mount.fuse.layerfs helper under a real mount(8), for
#     `mount -t fuse.layerfs` and fstab lines (in a private mount namespace)
#   - then tests/systemd/boot.sh: the installed unit under a real systemd
#     (LFS_SD_BOOT=0 skips it; it skips itself where it cannot boot one)
# Mount points live in a temp dir only; everything is unmounted and removed
# on exit, also on failure or ^C (the harness, tests/lib.sh, after the
# daemons and listeners are stopped).  Needs root and /dev/fuse, zip, python3.
# Ends with "N passed, M failed"; exit 1 if any failed, 77 if it cannot run.
# About 20s in all.
#
#   LAYERFS=build/layerfs bash tests/systemd/run.sh      (default binary)
#   LFS_SD_VERBOSE=1 ...                                  (show more output)
#   LFS_SD_BOOT=0 ...                                     (skip boot.sh)

set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/../lib.sh"
REPO=$LFS_REPO
UNIT=${LFS_SD_UNIT:-$REPO/systemd/layerfs@.service}	# LFS_SD_UNIT: test another copy
# the interpreter itself, not a wrapper script (pyenv shims cost ~0.2s a call)
PY=$($PY -c 'import sys; print(sys.executable)' 2>/dev/null) || PY=${PYTHON:-python3}
UNIT_BIN=/usr/local/bin/layerfs	# the unit's ExecStart=; make install rewrites it
UNIT_HELPER=/usr/local/libexec/layerfs/unit	# its ExecStartPre=/ExecStopPost=
UNIT_USER=$(sed -n 's/^User=//p' "$UNIT")
SYSPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
INST=fn				# the instance: layerfs@fn.service
export LC_ALL=C TZ=UTC

T=

# ---- cleanup: daemons and listeners; the harness then unmounts what is
# left under $T and removes it -----------------------------------------------
stop_daemons() {
	local f p i
	[[ -n $T && -d $T ]] || return 0
	for f in "$T"/*.pid; do
		[[ -f $f ]] || continue
		p=$(cat "$f" 2>/dev/null) || continue
		[[ -n $p ]] && kill -TERM "$p" 2>/dev/null
	done
	if [[ -f $T/listeners ]]; then
		while read -r p; do kill -TERM "$p" 2>/dev/null; done <"$T/listeners"
	fi
	for i in 1 2 3 4 5 6 7 8 9 10; do
		[[ -z $(lfs_mounts_under "$T") ]] && break
		sleep 0.2
	done
	for f in "$T"/*.pid; do
		[[ -f $f ]] || continue
		p=$(cat "$f" 2>/dev/null) && [[ -n $p ]] && kill -KILL "$p" 2>/dev/null
	done
}

# ---- prerequisites --------------------------------------------------------
lfs_need_root "needs root (mounts like the unit does)"
[[ -c /dev/fuse ]] || lfs_skip "no /dev/fuse"
command -v zip >/dev/null || lfs_skip "needs zip"
command -v "$PY" >/dev/null || lfs_skip "needs $PY"
lfs_init
lfs_on_exit stop_daemons

# The unit's daemon runs as layerfs and opens /dev/fuse itself.
lfs_fuse_for_all || lfs_skip "cannot make /dev/fuse usable by the unit's user"
id -u "$UNIT_USER" >/dev/null 2>&1 || lfs_skip "no user $UNIT_USER (make test-user)"

lfs_tmpdir T /tmp/layerfs-systemd
chmod 755 "$T"

# ---- layers, list, config (example.conf's format) -------------------------
mk_layers() {
	local d=$T/src
	mkdir -p "$d/base/bin" "$d/base/python/lib" "$d/base/data" "$d/top/bin" "$d/top/nodejs"
	echo "from base" >"$d/base/bin/hello.txt"
	echo "import os" >"$d/base/python/lib/mod.py"
	for i in $(seq -w 0 299); do
		printf 'file %s\n%0200d\n' "$i" "$((10#$i))" >"$d/base/data/f$i.txt"
	done
	echo "from top" >"$d/top/bin/hello.txt"
	echo "module.exports = 1" >"$d/top/nodejs/x.js"
	(cd "$d/base" && zip -qrX "$T/layers/base.zip" .) &&
		(cd "$d/top" && zip -qrX "$T/layers/top.zip" .)
}
mkdir -p "$T/layers" "$T/etc/layerfs"
mk_layers || { echo "FAIL cannot build test layers with zip"; exit 1; }
printf 'from top\n' >"$T/expect_hello"
LIST=$T/etc/layerfs/$INST.list
cat >"$LIST" <<EOF
# test stack
$T/layers/base.zip name=base version=1
$T/layers/top.zip name=top version=2
EOF
# A mount point with a space in its path: ${VAR} must stay one argument.
MNT="$T/srv/fn layers/opt"
CONF=$T/etc/layerfs/$INST.conf
cat >"$CONF" <<EOF
# as systemd/example.conf
LAYERFS_LIST=$LIST
LAYERFS_MOUNTPOINT="$MNT"
LAYERFS_OPTIONS=allow_other,default_permissions,cache_size=16M
EOF

# ---- running the unit's commands the way systemd does ---------------------
ARGV=()
FLAGS=
ENVV=()
# unit_cmd KEY CONF: fills FLAGS (the "-" etc. prefix) and ARGV
unit_cmd() {
	local out=$T/argv.$$ a
	$PY "$HERE/unitcmd.py" "$UNIT" "$1" "$INST" "$2" --bin "$UNIT_BIN=$LAYERFS" \
		--bin "$UNIT_HELPER=$REPO/systemd/layerfs-unit" --sysconf /etc >"$out" || return 1
	mapfile -d '' -t a <"$out"
	FLAGS=${a[0]}
	ARGV=("${a[@]:1}")
}
# unit_env CONF: fills ENVV with the unit's environment (Environment= + file)
unit_env() {
	local out=$T/env.$$
	$PY "$HERE/unitcmd.py" "$UNIT" ExecStart "$INST" "$1" --env >"$out" || return 1
	mapfile -d '' -t ENVV <"$out"
}

# run_cmd KEY CONF LOG [VAR=VALUE...]: runs ExecStartPre=/ExecStopPost=
# (as root: their "+") to completion, with the unit's UMask=; returns its
# exit status.  ExecStopPost= gets SERVICE_RESULT=success unless given.
run_cmd() {
	local key=$1 conf=$2 log=$3
	shift 3
	unit_cmd "$key" "$conf" && unit_env "$conf" || return 99
	(cd / && umask 077 && exec env -i PATH=$SYSPATH "${ENVV[@]}" SERVICE_RESULT=success "$@" \
		"${ARGV[@]}") </dev/null >>"$log" 2>&1
}

# start NAME CONF [--no-store] [VAR=VALUE...]: a notify listener (keeping
# stored descriptors as systemd does, unless --no-store), then ExecStart= in
# the background with NOTIFY_SOCKET (and the extra variables), as the
# unit's User= with CAP_SYS_ADMIN ambient, no_new_privs and the bounding
# set reduced to it, as systemd runs it.  Files:
#   NAME.pid the daemon's pid   NAME.rc its exit status, once it exited
#   NAME.err its stderr         NAME.notify what it sent (notify.py format)
start() {
	local name=$1 conf=$2 i store=
	shift 2
	if [[ ${1:-} == --no-store ]]; then
		store=--no-store
		shift
	fi
	rm -f "$T/$name".{pid,rc,err,out,notify,sock,sock.bound}
	$PY "$HERE/notify.py" "$T/$name.sock" "$T/$name.notify" $store \
		--read "$MNT/bin/hello.txt" --expect "$T/expect_hello" </dev/null \
		>>"$T/$name.listener.log" 2>&1 &
	echo $! >>"$T/listeners"	# a file: start may run in a subshell
	for i in $(seq 50); do
		[[ -e $T/$name.sock.bound ]] && break
		sleep 0.1
	done
	[[ -e $T/$name.sock.bound ]] || { echo "notify listener did not start"; return 1; }
	unit_cmd ExecStart "$conf" && unit_env "$conf" || return 1
	# systemd sets WATCHDOG_PID to the main pid; sh's $$ is that pid after exec.
	(
		cd / && umask 077 &&
			env -i PATH=$SYSPATH "${ENVV[@]}" NOTIFY_SOCKET="$T/$name.sock" "$@" \
				/bin/sh -c 'echo $$ >"$0"; if [ -n "${WATCHDOG_USEC:-}" ] && [ -z "${WATCHDOG_PID:-}" ]; then WATCHDOG_PID=$$; export WATCHDOG_PID; fi; exec "$@"' \
				"$T/$name.pid" setpriv --reuid="$UNIT_USER" --regid="$UNIT_USER" --init-groups \
				--inh-caps=-all,+sys_admin --ambient-caps=-all,+sys_admin \
				--bounding-set=-all,+sys_admin --no-new-privs -- "${ARGV[@]}"
		echo $? >"$T/$name.rc"
	) </dev/null >"$T/$name.out" 2>"$T/$name.err" &
	for i in $(seq 50); do
		[[ -s $T/$name.pid ]] && break
		sleep 0.1
	done
}
pid_of() { cat "$T/$1.pid"; }
# wait_ready NAME: READY=1 within 15s (0), or the daemon exited / timeout
# (1).  Waits for the READCHECK= line notify.py adds right after READY=1.
wait_ready() {
	local i
	for i in $(seq 150); do
		grep -q ' READCHECK=' "$T/$1.notify" 2>/dev/null && return 0
		[[ -e $T/$1.rc ]] && { echo "daemon exited with $(cat "$T/$1.rc") before READY=1"; tail -n 5 "$T/$1.err"; return 1; }
		sleep 0.1
	done
	echo "no READY=1 within 15s"
	return 1
}
# wait_exit NAME SECONDS: the daemon's exit status in NAME.rc (1 if still running)
wait_exit() {
	local i
	for i in $(seq $(($2 * 10))); do
		[[ -s $T/$1.rc ]] && return 0
		sleep 0.1
	done
	echo "daemon $1 still running after $2s"
	return 1
}
# notes NAME KEY: the values of KEY the daemon sent, one a line
notes() { awk -v k="$2=" 'index($3, k) == 1 { print substr($0, index($0, k) + length(k)) }' "$T/$1.notify" 2>/dev/null; }
mcount() { $PY "$HERE/mnt.py" count "$1"; }
mstat() { $PY "$HERE/mnt.py" statfs "$1"; }

# =========================== the unit file =================================
t_verify() {
	local u=$T/verify/layerfs@.service out rc=0 man=--man=no
	mkdir -p "$T/verify/man/man1"
	sed -e "s#$UNIT_BIN#$LAYERFS#" -e "s#$UNIT_HELPER#$REPO/systemd/layerfs-unit#" "$UNIT" >"$u"
	if [[ -f $REPO/docs/layerfs.1 ]]; then
		# Documentation=man:layerfs(1) must resolve too
		cp "$REPO/docs/layerfs.1" "$T/verify/man/man1/"
		man=--man=yes
	fi
	out=$(cd "$T/verify" && MANPATH=$T/verify/man: systemd-analyze verify "$man" ./layerfs@.service 2>&1) || rc=$?
	echo "$out"
	[[ $man == --man=no ]] && echo "(docs/layerfs.1 missing: Documentation= not checked)"
	[[ $rc -eq 0 ]] && ! grep -q 'layerfs@' <<<"$out"
}
t_verify_negative() {
	# the same check must fail on a broken copy
	local u=$T/verify-bad/layerfs@.service out
	mkdir -p "$T/verify-bad"
	sed -e "s#$UNIT_BIN#$LAYERFS#" -e "s#$UNIT_HELPER#$REPO/systemd/layerfs-unit#" \
		-e 's/^Type=notify/Type=notyfy/' \
		-e 's#^ExecStart=.*#ExecStart=/nonexistent/layerfs mount#' "$UNIT" >"$u"
	out=$(cd "$T/verify-bad" && systemd-analyze verify --man=no ./layerfs@.service 2>&1) &&
		{ echo "verify accepted a broken unit:"; echo "$out"; return 1; }
	grep -q nonexistent <<<"$out" || { echo "$out"; return 1; }
}
# Options that give the service its own mount namespace, so the FUSE mount
# would never reach the host (systemd.exec(5): such namespaces are made
# "slave" first).  A value of no/false/0 (or MountFlags=shared) is harmless.
NS_OPTS='ProtectSystem ProtectHome PrivateTmp PrivateDevices PrivateMounts
ProtectKernelTunables ProtectKernelModules ProtectKernelLogs ProtectControlGroups
ProtectProc ProcSubset PrivateIPC PrivateNetwork NetworkNamespacePath
IPCNamespacePath PrivateUsers DynamicUser ReadOnlyPaths ReadWritePaths
InaccessiblePaths ExecPaths NoExecPaths BindPaths BindReadOnlyPaths
TemporaryFileSystem RootDirectory RootImage MountImages ExtensionImages
ExtensionDirectories MountAPIVFS LogNamespace MountFlags'
t_no_mount_namespace() {
	local o bad=0 line v
	for o in $NS_OPTS; do
		while IFS= read -r line; do
			v=${line#*=}
			case $o:$v in
			*:no | *:false | *:0 | *:off | MountFlags:shared | ProtectProc:default | ProcSubset:all) ;;
			*) echo "mount namespace option: $line"; bad=1 ;;
			esac
		done < <(grep -E "^[[:space:]]*$o=" "$UNIT")
	done
	return $bad
}
t_unit_basics() {
	local want
	for want in Type=notify NotifyAccess=main Restart=on-failure KillSignal=SIGTERM \
		'EnvironmentFile=/etc/layerfs/%i.conf' 'DeviceAllow=/dev/fuse rw' \
		WantedBy=multi-user.target User=layerfs AmbientCapabilities=CAP_SYS_ADMIN \
		CapabilityBoundingSet=CAP_SYS_ADMIN NoNewPrivileges=yes; do
		grep -qxF "$want" "$UNIT" || { echo "missing: $want"; return 1; }
	done
	grep -qE '^WatchdogSec=[1-9]' "$UNIT" || { echo "no WatchdogSec="; return 1; }
	grep -qE '^TimeoutStopSec=[1-9]' "$UNIT" || { echo "no TimeoutStopSec="; return 1; }
	grep -qE '^ExecStopPost=-' "$UNIT" || { echo "ExecStopPost= must ignore failure (-)"; return 1; }
	grep -qE '^FileDescriptorStoreMax=[1-9]' "$UNIT" || { echo "no FileDescriptorStoreMax="; return 1; }
	grep -qE '^Exec(StartPre|StopPost)=-?\+' "$UNIT" || { echo "ExecStartPre=/ExecStopPost= must run as root (+)"; return 1; }
}
t_execstart_argv() {
	# ${VAR} must be one argument (the mount point has a space), the options
	# follow "journal,", and the binary is the one make install rewrites.
	unit_cmd ExecStart "$CONF" || return 1
	local want=("$LAYERFS" mount -f -o "journal,fdstore,allow_other,default_permissions,cache_size=16M" "$LIST" "$MNT")
	[[ -z $FLAGS ]] || { echo "ExecStart= has prefix '$FLAGS'"; return 1; }
	if [[ ${#ARGV[@]} -ne ${#want[@]} || "${ARGV[*]}" != "${want[*]}" ]]; then
		printf 'got : %q\n' "${ARGV[@]}"
		printf 'want: %q\n' "${want[@]}"
		return 1
	fi
	grep -qE "^ExecStart=$UNIT_BIN " "$UNIT" || { echo "ExecStart= does not run $UNIT_BIN"; return 1; }
}
if command -v systemd-analyze >/dev/null; then
	check "unit: systemd-analyze verify" t_verify
	check "unit: verify rejects a broken copy (control)" t_verify_negative
else
	lfs_log "systemd-analyze not installed: verify not run"
fi
check "unit: no option that makes a private mount namespace" t_no_mount_namespace
check "unit: notify, watchdog, restart, stop, config, device settings" t_unit_basics
check "unit: ExecStart expands to one argument per \${VAR}" t_execstart_argv

# =========================== start, readiness ==============================
WD_USEC=300000	# WATCHDOG=1 expected every 150ms
t_pre_creates() {
	local rc=0
	run_cmd ExecStartPre "$CONF" "$T/pre.log" || rc=$?
	cat "$T/pre.log"
	[[ $rc -eq 0 ]] || { echo "ExecStartPre exited $rc"; return 1; }
	[[ -d $MNT ]] || { echo "mount point not created"; return 1; }
	# parents made with the service's umask 022: other users can reach /opt
	local m
	m=$(stat -c %a "$T/srv/fn layers")
	[[ $m == 755 ]] || { echo "parent mode $m, want 755"; return 1; }
}
check "ExecStartPre creates the missing mount point" t_pre_creates
chmod 755 "$T/srv"

start a "$CONF" WATCHDOG_USEC=$WD_USEC
t_ready() {
	wait_ready a || return 1
	local pid
	pid=$(pid_of a)
	cat "$T/a.notify"
	# the read made the instant READY=1 arrived
	grep -q " READCHECK=ok$" "$T/a.notify" || { echo "file not served at READY=1"; return 1; }
	# NotifyAccess=main: every message from the main pid
	awk -v p="$pid" '$2 != p { bad = 1 } END { exit bad }' "$T/a.notify" ||
		{ echo "a message not from the main pid $pid"; return 1; }
}
check "READY=1 from the main pid, only once files are served" t_ready
t_status() {
	local s
	s=$(notes a STATUS | head -n 1)
	echo "STATUS=$s"
	[[ $s == *"2 layers"* && $s == *"$MNT"* ]]
}
check "STATUS= names the layer count and mount point" t_status
t_dropped() {
	# The unit starts it as layerfs with CAP_SYS_ADMIN ambient; once
	# mounted it keeps nothing: no capability, no_new_privs, its filter.
	local st uid
	st=$(grep -E '^(Uid|CapPrm|CapEff|CapAmb|NoNewPrivs|Seccomp):' "/proc/$(pid_of a)/status")
	echo "$st"
	uid=$(id -u "$UNIT_USER")
	grep -qE "^Uid:[[:space:]]+$uid[[:space:]]+$uid[[:space:]]+$uid[[:space:]]+$uid\$" <<<"$st" &&
		grep -q '^CapEff:[[:space:]]*0000000000000000$' <<<"$st" &&
		grep -q '^CapPrm:[[:space:]]*0000000000000000$' <<<"$st" &&
		grep -q '^CapAmb:[[:space:]]*0000000000000000$' <<<"$st" &&
		grep -q '^NoNewPrivs:[[:space:]]*1$' <<<"$st" &&
		grep -q '^Seccomp:[[:space:]]*2$' <<<"$st"
}
check "after mounting: user $UNIT_USER, no capabilities, no_new_privs, seccomp filter" t_dropped
t_fdstore() {
	# the connection goes to the store, named after mount point and stack
	local n
	n=$(notes a FDNAME)
	echo "FDNAME=$n; $(notes a FDSTORED)"
	[[ $n =~ ^fuse-[0-9a-f]{8}-[0-9a-f]{16}$ && $(notes a FDSTORED) == 1 ]]
}
check "FDSTORE=1: the /dev/fuse connection is kept in the store" t_fdstore
t_mounted() {
	local top
	top=$($PY "$HERE/mnt.py" top "$MNT") || { echo "not mounted"; return 1; }
	echo "$top"
	[[ $top == fuse.layerfs\ * && $top == *ro,* && $top == *allow_other* && $top == *default_permissions* ]]
}
check "mounted: fuse.layerfs, ro, allow_other, default_permissions" t_mounted
t_other_user() {
	# allow_other + default_permissions: a function's user reads the tree
	local out
	out=$(setpriv --reuid=65534 --regid=65534 --clear-groups cat "$MNT/bin/hello.txt" 2>&1)
	echo "$out"
	[[ $out == "from top" ]]
}
if command -v setpriv >/dev/null; then
	check "another user (nobody) reads the tree" t_other_user
fi
t_watchdog() {
	local t0 n
	sleep 1.2
	t0=$(awk '/ READY=1$/ { print $1; exit }' "$T/a.notify")
	n=$(awk -v t0="$t0" '$3 == "WATCHDOG=1" && $1 > t0 && $1 <= t0 + 1.0' "$T/a.notify" | wc -l)
	echo "$n WATCHDOG=1 in the first second after READY=1 (WATCHDOG_USEC=$WD_USEC)"
	# every 150ms: about 6; at least 4, and not a flood
	[[ $n -ge 4 && $n -le 12 ]]
}
check "WATCHDOG=1 every WATCHDOG_USEC/2" t_watchdog

# =========================== logs ===========================================
t_log_levels() {
	local n bad
	n=$(wc -l <"$T/a.err")
	cat "$T/a.err"
	[[ $n -ge 1 ]] || { echo "no log line at all"; return 1; }
	bad=$(grep -cvE '^<[0-7]>' "$T/a.err")
	[[ $bad -eq 0 ]] || { echo "$bad lines without a <N> priority"; return 1; }
	grep -qE '^<6>.*serving 2 layers' "$T/a.err" || { echo "no <6> 'serving' line"; return 1; }
	[[ ! -s $T/a.out ]] || { echo "stdout is not empty:"; cat "$T/a.out"; return 1; }
}
check "logs: stderr only, each line with a priority" t_log_levels
t_log_per_read() {
	local before after i sum
	before=$(wc -l <"$T/a.err")
	for i in 1 2 3; do
		sum=$(cat "$MNT"/data/f*.txt | md5sum)
		ls -lR "$MNT" >/dev/null
	done
	[[ $sum == $(cat "$T/src/base/data/"f*.txt | md5sum) ]] || { echo "data read back wrong"; return 1; }
	sleep 0.3
	after=$(wc -l <"$T/a.err")
	echo "stderr lines: $before before, $after after 900 file reads"
	[[ $after -eq $before ]] || { tail -n 5 "$T/a.err"; return 1; }
}
check "logs: no line per read (900 reads)" t_log_per_read

# =========================== clean stop =====================================
# A function still running in the tree (cwd and an open file in it) must
# not block the stop.  Started here, not inside check: it would hold the
# pipe check reads the output from.
# shellcheck disable=SC2217 # the redirection only holds a file open
(cd "$MNT/bin" && exec sleep 30 <"$MNT/bin/hello.txt") >/dev/null 2>&1 &
BUSY=$!
t_sigterm() {
	local pid rc
	pid=$(pid_of a)
	sleep 0.2
	[[ -d /proc/$BUSY ]] || { echo "the busy process is not running"; return 1; }
	kill -TERM "$pid"
	wait_exit a 10 || return 1
	rc=$(cat "$T/a.rc")
	echo "exit status $rc"
	[[ $rc -eq 0 ]] || { tail -n 5 "$T/a.err"; return 1; }
	# kept for a restart: the store holds its connection (no look at
	# it: unserved, it would wait for the next daemon)
	[[ $(mcount "$MNT") -eq 1 ]] || { echo "not mounted: the restart has nothing to take over"; return 1; }
	# a final stop: ExecStopPost= unmounts
	run_cmd ExecStopPost "$CONF" "$T/post0.log"
	cat "$T/post0.log"
	[[ $(mcount "$MNT") -eq 0 ]] || { echo "still mounted"; return 1; }
	[[ $(mstat "$MNT") == ok ]] || { echo "mount point: $(mstat "$MNT")"; return 1; }
	grep -q '^<6>.*unmounting' "$T/post0.log"
}
check "SIGTERM with the mount busy: exit 0, mount kept; ExecStopPost unmounts" t_sigterm
kill "$BUSY" 2>/dev/null
wait "$BUSY" 2>/dev/null
t_stopping() {
	local s
	s=$(awk '$3 == "STOPPING=1" { print $2 }' "$T/a.notify")
	[[ -n $s ]] || { echo "no STOPPING=1"; return 1; }
	[[ $s == "$(pid_of a)" ]] || { echo "STOPPING=1 from pid $s"; return 1; }
	grep -qE '^<6>.*the mount stays' "$T/a.err" || { echo "no <6> 'the mount stays' line"; return 1; }
}
check "SIGTERM: STOPPING=1 sent, 'the mount stays' logged" t_stopping

# The rest emulates a unit without a store (FileDescriptorStoreMax=0): a
# daemon that dies takes its connection along, leaving a stale mount.

# =========================== crash, recovery ================================
start b "$CONF" --no-store WATCHDOG_USEC=$WD_USEC
check "restart after a clean stop: ready" wait_ready b
t_sigkill_stale() {
	kill -KILL "$(pid_of b)"
	wait_exit b 5 || return 1
	local s
	s=$(mstat "$MNT")
	echo "stat after SIGKILL: $s; mounts at the point: $(mcount "$MNT")"
	[[ $s == ENOTCONN && $(mcount "$MNT") -eq 1 ]]
}
check "SIGKILL leaves a stale mount (ENOTCONN)" t_sigkill_stale
# Recovery by the daemon alone (no ExecStopPost= ran), with a config whose
# LAYERFS_OPTIONS is empty ("journal," must do) and a watchdog meant for
# another pid (WATCHDOG_PID set: no WATCHDOG=1 may be sent then).
CONF2=$T/etc/layerfs/$INST.conf2
printf 'LAYERFS_LIST=%s\nLAYERFS_MOUNTPOINT="%s"\nLAYERFS_OPTIONS=\n' "$LIST" "$MNT" >"$CONF2"
t_pre_on_stale() {
	local rc=0
	run_cmd ExecStartPre "$CONF2" "$T/pre2.log" || rc=$?
	cat "$T/pre2.log"
	[[ $rc -eq 0 ]]
}
check "ExecStartPre succeeds on a stale mount point" t_pre_on_stale
start c "$CONF2" --no-store WATCHDOG_USEC=$WD_USEC WATCHDOG_PID=1
t_recovered() {
	wait_ready c || return 1
	grep -q " READCHECK=ok$" "$T/c.notify" || { cat "$T/c.notify"; return 1; }
	[[ $(mcount "$MNT") -eq 1 ]] || { echo "$(mcount "$MNT") mounts stacked at the point"; return 1; }
	grep -E '^<4>.*stale' "$T/c.err" || { echo "no <4> warning about the stale mount:"; cat "$T/c.err"; return 1; }
}
check "next start detaches the stale mount and serves (warning logged)" t_recovered
t_empty_options() {
	unit_cmd ExecStart "$CONF2" || return 1
	[[ ${ARGV[4]} == journal,fdstore, ]] || { echo "options argument: ${ARGV[4]}"; return 1; }
	[[ $(cat "$MNT/nodejs/x.js") == "module.exports = 1" ]]
}
check "empty LAYERFS_OPTIONS works" t_empty_options
t_foreign_watchdog() {
	sleep 0.6
	local n
	n=$(grep -c ' WATCHDOG=1$' "$T/c.notify")
	echo "$n WATCHDOG=1 with WATCHDOG_PID=1"
	[[ $n -eq 0 ]]
}
check "no WATCHDOG=1 when WATCHDOG_PID is another process" t_foreign_watchdog

# ExecStopPost= after a crash: detaches the stale mount.
t_stoppost_stale() {
	kill -KILL "$(pid_of c)"
	wait_exit c 5 || return 1
	[[ $(mstat "$MNT") == ENOTCONN ]] || { echo "not stale: $(mstat "$MNT")"; return 1; }
	local rc=0
	unit_cmd ExecStopPost "$CONF" && [[ $FLAGS == -+ ]] || { echo "flags '$FLAGS'"; return 1; }
	run_cmd ExecStopPost "$CONF" "$T/post1.log" SERVICE_RESULT=signal || rc=$?
	cat "$T/post1.log"
	[[ $rc -eq 0 ]] || { echo "ExecStopPost exited $rc"; return 1; }
	[[ $(mcount "$MNT") -eq 0 && $(mstat "$MNT") == ok ]] || { echo "still there: $(mstat "$MNT")"; return 1; }
	grep -q '^<4>.*stale' "$T/post1.log"
}
check "ExecStopPost detaches a stale mount" t_stoppost_stale

# ExecStopPost= must never unmount a live file system under the mount
# point (a real /opt partition): a tmpfs plays that part.
t_stoppost_keeps_lower() {
	mount -t tmpfs -o size=1m,mode=755 lfs-lower "$MNT" || return 1
	echo lower >"$MNT/marker"
	start d "$CONF"
	wait_ready d || return 1
	[[ $(cat "$MNT/bin/hello.txt") == "from top" ]] || return 1
	kill -TERM "$(pid_of d)"
	wait_exit d 10 || return 1
	run_cmd ExecStopPost "$CONF" "$T/post2.log"
	cat "$T/post2.log"
	[[ $(cat "$MNT/marker" 2>&1) == lower ]] || { echo "after a clean stop: $($PY "$HERE/mnt.py" top "$MNT")"; return 1; }
	start e "$CONF" --no-store
	wait_ready e || return 1
	kill -KILL "$(pid_of e)"
	wait_exit e 5 || return 1
	run_cmd ExecStopPost "$CONF" "$T/post3.log" SERVICE_RESULT=signal
	cat "$T/post3.log"
	[[ $(cat "$MNT/marker" 2>&1) == lower ]] || { echo "after a crash: $($PY "$HERE/mnt.py" top "$MNT")"; return 1; }
	[[ $($PY "$HERE/mnt.py" top "$MNT") == tmpfs\ * ]] || return 1
}
check "ExecStopPost keeps the file system under the mount point" t_stoppost_keeps_lower
umount "$MNT" 2>/dev/null

# =========================== bad configs ====================================
t_pre_incomplete() {
	local c=$T/etc/layerfs/$INST.conf3 rc=0
	printf 'LAYERFS_OPTIONS=allow_other\n' >"$c"
	run_cmd ExecStartPre "$c" "$T/pre3.log" || rc=$?
	cat "$T/pre3.log"
	[[ $rc -ne 0 && $rc -ne 99 ]] && grep -q '^<3>.*must set LAYERFS_LIST and LAYERFS_MOUNTPOINT' "$T/pre3.log"
}
check "ExecStartPre refuses a config without LAYERFS_MOUNTPOINT" t_pre_incomplete
t_bad_list() {
	local c=$T/etc/layerfs/$INST.conf4 l=$T/etc/layerfs/bad.list
	printf '%s\n' "$T/layers/base.zip" "$T/layers/missing.zip" >"$l"
	printf 'LAYERFS_LIST=%s\nLAYERFS_MOUNTPOINT="%s"\n' "$l" "$MNT" >"$c"
	start f "$c"
	wait_exit f 10 || return 1
	local rc
	rc=$(cat "$T/f.rc")
	cat "$T/f.err"
	[[ $rc -ne 0 ]] || { echo "exit 0 on a broken list"; return 1; }
	! grep -q ' READY=1$' "$T/f.notify" 2>/dev/null || { echo "READY=1 sent"; return 1; }
	[[ $(mcount "$MNT") -eq 0 ]] || { echo "left a mount behind"; return 1; }
	grep -q 'missing.zip' "$T/f.err" || { echo "error does not name the zip"; return 1; }
}
check "a missing zip: exit non-zero, no READY=1, no mount, zip named" t_bad_list

# =========================== make install / uninstall =======================
LBUILD=$(dirname "$LAYERFS")
# make -o: never rebuild here (others may be editing sources); install the
# binary under test.
mk() { make -s -C "$REPO" -o "$LBUILD/layerfs" BUILD="$LBUILD" "$@"; }
t_install_destdir() {
	local D=$T/dest f
	mk install DESTDIR="$D" PREFIX=/usr >"$T/install.log" 2>&1 || { cat "$T/install.log"; return 1; }
	for f in usr/bin/layerfs usr/lib/systemd/system/layerfs@.service etc/layerfs/example.conf \
		etc/layerfs/example.list sbin/mount.fuse.layerfs usr/share/man/man1/layerfs.1; do
		[[ -e $D/$f ]] || { echo "not installed: $f"; (cd "$D" && find . -type f); return 1; }
	done
	grep -qx 'ExecStart=/usr/bin/layerfs mount -f -o journal,fdstore,${LAYERFS_OPTIONS} ${LAYERFS_LIST} ${LAYERFS_MOUNTPOINT}' \
		"$D/usr/lib/systemd/system/layerfs@.service" || { echo "ExecStart not rewritten"; return 1; }
	cat "$D/usr/lib/systemd/system/layerfs@.service" "$D/sbin/mount.fuse.layerfs" | grep -v "^#" | grep -q /usr/local &&
		{ echo "/usr/local left in an installed file"; return 1; }
	[[ -x $D/sbin/mount.fuse.layerfs ]] || { echo "helper not executable"; return 1; }
	# PREFIX=/usr: the helper's PATH names /usr/bin once
	grep -qx 'PATH=/usr/bin:/usr/sbin:/sbin:/bin' "$D/sbin/mount.fuse.layerfs" ||
		{ grep '^PATH=' "$D/sbin/mount.fuse.layerfs"; return 1; }
	[[ -x $D/usr/libexec/layerfs/unit && -f $D/usr/lib/sysusers.d/layerfs.conf ]] ||
		{ echo "the unit's helper or the sysusers.d file missing"; return 1; }
	# config is not overwritten, the unit is
	echo "# edited" >>"$D/etc/layerfs/example.conf"
	echo "# stale" >>"$D/usr/lib/systemd/system/layerfs@.service"
	mk install DESTDIR="$D" PREFIX=/usr >"$T/install.log" 2>&1 || { cat "$T/install.log"; return 1; }
	tail -n 1 "$D/etc/layerfs/example.conf" | grep -qx '# edited' || { echo "example.conf overwritten"; return 1; }
	grep -q '# stale' "$D/usr/lib/systemd/system/layerfs@.service" && { echo "unit not updated"; return 1; }
	mk uninstall DESTDIR="$D" PREFIX=/usr >"$T/uninstall.log" 2>&1 || { cat "$T/uninstall.log"; return 1; }
	local left
	left=$(cd "$D" && find . -type f | sort)
	echo "left after uninstall: $left"
	[[ $left == ./etc/layerfs/example.conf ]]
}
check "make install/uninstall: DESTDIR, PREFIX, configs kept" t_install_destdir

# A real install (no DESTDIR) into a private prefix: the installed unit
# verifies, and the installed helper serves mount(8).
P=$T/prefix
t_install_prefix() {
	mk install PREFIX="$P" SYSCONFDIR="$P/etc" SBINDIR="$P/sbin" >"$T/install2.log" 2>&1 ||
		{ cat "$T/install2.log"; return 1; }
	grep -qx "ExecStart=$P/bin/layerfs mount -f -o journal,fdstore,\${LAYERFS_OPTIONS} \${LAYERFS_LIST} \${LAYERFS_MOUNTPOINT}" \
		"$P/lib/systemd/system/layerfs@.service" || return 1
	grep -qx "EnvironmentFile=$P/etc/layerfs/%i.conf" "$P/lib/systemd/system/layerfs@.service" || return 1
	grep -qx "LAYERFS_LIST=$P/etc/layerfs/example.list" "$P/etc/layerfs/example.conf" || return 1
	if command -v systemd-analyze >/dev/null; then
		(cd "$P/lib/systemd/system" && systemd-analyze verify --man=no ./layerfs@.service) || return 1
	fi
}
check "make install PREFIX=...: paths rewritten, installed unit verifies" t_install_prefix

# mount(8) runs /sbin/mount.fuse.TYPE, else /sbin/mount.fuse, and clears
# PATH on the way.  In a private mount namespace a tmpfs over /usr/sbin
# (symlinks to the real entries) lets us add the helper without touching
# the host; the FUSE mounts made there vanish with the namespace.
t_mount8() {
	command -v unshare >/dev/null || { echo "no unshare"; return 1; }
	[[ -x $P/sbin/mount.fuse.layerfs ]] || { echo "helper not installed"; return 1; }
	local m2=$T/m8
	mkdir -p "$m2" "$T/realsbin"
	printf '%s %s fuse.layerfs allow_other,default_permissions,nofail,noauto,_netdev,x-systemd.requires=foo.service 0 0\n' \
		"$LIST" "$m2" >"$T/fstab"
	unshare -m --propagation private env P="$P" T="$T" M="$m2" LIST="$LIST" bash -c '
		set -e
		sbin=$(readlink -f /sbin)
		mount --bind "$sbin" "$T/realsbin"
		mount -t tmpfs -o mode=755 lfs-sbin "$sbin"
		for f in "$T"/realsbin/*; do ln -s "$f" "$sbin/"; done
		# without the helper, mount.fuse3 runs "layerfs" from the default
		# PATH only; it is not there (unless installed system-wide)
		if ! command -v layerfs >/dev/null && env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin sh -c "! command -v layerfs" >/dev/null; then
			if mount -t fuse.layerfs "$LIST" "$M" 2>/dev/null; then
				echo "mount -t fuse.layerfs worked without the helper?"; exit 1
			fi
		fi
		cp "$P/sbin/mount.fuse.layerfs" "$sbin/"
		mount -t fuse.layerfs -o allow_other,nofail "$LIST" "$M"
		[ "$(cat "$M/bin/hello.txt")" = "from top" ] || { echo "mount -t: wrong content"; exit 1; }
		grep -q " fuse.layerfs " /proc/self/mountinfo
		umount "$M"
		mount -T "$T/fstab" "$M"
		[ "$(cat "$M/nodejs/x.js")" = "module.exports = 1" ] || { echo "fstab: wrong content"; exit 1; }
		grep " $M " /proc/self/mounts
		umount "$M"
		echo "mount -t fuse.layerfs and the fstab line both served the stack"
	'
}
check "mount -t fuse.layerfs / fstab line via the installed helper" t_mount8
t_uninstall_prefix() {
	mk uninstall PREFIX="$P" SYSCONFDIR="$P/etc" SBINDIR="$P/sbin" >"$T/uninstall2.log" 2>&1 ||
		{ cat "$T/uninstall2.log"; return 1; }
	local left
	left=$(cd "$P" && find . -type f | sort)
	[[ -z $left ]] || { echo "left: $left"; return 1; }
}
check "make uninstall PREFIX=...: removes everything it installed" t_uninstall_prefix

# =========================== under a real systemd ===========================
# boot.sh (about 12s) boots systemd in its own namespaces and runs the unit
# there; its checks count here, prefixed "systemd:".  LFS_SD_BOOT=0 skips it.
if [[ ${LFS_SD_BOOT:-1} == 1 ]]; then
	lfs_log "under a real systemd: tests/systemd/boot.sh"
	LAYERFS=$LAYERFS bash "$HERE/boot.sh" 2>&1 | tee "$T/boot.out" |
		grep -vE '^[0-9]+ passed, [0-9]+ failed$|^# failed: ' | sed -E 's/^(ok|FAIL) /\1 systemd: /'
	rc=${PIPESTATUS[0]}
	summary=$(tail -n 1 "$T/boot.out")
	if [[ $rc -eq 77 ]]; then
		lfs_log "boot.sh skipped: $(grep '^SKIP' "$T/boot.out")"
	elif [[ $summary =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
		lfs_add_results "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" "systemd: see above"
		[[ ${BASH_REMATCH[2]} -eq 0 && $rc -ne 0 ]] &&
			lfs_fail "systemd: boot.sh" "exited $rc after $summary"
	else
		lfs_fail "systemd: boot.sh ended without a summary (exit $rc)"
	fi
else
	lfs_log "LFS_SD_BOOT=0: the real-systemd checks (boot.sh) were not run"
fi

lfs_finish
