#!/usr/bin/env bash
# Builds real-package layer zips for the cold-start experiments (docs/coldstart.md).
#
#   tools/build-layers.sh OUTDIR [python] [node] [small]   (default: all three)
#
# python  OUTDIR/python-datascience.zip: numpy, scipy, pandas and the Python
#         packages they need, from Debian's python3-* packages (apt-get download,
#         never installed), unpacked with dpkg-deb -x.  dist-packages becomes
#         python/, the shared libraries they link to and the base system may
#         lack (reference BLAS/LAPACK, gfortran, quadmath, lbfgsb) go to lib/.
#         Byte code is compiled in, as `pip install` would.  The layer is meant
#         for Debian's own /usr/bin/python3 (the modules are built for it):
#           PYTHONPATH=/opt/python LD_LIBRARY_PATH=/opt/lib /usr/bin/python3
# node    OUTDIR/nodejs-aws-sdk.zip: aws-sdk v2, AWS SDK v3 S3/DynamoDB clients,
#         lodash, moment, uuid from the npm registry, under nodejs/node_modules/.
#           NODE_PATH=/opt/nodejs/node_modules node
# small   OUTDIR/small-files.zip: 40,000 small text files (64 bytes to 8 KiB,
#         about 1.6 KiB on average) in 2,000 package directories of 20, under
#         share/, made from a fixed seed (the same bytes every time): the
#         shape of a big node_modules or a site-packages of many small
#         modules, for `find` and read-every-file benchmarks.
#
# Each layer is zipped as people do (cd dir && zip -r -q -y ../layer.zip .),
# then unzipped into a scratch directory and checked to load from there.
# Downloads are kept in LAYERFS_COLDSTART_CACHE (default
# ~/.cache/layerfs-coldstart), so a rebuild needs no network.
# OUTDIR/NAME.manifest records what went into each layer.
set -euo pipefail
umask 022

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=ensure-debs.sh
. "$HERE/ensure-debs.sh"

usage() {
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
}

[ $# -ge 1 ] || usage
case "$1" in -h | --help) usage ;; esac
OUT=$1
shift
WHAT=("$@")
[ ${#WHAT[@]} -gt 0 ] || WHAT=(python node small)
for w in "${WHAT[@]}"; do
	case "$w" in python | node | small) ;; *) echo "build-layers: unknown layer '$w'" >&2; usage ;; esac
done

CACHE=${LAYERFS_COLDSTART_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/layerfs-coldstart}
PY=/usr/bin/python3 # Debian's python: the .so modules are built for it

# Python layer: Debian packages.  Depends of numpy/scipy/pandas (pythran is a
# build-time tool scipy depends on, not imported at run time: left out), plus
# pandas' small accelerators bottleneck/numexpr (which needs packaging).
PY_DEBS=(python3-numpy python3-scipy python3-pandas python3-pandas-lib
	python3-dateutil python3-tz python3-six python3-decorator
	python3-bottleneck python3-numexpr python3-packaging
	libblas3 liblapack3 libgfortran5 libquadmath0 liblbfgsb0)

# Node layer: exact versions, so every rebuild is the same layer.
NPM_PKGS=(aws-sdk@2.1693.0 @aws-sdk/client-s3@3.1173.0
	@aws-sdk/client-dynamodb@3.1164.0 @aws-sdk/lib-dynamodb@3.1162.0
	lodash@4.18.1 moment@2.31.0 uuid@9.0.1)

mkdir -p "$OUT" "$CACHE/debs" "$CACHE/npm"
OUT=$(cd "$OUT" && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/build-layers.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

need_tools() {
	local debs=(zip unzip)
	for w in "${WHAT[@]}"; do
		case "$w" in
		python) debs+=(python3) ;;
		node) command -v npm >/dev/null && command -v node >/dev/null || debs+=(nodejs npm) ;;
		small) debs+=(python3) ;;
		esac
	done
	ensure_debs "${debs[@]}"
}

# zip_layer STAGEDIR ZIP: zips STAGEDIR's contents the usual way.
zip_layer() {
	local stage=$1 zip=$2
	rm -f "$stage.zip" "$zip"
	(cd "$stage" && zip -r -q -y ../"$(basename "$stage")".zip .)
	mv "$stage.zip" "$zip"
}

# extract_for_check ZIP: unzips into a fresh scratch dir, prints its path.
extract_for_check() {
	local dir
	dir=$(mktemp -d "$TMP/check.XXXXXX")
	unzip -q "$1" -d "$dir"
	echo "$dir"
}

