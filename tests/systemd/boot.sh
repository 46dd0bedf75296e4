#!/bin/bash
# tests/systemd/boot.sh: layerfs@.service under a real systemd.
#
# Boots the host's systemd as PID 1 of new pid, mount and cgroup namespaces
# on a scratch root (tmpfs, the host's /usr read-only, a copy of /etc, no
# enabled units), with `make install DESTDIR=` putting layerfs, the unit and
# the example configs in it, and its root mount shared like a real host's.
# Then, through systemctl in there:
#   - `systemctl start` returns only once the tree serves files; StatusText
#   - the mount is in PID 1's mount namespace (the host's), and the daemon
#     runs in that namespace; the sandbox is really applied (NoNewPrivs,
#     seccomp, capability bounding set) and the FUSE mount still works
#   - a function service as another user, Requires=/After= the unit, reads it
#   - journald gets the daemon's priorities
#   - SIGKILL and a hung daemon (SIGSTOP, WatchdogSec=2s drop-in) are
#     restarted; the mount serves again, no stale mount is left stacked; a
#     function unit with Requires=/After= is restarted along
#   - systemctl stop: clean exit, mount gone
#   - a broken config fails the start, with the error in `journalctl -p err`
#   - control: with ProtectHome=yes added (a private mount namespace) the
#     mount never reaches the host - why the unit has no such option
# Needs root, /dev/fuse, cgroup2, unshare/nsenter, systemd >= 245, zip,
# python3.  About 30s.  Ends with "N passed, M failed" (exit 1 if any
# failed, 77 if it cannot run here).
#
#   LAYERFS=build/layerfs bash tests/systemd/boot.sh

set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/../lib.sh"
REPO=$LFS_REPO
export LC_ALL=C TZ=UTC

T=
UNSHARE_PID=
SDPID=
CGDIR=

# Everything the test mounts lives in the namespaces; killing their PID 1
# ends them (and the daemons, and their mounts).  Then the harness removes
# the temp dir.
stop_systemd() {
	local i
	if [[ -n $SDPID ]] && kill -0 "$SDPID" 2>/dev/null; then
		timeout 20 nsenter -t "$SDPID" -m -p -r -w systemctl poweroff >/dev/null 2>&1
		for i in $(seq 50); do kill -0 "$SDPID" 2>/dev/null || break; sleep 0.2; done
		kill -KILL "$SDPID" 2>/dev/null
	fi
	if [[ -n $UNSHARE_PID ]]; then
		for i in $(seq 25); do kill -0 "$UNSHARE_PID" 2>/dev/null || break; sleep 0.2; done
		kill -KILL "$UNSHARE_PID" 2>/dev/null
		wait "$UNSHARE_PID" 2>/dev/null
	fi
	if [[ -n $CGDIR && -d $CGDIR ]]; then
		find "$CGDIR" -depth -type d -exec rmdir {} + 2>/dev/null
		[[ -d $CGDIR ]] && echo "# warning: cgroup $CGDIR left behind" >&2
	fi
	return 0
}

# ---- prerequisites --------------------------------------------------------
lfs_need_root
[[ -c /dev/fuse ]] || lfs_skip "no /dev/fuse"
for c in unshare nsenter zip systemctl python3 make; do
	command -v $c >/dev/null || lfs_skip "needs $c"
done
SYSTEMD=
for s in /usr/lib/systemd/systemd /lib/systemd/systemd; do
	[[ -x $s ]] && { SYSTEMD=$s; break; }
