#!/usr/bin/env bash
# The command line: mount returns once the mount is live, -f, umount (three
# ways), statfs, read-only (EROFS), and bad input (non-zero exit, one stderr
# line naming the bad file, nothing left mounted).
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lfs_init
lfs_gen
lfs_tmpdir T

lfs_list "$T/stack.list" "$L/stack1.zip" "$L/stack2.zip" "$L/stack3.zip"

# --- mount is live when `layerfs mount` returns --------------------------------
mkdir -p "$T/live"
lfs_register_mount "$T/live"
rc=0
timeout -k 5 60 "$LAYERFS" mount "$T/stack.list" "$T/live" </dev/null >"$T/live.out" 2>&1 || rc=$?
# no sleep, no retry: these run right after mount returned
live_mp=0 live_ls=""
mountpoint -q "$T/live" && live_mp=1
live_ls=$(cat "$T/live/common/file.txt" 2>&1)
check "mount: exits 0" eq "$rc" 0 "exit status ($(head -c 300 "$T/live.out"))"
check "mount: mountpoint is mounted when mount returns" eq "$live_mp" 1
check "mount: content readable when mount returns" eq "$live_ls" "from layer 3"
check "mount: fuse type in /proc/mounts" \
	awk -v m="$T/live" '$2 == m && $3 ~ /^fuse/ { f = 1 } END { exit !f }' /proc/mounts

# --- statfs --------------------------------------------------------------------
check "statfs: stat -f works" stat -f "$T/live"
check "statfs: df works" df "$T/live"
check "statfs: os.statvfs has a block size" \
	"$PY" -c 'import os,sys; s = os.statvfs(sys.argv[1]); sys.exit(0 if s.f_bsize > 0 and s.f_namemax > 0 else str(s))' "$T/live"

# --- read-only: EROFS ---------------------------------------------------------
M=$T/live
F=$M/common/file.txt
D=$M/common
E=$M/new3/deep # a directory with one file
sum_before=$(sha256sum <"$F")
ero() { "$PY" "$LFS_IT_DIR/erofs.py" "$@"; }
check "erofs: open existing file for writing" ero write "$F"
check "erofs: open for append" ero append "$F"
check "erofs: open read-write" ero rdwr "$F"
check "erofs: open with O_TRUNC" ero trunc_open "$F"
check "erofs: create a new file" ero create "$D/new.txt"
check "erofs: create in the root" ero create "$M/new.txt"
check "erofs: mkdir" ero mkdir "$D/newdir"
check "erofs: unlink a file" ero unlink "$F"
check "erofs: unlink a symlink" ero unlink "$M/plain.txt"
check "erofs: rmdir" ero rmdir "$E"
check "erofs: rename a file" ero rename "$F" "$D/renamed.txt"
check "erofs: rename a dir" ero rename "$D" "$M/common2"
check "erofs: chmod" ero chmod "$F"
check "erofs: chown" ero chown "$F"
check "erofs: truncate" ero truncate "$F"
check "erofs: utime" ero utime "$F"
check "erofs: symlink" ero symlink "$D/newlink"
check "erofs: hard link" ero link "$F" "$D/hardlink"
check "erofs: mkfifo" ero mkfifo "$D/fifo"
check "erofs: setxattr" ero setxattr "$F"
check "erofs: removexattr" ero removexattr "$F"
check "erofs: shell redirection fails" bash -c '! (echo x >>"$1") 2>/dev/null' _ "$F"
check "erofs: content unchanged" eq "$(sha256sum <"$F")" "$sum_before"
check "erofs: nothing was created" \
	bash -c 'for p in new.txt newdir renamed.txt newlink hardlink fifo; do [[ ! -e $1/$p && ! -L $1/$p ]] || exit 1; done; [[ ! -e $2/new.txt && ! -e $2/common2 ]]' _ "$D" "$M"

# --- umount ------------------------------------------------------------------
daemon_gone() { # MOUNTPOINT: within 5 s no process has it as an argument
	"$PY" - "$1" <<'PYEOF'
import os, sys, time
mnt = os.fsencode(sys.argv[1])
me = os.getpid()
for _ in range(50):
    holders = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == me:
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if mnt in args:
            holders.append("%s: %s" % (pid, b" ".join(args).decode(errors="replace")))
    if not holders:
        sys.exit(0)
    time.sleep(0.1)
print("still running:", *holders, sep="\n  ")
sys.exit(1)
PYEOF
}
check "umount: layerfs umount exits 0" timeout 30 "$LAYERFS" umount "$T/live"
check "umount: not mounted afterwards" bash -c '! mountpoint -q "$1"' _ "$T/live"
check "umount: daemon exited" daemon_gone "$T/live"

