#!/usr/bin/env bash
# Remote sources against real servers on loopback, all started here and
# stopped by PID on exit (the harness, tests/lib.sh, also on ^C):
#   nginx        the test layers over http and https (a certificate made
#                here with openssl), with range requests
#   faultproxy   between the source and nginx: latency, 5xx, 429, resets,
#                short bodies, ignored and wrong ranges, stalls
#   s3server     an S3 endpoint that checks every SigV4 signature with
#                botocore, in front of the same layers
# then tests/remote/test_source_http.c (cmocka) reads through them.
#   TEST_SOURCE_HTTP=build/tests/test_source_http bash tests/remote/run.sh [cmocka filter]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"
root=$LFS_REPO
test_bin=${TEST_SOURCE_HTTP:-}
[ -n "$test_bin" ] || [ -n "${LFS_REMOTE_CMD:-}" ] || { echo "run.sh: set TEST_SOURCE_HTTP" >&2; exit 2; }

. "$root/tools/ensure-debs.sh"
ensure_debs nginx-light python3-botocore openssl
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
# Debian's python3, whose botocore is the one installed above.
py=/usr/bin/python3

lfs_init --no-binary
lfs_tmpdir work /tmp/lfs-remote
chmod 755 "$work"	# nginx's workers run as another user

# A free loopback port (nginx cannot report the one it was given).
free_port() {
	"$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_file() {
	local i
	for i in $(seq 1 100); do
		[ -s "$1" ] && return 0
		sleep 0.05
	done
	echo "remote-test: $2 did not start" >&2
	return 1
}

wait_port() {
	local i
	for i in $(seq 1 100); do
		"$py" -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null &&
			return 0
		sleep 0.05
	done
	echo "remote-test: $2 does not listen on $1" >&2
	return 1
}

# --- the layers --------------------------------------------------------
data=$work/data
mkdir -p "$data/layers" "$work/nginx"
"$py" - "$data" <<'EOF'
import os, random, sys, zipfile
d = sys.argv[1]
rnd = random.Random(13)
def blob(n):
    # half text-like, half noise: deflate has work, stored members differ
    words = b"import numpy as np\ndef f(x):\n    return x * 2\n"
    out = bytearray()
    while len(out) < n:
        out += words if rnd.random() < 0.5 else rnd.randbytes(64)
    return bytes(out[:n])
with zipfile.ZipFile(f"{d}/small.zip", "w") as z:
    for i, n in enumerate([0, 1, 100, 5000, 70000, 300000, 1 << 20, 3 << 20]):
        method = zipfile.ZIP_STORED if i % 2 else zipfile.ZIP_DEFLATED
        z.writestr(zipfile.ZipInfo(f"python/pkg/m{i}.bin", (2024, 1, 2, 3, 4, 6)), blob(n), method)
with zipfile.ZipFile(f"{d}/many.zip", "w") as z:
    for i in range(3000):
        z.writestr(f"nodejs/node_modules/pkg{i // 100}/file{i}.js", blob(200), zipfile.ZIP_DEFLATED)
with zipfile.ZipFile(f"{d}/zip64.zip", "w") as z:
    for i in range(66000):
        z.writestr(f"f/{i}", b"x")
with zipfile.ZipFile(f"{d}/other.zip", "w") as z:
    z.writestr("python/other.txt", blob(2 << 20), zipfile.ZIP_STORED)
with open(f"{d}/big.bin", "wb") as f:
    f.write(rnd.randbytes(24 << 20))
EOF
for i in 1 2 3 4 5; do cp "$data/small.zip" "$data/layer$i.zip"; done
cp "$data/small.zip" "$data/replace.zip"
: >"$data/empty.zip"
cp "$data"/small.zip "$data"/many.zip "$data"/replace.zip "$data/layers/"
mkdir "$data/layers/odd dir"
cp "$data/small.zip" "$data/layers/odd dir/a+b=c&d.zip"

# --- nginx, http and https ----------------------------------------------
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
	-addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
	-keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
http_port=$(free_port)
https_port=$(free_port)
ng=$work/nginx
cat >"$ng/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $ng/nginx.pid;
error_log $ng/error.log;
events { worker_connections 512; }
http {
	log_format conn '\$connection \$status "\$request" \$http_range';
	access_log $ng/access.log conn;
	client_body_temp_path $ng/body;
	proxy_temp_path $ng/proxy;
	fastcgi_temp_path $ng/fastcgi;
	uwsgi_temp_path $ng/uwsgi;
	scgi_temp_path $ng/scgi;
	default_type application/octet-stream;
	keepalive_requests 100000;
	keepalive_timeout 60s;
	server {
		listen 127.0.0.1:$http_port;
		root $data;
		location = /moved.zip { return 302 /small.zip; }
		location = /loop.zip { return 302 /loop.zip; }
	}
	server {
		listen 127.0.0.1:$https_port ssl;
		ssl_certificate $work/cert.pem;
		ssl_certificate_key $work/key.pem;
		root $data;
		location = /to-http.zip { return 302 http://127.0.0.1:$http_port/small.zip; }
	}
}
EOF
"$nginx_bin" -p "$ng" -c "$ng/nginx.conf" -e "$ng/error.log" &
lfs_register_pid $!
wait_port "$http_port" nginx
wait_port "$https_port" "nginx (https)"

# --- the fault proxy and the S3 endpoint -------------------------------
"$py" "$here/faultproxy.py" --upstream "127.0.0.1:$http_port" --port-file "$work/proxy.port" &
lfs_register_pid $!
"$py" "$here/s3server.py" --root "$data" --port-file "$work/s3.port" --region eu-west-3 \
	--domain s3.localhost --key AKIDTEST:secrettest \
	--token ASIATEMP:secrettemp:goodtoken --expired-token oldtoken &
lfs_register_pid $!
wait_file "$work/proxy.port" faultproxy
wait_file "$work/s3.port" s3server
proxy_port=$(cat "$work/proxy.port")
s3_port=$(cat "$work/s3.port")

# The test's own credentials file, so that nothing of the machine's is used.
mkdir -p "$work/aws"
cat >"$work/aws/credentials" <<EOF
[default]
aws_access_key_id = AKIDTEST
aws_secret_access_key = wrong
[layers]
aws_access_key_id = AKIDTEST
aws_secret_access_key = secrettest
EOF

export LFS_DATA="$data" LFS_HTTP="http://127.0.0.1:$http_port" \
	LFS_HTTPS="https://127.0.0.1:$https_port" LFS_HTTPS_NAME="https://localhost:$https_port" \
	LFS_CA="$work/cert.pem" LFS_PROXY="http://127.0.0.1:$proxy_port" \
	LFS_S3="http://127.0.0.1:$s3_port" LFS_S3_VHOST="http://s3.localhost:$s3_port" \
	LFS_S3_REGION=eu-west-3 LFS_AWS_DIR="$work/aws" LFS_NGINX_LOG="$ng/access.log"
# Nothing of the caller's AWS setup may leak into the tests.
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE AWS_REGION \
	AWS_DEFAULT_REGION AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3 AWS_SHARED_CREDENTIALS_FILE
export HOME="$work"
# Loopback only: no proxy of the caller's in between.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY
# LFS_REMOTE_CMD: run that instead of the tests, with the servers up
# (tests/remote/bench.sh).
if [ -n "${LFS_REMOTE_CMD:-}" ]; then
	bash -c "$LFS_REMOTE_CMD"
	exit
fi
if [ $# -gt 0 ]; then
	export CMOCKA_TEST_FILTER=$1	# the test hands it to cmocka_set_test_filter
fi
"$test_bin"
