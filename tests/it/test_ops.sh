#!/usr/bin/env bash
# Operating a mount on a multi-tenant host: the daemon keeps no privilege
# once mounted (its /proc/PID/status), operator data answers root and the
# admin group only (read as other users), provenance as -o provenance=
# says, Prometheus metrics (the exposition checked line by line, and
# metrics_file), every failure the log reports counted, check --strict,
# SIGHUP, and the plain refusals a tenant gets.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lfs_init
lfs_tmpdir T
chmod 755 "$T"

NOBODY=(setpriv --reuid=65534 --regid=65534 --clear-groups)
# other users cannot run an interpreter under root's home (pyenv)
NPY=/usr/bin/python3
command -v setpriv >/dev/null || { echo "FAIL needs setpriv (util-linux)"; LFS_FAIL=1; lfs_finish; }
DUID=$(id -u layerfs 2>/dev/null) || { echo "FAIL no user layerfs (make test-user)"; LFS_FAIL=1; lfs_finish; }

# two layers: one named, one not (provenance then names its file)
mkdir -p "$T/src/a/bin" "$T/src/b/bin" "$T/srv/layers"
echo "from a" >"$T/src/a/bin/a.txt"
echo "from b" >"$T/src/b/bin/b.txt"
(cd "$T/src/a" && zip -qrX "$T/srv/layers/named.zip" .)
(cd "$T/src/b" && zip -qrX "$T/srv/layers/secret-path.zip" .)
printf '%s name=base version=3\n%s\n' "$T/srv/layers/named.zip" "$T/srv/layers/secret-path.zip" >"$T/s.list"

daemon_pid() { stat_of "$1" pid; }
status_of() { grep -E "^$2:" "/proc/$1/status" | cut -f2- | tr '\t' ' '; }

# --- no privileges after mount -------------------------------------------
M=$T/m
if check "mount (allow_other)" lfs_mount -o allow_other "$T/s.list" "$M"; then
	P=$(daemon_pid "$M")
	check "daemon: uid layerfs (real, effective, saved, fs)" eq "$(status_of "$P" Uid)" "$DUID $DUID $DUID $DUID"
	check "daemon: gid layerfs, no supplementary groups" \
		bash -c '[[ $(grep "^Gid:" /proc/$1/status | awk "{ print \$2 }") == $(id -g layerfs) && -z $(grep "^Groups:" /proc/$1/status | cut -f2 | tr -d " ") ]]' _ "$P"
	check "daemon: no effective capability" eq "$(status_of "$P" CapEff)" 0000000000000000
	check "daemon: no permitted capability" eq "$(status_of "$P" CapPrm)" 0000000000000000
	check "daemon: no ambient capability" eq "$(status_of "$P" CapAmb)" 0000000000000000
	check "daemon: no_new_privs" eq "$(status_of "$P" NoNewPrivs)" 1
	check "daemon: seccomp filter (mode 2)" eq "$(status_of "$P" Seccomp)" 2
	# libcurl is loaded for remote layers only (test_remote.sh mounts those)
	check "daemon of local layers: libcurl not loaded" bash -c '! grep -q "/libcurl" "/proc/$1/maps"' _ "$P"
	# the unmount helper: root, CAP_SYS_ADMIN only, its own filter
	H=$(pgrep -P "$P" -x layerfs | head -n 1)
	check "unmount helper: CAP_SYS_ADMIN only, no_new_privs, filtered" \
		bash -c '[[ -n $1 ]] && grep -q "^CapEff:[[:space:]]*0000000000200000$" /proc/$1/status &&
			grep -q "^NoNewPrivs:[[:space:]]*1$" /proc/$1/status && grep -q "^Seccomp:[[:space:]]*2$" /proc/$1/status' _ "$H"
	check "serves as layerfs" eq "$(cat "$M/bin/a.txt")" "from a"

	# --- operator data stays with the operator ---------------------------
	check "root reads the stats" bash -c '"$1" stats "$2" | grep -q "^version "' _ "$LAYERFS" "$M"
	out=$("${NOBODY[@]}" "$LAYERFS" stats "$M" 2>&1); rc=$?
	check "nobody: layerfs stats refused" bash -c '[[ $1 -ne 0 ]]' _ "$rc"
	check "nobody: refusal says not permitted, in one line" \
		bash -c '[[ $(wc -l <<<"$1") -eq 1 ]] && grep -q "not permitted" <<<"$1"' _ "$out"
	check "nobody: the stats attribute is EACCES" \
		"${NOBODY[@]}" "$NPY" -c 'import os, sys, errno
try:
    os.getxattr(sys.argv[1], "user.layerfs.stats")
except OSError as e:
    sys.exit(0 if e.errno == errno.EACCES else str(e))