lfs_mount "$T/stack.list" "$T/fu" >/dev/null 2>&1
check "umount: fusermount3 -u works" fusermount3 -u "$T/fu"
check "umount: fusermount3 -u leaves nothing mounted" bash -c '! mountpoint -q "$1"' _ "$T/fu"
check "umount: daemon exited after fusermount3 -u" daemon_gone "$T/fu"

lfs_mount "$T/stack.list" "$T/um" >/dev/null 2>&1
check "umount: plain umount works" umount "$T/um"
check "umount: umount leaves nothing mounted" bash -c '! mountpoint -q "$1"' _ "$T/um"
check "umount: daemon exited after umount" daemon_gone "$T/um"

check "umount: of a path that is not mounted fails" \
	bash -c '! timeout 20 "$LAYERFS" umount "$1" >/dev/null 2>&1' _ "$T/um"

# --- the background daemon does not hold the caller's stdout/stderr -----------
# `out=$(layerfs mount ...)` and subprocess.run(capture_output=True) wait for
# EOF on the pipe: a daemon that keeps the inherited descriptors open makes
# them hang until it is unmounted.
mkdir -p "$T/cap"
lfs_register_mount "$T/cap"
check "mount: returns with stdout/stderr captured through a pipe (no hang)" \
	timeout -k 2 20 bash -c 'out=$("$1" mount "$2" "$3" 2>&1)' _ "$LAYERFS" "$T/stack.list" "$T/cap"
lfs_force_umount "$T/cap"

# --- -f: foreground ------------------------------------------------------------
up=0
lfs_fg_mount "$T/fg.log" "$T/stack.list" "$T/fg" >/dev/null && up=1
fgpid=$LFS_FG_PID
check "mount -f: mounted while running" eq "$up" 1 "mounted ($(head -c 300 "$T/fg.log"))"
check "mount -f: process still in the foreground" kill -0 "$fgpid"
check "mount -f: content readable" eq "$(cat "$T/fg/common/only2.txt" 2>&1)" "only in layer 2"
timeout 30 "$LAYERFS" umount "$T/fg" >/dev/null 2>&1 || fusermount3 -u "$T/fg" 2>/dev/null
fgrc=0
wait "$fgpid" || fgrc=$?
check "mount -f: exits 0 after umount" eq "$fgrc" 0 "exit status"
check "mount -f: nothing mounted after exit" bash -c '! mountpoint -q "$1"' _ "$T/fg"

# --- odd characters in paths -------------------------------------------------------
# FUSE options are comma-separated: a comma in the list's path (which ends up
# in fsname=) must be escaped, not split into a bogus option.
mkdir -p "$T/odd dir,1"
lfs_list "$T/odd dir,1/layers, v1.list" "$L/stack1.zip"
if check "mount: list path with a comma and spaces" \
	lfs_mount "$T/odd dir,1/layers, v1.list" "$T/oddlist"; then
	check "mount: content of a mount whose list path has a comma" \
		eq "$(cat "$T/oddlist/common/file.txt" 2>&1)" "from layer 1"
	lfs_umount "$T/oddlist"
fi
mkdir -p "$T/mnt point,2"
if check "mount: mountpoint with a comma and a space" lfs_mount "$T/stack.list" "$T/mnt point,2"; then
	check "mount: content under a mountpoint with a comma and a space" \
		eq "$(cat "$T/mnt point,2/common/file.txt" 2>&1)" "from layer 3"
	check "stats: mountpoint with a comma and a space" \
		bash -c 'timeout 20 "$1" stats "$2" | grep -q "^layers 3$"' _ "$LAYERFS" "$T/mnt point,2"
	check "umount: mountpoint with a comma and a space" lfs_umount "$T/mnt point,2"
	check "umount: nothing mounted there afterwards" bash -c '! mountpoint -q "$1"' _ "$T/mnt point,2"
fi

# --- -o options ----------------------------------------------------------------
if check "mount -o uid=1234,gid=4321" lfs_mount -o uid=1234,gid=4321 "$T/stack.list" "$T/own"; then
	check "mount -o uid/gid: owner of files and dirs" \
		eq "$(stat -c %u:%g "$T/own/common/file.txt" "$T/own/common" "$T/own" 2>&1 | sort -u)" 1234:4321
	check "dropcache: exits 0" timeout 20 "$LAYERFS" dropcache "$T/own"
	check "dropcache: content still right afterwards" \
		bash -c '[[ $(sha256sum <"$1") == $(unzip -p "$2" lib/data/mid.bin | sha256sum) ]]' _ \
		"$T/own/lib/data/mid.bin" "$L/stack2.zip"
	lfs_umount "$T/own"
