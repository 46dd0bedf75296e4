#!/usr/bin/env bash
# Start-up prefetch (issue 15): a trace recorded while a function reads,
# replayed at the next mount (the blocks it names made before they are
# asked for, by stats); reads of other files during a big replay made by
# their own threads, not queued behind it; stale, damaged and unwritable
# traces refused or partly applied with one log line; prefetch=auto's
# record-then-replay through the host cache.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lfs_init
lfs_gen
lfs_tmpdir T
# traces are written by the daemon's user, into a folder of its own; the
# traces replayed are read at mount, with root's rights
TR=$T/tr
lfs_daemon_dir "$TR"

# Layers of deflated files, so that every read needs an inflation.
"$PY" - "$T" <<'EOF'
import random, sys, zipfile
d = sys.argv[1]
rnd = random.Random(15)
words = [bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(2, 9)))
         for _ in range(4000)]
def text(n):
    out = bytearray()
    while len(out) < n:
        out += b" ".join(rnd.choice(words) for _ in range(12)) + b"\n"
    return bytes(out[:n])
with zipfile.ZipFile(d + "/fn.zip", "w", zipfile.ZIP_DEFLATED) as z:
    for i in range(12):
        z.writestr("app/mod%02d.py" % i, text(rnd.randint(20000, 300000)))
    z.writestr("lib/libbig.so", text(6 << 20))
with zipfile.ZipFile(d + "/other.zip", "w", zipfile.ZIP_DEFLATED) as z:
    for i in range(16):
        z.writestr("other/f%02d.txt" % i, text(200000 + i * 1000))
EOF
lfs_list "$T/fn.list" "$T/fn.zip"
mkdir -p "$T/ref" && (cd "$T/ref" && unzip -qo "$T/fn.zip" && unzip -qo "$T/other.zip")

# fg_mount LOG OPTIONS LIST MNT: a daemon in the foreground, its log kept.
fg_mount() { lfs_fg_mount "$1" ${2:+-o "$2"} "$3" "$4"; }
# fg_umount MNT: unmounts and waits for the daemon to have written its log.
fg_umount() {
	local pid
	pid=$(stat_of "$1" pid)
	lfs_umount "$1"
	for _ in $(seq 200); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.05
	done
}
# replayed MNT: waits until the replay has asked for everything and the
# pool has made it.
replayed() {
	local _
	for _ in $(seq 600); do
		if [[ $(stat_of "$1" prefetch_ranges) -gt 0 || $(stat_of "$1" prefetch_skipped) -gt 0 ]] &&
			[[ $(stat_of "$1" pool_queued) == 0 &&
				$(stat_of "$1" prefetch_jobs) == $(stat_of "$1" prefetch_ranges) ]]; then
			return 0
		fi
		sleep 0.05
	done
	echo "replay not finished: $("$LAYERFS" stats "$1" | grep -E '^(prefetch|pool)_')"
	return 1
}
# start_reads MNT: what the function reads at its start, in order: three
# modules whole, the first 1 MiB of the library and 256 KiB in its middle.
start_reads() {
	cat "$1/app/mod03.py" "$1/app/mod07.py" "$1/app/mod01.py" >"$T/got.reads"
	dd if="$1/lib/libbig.so" bs=256K count=4 status=none >>"$T/got.reads"
	dd if="$1/lib/libbig.so" bs=256K skip=12 count=1 status=none >>"$T/got.reads"
}
want_reads() {
	cat "$T/ref/app/mod03.py" "$T/ref/app/mod07.py" "$T/ref/app/mod01.py"
	dd if="$T/ref/lib/libbig.so" bs=256K count=4 status=none
	dd if="$T/ref/lib/libbig.so" bs=256K skip=12 count=1 status=none
}
one_line() { # LOG PATTERN: exactly one line of LOG matches
	local n
	n=$(grep -c -- "$2" "$1")
	[[ $n -eq 1 ]] || { echo "$n lines match '$2':"; cat "$1"; return 1; }
}

