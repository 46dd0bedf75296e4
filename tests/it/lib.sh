# Helpers for the layerfs integration tests, over the shared harness
# (tests/lib.sh: check, lfs_finish, lfs_tmpdir, lfs_mount, lfs_fg_mount,
# cleanup at exit).  Source it from a test file:
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   lfs_init [--no-binary]        # checks the binary, sets traps
#   check "name" cmd args...      # prints "ok name" or "FAIL name" + output
#   lfs_finish                    # prints "N passed, M failed", exits
#
# Environment (and tests/lib.sh's):
#   LFS_GEN_DIR    generated layers (tests/gen/gen_layers.sh output); made
#                  on demand in a temp dir when unset
#   LFS_IT_VERBOSE=1  print the output of passing checks too

LFS_IT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$LFS_IT_DIR/../lib.sh"
LFS_GEN=$LFS_REPO/tests/gen
LFS_WARN_NOT_ROOT=1
export TZ=UTC LC_ALL=C.UTF-8

# lfs_gen: makes sure generated layers exist; sets G (the gen dir) and L
# (its layers/ folder).
lfs_gen() {
	if [[ -n ${LFS_GEN_DIR:-} && -f $LFS_GEN_DIR/layers/stack1.zip ]]; then
		G=$LFS_GEN_DIR
	else
		lfs_tmpdir G
		lfs_log "generating layers in $G"
		bash "$LFS_GEN/gen_layers.sh" "$G" >/dev/null
		export LFS_GEN_DIR=$G
	fi
	L=$G/layers
}

# lfs_list FILE ZIP...: writes a layer list with absolute paths.
lfs_list() {
	local f=$1
	shift
	: >"$f"
	local z
	for z in "$@"; do
		printf '%s\n' "$z" >>"$f"
	done
}

# stat_of MNT KEY: one value of `layerfs stats MNT`.
stat_of() { "$LAYERFS" stats "$1" | awk -v k="$2" '$1 == k { print $2 }'; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
# flip_middle_byte FILE: one byte in the middle of FILE changed, in place
# (same size, same inode): a layer changed under its mount.
flip_middle_byte() {
	python3 - "$1" <<'EOF'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
size = os.fstat(fd).st_size
b = os.pread(fd, 1, size // 2)
os.pwrite(fd, bytes([b[0] ^ 0x5a]), size // 2)
os.close(fd)
EOF
}
# drop_all MNT: the daemon's blocks and the kernel's pages of the mount go.
drop_all() {
	"$LAYERFS" dropcache "$1"
	find "$1" -type f -exec "$PY" "$LFS_IT_DIR/../bench/readbench.py" evict {} + 2>/dev/null
}

# lfs_ref DEST ZIP...: the unzip -o reference extraction.
lfs_ref() {
	bash "$LFS_GEN/extract.sh" "$@"
}

lfs_manifest() {
	"$PY" "$LFS_GEN/manifest.py" "$@"
}

# same_manifest REF_DIR_OR_FILE MNT [FILTER]: compares manifests; shows the
# first differences.  A file argument is taken as a ready manifest.
same_manifest() {
	local a=$1 b=$2 ma mb
	ma=$(mktemp)
	mb=$(mktemp)
	if [[ -f $a ]]; then cp "$a" "$ma"; else lfs_manifest "$a" >"$ma" || {
		rm -f "$ma" "$mb"
		return 2
	}; fi
	if ! timeout -k 5 120 "$PY" "$LFS_GEN/manifest.py" -j 4 "$b" >"$mb"; then
		echo "manifest of $b failed"
		rm -f "$ma" "$mb"
		return 2
	fi
	local rc=0
	if [[ -n ${3:-} ]]; then
		grep -v -- "$3" "$ma" >"$ma.f" || true
		grep -v -- "$3" "$mb" >"$mb.f" || true
		mv "$ma.f" "$ma"
		mv "$mb.f" "$mb"
	fi
	if ! cmp -s "$ma" "$mb"; then
		echo "manifest differs (< expected, > mounted; $(wc -l <"$ma") vs $(wc -l <"$mb") lines):"
		diff "$ma" "$mb" | cut -c1-160 | head -n 30
		rc=1
	fi
	rm -f "$ma" "$mb"
	return $rc
}

# expect_manifest SPEC_FILE: a hand-written expectation to manifest lines.
lfs_expect() {
	"$PY" "$LFS_GEN/expect.py" "$@"
}

xattr_is() { # PATH EXPECTED
	local got
	got=$("$PY" -c 'import os,sys; sys.stdout.write(os.getxattr(sys.argv[1], "user.layerfs.layer").decode())' "$1") || return 1
	if [[ $got != "$2" ]]; then
		echo "xattr of $1: got '$got', expected '$2'"
		return 1
	fi
}

eq() { # GOT EXPECTED [WHAT]
	if [[ $1 != "$2" ]]; then
		echo "${3:-value}: got '$1', expected '$2'"
		return 1
	fi
}
