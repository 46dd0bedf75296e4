#!/usr/bin/env bash
# Remote layers, mounted for real, against the servers tests/remote/run.sh
# starts on loopback (nginx over http and https, the fault proxy, the
# SigV4-checking S3 endpoint); this file runs itself again under it:
#   - http, https and s3:// lines, mixed with local ones: the tree and every
#     byte equal the local mount's (same_manifest), also through the fault
#     proxy (latency, 503, 429, resets, short bodies, ignored Range);
#   - refusals: one line naming the layer without its query, nothing mounted;
#   - a second mount on the host fetches nothing but one 304 per layer;
#   - an object replaced under the mount: EIO for what would mix versions,
#     one log line, cached files still right;
#   - the network down: what is cached (memory, disk) is still served;
#   - no credential in logs, stats, check output, provenance or argv;
#   - layerfs check and layerfs stats on remote lists.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
if [[ -z ${LFS_PROXY:-} ]]; then
	LFS_REMOTE_CMD="bash '$(readlink -f "${BASH_SOURCE[0]}")'" \
		exec bash "$LFS_IT_DIR/../remote/run.sh"
fi
lfs_init
lfs_gen
lfs_tmpdir T

# sum of a per-layer key over layers 0..N-1
stat_sum() {
	local m=$1 k=$2 n=$3 i t=0
	for ((i = 0; i < n; i++)); do t=$((t + $(stat_of "$m" "layer.$i.$k"))); done
	echo "$t"
}
# waits until the daemon has written what it queued for the disk (blocks,
# and the remote layers' chunks)
settle() {
	local _
	for _ in $(seq 300); do
		"$LAYERFS" stats "$1" | awk '$1 == "disk_writes_pending" || $1 ~ /remote_disk_pending$/ { n += $2 } END { exit n != 0 }' &&
			return 0
		sleep 0.1
	done
	return 1
}

# The layers, served by nginx from $LFS_DATA and by the S3 endpoint from
# its bucket "layers" (the same directory's subdirectory).
A=big.zip B=infozip.zip C=py_mixed.zip
for z in $A $B $C stack1.zip stack2.zip stack3.zip; do
	cp "$L/$z" "$LFS_DATA/$z"
	cp "$L/$z" "$LFS_DATA/layers/$z"
done
export AWS_ACCESS_KEY_ID=AKIDTEST AWS_SECRET_ACCESS_KEY=secrettest
S3O=s3_endpoint=$LFS_S3,s3_region=$LFS_S3_REGION

lfs_list "$T/local.list" "$L/$A" "$L/$B" "$L/$C"
mkdir -p "$T/refused" "$T/https0"
lfs_ref "$T/ref" "$L/$A" "$L/$B" "$L/$C"
if check "local mount of the three layers" lfs_mount "$T/local.list" "$T/local"; then
	lfs_manifest "$T/local" >"$T/local.manifest"
	check "local mount equals unzip -o" same_manifest "$T/ref" "$T/local"
	lfs_umount "$T/local"
fi

# --- http, https and s3, mixed with a local line -----------------------------
printf '%s\n' "$LFS_HTTP/$A name=big version=1" "s3://layers/$B" "$L/$C" >"$T/mixed.list"
if check "mixed list (http, s3, local): mounted" lfs_mount -o "$S3O" "$T/mixed.list" "$T/mixed"; then
	check "mixed list: the same tree and bytes as the local mount" \
		same_manifest "$T/local.manifest" "$T/mixed"
	check "mixed list: provenance by name, or by URL" \
		bash -c 'xattr_is() { [[ $(getfattr --only-values -n user.layerfs.layer "$1") == "$2" ]] || { getfattr -n user.layerfs.layer "$1"; exit 1; }; }
			xattr_is "$1/big" big:1 && xattr_is "$1/deep" "s3://layers/$2" && xattr_is "$1" "big:1, s3://layers/$2, $3"' \
		_ "$T/mixed" "$B" "$L/$C"
	check "mixed list: stats has remote keys for the remote layers only" \
		bash -c '[[ -n $(grep "^layer.0.remote_requests " <<<"$1") && -n $(grep "^layer.1.remote_bytes_fetched " <<<"$1") && -z $(grep "^layer.2.remote_" <<<"$1") && -n $(grep "^layer.2.bytes_read " <<<"$1") ]] || { echo "$1" | grep layer; exit 1; }' \
		_ "$("$LAYERFS" stats "$T/mixed")"
	check "mixed list: the remote layers have no digest to show" eq "$(stat_of "$T/mixed" layer.0.sha256)" unknown
	lfs_umount "$T/mixed"