# --- record --------------------------------------------------------------
if check "record: mount with trace=" fg_mount "$T/rec.log" "trace=$TR/t1" "$T/fn.list" "$T/rec"; then
	start_reads "$T/rec"
	check "record: the reads are right" cmp "$T/got.reads" <(want_reads)
	check "record: trace stop" "$LAYERFS" trace stop "$T/rec"
	for _ in $(seq 100); do [[ -s $TR/t1 ]] && break; sleep 0.05; done
	check "record: the trace is written at trace stop, while mounted" test -s "$TR/t1"
	cat "$T/rec/app/mod09.py" >/dev/null # after the stop
	fg_umount "$T/rec"
fi
cp "$TR/t1" "$T/t1"
check "trace: versioned header and block size" \
	bash -c '[[ $(sed -n 1p "$1") == "layerfs-trace 2" && $(sed -n 2p "$1") == "block_size 262144" ]]' _ "$T/t1"
check "trace: the layer named by identity" \
	bash -c 'grep -Eq "^layer 0 (sha256:[0-9a-f]{64}|version:[^ ]+) " "$1"' _ "$T/t1"
B=262144
check "trace: ranges in first-touch order, reads after the stop left out" eq \
	"$(awk '$1 == "range" { print $3 "-" $4 " " $5 }' "$T/t1" | tr '\n' ' ' |
		sed -E 's/^(.* )0-[345] lib\/libbig.so 12-1[23] lib\/libbig.so $/\1LIB/')" \
	"0-$((($(stat -c %s "$T/ref/app/mod03.py") - 1) / B)) app/mod03.py 0-$((($(stat -c %s "$T/ref/app/mod07.py") - 1) / B)) app/mod07.py 0-$((($(stat -c %s "$T/ref/app/mod01.py") - 1) / B)) app/mod01.py LIB"
check "trace: closed by its end line" bash -c '[[ $(tail -n 1 "$1") == "end 5" ]]' _ "$T/t1"

# --- replay: the named blocks made before they are read -------------------
if check "replay: mount with prefetch=" fg_mount "$T/rp.log" "prefetch=$T/t1" "$T/fn.list" "$T/rp"; then
	if check "replay: finished" replayed "$T/rp"; then
		check "replay: every range applied, none skipped" \
			bash -c '[[ $1 == 5 && $2 == 0 ]] || { echo "ranges $1 skipped $2"; exit 1; }' _ \
			"$(stat_of "$T/rp" prefetch_ranges)" "$(stat_of "$T/rp" prefetch_skipped)"
		check "replay: blocks made for it (prefetch_bytes)" test "$(stat_of "$T/rp" prefetch_bytes)" -gt 0
		before=$(stat_of "$T/rp" demand_fills)
		start_reads "$T/rp"
		check "replay: the reads are right" cmp "$T/got.reads" <(want_reads)
		check "replay: no read made a block itself (demand_fills unchanged)" \
			eq "$(stat_of "$T/rp" demand_fills)" "$before"
		check "replay: the bytes asked were all read (prefetch_used = prefetch_asked)" \
			eq "$(stat_of "$T/rp" prefetch_used)" "$(stat_of "$T/rp" prefetch_asked)"
		# the library's blocks 4..11 were inflated on the way to block
		# 12 (no resume point yet): made, never read
		check "replay: bytes made for nothing counted (prefetch_unused)" \
			test "$(stat_of "$T/rp" prefetch_unused)" -gt 0
	fi
	fg_umount "$T/rp"
fi
check "replay: not a single warning in its log" bash -c '! grep -qi "warn\|error\|skipped" "$1" || { cat "$1"; exit 1; }' _ "$T/rp.log"

