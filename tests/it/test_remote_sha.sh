#!/usr/bin/env bash
# A remote layer's listed sha256= checked against its bytes once all of
# them were fetched, mounted for real against the servers
# tests/remote/run.sh starts on loopback (this file runs itself again under
# it, as test_remote.sh does):
#   - the right digest: after every file was read, stats say verified, the
#     bytes equal the local mount's, and a second mount with the same
#     cache_dir trusts it without hashing again;
#   - another object listed under a digest the host holds records of: it
#     uses none of them (chunks, blocks, tree) and serves its own bytes;
#   - a wrong digest on an otherwise valid object: after every file was
#     read, every read of the layer fails with EIO (what was cached too),
#     one log line names the layer (no query) and both digests, stats and
#     metrics count it, other layers are still served, and the host cache
#     keeps no record of it: a second mount of the same list is refused,
#     and one made after forgetting that refusal fetches and builds
#     everything again.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
if [[ -z ${LFS_PROXY:-} ]]; then
	LFS_REMOTE_CMD="bash '$(readlink -f "${BASH_SOURCE[0]}")'" \
		exec bash "$LFS_IT_DIR/../remote/run.sh"
fi
lfs_init
lfs_gen
lfs_tmpdir T

stat_of() { "$LAYERFS" stats "$1" | awk -v k="$2" '$1 == k { print $2 }'; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
# foreground mount with its log in $2: fg_mount LOG [mount args...] LIST MNT
fg_mount() {
	local log=$1 mnt=${*: -1} _
	shift
	mkdir -p "$mnt"
	lfs_register_mount "$mnt"
	timeout -k 5 300 "$LAYERFS" mount -f "$@" </dev/null >"$log" 2>&1 &
	for _ in $(seq 200); do
		mountpoint -q "$mnt" && return 0
		sleep 0.05
	done
	echo "not mounted: $(tail -3 "$log")"
	return 1
}
# waits until stats key $2 of mount $1 is no longer $3 (the hasher runs in
# the background at the lowest priority; a bound against a hang, not a
# timing), then prints it
wait_stat() {
	local v _
	for _ in $(seq 1200); do
		v=$(stat_of "$1" "$2")
		[[ $v != "$3" ]] && break
		sleep 0.1
	done
	echo "$v"
}
# every file of the tree read once, failures ignored
read_all() { find "$1" -type f -exec cat {} + >/dev/null 2>&1; }
# every file of layer directory $1: fails with EIO (the kernel's pages are
# dropped by a thread of the daemon's: each is given a little while)
all_eio() {
	local f out _ n=0
	while IFS= read -r f; do
		for _ in $(seq 100); do
			out=$(cat "$f" 2>&1 >/dev/null) && { sleep 0.05; continue; }
			break
		done
		[[ $out == *"Input/output error"* ]] || { echo "$f: not EIO: ${out:-read fine}"; return 1; }
		n=$((n + 1))
	done < <(find "$1" -type f -size +0)
	[[ $n -gt 0 ]] || { echo "no file in $1"; return 1; }
}
# what the digest's chunk records are under: sha256("sha256 HEX")
where_of() { printf 'sha256 %s' "$1" | sha256sum | cut -d' ' -f1; }

# infozip.zip holds deep/ and lib/ (and more), py_mixed.zip pm/ (their
# top directories do not overlap, so each file comes from one layer)
B=infozip.zip C=py_mixed.zip
for z in $B $C; do
	cp "$L/$z" "$LFS_DATA/$z"
	cp "$L/$z" "$LFS_DATA/layers/$z"
done
export AWS_ACCESS_KEY_ID=AKIDTEST AWS_SECRET_ACCESS_KEY=secrettest
S3O=s3_endpoint=$LFS_S3,s3_region=$LFS_S3_REGION
lfs_ref "$T/ref" "$L/$B" "$L/$C"
lfs_ref "$T/ref_c" "$L/$C"

# --- the right digest ----------------------------------------------------
CD=$T/cache
lfs_daemon_dir "$CD"
printf '%s\n' "$LFS_HTTP/$B?X-Amz-Signature=SIGSECRET name=b version=1 sha256=$(sha "$L/$B")" \
	"s3://layers/$C sha256=$(sha "$L/$C")" >"$T/right.list"
if check "right sha256=: mounted (http, s3, cache_dir)" \
	fg_mount "$T/right.log" -o "cache_dir=$CD,$S3O" "$T/right.list" "$T/r1"; then
	check "right sha256=: pending before anything was read" \
		eq "$(stat_of "$T/r1" layer.0.remote_digest)" pending
	check "right sha256=: every file the same as the local zips'" same_manifest "$T/ref" "$T/r1"
	d0=$(wait_stat "$T/r1" layer.0.remote_digest pending)
	d1=$(wait_stat "$T/r1" layer.1.remote_digest pending)
	check "right sha256=: both layers verified once every byte was fetched" \
		bash -c '[[ $1 == verified && $2 == verified ]] || { echo "$1 $2"; "$3" stats "$4" | grep -e digest -e remote_requests; exit 1; }' \
		_ "$d0" "$d1" "$LAYERFS" "$T/r1"
	check "right sha256=: every byte hashed" \
		eq "$(stat_of "$T/r1" layer.0.remote_digest_bytes)" "$(stat -c %s "$L/$B")"
	check "right sha256=: no mismatch counted" eq "$(stat_of "$T/r1" digest_mismatches)" 0
	check "right sha256=: still the same bytes afterwards" same_manifest "$T/ref" "$T/r1"
	check "right sha256=: nothing logged about it" \
		bash -c '! grep -i -e sha256 -e "cannot be trusted" "$1"' _ "$T/right.log"
	"$LAYERFS" stats --format=prometheus "$T/r1" >"$T/right.prom"
	check "right sha256=: prometheus shows no mismatch" \
		grep -q '^layerfs_layer_digest_mismatch{mount="'"$T/r1"'",layer="b:1"} 0$' "$T/right.prom"
	lfs_umount "$T/r1"
fi
if check "right sha256=, second mount on the host" \
	lfs_mount -o "cache_dir=$CD,$S3O" "$T/right.list" "$T/r2"; then
	check "second mount: verified at mount (remembered), nothing hashed" \
		bash -c '[[ $("$1" stats "$2" | awk "\$1 ~ /remote_digest\$/ { printf \"%s \", \$2 } \$1 ~ /remote_digest_bytes\$/ { n += \$2 } END { print n }") == "verified verified 0" ]] || { "$1" stats "$2" | grep digest; exit 1; }' \
		_ "$LAYERFS" "$T/r2"
	check "second mount: the same bytes" same_manifest "$T/ref" "$T/r2"
	lfs_umount "$T/r2"
fi

# --- another object under a digest the host holds -------------------------
# py_mixed.zip listed with infozip.zip's digest, which the host holds
# records of: its tail differs, so nothing of the host's is used for it
# (chunks, blocks, the tree), and its own bytes are served until its digest
# is found wrong.
printf '%s\n' "$LFS_HTTP/$C sha256=$(sha "$L/$B")" >"$T/other.list"
if check "another object under a held digest: mounted" \
	fg_mount "$T/other.log" -o "cache_dir=$CD" "$T/other.list" "$T/o1"; then
	check "another object: one warning, it shares nothing" \
		bash -c '[[ $(grep -c "one of the lists naming that digest is wrong" "$1") -eq 1 ]] || { cat "$1"; exit 1; }' \
		_ "$T/other.log"
	check "another object: its own tree and bytes, none of the host's" \
		bash -c 'cmp "$1/pm/readme.txt" "$2/pm/readme.txt" && cmp "$1/pm/deflated/d1.txt" "$2/pm/deflated/d1.txt" &&
			[[ $("$3" stats "$1" | awk "\$1 == \"tree_cached\" || \$1 == \"disk_hits\" || \$1 ~ /remote_disk_hits\$/ { n += \$2 } END { print n }") -eq 0 ]] || { "$3" stats "$1" | grep -e disk_hits -e tree_cached; exit 1; }' \
		_ "$T/o1" "$T/ref_c" "$LAYERFS"
	check "another object: no record of the host's dropped" \
		bash -c '! grep "dropped a record" "$1"' _ "$T/other.log"
	lfs_umount "$T/o1"
fi
check "another object: the host's records of the digest are still there" \
	test -d "$CD/v1/objects/$(where_of "$(sha "$L/$B")")"

# --- a wrong digest on a valid object -------------------------------------
WRONG=$(sha "$L/stack1.zip")
RIGHT=$(sha "$L/$B")
CW=$T/cache_wrong
lfs_daemon_dir "$CW"
# the local layer's digest is listed too, so the stack's tree is kept at
# mount: it must go with the wrong layer
printf '%s\n' "$LFS_HTTP/$B?X-Amz-Signature=SIGSECRET name=b version=1 sha256=$WRONG" \
	"$L/$C sha256=$(sha "$L/$C")" >"$T/wrong.list"
if check "wrong sha256=: mounted (it cannot be known before all of it was fetched)" \
	fg_mount "$T/wrong.log" -o "cache_dir=$CW" "$T/wrong.list" "$T/w1"; then
	check "wrong sha256=: the tree was kept in cache_dir at mount" \
		bash -c '[[ $(ls "$1/trees" | wc -l) -eq 1 ]]' _ "$CW"
	read_all "$T/w1"
	d=$(wait_stat "$T/w1" layer.0.remote_digest pending)
	check "wrong sha256=: a mismatch once every byte was fetched" \
		bash -c '[[ $1 == mismatch ]] || { echo "$1"; "$2" stats "$3" | grep digest; exit 1; }' _ "$d" "$LAYERFS" "$T/w1"
	check "wrong sha256=: counted" eq "$(wait_stat "$T/w1" digest_mismatches 0)" 1
	check "wrong sha256=: every file of the layer fails with EIO, cached ones too" all_eio "$T/w1/deep"
	check "wrong sha256=: and again (nothing is served from anywhere)" all_eio "$T/w1/lib"
	check "wrong sha256=: the refused reads are counted" \
		test "$(stat_of "$T/w1" layer.0.digest_refused)" -gt 0
	check "wrong sha256=: the other layer is still served" \
		bash -c 'diff -r "$1/pm" "$2/pm"' _ "$T/ref_c" "$T/w1"
	check "wrong sha256=: one log line naming the layer and both digests" \
		bash -c '[[ $(grep -c "cannot be trusted" "$1") -eq 1 ]] && grep "cannot be trusted" "$1" | grep -q -e "$2/$3: its SHA-256 is $4, the list says sha256=$5" || { cat "$1"; exit 1; }' \
		_ "$T/wrong.log" "$LFS_HTTP" "$B" "$RIGHT" "$WRONG"
	check "wrong sha256=: nothing else logged about its reads" \
		bash -c '! grep -e "EIO for this read" -e "changed after it was mounted" "$1"' _ "$T/wrong.log"
	check "wrong sha256=: the log has no query or signature" \
		bash -c '! grep -e SIGSECRET -e "X-Amz" "$1"' _ "$T/wrong.log"
	"$LAYERFS" stats --format=prometheus "$T/w1" >"$T/wrong.prom"
	check "wrong sha256=: prometheus has the mismatch and the refused reads" \
		bash -c 'grep -q "^layerfs_layer_digest_mismatch{mount=\"$2\",layer=\"b:1\"} 1$" "$1" &&
			grep -Eq "^layerfs_faults_total\{mount=\"$2\",layer=\"b:1\",reason=\"digest\"\} [1-9]" "$1" || { grep digest "$1"; exit 1; }' \
		_ "$T/wrong.prom" "$T/w1"
	check "wrong sha256=: its chunks are gone from cache_dir" \
		test ! -e "$CW/v1/objects/$(where_of "$WRONG")"
	check "wrong sha256=: its blocks are gone from cache_dir" test ! -e "$CW/v1/$WRONG"
	check "wrong sha256=: the stack's tree is gone from cache_dir" \
		bash -c '[[ $(ls "$1/trees" | wc -l) -eq 0 ]] || { ls -la "$1/trees"; exit 1; }' _ "$CW"
	lfs_umount "$T/w1"
fi
check "wrong sha256=: still nothing of it in cache_dir after the daemon exited" \
	bash -c '! [[ -e $1/v1/objects/$2 || -e $1/v1/$3 ]] && [[ $(ls "$1/trees" | wc -l) -eq 0 ]]' \
	_ "$CW" "$(where_of "$WRONG")" "$WRONG"
check "wrong sha256=: a second mount on the host is refused, in one line" \
	bash -c 'out=$(timeout 60 "$1" mount -o cache_dir="$2" "$3" "$4" 2>&1) && exit 1
		[[ $(wc -l <<<"$out") -eq 1 && $out == *"its SHA-256 is $5, the list says sha256=$6"* && $out != *SIGSECRET* ]] || { echo "$out"; exit 1; }
		! mountpoint -q "$4"' _ "$LAYERFS" "$CW" "$T/wrong.list" "$T/w2" "$RIGHT" "$WRONG"
check "the refused mount kept none of its chunks or blocks" \
	bash -c '[[ $(find "$1/v1/objects/$2" -type f ! -name head 2>/dev/null | wc -l) -eq 0 && ! -e $1/v1/$3 ]] || { find "$1/v1"; exit 1; }' \
	_ "$CW" "$(where_of "$WRONG")" "$WRONG"
# What refused it is the digest remembered; without it, nothing cached of
# the layer is found: its chunks, tree and blocks are made again (and once
# every byte was fetched again, the digest is found wrong again).
rm -f "$CW"/digests/*
if check "wrong sha256=, the digest forgotten: mounted again" \
	lfs_mount -o "cache_dir=$CW" "$T/wrong.list" "$T/w3"; then
	check "again: the tree built, not taken from cache_dir" eq "$(stat_of "$T/w3" tree_cached)" 0
	cat "$T/w3/README.txt" >/dev/null
	check "again: the bytes fetched, none from cache_dir" \
		bash -c '[[ $("$1" stats "$2" | awk "\$1 == \"layer.0.remote_disk_hits\" { h = \$2 } \$1 == \"layer.0.remote_bytes_fetched\" { b = \$2 } END { print (h == 0 && b > 0) }") == 1 ]] || { "$1" stats "$2" | grep layer.0.remote; exit 1; }' \
		_ "$LAYERFS" "$T/w3"
	lfs_umount "$T/w3"
fi

lfs_finish