fi

# -o sched: the policy of the daemon's serving threads (field 41 of
# /proc/PID/task/TID/stat: 0 SCHED_OTHER, 3 SCHED_BATCH), taken halfway
# through a big deflated member read in order, or after a small read.
# Default auto: the workers that answered reads deep into a run in order
# sleep as SCHED_BATCH, none otherwise; normal: never; batch: always.  The
# inflate pool's threads (named layerfs-pool, layerfs-idle) are not
# serving threads: SCHED_BATCH and SCHED_IDLE (5) whatever the option.
python3 - "$T/seq.zip" <<'PYEOF'
import random, sys, zipfile
rnd = random.Random(7)
words = [bytes(rnd.choice(b"abcdefghij") for _ in range(rnd.randint(2, 9))) for _ in range(4096)]
data = b" ".join(rnd.choice(words) for _ in range(200000))[: 1 << 20] * 48
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("seq.bin", data)
    z.writestr("small.txt", b"small\n")
PYEOF
lfs_list "$T/seq.list" "$T/seq.zip"
# "while" or "after": "policy count" lines of the daemon's threads, taken
# halfway through a sequential read of seq.bin, or after reading small.txt
policies() { # MOUNTPOINT while|after
	local pid
	pid=$(timeout 20 "$LAYERFS" stats "$1" | awk '$1 == "pid" { print $2 }')
	timeout 60 python3 - "$1" "$2" "$pid" <<'PYEOF'
import collections, glob, os, sys, time
mnt, when, pid = sys.argv[1:]
def policies():
    n = collections.Counter()
    for t in glob.glob(f"/proc/{pid}/task/*"):
        try:
            comm = open(f"{t}/comm").read().strip()
            policy = open(f"{t}/stat").read().rsplit(")", 1)[1].split()[38]
        except OSError:
            continue  # the thread ended
        n[f"{comm}={policy}" if comm.startswith("layerfs-") else policy] += 1
    return " ".join(f"{k}:{v}" for k, v in sorted(n.items()))  # "0:4 3:2 layerfs-pool=3:2 ..."
if when == "after":
    open(f"{mnt}/small.txt", "rb").read()
    time.sleep(0.1)
    print(policies())
    sys.exit()
with open(f"{mnt}/seq.bin", "rb", buffering=0) as f:
    for _ in range(24):
        f.read(1 << 20)
    time.sleep(0.005)  # the worker that answered has settled its policy
    print(policies())
    while f.read(1 << 20):
        pass
PYEOF
}
if check "mount (default -o sched=auto)" lfs_mount "$T/seq.list" "$T/sched"; then
	check "sched=auto: no thread SCHED_BATCH before any streaming" \
		bash -c '[[ $1 == "0:"* && " $1" != *" 3:"* ]] || { echo "$1"; exit 1; }' _ \
		"$(policies "$T/sched" after)"
	check "sched=auto: workers SCHED_BATCH while a member is read in order" \
		bash -c '[[ " $1" == *" 3:"* ]] || { echo "$1"; exit 1; }' _ "$(policies "$T/sched" while)"
	lfs_umount "$T/sched"
fi
if check "mount -o sched=normal" lfs_mount -o sched=normal "$T/seq.list" "$T/sched"; then
	p=$(policies "$T/sched" while)
	check "sched=normal: no serving thread SCHED_BATCH while a member is read in order" \
		bash -c '[[ $1 == "0:"* && " $1" != *" 3:"* ]] || { echo "$1"; exit 1; }' _ "$p"
	check "the inflate pool: SCHED_BATCH read-ahead threads, SCHED_IDLE idle ones" \
		bash -c '[[ $1 == *"layerfs-pool=3:"* && $1 != *"layerfs-pool="[^3]* &&
			$1 != *"layerfs-idle="[^5]* ]] || { echo "$1"; exit 1; }' _ "$p"
	check "the inflate pool: its idle threads in the idle I/O class" \
		bash -c 'n=0
		for t in /proc/"$1"/task/*; do
			[[ $(cat "$t/comm") == layerfs-idle ]] || continue
			n=$((n + 1))
			c=$(ionice -p "${t##*/}")
			[[ $c == idle ]] || { echo "${t##*/}: $c"; exit 1; }
		done
		((n > 0)) || { echo "no layerfs-idle thread"; exit 1; }' _ \
		"$(timeout 20 "$LAYERFS" stats "$T/sched" | awk '$1 == "pid" { print $2 }')"
	lfs_umount "$T/sched"