# --- the replay pushed into the kernel's page cache -------------------------
# The daemon's user must be let into its mount to look the traced files up
# ahead of the function: allow_other, and a mount point it can reach.
chmod 0711 "$T"
mkdir -p "$T/pub" && chmod 0755 "$T/pub"
if check "push: mount with prefetch= and allow_other" fg_mount "$T/push.log" \
	"prefetch=$T/t1,allow_other" "$T/fn.list" "$T/pub/push"; then
	for _ in $(seq 200); do
		[[ $(stat_of "$T/pub/push" prefetch_pushed_bytes) -gt 0 &&
			$(stat_of "$T/pub/push" prefetch_pushed_bytes) == $(stat_of "$T/pub/push" prefetch_push_wanted) ]] && break
		sleep 0.05
	done
	check "push: every byte the replay asked for was pushed, none failed" bash -c \
		'[[ $1 -gt 0 && $1 == "$2" && $3 == 0 ]] || { echo "pushed $1 of $2, errors $3"; exit 1; }' _ \
		"$(stat_of "$T/pub/push" prefetch_pushed_bytes)" "$(stat_of "$T/pub/push" prefetch_push_wanted)" \
		"$(stat_of "$T/pub/push" prefetch_push_errors)"
	check "push: the four traced files pushed" eq "$(stat_of "$T/pub/push" prefetch_pushed_files)" 4
	before=$(stat_of "$T/pub/push" reads)
	start_reads "$T/pub/push"
	check "push: the reads are right" cmp "$T/got.reads" <(want_reads)
	check "push: not one of them reached the daemon (reads unchanged)" \
		eq "$(stat_of "$T/pub/push" reads)" "$before"
	cat "$T/pub/push/app/mod09.py" >/dev/null
	check "push: a file the trace does not name is read from the daemon" \
		test "$(stat_of "$T/pub/push" reads)" -gt "$before"
	fg_umount "$T/pub/push"
fi
if check "push off: mount with prefetch_push=0" fg_mount "$T/nopush.log" \
	"prefetch=$T/t1,allow_other,prefetch_push=0" "$T/fn.list" "$T/pub/nopush"; then
	check "push off: replay finished" replayed "$T/pub/nopush"
	before=$(stat_of "$T/pub/nopush" reads)
	start_reads "$T/pub/nopush"
	check "push off: the reads are right" cmp "$T/got.reads" <(want_reads)
	check "push off: nothing pushed, the reads reach the daemon" bash -c \
		'[[ $1 == 0 && $3 -gt $2 ]] || { echo "pushed $1, reads $2 -> $3"; exit 1; }' _ \
		"$(stat_of "$T/pub/nopush" prefetch_pushed_bytes)" "$before" "$(stat_of "$T/pub/nopush" reads)"
	fg_umount "$T/pub/nopush"
fi

# --- names: negative lookups and listings recorded, and replayed ahead ------
# (trace version 2) The function lists app/, looks up a name that is not
# there, then reads a module; the next start's replay lists and looks up
# the same through the mount, so the function's own listing and lookup are
# answered by the kernel.
if check "names: record" fg_mount "$T/nrec.log" "trace=$TR/t3,allow_other" "$T/fn.list" "$T/pub/nrec"; then
	ls -f "$T/pub/nrec/app" >/dev/null
	stat "$T/pub/nrec/app/nothere.py" >/dev/null 2>&1
	cat "$T/pub/nrec/app/mod05.py" >/dev/null
	fg_umount "$T/pub/nrec"
fi
cp "$TR/t3" "$T/t3"
check "names: the listing, the missing name and the read, in order" eq \
	"$(grep -E '^(list|absent|range) ' "$T/t3" | grep -v '^list \.$' | awk '{ print $1, $NF }' | tr '\n' ' ')" \
	"list app absent app/nothere.py range app/mod05.py "
if check "names: replay with push" fg_mount "$T/nrp.log" "prefetch=$T/t3,allow_other" "$T/fn.list" "$T/pub/nrp"; then
	want=$(grep -cE '^(list|absent) ' "$T/t3")
	for _ in $(seq 200); do
		[[ $(stat_of "$T/pub/nrp" prefetch_walked_names) == "$want" &&
			$(stat_of "$T/pub/nrp" prefetch_pushed_files) == 1 ]] && break
		sleep 0.05
	done
	check "names: every name walked ahead (prefetch_walked_names)" \
		eq "$(stat_of "$T/pub/nrp" prefetch_walked_names)" "$want"
	l0=$(stat_of "$T/pub/nrp" op.lookup.requests)
	d0=$(($(stat_of "$T/pub/nrp" op.readdir.requests) + $(stat_of "$T/pub/nrp" op.readdirplus.requests)))
	check "names: the listing is right" eq "$(ls -f "$T/pub/nrp/app" | sort | tr '\n' ' ')" \
		"$(ls -fa "$T/ref/app" | sort | tr '\n' ' ')"
	check "names: the missing name is missing" bash -c '! stat "$1" >/dev/null 2>&1' _ "$T/pub/nrp/app/nothere.py"
	# the walk's listing carried attributes (-o readdirplus=auto gives them
	# to the walking thread), so a file of it the trace never read is known
	check "names: a listed file the trace did not read is known" stat "$T/pub/nrp/app/mod06.py"
	check "names: neither reached the daemon (lookups, listings unchanged)" eq \
		"$(stat_of "$T/pub/nrp" op.lookup.requests) $(($(stat_of "$T/pub/nrp" op.readdir.requests) + $(stat_of "$T/pub/nrp" op.readdirplus.requests)))" \
		"$l0 $d0"
	stat "$T/pub/nrp/app/other.py" >/dev/null 2>&1
	check "names: a name the trace does not have does" test "$(stat_of "$T/pub/nrp" op.lookup.requests)" -gt "$l0"
	fg_umount "$T/pub/nrp"