fi
printf '%s\n' "$LFS_HTTPS/$A" "$LFS_HTTPS/$B" "$LFS_HTTPS/$C" >"$T/https.list"
check "https without the test's CA: refused (verified by default)" \
	bash -c 'out=$(timeout 60 "$1" mount "$2" "$3" 2>&1) && exit 1; [[ $(wc -l <<<"$out") -eq 1 && $out == *"$4/big.zip: SSL certificate problem"* ]] || { echo "$out"; exit 1; }; ! mountpoint -q "$3"' \
	_ "$LAYERFS" "$T/https.list" "$T/https0" "$LFS_HTTPS"
if check "https with ca_file: mounted" lfs_mount -o ca_file="$LFS_CA" "$T/https.list" "$T/https"; then
	check "https: the same tree and bytes" same_manifest "$T/local.manifest" "$T/https"
	lfs_umount "$T/https"
fi
if check "https with insecure: mounted, with a warning" \
	lfs_fg_mount "$T/insecure.log" -o insecure "$T/https.list" "$T/https2"; then
	check "insecure: one warning line" grep -q "certificates of remote layers are not verified" "$T/insecure.log"
	lfs_umount "$T/https2"
fi

# --- faults on the way: the bytes are still the local mount's ----------------
F=$LFS_PROXY/_f
printf '%s\n' "$F/lat=2,503=3,shift=5,tag=a/$A" "$F/skip=1,reset=4,trunc=4,slowdown=2,tag=b/$B" \
	"$F/429=2,skip=2,norange=3,tag=c/$C" >"$T/faults.list"
if check "fault proxy (latency, 503, SlowDown, 429, resets, short bodies, ignored and shifted ranges): mounted" \
	lfs_mount "$T/faults.list" "$T/faults"; then
	check "fault proxy: the same tree and bytes as the local mount" \
		same_manifest "$T/local.manifest" "$T/faults"
	check "fault proxy: retries were made and counted" test "$(stat_sum "$T/faults" remote_retries 3)" -gt 3
	check "fault proxy: no read failed" eq "$(stat_of "$T/faults" source_errors)" 0
	lfs_umount "$T/faults"
fi

# --- refusals ------------------------------------------------------------------
refused() { # NAME LIST WANT [OPTIONS]: exit 1, one line with WANT, no query, nothing mounted
	local name=$1 list=$2 want=$3 opts=${4:-}
	check "$name" bash -c 'out=$(timeout 60 "$1" mount ${5:+-o "$5"} "$2" "$3" 2>&1) && exit 1
		[[ $(wc -l <<<"$out") -eq 1 && $out == *"$4"* && $out != *"?"* && $out != *secret* ]] || { echo "$out"; exit 1; }
		! mountpoint -q "$3"' _ "$LAYERFS" "$list" "$T/refused" "$want" "$opts"
}
printf '%s\n' "$L/$A" "$LFS_HTTP/absent.zip?X-Amz-Signature=SIGSECRET" >"$T/404.list"
refused "404: refused, naming the layer and the status" "$T/404.list" "$LFS_HTTP/absent.zip: HTTP 404 Not Found"
printf '%s\n' "s3://layers/$A" >"$T/s3.list"
check "403 (wrong secret): refused with S3's code" \
	bash -c 'out=$(AWS_SECRET_ACCESS_KEY=wrongwrong timeout 60 "$1" mount -o "$4" "$2" "$3" 2>&1) && exit 1
		[[ $(wc -l <<<"$out") -eq 1 && $out == *"s3://layers/big.zip: HTTP 403 Forbidden (SignatureDoesNotMatch"* && $out != *wrongwrong* ]] || { echo "$out"; exit 1; }' \
	_ "$LAYERFS" "$T/s3.list" "$T/refused" "$S3O"
