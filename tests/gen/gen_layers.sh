#!/usr/bin/env bash
# Generates every test layer into OUTDIR (which must exist or be creatable).
#
#   tests/gen/gen_layers.sh OUTDIR
#
# Produces OUTDIR/src/... (the source trees) and OUTDIR/layers/*.zip:
#
#   infozip.zip         Info-ZIP `zip -ry` (deflate, symlinks kept with -y)
#   infozip_stored.zip  Info-ZIP `zip -0 -ry` (stored)
#   infozip_stream.zip  `zip -r - . | cat` (output is a pipe: data descriptors)
#   infozip_stdin.zip   `cat file | zip - - | cat` (input and output pipes:
#                       data descriptor, ZIP64 local extra, entry named "-")
#   bsdtar.zip          `bsdtar --format zip -cf` ("./" prefixed names, data
#                       descriptors on deflated members)
#   7z.zip              `7z a -tzip`
#   jar.zip             `jar cf` (no Unix attributes, symlinks followed)
#   prefixed.zip        junk + infozip.zip (offsets not adjusted)
#   prefixed_adj.zip    the same after `zip -A` (offsets adjusted)
#   big.zip             Info-ZIP, one 40 MiB semi-compressible file + copies
#   stack1.zip          Info-ZIP   } override stack, lowest first
#   stack2.zip          python     }
#   stack3.zip          bsdtar     }
#   runtime.zip         Info-ZIP: python/ package, nodejs/node_modules/ module,
#                       bin/ script, lib/ shared object (when cc exists)
#   + the python-made layers documented in pyzips.py
#
# The same input gives the same trees on every run: contents are generated
# from fixed seeds and every source path gets a fixed mtime.
set -euo pipefail