fi
if check "mount -o sched=batch" lfs_mount -o sched=batch "$T/seq.list" "$T/sched"; then
	check "sched=batch: the workers run as SCHED_BATCH after a small read" \
		bash -c '[[ " $1" == *" 3:"* ]] || { echo "$1"; exit 1; }' _ "$(policies "$T/sched" after)"
	lfs_umount "$T/sched"
fi
mkdir -p "$T/sched_bad"
lfs_register_mount "$T/sched_bad"
check "mount -o sched=fast: refused with one line naming the option" \
	bash -c 'out=$(timeout -k 5 60 "$1" mount -o sched=fast "$2" "$3" 2>&1 </dev/null) && exit 1
		[[ $(wc -l <<<"$out") -eq 1 && $out == *sched* ]] || { echo "$out"; exit 1; }
		! mountpoint -q "$3"' _ "$LAYERFS" "$T/stack.list" "$T/sched_bad"

# -o readdirplus: which listings carry the entries' attributes (and so make
# the kernel an inode and a dentry of each), counted by the LOOKUPs that
# stat-ing the listed files afterwards needs.  auto: a thread that only
# lists (find) is given them for subdirectories only; one that has looked
# up a file before is given them for every entry; always: everyone;
# never: no READDIRPLUS at all.  What is listed and stat-ed is the same in
# every mode.
mkdir -p "$T/rdp/src/top" "$T/rdp/src/d1" "$T/rdp/src/d2" "$T/rdp/src/d3/sub"
for i in $(seq -w 1 20); do
	echo "$i" >"$T/rdp/src/d1/f$i"
	echo "$i$i" >"$T/rdp/src/d2/f$i"
done
echo deep >"$T/rdp/src/d3/sub/deep.txt"
echo top >"$T/rdp/src/top/t.txt"
ln -s ../d1/f01 "$T/rdp/src/d3/link"
(cd "$T/rdp/src" && zip -qry "$T/rdp/rdp.zip" .)
lfs_list "$T/rdp/rdp.list" "$T/rdp/rdp.zip"
lookups() { stat_of "$1" op.lookup.requests; }
# what a listing shows: type, mode, size, link target of every entry
listing() { (cd "$1" && find . \( -type f -printf '%y %m %s %p\n' \) -o -printf '%y %m %l %p\n' | sort); }
M=$T/rdp/m
if check "mount (default -o readdirplus=auto)" lfs_mount "$T/rdp/rdp.list" "$M"; then
	ls -f "$M" >/dev/null # the top's subdirectories are known: find's paths need no lookup
	n0=$(lookups "$M")
	find "$M/d3" "$M/d1" >/dev/null
	check "readdirplus=auto: find looks nothing up (subdirectories come with the listing)" \
		eq "$(($(lookups "$M") - n0))" 0
	n0=$(lookups "$M")
	stat "$M"/d1/f* >/dev/null
	check "readdirplus=auto: what find listed has no inode yet (a lookup per file stat-ed)" \
		eq "$(($(lookups "$M") - n0))" 20
	n0=$(lookups "$M")
	check "readdirplus=auto: a thread that looked a file up lists with attributes" "$PY" -c '
import os, sys
m = sys.argv[1]
os.stat(m + "/top/t.txt")
names = os.listdir(m + "/d2")
sizes = sorted(os.stat(m + "/d2/" + n).st_size for n in names)
sys.exit(0 if len(names) == 20 and sizes == [5] * 20 else "%s %s" % (names, sizes))' "$M"
	check "readdirplus=auto: ... and its stats of them need no lookup (1: its own file)" \
		eq "$(($(lookups "$M") - n0))" 1
	check "readdirplus=auto: the tree is listed and stat-ed as extracted" \
		eq "$(listing "$M")" "$(listing "$T/rdp/src")"
	lfs_umount "$T/rdp/m"
fi
if check "mount -o readdirplus=always" lfs_mount -o readdirplus=always "$T/rdp/rdp.list" "$M"; then
	find "$M/d1" >/dev/null
	n0=$(lookups "$M")
	stat "$M"/d1/f* >/dev/null
	check "readdirplus=always: what find listed is known (no lookup)" eq "$(($(lookups "$M") - n0))" 0
	check "readdirplus=always: the tree is listed and stat-ed as extracted" \
		eq "$(listing "$M")" "$(listing "$T/rdp/src")"
	lfs_umount "$T/rdp/m"