fi
check "names: the replay logged no warning" bash -c '! grep -qi "warn\|error\|skipped" "$1" || { cat "$1"; exit 1; }' _ "$T/nrp.log"
# names that lead out of the mount, or through a symbolic link, are not
# walked: the walk resolves beneath the mount's root only
{
	sed -n '/^layerfs-trace/,/^layer /p' "$T/t3"
	printf 'absent ../../etc/passwd\nlist ../../etc\nlist /etc\nabsent app/../../x\nlist app\n'
	echo "end 5"
} >"$T/t3bad"
if check "names out of the mount: replay mounts" fg_mount "$T/nbad.log" "prefetch=$T/t3bad,allow_other" \
	"$T/fn.list" "$T/pub/nbad"; then
	for _ in $(seq 100); do
		[[ $(stat_of "$T/pub/nbad" prefetch_walked_names) == 1 ]] && break
		sleep 0.05
	done
	sleep 0.2
	check "names out of the mount: only the one inside walked" \
		eq "$(stat_of "$T/pub/nbad" prefetch_walked_names)" 1
	check "names out of the mount: the mount still serves" cmp "$T/pub/nbad/app/mod05.py" "$T/ref/app/mod05.py"
	fg_umount "$T/pub/nbad"
fi
chmod 0700 "$T"

# --- reads of other files during a big replay ------------------------------
# A trace of every block of the generated big layer's deflated members and
# of fn.zip's library, made by hand (the format is documented in
# docs/prefetch.md) from the layer lines of a recorded one.
lfs_list "$T/two.list" "$T/fn.zip" "$T/other.zip" "$L/big.zip"
if fg_mount "$T/rec2.log" "trace=$TR/t2" "$T/two.list" "$T/rec2"; then
	head -c 1 "$T/rec2/big/big40.bin" >/dev/null
	fg_umount "$T/rec2"
fi
cp "$TR/t2" "$T/t2"
{
	sed -n '1,2p' "$T/t2"
	grep '^layer ' "$T/t2"
	for _ in 1 2 3; do # the same ranges again: asked again, found made
		echo "range 2 0 $((41947361 / 262144)) big/big40.bin"
		echo "range 2 0 $((6291555 / 262144)) big/mid6.bin"
		echo "range 0 0 $(($(stat -c %s "$T/ref/lib/libbig.so") / 262144)) lib/libbig.so"
	done
	echo "end 9"
} >"$T/tbig"
# Every core kept busy by ordinary work: the pool's prefetch threads run
# in the idle class and get next to nothing, so the replay is still far
# from done while the function's reads, ordinary too, are served.
spin_pids=()
for _ in $(seq "$(nproc)"); do
	timeout 60 bash -c 'while :; do :; done' &
	spin_pids+=($!)