printf '%s\n' "http://127.0.0.1:1/x.zip" >"$T/unreach.list"
refused "unreachable endpoint: refused, naming it" "$T/unreach.list" "http://127.0.0.1:1/x.zip: Failed to connect"
printf '%s\n' "$LFS_HTTP/$A?X-Amz-Signature=one" "$LFS_HTTP/$A?X-Amz-Signature=two" >"$T/dup.list"
refused "two presigned URLs of one object: listed twice" "$T/dup.list" "listed twice"

# --- layerfs check on a remote list ------------------------------------------
out=$("$LAYERFS" check -o "$S3O" "$T/mixed.list" 2>&1)
check "check: a remote list is mountable" grep -q "mountable, 0 warnings" <<<"$out"
check "check: one line per layer, remote ones by URL" \
	bash -c '[[ $(grep -c -e "^big:1 " -e "^s3://layers/infozip.zip " -e "py_mixed.zip " <<<"$1") -eq 3 ]] || { echo "$1"; exit 1; }' _ "$out"

# --- credentials never shown ---------------------------------------------------
printf '%s\n' "$LFS_HTTP/$A?X-Amz-Credential=AKIDSHOWN&X-Amz-Signature=SIGSECRET" "s3://layers/$B" \
	>"$T/secret.list"
if check "presigned URL and S3 keys: mounted (foreground, debug log)" \
	lfs_fg_mount "$T/secret.log" -d -o "$S3O" "$T/secret.list" "$T/secret"; then
	head -c 1000000 "$T/secret/big/mid6.bin" >/dev/null
	find "$T/secret/deep" -type f -exec cat {} + >/dev/null 2>&1
	pid=$(stat_of "$T/secret" pid)
	everything() {
		"$LAYERFS" stats "$T/secret"
		"$LAYERFS" check -o "$S3O" "$T/secret.list" 2>&1
		getfattr -R -n user.layerfs.layer "$T/secret/big" "$T/secret/deep" 2>/dev/null
		tr '\0' ' ' <"/proc/$pid/cmdline"
		cat "/proc/$pid/comm" "$T/secret.log"
	}
	everything >"$T/shown.txt"
	check "credentials: none in stats, check, provenance, argv or the debug log" \
		bash -c '! grep -n -e SIGSECRET -e AKIDSHOWN -e secrettest -e "X-Amz" "$1" || exit 1' _ "$T/shown.txt"
	check "credentials: the URL's layer is named without its query" grep -q "layer.0.name $LFS_HTTP/$A\$" "$T/shown.txt"
	lfs_umount "$T/secret"
fi

# --- a second mount on this host fetches nothing but validation --------------
CD=$T/cache
lfs_daemon_dir "$CD"
# many.zip's central directory is larger than the tail: its index reads
# chunks while the mount opens, before the daemon forks
printf '%s\n' "$LFS_HTTP/$A?X-Amz-Signature=first" "$LFS_HTTP/$B sha256=$(sha "$L/$B")" "s3://layers/$C" \
	"$LFS_HTTP/many.zip" >"$T/first.list"
printf '%s\n' "$LFS_HTTP/$A?X-Amz-Signature=second" "$LFS_HTTP/$B sha256=$(sha "$L/$B")" "s3://layers/$C" \
	"$LFS_HTTP/many.zip" >"$T/second.list"
