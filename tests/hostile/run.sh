#!/usr/bin/env bash
# Hostile layers (issue 4): every bad input gets a clear answer.
#
#   tests/hostile/run.sh [CASE...]     run all cases, or the named ones
#   tests/hostile/run.sh --list        list the cases and what each is about
#
# Makes the corpus (make_corpus.py) in a temp dir, then for every case mounts
# [good.zip, hostile.zip] (or the case's own list) and checks:
#   refuse: exit status 1, exactly one stderr line naming the bad file and
#           the reason, nothing on stdout, nothing mounted (/proc/mounts),
#           no hang (a FIFO named as a layer or list)
#   mount:  the daemon runs with -f (its stderr is the log); check.py checks
#           the good layer, the fine and the bad entries, paths, modes,
#           symlinks, memory of zip bombs, ls -laR, the log lines; then the
#           daemon must still be alive, unmount cleanly and exit 0
#   both:   nothing created outside the mount (the temp dir tree, and no
#           'lfsx*' name in /, /tmp, /etc, the daemon's cwd), no new
#           sanitizer report (when ASAN_OPTIONS has log_path=)
# Prints "ok ..."/"FAIL ..." per check and ends with "N passed, M failed";
# exits 1 if anything failed.
#
# LAYERFS            the binary (default: build/layerfs under the repo root)
# HOSTILE_KEEP=1     keep the temp dir (corpus, logs) for inspection
# Needs root, FUSE (fusermount3), python3.  Mounts, daemons and the temp
# dir are cleaned up at exit by the harness (tests/lib.sh).
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/../lib.sh"
export LC_ALL=C.UTF-8 TZ=UTC
[[ ${HOSTILE_KEEP:-0} == 1 ]] && LFS_KEEP_TMP=1

if [[ ${1:-} == --list ]]; then
	lfs_init --no-binary
	lfs_tmpdir T layerfs-hostile
	"$PY" "$HERE/make_corpus.py" "$T/corpus" >/dev/null || exit 1
	"$PY" - "$T/corpus/expect.json" <<'EOF'
import json, sys, textwrap
for c in json.load(open(sys.argv[1]))["cases"]:
    print("%-26s %-6s %s" % (c["name"], c["outcome"], textwrap.shorten(c["why"], 200)))
EOF
	exit 0
fi
lfs_init
HOSTILE_ASAN=0
grep -qa __asan_init "$LAYERFS" && HOSTILE_ASAN=1
export HOSTILE_ASAN
# sanitizer report files: ASAN_OPTIONS=log_path=PREFIX writes PREFIX.PID
SAN_PREFIX=$(sed -n 's/.*log_path=\([^:]*\).*/\1/p' <<<"${ASAN_OPTIONS:-}")
if [[ -n $SAN_PREFIX ]]; then mkdir -p "$(dirname "$SAN_PREFIX")"; fi
san_reports() { [[ -n $SAN_PREFIX ]] && ls -1 "$SAN_PREFIX".* 2>/dev/null | sort; true; }

lfs_tmpdir T layerfs-hostile
C=$T/corpus
t0=$(date +%s)
if ! "$PY" "$HERE/make_corpus.py" "$C" >"$T/corpus.log" 2>&1; then
	cat "$T/corpus.log"
	lfs_fail "corpus" "make_corpus.py failed"
	lfs_finish
fi
echo "# $(cat "$T/corpus.log") ($(($(date +%s) - t0)) s); binary $LAYERFS$([[ $HOSTILE_ASAN == 1 ]] && echo ' (ASan)')"