done
stop_spinning() { kill "${spin_pids[@]}" 2>/dev/null; wait "${spin_pids[@]}" 2>/dev/null; spin_pids=(); }
if check "busy replay: mount" fg_mount "$T/busy.log" "prefetch=$T/tbig" "$T/two.list" "$T/busy"; then
	s0=$("$LAYERFS" stats "$T/busy")
	v() { awk -v k="$2" '$1 == k { print $2 }' <<<"$1"; }
	cat "$T/busy"/other/f*.txt >"$T/got.other"
	s1=$("$LAYERFS" stats "$T/busy")
	lfs_log "during the replay: $(grep -E "^(prefetch_jobs|pool_queued|demand_fills) " <<<"$s1" | tr "\n" " ")"
	stop_spinning
	check "busy replay: other files' bytes right" cmp "$T/got.other" <(cat "$T/ref"/other/f*.txt)
	check "busy replay: the replay was still running while they were read" \
		bash -c '[[ $1 -lt 9 && $2 -gt 0 ]] || { echo "jobs run $1, queued $2"; exit 1; }' _ \
		"$(v "$s1" prefetch_jobs)" "$(v "$s1" pool_queued)"
	check "busy replay: they were made by the reads' own threads (demand_fills)" \
		test $(($(v "$s1" demand_fills) - $(v "$s0" demand_fills))) -ge 16
	check "busy replay: none waited for a block a prefetch was making" \
		eq "$(v "$s1" prefetch_waits)" "$(v "$s0" prefetch_waits)"
	check "busy replay: none served by the prefetch" \
		eq "$(v "$s1" prefetch_used)" "$(v "$s0" prefetch_used)"
	check "busy replay: it finishes once the cores are free" replayed "$T/busy"
	check "busy replay: the ranges asked again are found made" \
		test "$(stat_of "$T/busy" prefetch_bytes)" -lt "$(stat_of "$T/busy" prefetch_asked)"
	fg_umount "$T/busy"
fi
stop_spinning

# --- stale and damaged traces ------------------------------------------------
# stale_case NAME TRACE WANT_RANGES WANT_SKIPPED LOG_PATTERN
stale_case() {
	local name=$1 tr=$2 ranges=$3 skipped=$4 pat=$5 mnt=$T/st_$1
	if check "$name: mounts" fg_mount "$T/$name.log" "prefetch=$tr" "$T/fn.list" "$mnt"; then
		if [[ $ranges == refused ]]; then
			sleep 0.3
			check "$name: nothing prefetched" eq "$(stat_of "$mnt" prefetch_jobs)" 0
		else
			check "$name: replayed what matches" replayed "$mnt"
			check "$name: $ranges ranges applied, $skipped skipped" eq \
				"$(stat_of "$mnt" prefetch_ranges) $(stat_of "$mnt" prefetch_skipped)" \
				"$ranges $skipped"
		fi
		start_reads "$mnt"
		check "$name: reads right" cmp "$T/got.reads" <(want_reads)
		fg_umount "$mnt"
		check "$name: one log line" one_line "$T/$name.log" "$pat"
	fi
}
head -c 3000 /dev/urandom >"$T/garbage"
stale_case garbage "$T/garbage" refused 0 "trace refused"
sed 's/^layerfs-trace 2$/layerfs-trace 3/' "$T/t1" >"$T/v3"
stale_case version "$T/v3" refused 0 "trace refused"
# a version 1 trace (ranges only) is still replayed
grep -v '^absent \|^list ' "$T/t1" | sed 's/^layerfs-trace 2$/layerfs-trace 1/' >"$T/v1"
stale_case version1 "$T/v1" 5 0 "serving"
sed 's/^range 0 0 0 app\/mod01.py$/absent app\/mod01.py\nlist ..\/..\/etc/' "$T/t1" | grep -v "^range" |
	sed 's/^end 5$/end 2/' | sed 's/^layerfs-trace 2$/layerfs-trace 1/' >"$T/v1names"
stale_case v1_with_names "$T/v1names" refused 0 "trace refused"
head -c $(($(stat -c %s "$T/t1") - 7)) "$T/t1" >"$T/cut"
stale_case truncated "$T/cut" refused 0 "trace refused"
sed 's/^range 0 0 0 app\/mod01.py$/range 0 0 99999999999999999999999 app\/mod01.py/' "$T/t1" >"$T/huge"
stale_case huge_number "$T/huge" refused 0 "trace refused"
sed 's/^range 0 \(.*\) app\/mod03.py$/range 0 \1 app\/gone.py/; s/^range 0 \(.*\) app\/mod07.py$/range 0 \1 ..\/..\/etc\/passwd/' \
	"$T/t1" >"$T/gone"