lfs_ref "$T/ref4" "$L/$A" "$L/$B" "$L/$C" "$LFS_DATA/many.zip"
# The first mount keeps every file's blocks (cache_dir_min=0); the second,
# with the default, inflates the files smaller than 256K again, from the
# chunks on disk; a third that keeps every file inflates nothing.
if check "host cache, first mount" lfs_mount -o "cache_dir=$CD,cache_dir_min=0,$S3O" "$T/first.list" "$T/h1"; then
	check "host cache, first mount: the same tree and bytes" same_manifest "$T/ref4" "$T/h1"
	first=$(stat_sum "$T/h1" remote_bytes_fetched 4)
	check "host cache, first mount: fetched at most the zips' size" \
		bash -c '[[ $1 -le $2 ]] || { echo "$1 bytes fetched"; "$3" stats "$4" | grep remote_; exit 1; }' \
		_ "$first" $(($(stat -c %s "$L/$A") + $(stat -c %s "$L/$B") + $(stat -c %s "$L/$C") + $(stat -c %s "$LFS_DATA/many.zip"))) \
		"$LAYERFS" "$T/h1"
	check "host cache, first mount: every chunk went to the disk" eq "$(stat_sum "$T/h1" remote_disk_skipped 4)" 0
	settle "$T/h1"
	lfs_umount "$T/h1"