# name outcome zip list opts msg_path reason bomb, one case a line
mapfile -t CASES < <("$PY" - "$C/expect.json" "$@" <<'EOF'
import json, sys
ex = json.load(open(sys.argv[1]))
want = set(sys.argv[2:])
for c in ex["cases"]:
    if want and c["name"] not in want:
        continue
    print("\t".join([c["name"], c["outcome"], c["zip"] or "-", c["list"] or "-",
                     c["opts"] or "-", c.get("msg_path") or "-", c.get("reason") or "-",
                     "1" if c.get("bomb") else "0"]))
EOF
)
if [[ $# -gt 0 && ${#CASES[@]} -ne $# ]]; then
	lfs_fail "cases" "unknown case name among: $*"
fi

# Things a traversal would create outside the mount.
escapes() { # DIR...: any name with lfsx in these dirs
	local d
	for d in "$@"; do
		[[ -d $d ]] && find "$d" -maxdepth 1 -name '*lfsx*' -print 2>/dev/null
	done
	true
}
snap_tree() { find "$T" -xdev -printf '%P\n' 2>/dev/null | sort; }

for line in "${CASES[@]}"; do
	IFS=$'\t' read -r name outcome zip list opts msg_path reason isbomb <<<"$line"
	D=$T/cases/$name
	mkdir -p "$D/mnt" "$D/cwd/a/b"
	MNT=$D/mnt
	CWD=$D/cwd/a/b
	echo "## $name ($outcome)"
	c0=$(date +%s.%N)
	if [[ $list == - ]]; then
		LIST=$D/layers.list
		LAYER=$C/$zip
		printf '%s\n%s\n' "$C/zips/good.zip" "$LAYER" >"$LIST"
	else
		LIST=$C/$list
		LAYER=-
	fi
	oargs=()
	[[ $opts != - ]] && oargs=(-o "$opts")
	: >"$D/log"
	: >"$D/out"
	: >"$D/err"
	ESC_DIRS=(/ /tmp /etc "$T" "$T/cases" "$D" "$D/cwd" "$CWD")
	esc_before=$(escapes "${ESC_DIRS[@]}")
	san_before=$(san_reports)
	tree_before=$(snap_tree)

	if [[ $outcome == refuse ]]; then
		case $msg_path in
		/*) needle=$msg_path ;;
		*) if [[ $list == - ]]; then needle=$C/$msg_path; else needle=$msg_path; fi ;;
		esac
		rc=0
		(cd "$CWD" && exec timeout -k 5 10 "$LAYERFS" mount "${oargs[@]}" "$LIST" "$MNT" \
			>"$D/out" 2>"$D/err" </dev/null) || rc=$?
		if lfs_is_mounted "$MNT"; then lfs_register_mount "$MNT"; fi
		nerr=$(wc -l <"$D/err")
		msg=$(head -c 600 "$D/err")
		if [[ $rc -eq 124 || $rc -eq 137 ]]; then
			lfs_fail "$name: refused" "layerfs mount hung (killed after 10 s); stderr: $msg"
		elif [[ $rc -eq 1 ]]; then
			lfs_pass "$name: refused with exit status 1"
		else
			lfs_fail "$name: refused" "exit status $rc (expected 1); stderr: $msg"
		fi
		if [[ $nerr -eq 1 ]]; then
			lfs_pass "$name: exactly one stderr line"
		else
			lfs_fail "$name: exactly one stderr line" "$nerr lines: $msg"
		fi
		if grep -qF -- "$needle" "$D/err" && grep -qiF -- "$reason" "$D/err"; then
			lfs_pass "$name: message names the file and the reason"
		else
			lfs_fail "$name: message names the file and the reason" \
				"expected '$needle' and '$reason' in: $msg"
		fi
		if [[ -s $D/out ]]; then
			lfs_fail "$name: nothing on stdout" "$(head -c 300 "$D/out")"
		fi
		if lfs_is_mounted "$MNT"; then
			lfs_fail "$name: nothing mounted" "$MNT is in /proc/mounts"
			lfs_force_umount "$MNT"
		else
			lfs_pass "$name: nothing mounted"
		fi
	else
		(cd "$CWD" && exec "$LAYERFS" mount -f "${oargs[@]}" "$LIST" "$MNT" \
			>"$D/out" 2>"$D/log" </dev/null) &
		pid=$!
		lfs_register_pid "$pid"
		lfs_register_mount "$MNT"
		up=0
		lfs_wait_mounted "$MNT" 30 "$pid" && up=1
		if [[ $up -ne 1 ]]; then
			lfs_fail "$name: mounts" "not mounted after 30 s; log: $(tail -c 600 "$D/log")"
		else
			lfs_pass "$name: mounts"
			tmo=90
			[[ $isbomb == 1 ]] && tmo=400
			out=$(cd "$CWD" && timeout -k 5 "$tmo" "$PY" "$HERE/check.py" "$C" "$name" "$MNT" \
				"$D/log" "$LAYER" 2>&1)
			crc=$?
			printf '%s\n' "$out" | grep -E '^(ok|FAIL) ' || true
			lfs_add_results "$(grep -c '^ok ' <<<"$out")" "$(grep -c '^FAIL ' <<<"$out")" "$name"
			if [[ $crc -ne 0 ]]; then
				lfs_fail "$name: checker" "check.py exit $crc$([[ $crc -eq 124 ]] && echo ' (timed out: a hung read?)'): $(grep -vE '^(ok|FAIL) ' <<<"$out" | tail -n 5)"
			fi
			if kill -0 "$pid" 2>/dev/null; then
				lfs_pass "$name: daemon process alive after the checks"
			else
				lfs_fail "$name: daemon process alive after the checks" "it exited; log: $(tail -c 800 "$D/log")"
			fi
		fi
		timeout -k 5 15 "$LAYERFS" umount "$MNT" >/dev/null 2>&1
		if ! lfs_wait_exit "$pid" 15; then
			lfs_fail "$name: daemon exits after umount" "still running 15 s after umount; killed"
			lfs_stop_pid "$pid" 2
		fi
		lfs_force_umount "$MNT"
		drc=0
		wait "$pid" || drc=$?
		if [[ $up -eq 1 ]]; then
			if [[ $drc -eq 0 ]]; then
				lfs_pass "$name: unmounts, daemon exits 0"
			else
				lfs_fail "$name: unmounts, daemon exits 0" "exit status $drc; log: $(tail -c 800 "$D/log")"
			fi
		fi
		if [[ -s $D/out ]]; then
			lfs_fail "$name: nothing on the daemon's stdout" "$(head -c 300 "$D/out")"
		fi
	fi

	# nothing outside the mount
	esc_after=$(escapes "${ESC_DIRS[@]}")
	tree_after=$(snap_tree)
	if [[ $esc_after != "$esc_before" ]]; then
		lfs_fail "$name: nothing created outside the mount" "new: $(comm -13 <(echo "$esc_before") <(echo "$esc_after") | tr '\n' ' ')"
	elif [[ $tree_after != "$tree_before" ]]; then
		lfs_fail "$name: nothing created outside the mount" "temp dir changed: $(diff <(echo "$tree_before") <(echo "$tree_after") | head -n 5 | tr '\n' ' ')"
	else
		lfs_pass "$name: nothing created outside the mount"
	fi
	printf '# %s: %.1f s\n' "$name" "$(echo "$(date +%s.%N) - $c0" | bc)"
	san_after=$(san_reports)
	if [[ $san_after != "$san_before" ]]; then
		new=$(comm -13 <(echo "$san_before") <(echo "$san_after"))
		lfs_fail "$name: no sanitizer report" "$(echo $new): $(cat $new 2>/dev/null | grep -m 3 -E 'ERROR|SUMMARY|runtime error')"
	fi
done
echo "# $((${#CASES[@]})) cases in $(($(date +%s) - t0)) s"
lfs_finish