stale_case paths_gone "$T/gone" 3 2 "2 of 5 ranges of the trace skipped"
sed -E 's/^layer 0 [^ ]+ /layer 0 sha256:0000000000000000000000000000000000000000000000000000000000000000 /' \
	"$T/t1" >"$T/changed"
stale_case layer_changed "$T/changed" 0 5 "5 of 5 ranges of the trace skipped"
check "a missing trace: mounts, one line" bash -c '
	"$1" mount -f -o prefetch=/nonexistent/trace "$2" "$3" </dev/null >"$4" 2>&1 & pid=$!
	for _ in $(seq 100); do mountpoint -q "$3" && break; sleep 0.05; done
	mountpoint -q "$3" || { cat "$4"; exit 1; }
	"$1" umount "$3"; wait $pid
	[[ $(grep -c "no trace" "$4") -eq 1 ]] || { cat "$4"; exit 1; }' _ \
	"$LAYERFS" "$T/fn.list" "$(mkdir -p "$T/miss" && lfs_register_mount "$T/miss" && echo "$T/miss")" "$T/miss.log"
mkdir -m 700 "$T/roots"
check "a trace the daemon's user cannot write: refused at mount, one line" bash -c '
	mkdir -p "$4"
	out=$("$1" mount -o trace="$2/t" "$3" "$4" 2>&1 </dev/null) && { "$1" umount "$4"; exit 1; }
	[[ $(wc -l <<<"$out") -eq 1 && $out == *"cannot be written as user"* ]] || { echo "$out"; exit 1; }
	! mountpoint -q "$4"' _ "$LAYERFS" "$T/roots" "$T/fn.list" "$T/unw"
lfs_register_mount "$T/unw"
check "a trace in a folder that is not there: refused at mount, one line" bash -c '
	out=$("$1" mount -o trace=/nonexistent/dir/t "$2" "$3" 2>&1 </dev/null) && { "$1" umount "$3"; exit 1; }
	[[ $(wc -l <<<"$out") -eq 1 && $out == *"/nonexistent/dir/t"* ]] || { echo "$out"; exit 1; }' _ \
	"$LAYERFS" "$T/fn.list" "$T/unw"

# --- prefetch=auto ------------------------------------------------------------
check "prefetch=auto without cache_dir: refused, one line" bash -c '
	out=$("$1" mount -o prefetch=auto "$2" "$3" 2>&1 </dev/null) && exit 1
	[[ $(wc -l <<<"$out") -eq 1 && $out == *cache_dir* ]] || { echo "$out"; exit 1; }' _ \
	"$LAYERFS" "$T/fn.list" "$T/auto0"
if check "auto: first mount records" fg_mount "$T/a1.log" "cache_dir=$T/hc,prefetch=auto,trace_seconds=1" \
	"$T/fn.list" "$T/a1"; then
	start_reads "$T/a1"
	for _ in $(seq 100); do compgen -G "$T/hc/traces/*" >/dev/null && break; sleep 0.1; done
	check "auto: the trace is in the host cache once trace_seconds are up, while mounted" \
		bash -c 'ls "$1"/traces/* >/dev/null' _ "$T/hc"
	fg_umount "$T/a1"
fi
check "auto: the trace is named by the stack's key" bash -c \
	'ls "$1"/traces | grep -Eqx "[0-9a-f]{64}"' _ "$T/hc"
if check "auto: a later mount replays it" fg_mount "$T/a2.log" "cache_dir=$T/hc,prefetch=auto" \
	"$T/fn.list" "$T/a2"; then
	check "auto: replayed" replayed "$T/a2"
	check "auto: 5 ranges" eq "$(stat_of "$T/a2" prefetch_ranges)" 5
	fg_umount "$T/a2"
fi
lfs_list "$T/fn2.list" "$T/fn.zip" "$T/other.zip"
if check "auto: another stack records its own" fg_mount "$T/a3.log" "cache_dir=$T/hc,prefetch=auto" \
	"$T/fn2.list" "$T/a3"; then
	cat "$T/a3/other/f01.txt" >/dev/null
	check "auto: ... nothing replayed" eq "$(stat_of "$T/a3" prefetch_jobs)" 0
	fg_umount "$T/a3"
fi
check "auto: two traces now" eq "$(ls "$T/hc/traces" | wc -l)" 2

lfs_finish