fi
if check "host cache, second mount (other presigned URL)" lfs_mount -o "cache_dir=$CD,$S3O" "$T/second.list" "$T/h2"; then
	check "second mount: one request per layer at mount" eq "$(stat_sum "$T/h2" remote_requests 4)" 4
	check "second mount: every layer answered 304" eq "$(stat_sum "$T/h2" remote_not_modified 4)" 4
	check "second mount: its tree came from cache_dir" eq "$(stat_of "$T/h2" tree_cached)" 1
	check "second mount: the same tree and bytes" same_manifest "$T/ref4" "$T/h2"
	lfs_log "second mount after reading everything: $(stat_sum "$T/h2" remote_requests 4) requests, $(stat_sum "$T/h2" remote_bytes_fetched 4) bytes fetched (first mount: $first), $(stat_of "$T/h2" bytes_inflated) bytes inflated"
	check "second mount: still one request per layer after reading every file" eq "$(stat_sum "$T/h2" remote_requests 4)" 4
	check "second mount: no byte of body fetched" eq "$(stat_sum "$T/h2" remote_bytes_fetched 4)" 0
	small=$("$PY" -c 'import sys, zipfile
print(sum(i.file_size for z in sys.argv[1:] for i in zipfile.ZipFile(z).infolist()
	if i.compress_type != 0 and i.file_size < 262144))' "$L/$A" "$L/$B" "$L/$C" "$LFS_DATA/many.zip")
	check "second mount: only files under cache_dir_min inflated, from the chunks on disk" \
		bash -c '[[ $1 -gt 0 && $1 -le $2 ]] || { echo "$1 bytes inflated, small files $2"; exit 1; }' \
		_ "$(stat_of "$T/h2" bytes_inflated)" "$small"
	lfs_umount "$T/h2"
fi
if check "host cache, third mount (cache_dir_min=0)" lfs_mount -o "cache_dir=$CD,cache_dir_min=0,$S3O" "$T/second.list" "$T/h3"; then
	check "third mount: the same tree and bytes" same_manifest "$T/ref4" "$T/h3"
	check "third mount: no byte of body fetched" eq "$(stat_sum "$T/h3" remote_bytes_fetched 4)" 0
	check "third mount: nothing inflated (the disk tier's blocks)" eq "$(stat_of "$T/h3" bytes_inflated)" 0
	lfs_umount "$T/h3"
fi
check "cache stats counts the remote objects" \
	bash -c '"$1" cache stats -o cache_dir="$2" | grep -q "remote objects     4"' _ "$LAYERFS" "$CD"
check "cache verify: clean" \
	bash -c 'out=$("$1" cache verify -o cache_dir="$2") && [[ $out == *", 0 bad"* ]] || { echo "$out"; exit 1; }' _ "$LAYERFS" "$CD"

# --- an object replaced under the mount --------------------------------------
cp "$L/$A" "$LFS_DATA/replace.zip"
printf '%s\n' "$LFS_PROXY/_f/lat=1,tag=rp/replace.zip" >"$T/replace.list"
lfs_ref "$T/ref_a" "$L/$A"
if check "replaced object: mounted" lfs_fg_mount "$T/replace.log" -o remote_cache_size=1M "$T/replace.list" "$T/rp"; then
	cmp "$T/rp/big/mid6.bin" "$T/ref_a/big/mid6.bin"
	python3 - "$LFS_DATA/replace.zip" <<'EOF'
import os, sys, zipfile
# another zip of the same members, bytes changed, put in place by rename
src = sys.argv[1]
tmp = src + ".new"
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zout:
    for info in zin.infolist():
        data = zin.read(info)
        zout.writestr(info, bytes(b ^ 0x5a for b in data) if data else data)
os.utime(tmp, (1, 1))
os.replace(tmp, src)
EOF
	check "replaced object: what was read before is still served, the same" \
		cmp "$T/rp/big/mid6.bin" "$T/ref_a/big/mid6.bin"
	bad=0 eio=0
	for f in $(cd "$T/ref_a" && find . -type f -size +100k | sort); do
		cmp -s "$T/rp/$f" "$T/ref_a/$f" 2>/dev/null && continue
		out=$(cat "$T/rp/$f" 2>&1 >/dev/null)
		[[ $out == *"Input/output error"* ]] || { echo "$f: neither right nor EIO: $out"; bad=1; }
		eio=$((eio + 1))
	done
	check "replaced object: every other file is right or EIO, never mixed" eq "$bad" 0
	check "replaced object: the files not read before fail (EIO)" eq "$eio" 2
	check "replaced object: the source is stale" eq "$(stat_of "$T/rp" layer.0.remote_stale)" 1
	check "replaced object: one log line for the layer" \
		bash -c '[[ $(grep -c "changed after it was mounted" "$1") -eq 1 ]] || { cat "$1"; exit 1; }' _ "$T/replace.log"
	lfs_umount "$T/rp"
fi

# --- the network down: what is cached is still served ------------------------
# A proxy of this test's own before nginx, stopped by its PID.
python3 "$LFS_IT_DIR/../remote/faultproxy.py" --upstream "${LFS_HTTP#http://}" --port-file "$T/down.port" &
down_pid=$!
for _ in $(seq 100); do [[ -s $T/down.port ]] && break; sleep 0.05; done
DP=http://127.0.0.1:$(cat "$T/down.port")
printf '%s\n' "$DP/$A" "$DP/$B" >"$T/down.list"
lfs_ref "$T/ref_ab" "$L/$A" "$L/$B"
lfs_daemon_dir "$T/cache_down"
if check "network down: mounted through a proxy" \
	lfs_mount -o cache_dir="$T/cache_down",remote_timeout=2 "$T/down.list" "$T/down"; then
	cat "$T/down/big/mid6.bin" "$T/down/big/mid6_stored.bin" >/dev/null
	find "$T/down/deep" "$T/down/lib" -type f -exec cat {} + >/dev/null 2>&1
	settle "$T/down"
	kill "$down_pid"
	wait "$down_pid" 2>/dev/null
	check "network down: cached files still served from memory" \
		bash -c 'cmp "$1/big/mid6.bin" "$2/big/mid6.bin" && diff -r "$1/deep" "$2/deep"' _ "$T/down" "$T/ref_ab"
	drop_all "$T/down"
	check "network down: and from the disk once memory is dropped" \
		bash -c 'cmp "$1/big/mid6.bin" "$2/big/mid6.bin" && cmp "$1/big/mid6_stored.bin" "$2/big/mid6_stored.bin" && diff -r "$1/deep" "$2/deep" && diff -r "$1/lib" "$2/lib"' _ "$T/down" "$T/ref_ab"
	check "network down: a file never read fails with EIO" \
		bash -c 'out=$(cat "$1/big/big40.bin" 2>&1 >/dev/null); [[ $out == *"Input/output error"* ]] || { echo "$out"; exit 1; }' _ "$T/down"
	check "network down: the failures are counted as connection errors" \
		test "$(stat_of "$T/down" layer.0.remote_errors_connect)" -gt 0
	lfs_umount "$T/down"
fi
kill "$down_pid" 2>/dev/null

lfs_finish