sys.exit("read it")' "$M"
	check "nobody: metrics refused too" bash -c '! "$@" stats --format=prometheus "$M" 2>/dev/null' _ "${NOBODY[@]}" "$LAYERFS"
	check "nobody: only user.layerfs.layer is listed on the root" \
		eq "$("${NOBODY[@]}" "$NPY" -c 'import os,sys; print(",".join(sorted(os.listxattr(sys.argv[1]))))' "$M")" user.layerfs.layer
	check "root: stats and metrics listed" \
		eq "$("$PY" -c 'import os,sys; print(",".join(sorted(os.listxattr(sys.argv[1]))))' "$M")" \
		user.layerfs.layer,user.layerfs.metrics,user.layerfs.stats
	lay() { "$@" "$NPY" -c 'import os,sys; sys.stdout.write(os.getxattr(sys.argv[1], "user.layerfs.layer").decode())' "$F"; }
	F=$M/bin/b.txt
	check "nobody: an unnamed layer is named by its file, not its path" eq "$(lay "${NOBODY[@]}")" secret-path.zip
	check "root: the path" eq "$(lay env)" "$T/srv/layers/secret-path.zip"
	F=$M/bin
	check "nobody: a directory lists names" eq "$(lay "${NOBODY[@]}")" "base:3, secret-path.zip"
	out=$("${NOBODY[@]}" "$LAYERFS" umount "$M" 2>&1); rc=$?
	check "nobody: layerfs umount refused, not permitted" \
		bash -c '[[ $1 -ne 0 ]] && grep -q "not permitted" <<<"$2" && ! grep -q mtab <<<"$2"' _ "$rc" "$out"
	check "nobody: still mounted after" mountpoint -q "$M"
	out=$("${NOBODY[@]}" "$LAYERFS" dropcache "$M" 2>&1)
	check "nobody: dropcache refused, not permitted" grep -q "not permitted" <<<"$out"
	kill -HUP "$P"
	sleep 0.3
	check "SIGHUP: ignored, still serving" \
		bash -c 'kill -0 "$1" && [[ $(cat "$2/bin/b.txt") == "from b" ]]' _ "$P" "$M"
	lfs_umount "$M"
	check "unmounted by root's layerfs umount" bash -c '! mountpoint -q "$1"' _ "$M"
	check "daemon and helper gone" bash -c 'for i in $(seq 50); do kill -0 $1 2>/dev/null || kill -0 $2 2>/dev/null || exit 0; sleep 0.1; done; exit 1' _ "$P" "$H"
fi

# admin_group: by primary or supplementary group, here a number of no group
if check "mount with admin_group=4242" lfs_mount -o allow_other,admin_group=4242 "$T/s.list" "$T/ag"; then
	check "gid 4242 (supplementary) reads the stats" \
		setpriv --reuid=65534 --regid=65534 --groups=4242 "$LAYERFS" stats "$T/ag"
	check "gid 4242 (primary) reads the metrics" \
		bash -c 'setpriv --reuid=65534 --regid=4242 --clear-groups "$1" stats --format=prometheus "$2" | grep -q "^layerfs_info"' _ "$LAYERFS" "$T/ag"
	check "gid 4243 does not" bash -c '! setpriv --reuid=65534 --regid=4243 --groups=4243 "$1" stats "$2" 2>/dev/null' _ "$LAYERFS" "$T/ag"
	check "an admin sees paths" eq "$(setpriv --reuid=65534 --regid=65534 --groups=4242 getfattr --only-values -n user.layerfs.layer "$T/ag/bin/b.txt" 2>/dev/null)" "$T/srv/layers/secret-path.zip"
	lfs_umount "$T/ag"
fi
if check "mount with provenance=path" lfs_mount -o allow_other,provenance=path "$T/s.list" "$T/pp"; then
	check "provenance=path: nobody sees the path" \
		eq "$("${NOBODY[@]}" getfattr --only-values -n user.layerfs.layer "$T/pp/bin/a.txt" 2>/dev/null)" "$T/srv/layers/named.zip"
	lfs_umount "$T/pp"
fi
if check "mount with provenance=off" lfs_mount -o allow_other,provenance=off "$T/s.list" "$T/po"; then
	check "provenance=off: no attribute, for root too" \
		"$PY" -c 'import os, sys, errno
try:
    os.getxattr(sys.argv[1], "user.layerfs.layer")
except OSError as e:
    sys.exit(0 if e.errno == errno.ENODATA else str(e))
sys.exit("there")' "$T/po/bin/a.txt"
	check "provenance=off: not listed" eq "$("${NOBODY[@]}" "$NPY" -c 'import os,sys; print(len(os.listxattr(sys.argv[1])))' "$T/po/bin/a.txt")" 0
	lfs_umount "$T/po"
