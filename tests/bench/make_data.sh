#!/usr/bin/env bash
# Builds the benchmark layers once into $1 (kept between runs):
#   big.zip   one 256 MiB deflated member of real machine contents
#   four.zip  four different 256 MiB deflated members (1 GiB)
#   many.zip  100,000 small entries
set -eu  # no pipefail: head ends the source stream early on purpose
out=$1
mkdir -p "$out"
cd "$out"
# Real contents: shared libraries, Python sources, docs, in a fixed order.
source_stream() {
	find /usr/lib/x86_64-linux-gnu /usr/lib/python3* /usr/share/doc /usr/share/perl* \
		-type f -size +0 2>/dev/null | LC_ALL=C sort | xargs -d '\n' cat 2>/dev/null
}
if [ ! -f big.zip ]; then
	echo "bench: building big.zip (256 MiB member)" >&2
	source_stream | head -c $((256 << 20)) > big.bin
	[ "$(stat -c %s big.bin)" = $((256 << 20)) ] || { echo "bench: not enough source data" >&2; exit 1; }
	rm -f big.zip && zip -q -6 big.zip big.bin
fi
if [ ! -f four.zip ]; then
	echo "bench: building four.zip (4 x 256 MiB members)" >&2
	mkdir -p four
	for i in 0 1 2 3; do
		# different content in each: a rotation of the stream
		source_stream | tail -c +$((i * (37 << 20) + 1)) | head -c $((256 << 20)) > four/m$i.bin
	done
	(cd four && zip -q -6 ../four.zip m0.bin m1.bin m2.bin m3.bin)
	rm -rf four
fi
if [ ! -f many.zip ]; then
	echo "bench: building many.zip (100,000 entries)" >&2
	python3 - <<'PY'
import zipfile
with zipfile.ZipFile("many.zip", "w", zipfile.ZIP_DEFLATED) as z:
    for i in range(100000):
        z.writestr(f"python/pkg{i % 500}/mod{i % 37}/f{i}.py", f"x = {i}\n")
PY
fi