fi
if check "mount -o readdirplus=never" lfs_mount -o readdirplus=never "$T/rdp/rdp.list" "$M"; then
	check "readdirplus=never: the tree is listed and stat-ed as extracted" \
		eq "$(listing "$M")" "$(listing "$T/rdp/src")"
	check "readdirplus=never: no READDIRPLUS was sent" eq "$(stat_of "$M" op.readdirplus.requests)" 0
	check "readdirplus=never: READDIR was" test "$(stat_of "$M" op.readdir.requests)" -gt 0
	lfs_umount "$T/rdp/m"
fi

# Every -o option of layerfs's own that --help lists (not the FUSE options
# it passes through) is in the README's table and the man page.
undocumented=
for opt in $(timeout 20 "$LAYERFS" --help | grep -v allow_other | grep -o -- '-o [a-z_]*' |
	awk 'NF == 2 { print $2 }' | sort -u); do
	grep -qF -- "-o $opt" "$LFS_IT_DIR/../../README.md" || undocumented+=" $opt(README)"
	grep -qF -- "\\-o $opt" "$LFS_IT_DIR/../../docs/layerfs.1" || undocumented+=" $opt(man)"
done
check "every option in --help is documented" eq "$undocumented" ""

# --- bad input ---------------------------------------------------------------
# bad_case NAME LIST BADPATH [extra mount args]: mount must fail with one
# stderr line naming BADPATH, and leave nothing mounted.
bad_case() {
	local name=$1 list=$2 bad=$3
	shift 3
	local mnt=$T/bad_$name rc=0
	mkdir -p "$mnt"
	lfs_register_mount "$mnt"
	timeout -k 5 60 "$LAYERFS" mount "$@" "$list" "$mnt" </dev/null \
		>"$T/bad_$name.out" 2>"$T/bad_$name.err" || rc=$?
	check "bad $name: non-zero exit" bash -c '[[ $1 -ne 0 && $1 -ne 124 && $1 -ne 137 ]] || { echo "exit status $1"; exit 1; }' _ "$rc"
	check "bad $name: exactly one stderr line naming $(basename "$bad")" \
		bash -c 'n=$(wc -l <"$1"); grep -qF -- "$2" "$1" && [[ $n -eq 1 ]] || { echo "stderr ($n lines):"; cat "$1"; exit 1; }' \
		_ "$T/bad_$name.err" "$bad"
	check "bad $name: nothing mounted" bash -c '! mountpoint -q "$1" && ! grep -qF " $1 " /proc/mounts' _ "$mnt"
	lfs_force_umount "$mnt" >/dev/null 2>&1
}
B=$G/bad
bad_case missing_list "$T/does-not-exist.list" "$T/does-not-exist.list"
printf '# only comments\n\n   \n# and blanks\n' >"$T/empty.list"
bad_case empty_list "$T/empty.list" "$T/empty.list"
lfs_list "$T/missing_zip.list" "$L/stack1.zip" "$T/no-such-layer.zip"
bad_case missing_zip "$T/missing_zip.list" "$T/no-such-layer.zip"
lfs_list "$T/empty_zip.list" "$L/stack1.zip" "$B/empty.zip"
bad_case empty_zip "$T/empty_zip.list" "$B/empty.zip"
lfs_list "$T/notazip.list" "$B/notazip.zip" "$L/stack1.zip"
bad_case not_a_zip "$T/notazip.list" "$B/notazip.zip"
lfs_list "$T/trunc.list" "$L/stack1.zip" "$L/stack2.zip" "$B/truncated.zip"
bad_case truncated_end "$T/trunc.list" "$B/truncated.zip"
lfs_list "$T/trunc2.list" "$B/truncated_half.zip"
bad_case truncated_half "$T/trunc2.list" "$B/truncated_half.zip"
mkdir -p "$T/adir.zip"
lfs_list "$T/dirzip.list" "$T/adir.zip"
bad_case directory_as_zip "$T/dirzip.list" "$T/adir.zip"
# relative path in the list: the message may give it resolved; both contain
# the folder and file name as written below
mkdir -p "$T/rel"
printf 'sub/missing-rel.zip name=x\n' >"$T/rel/rel.list"
bad_case missing_relative "$T/rel/rel.list" "sub/missing-rel.zip"
# an unknown key after the path is an error (not silently ignored)
printf '%s nmae=typo\n' "$L/stack1.zip" >"$T/badkey.list"
bad_case unknown_key "$T/badkey.list" "$T/badkey.list"
# more layers than the default limit (5): refused, naming the list
lfs_list "$T/six.list" "$L/stack1.zip" "$L/stack2.zip" "$L/stack3.zip" "$L/r5_1.zip" "$L/r5_2.zip" "$L/r5_3.zip"
bad_case too_many_layers "$T/six.list" "$T/six.list"

lfs_finish
