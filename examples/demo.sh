#!/usr/bin/env bash
# Builds three layers from examples/layers/ (base, patch, config), stacks
# them, mounts them with layerfs and shows the merged tree.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
layerfs=${LAYERFS:-$here/../build/layerfs}
work=$(mktemp -d /tmp/layerfs-demo.XXXXXX)
mnt=$work/opt
cleanup() {
	if mountpoint -q "$mnt" 2>/dev/null; then "$layerfs" umount "$mnt" || umount -l "$mnt"; fi
	rm -rf "$work"
}
trap cleanup EXIT

for layer in base patch config; do
	(cd "$here/layers/$layer" && zip -q -r -y -X "$work/$layer.zip" .)
done
cat > "$work/layers.list" <<LIST
# lowest first; later layers win
base.zip   name=demo-base version=1
patch.zip  name=demo-patch version=3
config.zip
LIST
mkdir "$mnt"
echo "\$ layerfs mount layers.list $mnt"
"$layerfs" mount "$work/layers.list" "$mnt"
echo; echo "\$ find $mnt | sort"
(cd "$mnt" && find . | sort)
echo; echo "\$ cat python/greeting/__init__.py   # patch layer overrides base"
head -1 "$mnt/python/greeting/__init__.py"
echo; echo "\$ getfattr -n user.layerfs.layer ..."
for p in python/greeting/__init__.py python/greeting/util.py python etc/app.conf; do
	printf '%-30s %s\n' "$p" "$(getfattr --absolute-names --only-values -n user.layerfs.layer "$mnt/$p")"
done
echo; echo "\$ PYTHONPATH=$mnt/python python3 -c 'import greeting; ...'"
PYTHONPATH=$mnt/python python3 -c 'import greeting, greeting.util as u; print(greeting.VERSION); print(u.shout(greeting.hello("layers")))'
if command -v node >/dev/null; then
	echo; echo "\$ NODE_PATH=$mnt/nodejs/node_modules node -e ..."
	NODE_PATH=$mnt/nodejs/node_modules node -e 'console.log(require("greet")("layers"))'
fi
echo; echo "\$ $mnt/bin/hello"
"$mnt/bin/hello"
echo; echo "\$ layerfs stats $mnt | head -20"
"$layerfs" stats "$mnt" | head -20
echo; echo "\$ layerfs umount $mnt"
"$layerfs" umount "$mnt"