fi
check "provenance=bad refused in one line" \
	bash -c 'mkdir -p "$3"; out=$("$1" mount -o provenance=bad "$2" "$3" 2>&1); [[ $? -ne 0 && $(wc -l <<<"$out") -eq 1 ]] && grep -q "provenance=bad: is one of name|path|off" <<<"$out"' _ "$LAYERFS" "$T/s.list" "$T/pb"
check "user=nosuchuser refused in one line, nothing mounted" \
	bash -c 'mkdir -p "$3"; out=$("$1" mount -o user=nosuchuser "$2" "$3" 2>&1); [[ $? -ne 0 && $(wc -l <<<"$out") -eq 1 ]] && grep -q "user=nosuchuser" <<<"$out" && ! mountpoint -q "$3"' _ "$LAYERFS" "$T/s.list" "$T/nu"

# user=root: keeps root (tests, debugging), still no_new_privs and filtered
if check "mount with user=root" lfs_mount -o user=root "$T/s.list" "$T/r"; then
	P=$(daemon_pid "$T/r")
	check "user=root: uid 0" eq "$(status_of "$P" Uid)" "0 0 0 0"
	check "user=root: filtered, no_new_privs" \
		bash -c '[[ $(grep "^Seccomp:" /proc/$1/status | cut -f2) == 2 && $(grep "^NoNewPrivs:" /proc/$1/status | cut -f2) == 1 ]]' _ "$P"
	kill -TERM "$P"
	check "user=root: SIGTERM unmounts" bash -c 'for i in $(seq 50); do mountpoint -q "$1" || exit 0; sleep 0.1; done; exit 1' _ "$T/r"
fi
# the default user: SIGTERM unmounts through the helper
if check "mount as layerfs" lfs_mount "$T/s.list" "$T/t"; then
	kill -TERM "$(daemon_pid "$T/t")"
	check "layerfs: SIGTERM unmounts (through the helper)" bash -c 'for i in $(seq 50); do mountpoint -q "$1" || exit 0; sleep 0.1; done; exit 1' _ "$T/t"
fi

# --- metrics ----------------------------------------------------------------
# A layer with problems: 20 entries in an unsupported method (counted at
# mount), one whose local header is not where the directory points
# (counted when read), next to good ones.
"$PY" - "$T/srv/layers/bad.zip" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w") as z:
    z.writestr("good/ok.txt", "fine\n")
    z.writestr("good/broken.txt", "x" * 100)
    for i in range(20):
        z.writestr("bz/%02d.txt" % i, "bzip2 %d\n" % i, compress_type=zipfile.ZIP_BZIP2)
data = bytearray(open(sys.argv[1], "rb").read())
with zipfile.ZipFile(sys.argv[1]) as z:
    off = z.getinfo("good/broken.txt").header_offset
data[off:off + 4] = b"XXXX"   # no local header where the directory points
open(sys.argv[1], "wb").write(data)
PY
printf '%s name=base version=3\n%s name=bad version=1\n' "$T/srv/layers/named.zip" "$T/srv/layers/bad.zip" >"$T/bad.list"
out=$("$LAYERFS" check "$T/bad.list" 2>/dev/null); rc=$?
check "check: mountable with problems (exit 0)" eq "$rc" 0
check "check: the last line counts the entries with problems" \
	bash -c 'tail -n 1 <<<"$1" | grep -q "mountable, 0 warnings, 20 entries with problems"' _ "$out"
check "check: the layer's line says why" grep -q "bad.zip: 20 entries not served as the zip declares (20 unsupported_method)" <<<"$out"
"$LAYERFS" check --strict "$T/bad.list" >/dev/null 2>&1; rc=$?
check "check --strict: exit 1 on problems" eq "$rc" 1
"$LAYERFS" check --strict "$T/s.list" >/dev/null 2>&1; rc=$?
check "check --strict: exit 0 on a clean stack" eq "$rc" 0