if [[ $# -ne 1 ]]; then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi
GEN_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=$1
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SRC=$OUT/src
LAYERS=$OUT/layers
rm -rf "$SRC" "$LAYERS"
mkdir -p "$SRC" "$LAYERS"
umask 022
export TZ=UTC LC_ALL=C.UTF-8
PY=${PYTHON:-python3}
STAMP='2024-01-02 03:04:05 UTC'

semi() { "$PY" "$GEN_DIR/semidata.py" "$@"; }
fix_times() { find "$1" -exec touch -h -d "$STAMP" {} +; }

# ---------------------------------------------------------------- common tree
# Used by every producer, so each producer's layer can be compared with the
# same expectations.
C=$SRC/common
mkdir -p "$C"/{bin,etc,lib/data,empty_dir,deep/a/b/c/d/e,links,"dir with spaces"}
printf 'common tree README\n' >"$C/README.txt"
: >"$C/empty.txt"
printf '#!/bin/sh\necho run\n' >"$C/bin/run.sh"; chmod 0755 "$C/bin/run.sh"
printf 'suid\n' >"$C/bin/suid"; chmod 4755 "$C/bin/suid"
printf 'secret\n' >"$C/etc/secret.conf"; chmod 0600 "$C/etc/secret.conf"
printf 'shared\n' >"$C/etc/shared.conf"; chmod 0666 "$C/etc/shared.conf"
printf 'group\n' >"$C/etc/group.conf"; chmod 0640 "$C/etc/group.conf"
semi $((3 * 1024 * 1024 + 12345)) 1 "$C/lib/data/mid.bin"
"$PY" -c 'import random,sys; sys.stdout.buffer.write(random.Random(2).randbytes(70000))' \
	>"$C/lib/data/small.bin"
printf 'leaf\n' >"$C/deep/a/b/c/d/e/leaf.txt"
printf 'spaces\n' >"$C/dir with spaces/file with spaces.txt"
printf 'unicode\n' >"$C/ünïcödé.txt"
chmod 0700 "$C/empty_dir"
chmod 0750 "$C/deep"
# symlinks: only in the producers that keep them (zip -y, bsdtar, 7z)
ln -s ../README.txt "$C/links/rel"
ln -s ../deep/a "$C/links/dir"
ln -s /etc/hostname "$C/links/abs"
ln -s nope/missing "$C/links/dangling"
fix_times "$C"

# Same tree without symlinks, for producers that follow them.
CN=$SRC/common_nolinks
cp -a "$C" "$CN"
rm -rf "$CN/links"
fix_times "$CN"

# ---------------------------------------------------------------- producers
(cd "$C" && zip -q -r -y "$LAYERS/infozip.zip" .)
(cd "$C" && zip -q -r -y -X -0 "$LAYERS/infozip_stored.zip" .)
# Output to a pipe: zip cannot seek back, so it writes data descriptors.
(cd "$CN" && zip -q -r - .) | cat >"$LAYERS/infozip_stream.zip"
# Input and output pipes: one member named "-", size unknown in advance.
semi $((3 * 1024 * 1024 + 777)) 3 "$SRC/stdin.bin"
cat "$SRC/stdin.bin" | zip -q - - | cat >"$LAYERS/infozip_stdin.zip"
(cd "$C" && bsdtar --format zip -cf "$LAYERS/bsdtar.zip" .)
(cd "$C" && 7z a -tzip -mx=5 "$LAYERS/7z.zip" . >/dev/null)
(cd "$CN" && jar cf "$LAYERS/jar.zip" .)
# 5000 bytes of junk in front (as a self-extractor stub): offsets in the zip
# not adjusted (prefixed.zip) and adjusted with `zip -A` (prefixed_adj.zip)
semi 5000 9 "$SRC/junk.bin"
cat "$SRC/junk.bin" "$LAYERS/infozip.zip" >"$LAYERS/prefixed.zip"
cp "$LAYERS/prefixed.zip" "$LAYERS/prefixed_adj.zip"
zip -q -A "$LAYERS/prefixed_adj.zip"

# ---------------------------------------------------------------- big
B=$SRC/big
mkdir -p "$B/big"
semi $((40 * 1024 * 1024 + 4321)) 4 "$B/big/big40.bin"
semi $((6 * 1024 * 1024 + 99)) 5 "$B/big/mid6.bin"
fix_times "$B"
(cd "$B" && zip -q -r -X "$LAYERS/big.zip" big)
# a stored copy of mid6 under another name, so stored random reads are tested
(cd "$B" && cp big/mid6.bin big/mid6_stored.bin && touch -d "$STAMP" big/mid6_stored.bin &&
	zip -q -X -0 "$LAYERS/big.zip" big/mid6_stored.bin && rm big/mid6_stored.bin)

# ---------------------------------------------------------------- stack 1, 3
S1=$SRC/stack1
mkdir -p "$S1"/{common,bin,conf,dirmode1,dirmode2,dirmode3,shared,lib/data}
printf 'from layer 1\n' >"$S1/common/file.txt"
printf 'only in layer 1\n' >"$S1/common/only1.txt"
printf '#!/bin/sh\necho tool v1\n' >"$S1/bin/tool"; chmod 0755 "$S1/bin/tool"
printf 'version = 1\n' >"$S1/conf/app.conf"
printf 'a\n' >"$S1/dirmode1/a.txt"
printf 'a\n' >"$S1/dirmode2/a.txt"
printf 'a\n' >"$S1/dirmode3/a.txt"
chmod 0700 "$S1/dirmode1" "$S1/dirmode2"
chmod 0711 "$S1/dirmode3"
ln -s common/only1.txt "$S1/lnk"
printf 'plain in layer 1\n' >"$S1/plain.txt"
printf 'x1\n' >"$S1/shared/x1.txt"
semi 500000 20 "$S1/lib/data/mid.bin"
fix_times "$S1"
(cd "$S1" && zip -q -r -y "$LAYERS/stack1.zip" .)

S3=$SRC/stack3
mkdir -p "$S3"/{common,conf,dirmode3,shared,new3/deep}
printf 'from layer 3\n' >"$S3/common/file.txt"
printf 'only in layer 3\n' >"$S3/common/only3.txt"
printf 'version = 3\n' >"$S3/conf/app.conf"; chmod 0444 "$S3/conf/app.conf"
printf 'c\n' >"$S3/dirmode3/c.txt"
chmod 0755 "$S3/dirmode3"
ln -s common/file.txt "$S3/plain.txt"
printf 'x3\n' >"$S3/shared/x3.txt"
printf 'deep\n' >"$S3/new3/deep/file"
mkdir -p "$S3/later_explicit"
printf 'f3\n' >"$S3/later_explicit/f3.txt"
chmod 0700 "$S3/later_explicit"
fix_times "$S3"
(cd "$S3" && bsdtar --format zip -cf "$LAYERS/stack3.zip" .)

# ---------------------------------------------------------------- runtime
R=$SRC/runtime
mkdir -p "$R/python/lfspkg/sub" "$R/nodejs/node_modules/lfsmod/lib" "$R/bin" "$R/lib"
cat >"$R/python/lfspkg/__init__.py" <<'EOF'
from .sub.helper import twice

MAGIC = "layerfs-python-ok"


def answer():
    return twice(21)
EOF
: >"$R/python/lfspkg/sub/__init__.py"
cat >"$R/python/lfspkg/sub/helper.py" <<'EOF'
def twice(x):
    return 2 * x
EOF
cat >"$R/nodejs/node_modules/lfsmod/package.json" <<'EOF'
{"name": "lfsmod", "version": "1.0.0", "main": "lib/main.js"}
EOF
cat >"$R/nodejs/node_modules/lfsmod/lib/main.js" <<'EOF'
const util = require('./util');
module.exports = { magic: 'layerfs-node-ok', answer: () => util.twice(21) };
EOF
cat >"$R/nodejs/node_modules/lfsmod/lib/util.js" <<'EOF'
module.exports = { twice: (x) => 2 * x };
EOF
printf '#!/bin/sh\necho "layerfs-bin-ok $*"\n' >"$R/bin/lfs-hello"
chmod 0755 "$R/bin/lfs-hello"
if command -v cc >/dev/null 2>&1; then
	printf 'int lfs_answer(void) { return 42; }\n' >"$SRC/lfs_answer.c"
	cc -shared -fPIC -O2 -o "$R/lib/liblfsanswer.so" "$SRC/lfs_answer.c"
	chmod 0755 "$R/lib/liblfsanswer.so"
fi
fix_times "$R"
(cd "$R" && zip -q -r -y "$LAYERS/runtime.zip" .)

# ---------------------------------------------------------------- python-made
"$PY" "$GEN_DIR/pyzips.py" "$LAYERS"

# ---------------------------------------------------------------- bad inputs
BAD=$OUT/bad
mkdir -p "$BAD"
: >"$BAD/empty.zip"
printf 'this is not a zip file\n%.0s' {1..20} >"$BAD/notazip.zip"
sz=$(stat -c %s "$LAYERS/stack1.zip")
head -c $((sz - 40)) "$LAYERS/stack1.zip" >"$BAD/truncated.zip"
# cut in the middle: no end record, no central directory
head -c $((sz / 2)) "$LAYERS/stack1.zip" >"$BAD/truncated_half.zip"

echo "layers generated in $LAYERS"
