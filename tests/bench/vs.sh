#!/usr/bin/env bash
# make bench-vs [REV=HEAD~1]: make bench for this tree and for commit REV,
# one after the other in one run, and the two columns side by side.
# Needs root, like make bench.  REV is built from a temporary worktree of
# this repository (its own build folder); nothing of this tree is touched.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
rev=${REV:-HEAD~1}
new=${LAYERFS:-$top/build/layerfs}
work=$(mktemp -d /tmp/layerfs-bench-vs.XXXXXX)
cleanup() {
	git -C "$top" worktree remove --force "$work/tree" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
base=$(git -C "$top" rev-parse --short "$rev")
echo "bench-vs: building $rev ($base)" >&2
git -C "$top" worktree add --detach -q "$work/tree" "$base"
make -s -C "$work/tree" -j"$(nproc)" BUILD="$work/build" COMMIT="$base" "$work/build/layerfs" >&2
# The same bench script and data for both: only the binary differs.
for side in new old; do
	bin=$new
	[ $side = old ] && bin=$work/build/layerfs
	echo "bench-vs: make bench with $side ($("$bin" --version | head -n 1))" >&2
	LAYERFS=$bin bash "$here/run.sh" >"$work/$side.md"
done
python3 - "$work/new.md" "$work/old.md" "$base" <<'EOF'
import sys
def rows(path):
    out = {}
    for line in open(path):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0][:1].isdigit():
            out[cells[0]] = cells
    return out
new, old = rows(sys.argv[1]), rows(sys.argv[2])
print(f"| benchmark | this tree | {sys.argv[3]} | baseline (this tree's run) | target / ratio (this tree) |")
print("| --- | --- | --- | --- | --- |")
for k in sorted(new):
    print(f"| {k} | {new[k][1]} | {old.get(k, ['', '-'])[1]} | {new[k][2]} | {new[k][3]} |")
EOF