done
[[ -n $SYSTEMD ]] || lfs_skip "no systemd binary"
[[ $(readlink -f "$SYSTEMD") == /usr/* ]] || lfs_skip "systemd is not under /usr (needed: /usr is shared with the container)"
CG2=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
[[ -n $CG2 ]] || lfs_skip "no cgroup2 mounted"
CGSELF=$(awk -F: '$1 == "0" { print $3 }' /proc/self/cgroup)
lfs_init
lfs_on_exit stop_systemd

# The unit's daemon runs as layerfs and opens /dev/fuse itself.
lfs_fuse_for_all || lfs_skip "cannot make /dev/fuse usable by the unit's user"

lfs_tmpdir T /tmp/layerfs-boot
R=$T/root
mkdir -p "$R"
CGDIR=$CG2${CGSELF%/}/layerfs-boot.$$
mkdir "$CGDIR" || lfs_skip "cannot create a cgroup under $CG2$CGSELF"

# ---- the scratch root, prepared and booted inside the namespaces ----------
LBUILD=$(dirname "$LAYERFS")
cat >"$T/setup.sh" <<'EOF'
set -e
mount -t tmpfs -o mode=755 lfs-boot-root "$R"
mkdir -p "$R"/{usr,etc,proc,sys,dev,run,tmp,var/tmp,var/lib,var/log,root,srv}
chmod 1777 "$R/tmp" "$R/var/tmp"
mount --bind /usr "$R/usr"
mount -o remount,bind,ro "$R/usr"
for d in bin sbin lib lib32 lib64 libx32; do
	if [ -L "/$d" ]; then ln -s "$(readlink "/$d")" "$R/$d"
	elif [ -d "/$d" ]; then mkdir "$R/$d"; mount --bind "/$d" "$R/$d"; mount -o remount,bind,ro "$R/$d"
	fi
done
cp -a /etc/. "$R/etc/"
rm -rf "$R"/etc/systemd/system/*.wants "$R/etc/machine-id"
: >"$R/etc/fstab"
# layerfs as `make install` puts it, into the scratch root
make -s -C "$REPO" -o "$LBUILD/layerfs" BUILD="$LBUILD" install DESTDIR="$R" PREFIX=/lfs \
	SYSCONFDIR=/etc SBINDIR=/lfs/sbin UNITDIR=/etc/systemd/system SYSUSERSDIR=/etc/sysusers.d \
	>"$T/install.log"
# the daemon's user, as a package's postinst (or make install) makes it
systemd-sysusers --root="$R" "$R/etc/sysusers.d/layerfs.conf" >>"$T/install.log" 2>&1
mkdir -p "$R/lfs/layers" "$R/srv/t"
cp "$T"/layers/*.zip "$R/lfs/layers/"
cp "$T/tenant.py" "$R/lfs/"
cp "$T/t.list" "$T/t.conf" "$T/bad.list" "$T/bad.conf" "$R/etc/layerfs/"
cat >"$R/etc/systemd/system/lfs.target" <<'U'
[Unit]
Description=layerfs test target
Wants=systemd-journald.service
U
# a real host's / is shared (systemd does that when booted by the kernel)
mount --make-rshared "$R"
echo 0 >"$CGDIR/cgroup.procs"
exec unshare --cgroup /usr/bin/env -i container=layerfs-test TERM=dumb \
	/usr/sbin/chroot "$R" "$SYSTEMD" --unit=lfs.target systemd.unified_cgroup_hierarchy=1
EOF

# layers: base + top, top overrides bin/hello.txt
mkdir -p "$T/src/base/bin" "$T/src/top/bin" "$T/layers"
echo "from base" >"$T/src/base/bin/hello.txt"
echo "from top" >"$T/src/top/bin/hello.txt"
echo "base only" >"$T/src/base/bin/base.txt"
echo "read late" >"$T/src/base/bin/later.txt"
mkdir -p "$T/src/extra/extra"
echo extra >"$T/src/extra/extra/e.txt"
(cd "$T/src/base" && zip -qrX "$T/layers/base.zip" .)
(cd "$T/src/extra" && zip -qrX "$T/layers/extra.zip" .)
cat >"$T/tenant.py" <<'PY'
# A tenant: its cwd and an open file in the mount; every 0.1s a read the
# page cache cannot answer, a statfs, a listing; one line each: "ok T DATA
# INO NAMES" or "err T WHY".
import os, sys, time
log = open(sys.argv[1], "a", buffering=1)
os.chdir("/srv/t/opt/bin")
fd = os.open("hello.txt", os.O_RDONLY)
while True:
    t = time.monotonic()
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        data = os.pread(fd, 100, 0).decode().strip().replace(" ", "_")
        os.statvfs(".")
        names = ",".join(sorted(os.listdir(".")))
        os.stat("base.txt")
        log.write("ok %.3f %s %d %s\n" % (t, data, os.fstat(fd).st_ino, names))
    except OSError as e:
        log.write("err %.3f %s\n" % (t, e))
    time.sleep(0.1)
PY
(cd "$T/src/top" && zip -qrX "$T/layers/top.zip" .)
printf '/lfs/layers/base.zip name=base\n/lfs/layers/top.zip name=top\n' >"$T/t.list"
printf 'LAYERFS_LIST=/etc/layerfs/t.list\nLAYERFS_MOUNTPOINT=/srv/t/opt\nLAYERFS_OPTIONS=allow_other,default_permissions,cache_size=16M\n' >"$T/t.conf"
printf '/lfs/layers/base.zip\n/lfs/layers/nope.zip\n' >"$T/bad.list"
printf 'LAYERFS_LIST=/etc/layerfs/bad.list\nLAYERFS_MOUNTPOINT=/srv/bad\n' >"$T/bad.conf"

env R="$R" T="$T" REPO="$REPO" LBUILD="$LBUILD" CGDIR="$CGDIR" SYSTEMD="$SYSTEMD" \
	unshare --pid --fork --mount --propagation private /bin/bash "$T/setup.sh" \
	</dev/null >"$T/boot.log" 2>&1 &
UNSHARE_PID=$!
for i in $(seq 100); do
	SDPID=$(pgrep -P "$UNSHARE_PID" -x systemd | head -n 1)
	[[ -n $SDPID ]] && break
	kill -0 "$UNSHARE_PID" 2>/dev/null || break
	sleep 0.1
done
if [[ -z $SDPID ]]; then
	echo "FAIL systemd did not start:"
	tail -n 20 "$T/boot.log" "$T/install.log" 2>/dev/null | sed 's/^/    /'
	LFS_FAIL=1
	LFS_FAILED_NAMES=(boot)
	lfs_finish
fi
sd() { nsenter -t "$SDPID" -m -p -r -w "$@"; }
# -m only: a PID 1-namespace view of the mount table and files
host() { nsenter -t "$SDPID" -m -r -w "$@"; }
for i in $(seq 100); do
	st=$(sd systemctl is-system-running 2>/dev/null)
	[[ $st == running || $st == degraded ]] && break
	sleep 0.2
done
lfs_log "systemd $("$SYSTEMD" --version | head -n 1 | awk '{ print $2 }') booted: $st (pid $SDPID)"

prop() { sd systemctl show -P "$2" "$1"; }
mainpid() { prop layerfs@t.service MainPID; }
# kill_main SIG: signals the daemon (never pid 0, this script's group)
kill_main() {
	local pid
	pid=$(mainpid)
	[[ $pid -gt 0 ]] || { echo "no daemon running"; return 1; }
	sd kill "-$1" "$pid"
}
# pids and /proc as seen inside (MainPID is a pid of that namespace)
ns_of() { sd readlink "/proc/$1/ns/mnt"; }
# in_mountinfo MNT: how many mounts PID 1 (the host) has at MNT ("ERR" if
# its table cannot be read, which fails any numeric test)
in_mountinfo() {
	local mi
	mi=$(sd cat /proc/1/mountinfo) && [[ -n $mi ]] || { echo ERR; return; }
	awk -v m="$1" '$5 == m' <<<"$mi" | wc -l
}

# =========================== start ==========================================
t_start() {
	sd systemctl daemon-reload || return 1
	timeout 60 nsenter -t "$SDPID" -m -p -r -w systemctl start layerfs@t.service || {
		sd journalctl -q --no-pager -u layerfs@t.service | tail -n 12; return 1; }
	# Type=notify: once start returns, the tree must already serve files
	local got
	got=$(host cat /srv/t/opt/bin/hello.txt 2>&1)
	[[ $got == "from top" ]] || { echo "right after start: $got"; return 1; }
}
check "systemctl start returns once the tree serves files" t_start
t_status() {
	local s
	s=$(prop layerfs@t.service StatusText)
	echo "StatusText=$s"
	[[ $s == *"2 layers"* ]] && [[ $(prop layerfs@t.service ActiveState) == active ]]
}
check "active, StatusText names the layers" t_status
t_host_ns() {
	local pid
	pid=$(mainpid)
	[[ $pid -gt 0 ]] || return 1
	echo "daemon $pid: $(ns_of "$pid"), PID 1: $(ns_of 1)"
	[[ $(ns_of "$pid") == "$(ns_of 1)" ]] || return 1
	[[ $(in_mountinfo /srv/t/opt) -eq 1 ]]
}
check "the mount is in the host's (PID 1's) mount namespace" t_host_ns
t_sandboxed() {
	local pid s uid
	pid=$(mainpid)
	s=$(sd grep -E '^(Uid|NoNewPrivs|Seccomp|CapBnd|CapPrm|CapEff|CapAmb):' "/proc/$pid/status")
	uid=$(sd id -u layerfs)
	echo "$s"
	# started as layerfs with CAP_SYS_ADMIN (21: 0x200000) for the mount;
	# once mounted it has none left, and its own filter
	grep -qE "^Uid:[[:space:]]+$uid[[:space:]]+$uid[[:space:]]+$uid[[:space:]]+$uid\$" <<<"$s" &&
		grep -q '^NoNewPrivs:[[:space:]]*1$' <<<"$s" &&
		grep -q '^Seccomp:[[:space:]]*2$' <<<"$s" &&
		grep -q '^CapBnd:[[:space:]]*0000000000200000$' <<<"$s" &&
		grep -q '^CapEff:[[:space:]]*0000000000000000$' <<<"$s" &&
		grep -q '^CapPrm:[[:space:]]*0000000000000000$' <<<"$s" &&
		grep -q '^CapAmb:[[:space:]]*0000000000000000$' <<<"$s"
}
check "sandbox applied: user layerfs, no capability left, no_new_privs, seccomp" t_sandboxed
t_operator_data() {
	# stats are root's; provenance shows names, never paths, to others
	sd /lfs/bin/layerfs stats /srv/t/opt | grep -q '^pid ' || { echo "root cannot read stats"; return 1; }
	sd /lfs/bin/layerfs stats --format=prometheus /srv/t/opt | grep -q '^layerfs_info{' ||
		{ echo "root cannot read metrics"; return 1; }
	local out
	out=$(sd setpriv --reuid=65534 --regid=65534 --clear-groups /lfs/bin/layerfs stats /srv/t/opt 2>&1) &&
		{ echo "nobody read the stats: $out"; return 1; }
	echo "nobody: $out"
	grep -q 'not permitted' <<<"$out" || return 1
	out=$(sd setpriv --reuid=65534 --regid=65534 --clear-groups getfattr --only-values -n user.layerfs.layer /srv/t/opt/bin/hello.txt 2>/dev/null)
	echo "provenance for nobody: $out"
	[[ $out == top ]]
}
check "operator data: stats for root only, names not paths for others" t_operator_data
t_function() {
	# As systemd/README.md recommends: Requires= + After= the stack.  With
	# the stack stopped, starting the function must pull it in and wait for
	# READY=1 before running.
	sd systemctl stop layerfs@t.service
	[[ $(in_mountinfo /srv/t/opt) -eq 0 ]] || { echo "still mounted after stop"; return 1; }
	sd sh -c 'cat >/etc/systemd/system/fn.service <<U
[Unit]
Requires=layerfs@t.service
After=layerfs@t.service
[Service]
Type=oneshot
User=nobody
StandardOutput=file:/run/fn.out
ExecStart=/bin/cat /srv/t/opt/bin/hello.txt /srv/t/opt/bin/base.txt
U
systemctl daemon-reload'
	sd systemctl start fn.service || { sd systemctl status --no-pager fn.service; return 1; }
	local out
	out=$(sd cat /run/fn.out)
	echo "$out"
	[[ $out == $'from top\nbase only' ]] && [[ $(prop layerfs@t.service ActiveState) == active ]]
}
check "a function (User=nobody, Requires=/After=) pulls the stack in and reads it" t_function
t_journal() {
	local j
	j=$(sd journalctl -q --no-pager -u layerfs@t.service -o json --output-fields=PRIORITY,MESSAGE 2>&1)
	grep -E '"PRIORITY":"6".*serving 2 layers|serving 2 layers.*"PRIORITY":"6"' <<<"$j" ||
		{ echo "no serving line at priority 6:"; echo "$j" | tail -n 5; return 1; }
}
JOURNAL=no
if sd systemctl -q is-active systemd-journald.service; then
	JOURNAL=yes
	check "journald: 'serving' logged at priority info (6)" t_journal
else
	lfs_log "journald not running in the container: journal checks skipped"
fi

# =========================== crash, hang, stop ==============================
wait_restarted() {	# wait_restarted OLDPID: a new main pid, active, serving
	local i pid
	for i in $(seq 150); do
		pid=$(mainpid)
		if [[ $pid -gt 0 && $pid != "$1" && $(prop layerfs@t.service ActiveState) == active ]]; then
			[[ $(host cat /srv/t/opt/bin/hello.txt 2>&1) == "from top" ]] && return 0
		fi
		sleep 0.2
	done
	echo "not restarted: $(prop layerfs@t.service ActiveState) pid $(mainpid)"
	return 1
}
# A tenant with its working directory and an open file in the mount, as
# nobody, in a transient unit of its own (no dependency on the stack): what
# it does after a restart must work as before, with the same inodes.
tenant_log() { sd cat /tmp/tenant.log 2>/dev/null; }
tenant_oks_since() {	# tenant_oks_since T: "ok" lines stamped after T (CLOCK_MONOTONIC)
	tenant_log | awk -v t="$1" '$1 == "ok" && $2 > t' | wc -l
}
tenant_errors() { tenant_log | grep '^err' | head -n 5; }
now() { sd python3 -c 'import time; print("%.3f" % time.monotonic())'; }
t_tenant_starts() {
	sd systemd-run -q --unit=tenant -p User=nobody python3 /lfs/tenant.py /tmp/tenant.log || return 1
	local i
	for i in $(seq 50); do
		[[ $(tenant_oks_since 0) -ge 2 ]] && break
		sleep 0.1
	done
	tenant_log | head -n 3
	[[ $(tenant_oks_since 0) -ge 2 && -z $(tenant_errors) ]]
}
check "a tenant (nobody) works in the mount: cwd, an open file, statfs, readdir" t_tenant_starts
T_BEFORE=$(sd stat -c '%i %n' /srv/t/opt/bin /srv/t/opt/bin/hello.txt /srv/t/opt/bin/base.txt)
ten_ok_after() {	# the tenant went on: fresh "ok" lines after T, no error at all
	# and the new daemon answered its reads (the page cache could not); the
	# daemon counts a read once it has answered it, so the tenant may log a
	# line before its read is counted: both are waited for
	local i reads
	for i in $(seq 30); do
		reads=$(sd /lfs/bin/layerfs stats /srv/t/opt | awk '$1 == "reads" { print $2 }')
		[[ $(tenant_oks_since "$1") -ge 3 && ${reads:-0} -ge 3 ]] && break
		sleep 0.1
	done
	echo "tenant: $(tenant_oks_since "$1") ok lines since, errors: $(tenant_errors); the new daemon's reads: $reads"
	[[ $(tenant_oks_since "$1") -ge 3 && -z $(tenant_errors) && $reads -ge 3 ]] &&
		[[ $(prop tenant.service ActiveState) == active ]] &&
		[[ $(tenant_log | awk '$1 == "ok" { print $4 }' | sort -u | wc -l) -eq 1 ]]
}
t_restart_takeover() {
	local old t
	old=$(mainpid)
	t=$(now)
	timeout 60 nsenter -t "$SDPID" -m -p -r -w systemctl restart layerfs@t.service || return 1
	echo "main pid $old -> $(mainpid); mounts at the point: $(in_mountinfo /srv/t/opt)"
	[[ $(mainpid) != "$old" && $(in_mountinfo /srv/t/opt) -eq 1 ]] || return 1
	ten_ok_after "$t" || return 1
	if [[ $JOURNAL == yes ]]; then
		sd journalctl -q --no-pager -u layerfs@t.service -o cat | grep -q 'took over the mount' ||
			{ echo "no 'took over' line"; return 1; }
	fi
}
check "systemctl restart: the new daemon takes the live mount over, the tenant goes on" t_restart_takeover
t_crash_takeover() {
	# A request made while no daemon reads (stopped, then killed) waits in
	# the kernel and is answered by the next one.
	local old t rc
	old=$(mainpid)
	kill_main STOP || return 1
	sd sh -c 'setpriv --reuid=65534 --regid=65534 --clear-groups cat /srv/t/opt/bin/later.txt >/run/later.out 2>&1; echo $? >/run/later.rc' &
	sleep 0.5
	[[ -z $(sd cat /run/later.rc 2>/dev/null) ]] || { echo "answered by a stopped daemon?"; return 1; }
	t=$(now)
	kill_main KILL || return 1
	wait_restarted "$old" || return 1
	wait
	rc=$(sd cat /run/later.rc 2>/dev/null)
	echo "NRestarts=$(prop layerfs@t.service NRestarts); the waiting read: $rc $(sd cat /run/later.out)"
	[[ $rc == 0 && $(sd cat /run/later.out) == "read late" ]] || return 1
	[[ $(in_mountinfo /srv/t/opt) -eq 1 ]] || { echo "$(in_mountinfo /srv/t/opt) mounts at the point"; return 1; }
	ten_ok_after "$t"
}
check "SIGKILL: restarted, the mount taken over, a waiting read answered, the tenant goes on" t_crash_takeover
t_same_inodes() {
	# the kernel forgets what it can; looked up again from the new daemon,
	# every path has the inode number it had before
	sd sh -c 'echo 2 >/proc/sys/vm/drop_caches'
	local after
	after=$(sd stat -c '%i %n' /srv/t/opt/bin /srv/t/opt/bin/hello.txt /srv/t/opt/bin/base.txt)
	echo "before: $T_BEFORE"
	echo "after:  $after"
	[[ $after == "$T_BEFORE" ]]
}
check "inode numbers are the same after the restarts" t_same_inodes
t_sighup() {
	local old
	old=$(mainpid)
	sd systemctl kill -s HUP layerfs@t.service || return 1
	sleep 1
	[[ $(mainpid) == "$old" && $(prop layerfs@t.service ActiveState) == active ]] || { echo "pid $old -> $(mainpid)"; return 1; }
	[[ $(host cat /srv/t/opt/bin/hello.txt) == "from top" ]] || return 1
	if [[ $JOURNAL == yes ]]; then
		sd journalctl -q --no-pager -u layerfs@t.service -o cat | grep 'SIGHUP ignored' || return 1
	fi
}
check "SIGHUP: ignored, still serving" t_sighup
sd systemctl stop tenant.service 2>/dev/null
t_changed_stack() {
	# A restart with another list does not serve the old inode numbers:
	# the stored connection is dropped and the stack mounted afresh.
	sd sh -c 'cp /etc/layerfs/t.list /run/t.list.orig; echo /lfs/layers/extra.zip name=extra >>/etc/layerfs/t.list'
	timeout 60 nsenter -t "$SDPID" -m -p -r -w systemctl restart layerfs@t.service || return 1
	local out
	out=$(host cat /srv/t/opt/extra/e.txt 2>&1)
	sd sh -c 'cp /run/t.list.orig /etc/layerfs/t.list'
	echo "new file: $out; mounts: $(in_mountinfo /srv/t/opt)"
	[[ $out == extra && $(in_mountinfo /srv/t/opt) -eq 1 ]] || return 1
	if [[ $JOURNAL == yes ]]; then
		sd journalctl -q --no-pager -u layerfs@t.service -o cat | grep 'the stack changed' || return 1
	fi
	timeout 60 nsenter -t "$SDPID" -m -p -r -w systemctl restart layerfs@t.service
}
check "a restart with a changed list mounts afresh" t_changed_stack
# -o uring=on with the fd store: the first start with it mounts afresh (the
# stored connection's name says how it was served), the next restart takes
# the connection over and serves it through the rings again.
URING_PARAM=/sys/module/fuse/parameters/enable_uring
uring_of() { sd /lfs/bin/layerfs stats /srv/t/opt | awk '$1 == "uring_requests" { print $2 }'; }
t_uring_takeover() {
	local was old n
	was=$(cat "$URING_PARAM")
	echo Y >"$URING_PARAM" || return 1
	sd sh -c 'cp /etc/layerfs/t.conf /run/t.conf.orig; sed -i "s/^LAYERFS_OPTIONS=.*/&,uring=on/" /etc/layerfs/t.conf'
	local rc=0
	{
		# the restarts before these would hit the unit's start limit
		sd systemctl reset-failed layerfs@t.service 2>/dev/null
		timeout 60 nsenter -t "$SDPID" -m -p -r -w systemctl restart layerfs@t.service || { rc=1; echo "first restart failed"; }
		uring_of >/dev/null
		n=$(uring_of)
		echo "after the first restart: uring_requests ${n:-none}; mounts: $(in_mountinfo /srv/t/opt)"
		[[ ${n:-0} -ge 1 && $(in_mountinfo /srv/t/opt) -eq 1 ]] || rc=1
		old=$(mainpid)
		sd systemctl reset-failed layerfs@t.service 2>/dev/null
		timeout 60 nsenter -t "$SDPID" -m -p -r -w systemctl restart layerfs@t.service || { rc=1; echo "second restart failed"; }
		[[ $(host cat /srv/t/opt/bin/hello.txt) == "from top" ]] || { rc=1; echo "not served after the takeover"; }
		uring_of >/dev/null
		n=$(uring_of)
		echo "main pid $old -> $(mainpid); uring_requests ${n:-none}; mounts: $(in_mountinfo /srv/t/opt)"
		[[ $(mainpid) != "$old" && ${n:-0} -ge 1 && $(in_mountinfo /srv/t/opt) -eq 1 ]] || rc=1
		if [[ $JOURNAL == yes ]]; then
			sd journalctl -q --no-pager -u layerfs@t.service -o cat | grep -q 'took over the mount' ||
				{ rc=1; echo "no 'took over' line"; }
		fi
	}
	sd sh -c 'cp /run/t.conf.orig /etc/layerfs/t.conf'
	sd systemctl reset-failed layerfs@t.service 2>/dev/null
	timeout 60 nsenter -t "$SDPID" -m -p -r -w systemctl restart layerfs@t.service
	echo "$was" >"$URING_PARAM"
	return $rc
}
if [[ -w $URING_PARAM ]]; then
	check "uring=on with the fd store: mounted afresh, then taken over and served through the rings" t_uring_takeover
fi
t_watchdog() {
	sd mkdir -p /etc/systemd/system/layerfs@t.service.d
	sd sh -c 'printf "[Service]\nWatchdogSec=2s\n" >/etc/systemd/system/layerfs@t.service.d/wd.conf'
	sd systemctl daemon-reload
	sd systemctl restart layerfs@t.service || return 1
	local old n0
	old=$(mainpid)
	n0=$(prop layerfs@t.service NRestarts)
	sleep 3	# alive and pinging: no restart
	[[ $(mainpid) == "$old" ]] || { echo "restarted while healthy"; return 1; }
	kill_main STOP || return 1
	wait_restarted "$old" || return 1
	echo "NRestarts $n0 -> $(prop layerfs@t.service NRestarts)"
	sd journalctl -q --no-pager -u layerfs@t.service | grep -i watchdog | tail -n 2
	[[ $(prop layerfs@t.service NRestarts) -gt $n0 ]]
}
check "hung daemon (SIGSTOP): watchdog kills it, restarted, serving" t_watchdog
t_stop() {
	sd systemctl stop layerfs@t.service || return 1
	local r
	r="$(prop layerfs@t.service Result) $(prop layerfs@t.service ExecMainStatus)"
	echo "Result/ExecMainStatus: $r"
	[[ $r == "success 0" ]] || return 1
	[[ $(in_mountinfo /srv/t/opt) -eq 0 ]] || { echo "still mounted"; return 1; }
}
check "systemctl stop: exit 0, unmounted" t_stop

# =========================== errors, control ================================
t_bad_config() {
	if sd systemctl start layerfs@bad.service 2>/dev/null; then
		echo "a broken list started"; return 1
	fi
	sd systemctl reset-failed layerfs@bad.service 2>/dev/null
	sd journalctl -q --no-pager -u layerfs@bad.service -p err | grep nope.zip ||
		{ echo "error not in journalctl -p err:"; sd journalctl -q --no-pager -u layerfs@bad.service | tail -n 5; return 1; }
}
if [[ $JOURNAL == yes ]]; then
	check "broken list: start fails, error at priority err" t_bad_config
fi
t_control_namespace() {
	# Why the unit avoids ProtectHome=, ProtectSystem=, PrivateTmp= ...: any
	# of them puts the mount in a namespace the host never sees.
	sd sh -c 'printf "[Service]\nProtectHome=yes\n" >/etc/systemd/system/layerfs@t.service.d/ns.conf'
	sd systemctl daemon-reload
	local rc=0
	sd systemctl start layerfs@t.service || rc=$?
	local pid n
	pid=$(mainpid)
	n=$(in_mountinfo /srv/t/opt)
	echo "start: $rc; daemon ns $(ns_of "$pid") vs PID 1 $(ns_of 1); host mounts at point: $n"
	sd systemctl stop layerfs@t.service
	sd rm -f /etc/systemd/system/layerfs@t.service.d/ns.conf
	sd systemctl daemon-reload
	[[ $rc -eq 0 && $pid -gt 0 && $(ns_of "$pid") != "$(ns_of 1)" && $n -eq 0 ]]
}
check "control: with ProtectHome=yes the host never sees the mount" t_control_namespace

t_security() {
	# systemd-analyze's exposure (0 safest, 10 worst): 4.0 before the
	# daemon ran as its own user and the unit lost its other options
	local line
	line=$(sd systemd-analyze security --no-pager layerfs@t.service 2>/dev/null | tail -n 1)
	echo "$line"
	awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+\.[0-9]+$/) v = $i } END { exit !(v != "" && v < 4.0) }' <<<"$line"
}
if command -v systemd-analyze >/dev/null; then
	check "systemd-analyze security: exposure below 4.0" t_security
fi
lfs_finish