report() {
	local zip=$1 entries unc
	# zipinfo -t: "N files, U bytes uncompressed, C bytes compressed:  R%"
	read -r entries _ unc _ < <(unzip -Zt "$zip")
	awk -v n="$(basename "$zip")" -v z="$(stat -c %s "$zip")" -v u="$unc" -v e="$entries" 'BEGIN {
		printf "%s: zip %d bytes (%.1f MiB), uncompressed %d bytes (%.1f MiB), %d entries\n",
			n, z, z / 1048576, u, u / 1048576, e }'
}

fetch_debs() {
	local p have missing=()
	for p in "${PY_DEBS[@]}"; do
		have=$(compgen -G "$CACHE/debs/${p}_*.deb" || true)
		[ -n "$have" ] || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		apt_update_once
		echo "build-layers: apt-get download ${missing[*]}" >&2
		(cd "$CACHE/debs" && apt-get -q -o APT::Sandbox::User=root download "${missing[@]}" >/dev/null)
	fi
}

build_python() {
	local name=python-datascience stage root p deb ma
	echo "build-layers: building $name" >&2
	fetch_debs
	root=$TMP/debroot
	stage=$TMP/$name
	mkdir -p "$root" "$stage/python" "$stage/lib"
	: >"$TMP/$name.manifest"
	for p in "${PY_DEBS[@]}"; do
		# highest cached version of that package
		deb=$(printf "%s\n" "$CACHE/debs/${p}"_*.deb | sort -V | tail -n1)
		dpkg-deb -x "$deb" "$root"
		echo "$(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version) $(basename "$deb")" >>"$TMP/$name.manifest"
	done
	cp -a "$root/usr/lib/python3/dist-packages/." "$stage/python/"
	for ma in "$root"/usr/lib/*-linux-gnu; do
		# flattened: Debian keeps libblas/liblapack in blas/ and lapack/
		# behind alternatives symlinks, a layer's lib/ is one directory
		find "$ma" \( -type f -o -type l \) -name 'lib*.so*' -exec cp -a -t "$stage/lib" {} +
	done
	if [ -n "$(find "$stage" -xtype l)" ]; then
		echo "build-layers: dangling symlinks in $name:" >&2
		find "$stage" -xtype l -printf '  %P -> %l\n' >&2
		exit 1
	fi
	# Byte code as pip would leave it (timestamp-checked .pyc next to each
	# .py), with tracebacks naming /opt/python like on the platform.
	"$PY" -m compileall -q -j 0 -s "$stage" -p /opt "$stage/python" >"$TMP/compileall.log" 2>&1 ||
		{ echo "build-layers: compileall reported errors (kept going):" >&2; tail -n 5 "$TMP/compileall.log" >&2; }
	zip_layer "$stage" "$OUT/$name.zip"
	mv "$TMP/$name.manifest" "$OUT/$name.manifest"
	rm -rf "$root" "$stage"

	echo "build-layers: checking $name loads from an extracted copy" >&2
	local dir
	dir=$(extract_for_check "$OUT/$name.zip")
	# No numpy & co. are installed system-wide by this script; the asserts
	# make sure they, and BLAS/LAPACK, really come from the layer.
	env -u PYTHONHOME PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$dir/python" LD_LIBRARY_PATH="$dir/lib" \
		"$PY" -s - "$dir" <<'EOF'
import importlib.util, os, sys
root = sys.argv[1]
import numpy, scipy, scipy.stats, scipy.optimize, pandas
for m in (numpy, scipy, pandas):
    assert m.__file__.startswith(root + "/python/"), f"{m.__name__} from {m.__file__}, not the layer"
libs = {l.split()[-1] for l in open("/proc/self/maps") if ".so" in l}
for want in ("libblas.so", "liblapack.so", "libgfortran.so"):
    got = [l for l in libs if os.path.basename(l).startswith(want)]
    assert got and all(l.startswith(root + "/lib/") for l in got), f"{want}: {got}"
a = numpy.array([[3.0, 1.0], [1.0, 2.0]])
assert numpy.allclose(a @ numpy.linalg.solve(a, [9.0, 8.0]), [9.0, 8.0])
df = pandas.DataFrame({"x": [1, 2, 3]})
assert df.x.sum() == 6 and abs(scipy.stats.norm.cdf(0) - 0.5) < 1e-12
# every .py must have a valid timestamp .pyc after the zip round trip
stale = 0
for d, _, files in os.walk(root + "/python"):
    for f in files:
        if not f.endswith(".py"):
            continue
        src = os.path.join(d, f)
        pyc = importlib.util.cache_from_source(src)
        try:
            head = open(pyc, "rb").read(16)
        except FileNotFoundError:
            stale += 1
            continue
        st = os.stat(src)
        if (int.from_bytes(head[8:12], "little") != int(st.st_mtime) & 0xFFFFFFFF
                or int.from_bytes(head[12:16], "little") != st.st_size & 0xFFFFFFFF):
            stale += 1
print(f"  numpy {numpy.__version__}, scipy {scipy.__version__}, pandas {pandas.__version__} "
      f"load from the layer (python {sys.version.split()[0]}); .py without a valid .pyc: {stale}")
EOF
	rm -rf "$dir"
	report "$OUT/$name.zip"
}

build_node() {
	local name=nodejs-aws-sdk stage work
	echo "build-layers: building $name" >&2
	work=$TMP/npm
	stage=$TMP/$name
	mkdir -p "$work" "$stage/nodejs"
	printf '{\n  "name": "%s",\n  "private": true\n}\n' "$name" >"$work/package.json"
	# --prefer-offline: reruns come from the npm cache in $CACHE
	(cd "$work" && npm install --no-audit --no-fund --omit=dev --ignore-scripts \
		--prefer-offline --cache "$CACHE/npm" --loglevel=error "${NPM_PKGS[@]}" >/dev/null)
	mv "$work/package.json" "$work/package-lock.json" "$work/node_modules" "$stage/nodejs/"
	zip_layer "$stage" "$OUT/$name.zip"
	{
		echo "node $(node --version), npm $(npm --version)"
		(cd "$stage/nodejs" && npm ls --omit=dev --all 2>/dev/null | sed "1s| .*||") || true
	} >"$OUT/$name.manifest"
	rm -rf "$stage" "$work"

	echo "build-layers: checking $name loads from an extracted copy" >&2
	local dir
	dir=$(extract_for_check "$OUT/$name.zip")
	(cd / && NODE_PATH="$dir/nodejs/node_modules" NODE_NO_WARNINGS=1 \
		AWS_SDK_JS_SUPPRESS_MAINTENANCE_MODE_MESSAGE=1 node -e '
const root = process.argv[1];
for (const m of ["aws-sdk", "@aws-sdk/client-s3", "@aws-sdk/lib-dynamodb", "lodash", "moment", "uuid"]) {
  const p = require.resolve(m);
  if (!p.startsWith(root + "/nodejs/node_modules/")) throw new Error(m + " from " + p);
}
const AWS = require("aws-sdk"); new AWS.S3(); new AWS.DynamoDB.DocumentClient();
const { S3Client } = require("@aws-sdk/client-s3"); new S3Client({ region: "us-east-1" });
console.log("  aws-sdk " + AWS.VERSION + ", lodash " + require("lodash").VERSION +
  " load from the layer (node " + process.version + ")");
' "$dir")
	rm -rf "$dir"
	report "$OUT/$name.zip"
}

build_small() {
	local name=small-files stage
	echo "build-layers: building $name" >&2
	stage=$TMP/$name
	mkdir -p "$stage"
	python3 - "$stage" <<'EOF'
import os, random, sys
root = sys.argv[1]
rng = random.Random(20261202)
words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10)))
         for _ in range(4000)]
for p in range(2000):
    d = os.path.join(root, "share", f"pkg{p // 100:02d}", f"module{p:04d}")
    os.makedirs(d)
    for f in range(20):
        size = min(8192, max(64, int(rng.lognormvariate(7.0, 0.9))))
        text, n = [], 0
        while n < size:
            w = rng.choice(words)
            text.append(w)
            n += len(w) + 1
        path = os.path.join(d, f"file{f:02d}" + (".js", ".py", ".json", ".txt")[f % 4])
        with open(path, "w") as out:
            out.write(" ".join(text)[:size] + "\n")
        os.utime(path, (1764633600, 1764633600))
EOF
	zip_layer "$stage" "$OUT/$name.zip"
	echo "40000 generated files (tools/build-layers.sh small, seed 20261202)" >"$OUT/$name.manifest"
	rm -rf "$stage"
	[ "$(unzip -Z1 "$OUT/$name.zip" | grep -c '/file..\.')" = 40000 ] ||
		{ echo "build-layers: $name does not hold 40000 files" >&2; exit 1; }
	report "$OUT/$name.zip"
}

need_tools
for w in "${WHAT[@]}"; do
	"build_$w"
done