mkdir -p "$T/metrics" "$T/closed"
chown layerfs "$T/metrics"
chmod 700 "$T/closed"
if check "mount with metrics_file" lfs_mount -o metrics_file="$T/metrics/s.prom",metrics_interval=1 "$T/bad.list" "$T/mm"; then
	cat "$T/mm/good/ok.txt" >/dev/null
	check "a bad local header: EIO" bash -c '! cat "$1" >/dev/null 2>&1' _ "$T/mm/good/broken.txt"
	cat "$T/mm/good/broken.txt" >/dev/null 2>&1
	check "stats: members_failed counts it" eq "$(stat_of "$T/mm" members_failed)" 1
	check "stats: header_faults 1" eq "$(stat_of "$T/mm" header_faults)" 1
	check "stats: entry_problems 20" eq "$(stat_of "$T/mm" entry_problems)" 20
	check "stats: a version line" bash -c '[[ $("$1" stats "$2" | awk "\$1 == \"version\" { print \$2 }") == $("$1" --version | awk "NR == 1 { print \$2 }") ]]' _ "$LAYERFS" "$T/mm"
	# Requests by kind: one new name is one LOOKUP (then cached as a
	# negative entry), a TCGETS one IOCTL, answered ENOTTY.
	n0=$(stat_of "$T/mm" op.lookup.requests)
	stat "$T/mm/good/never-looked-up" >/dev/null 2>&1
	stat "$T/mm/good/never-looked-up" >/dev/null 2>&1
	check "stats: a new name is one lookup request" eq "$(($(stat_of "$T/mm" op.lookup.requests) - n0))" 1
	i0=$(stat_of "$T/mm" op.ioctl.requests)
	check "ioctl TCGETS on a file: ENOTTY, not a terminal" "$PY" -c '
import errno, fcntl, os, sys, termios
fd = os.open(sys.argv[1], os.O_RDONLY)
try:
    fcntl.ioctl(fd, termios.TCGETS, bytes(64))
    sys.exit("TCGETS answered")
except OSError as e:
    sys.exit(0 if e.errno == errno.ENOTTY and not os.isatty(fd) else str(e))' "$T/mm/good/ok.txt"
	check "stats: the two TCGETS counted as ioctl requests" eq "$(($(stat_of "$T/mm" op.ioctl.requests) - i0))" 2
	check "stats: service time per kind" bash -c '"$1" stats "$2" | grep -q "^op\.lookup\.service_us [0-9]"' _ "$LAYERFS" "$T/mm"
	"$LAYERFS" stats --format=prometheus "$T/mm" >"$T/prom.txt"
	check "prometheus: well formed (families, labels, cumulative buckets)" "$PY" "$LFS_IT_DIR/promcheck.py" "$T/prom.txt"
	check "prometheus: faults by reason" grep -q '^layerfs_faults_total{mount="'"$T/mm"'",layer="bad:1",reason="header"} 1$' "$T/prom.txt"
	check "prometheus: entry problems by reason" grep -q '^layerfs_entry_problems{mount="'"$T/mm"'",layer="bad:1",reason="unsupported_method"} 20$' "$T/prom.txt"
	check "prometheus: read errors" grep -q '^layerfs_read_errors_total{mount="'"$T/mm"'"} [1-9]' "$T/prom.txt"
	check "prometheus: served bytes per layer" grep -q '^layerfs_served_bytes_total{mount="'"$T/mm"'",layer="bad:1"} 5$' "$T/prom.txt"
	check "prometheus: requests by kind" grep -q '^layerfs_requests_total{mount="'"$T/mm"'",op="ioctl"} [1-9]' "$T/prom.txt"
	check "prometheus: version and uptime" bash -c 'grep -q "^layerfs_info{.*version=\"" "$1" && grep -q "^layerfs_uptime_seconds{" "$1"' _ "$T/prom.txt"
	check "metrics_file: written, mode 0644, well formed" \
		bash -c '[[ $(stat -c %a "$1") == 644 ]] && "$2" "$3" "$1"' _ "$T/metrics/s.prom" "$PY" "$LFS_IT_DIR/promcheck.py"
	up1=$(awk '/^layerfs_uptime_seconds/ { print $2 }' "$T/metrics/s.prom")
	sleep 2.2
	up2=$(awk '/^layerfs_uptime_seconds/ { print $2 }' "$T/metrics/s.prom")
	check "metrics_file: rewritten every interval" "$PY" -c 'import sys; sys.exit(0 if float(sys.argv[2]) >= float(sys.argv[1]) + 1 else "%s -> %s" % tuple(sys.argv[1:]))' "$up1" "$up2"
	check "metrics_file: no temporary file left" eq "$(ls -A "$T/metrics")" s.prom
	lfs_umount "$T/mm"
	check "metrics_file: removed at unmount" bash -c 'for i in $(seq 30); do [[ -e $1 ]] || exit 0; sleep 0.1; done; exit 1' _ "$T/metrics/s.prom"
fi
check "metrics_file in a folder layerfs cannot write: refused in one line" \
	bash -c 'mkdir -p "$3"; out=$("$1" mount -o metrics_file="$4/x.prom" "$2" "$3" 2>&1); [[ $? -ne 0 && $(wc -l <<<"$out") -eq 1 ]] && grep -q "metrics_file" <<<"$out" && ! mountpoint -q "$3"' \
	_ "$LAYERFS" "$T/s.list" "$T/mc" "$T/closed"
lfs_finish
