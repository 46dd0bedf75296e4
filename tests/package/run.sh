#!/bin/bash
# tests/package/run.sh: the Debian package, built, checked and installed
# into a fresh Debian root.
#
#   - dpkg-buildpackage -us -uc -b in a copy of the tree (tracked and
#     untracked files, no build output); the .deb lands in build/package/
#   - lintian: no errors
#   - its files: the binary, the mount helper, the unit and its helper, the
#     sysusers.d file, the man page, the example configuration and stack
#   - debootstrap (minbase, bookworm, from the host's Debian mirror) makes a
#     root; apt installs the .deb there with its dependencies; postinst made
#     the user layerfs; in a private mount namespace the example stack is
#     mounted, read, the daemon found serving as layerfs with no capability,
#     and unmounted
# Needs root and the Debian archive; installs debhelper, lintian and
# debootstrap with tools/ensure-debs.sh when missing.  Minutes (debootstrap
# downloads are kept in build/package/debs for the next run).  Ends with
# "N passed, M failed".
#
#   bash tests/package/run.sh [--build-only]
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/../lib.sh"
REPO=$LFS_REPO
OUT=$REPO/build/package
SUITE=bookworm
export LC_ALL=C
# a failing step's output: its end (build logs)
LFS_CHECK_SHOW="tail -n 30"

lfs_need_root
lfs_init --no-binary
"$REPO/tools/ensure-debs.sh" debhelper dpkg-dev fakeroot lintian debootstrap zip ||
	{ lfs_fail "cannot install the packaging tools"; lfs_finish; }

lfs_tmpdir W /tmp/layerfs-package
mkdir -p "$OUT" "$W/src/layerfs"

# ---- build -------------------------------------------------------------------
t_build() {
	(cd "$REPO" && git ls-files -z -c -o --exclude-standard) |
		(cd "$REPO" && tar -c --null -T - -f -) | tar -x -C "$W/src/layerfs" || return 1
	# the copy has no git history: the commit for --version comes along
	(cd "$W/src/layerfs" &&
		COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown) \
			dpkg-buildpackage -us -uc -b) >"$W/build.log" 2>&1 || { tail -n 30 "$W/build.log"; return 1; }
	rm -f "$OUT"/layerfs_*.deb
	cp "$W"/src/layerfs_*_*.deb "$OUT/" && ls "$OUT"/layerfs_*.deb | grep -v dbgsym
}
check "dpkg-buildpackage -us -uc -b" t_build || lfs_finish
DEB=$(ls "$OUT"/layerfs_*.deb | grep -v dbgsym | head -n 1)
echo "# $DEB"
t_lintian() {
	local out
	out=$(lintian --fail-on error "$DEB" 2>&1)
	local rc=$?
	echo "$out"
	[[ $rc -eq 0 ]] && ! grep -q '^E:' <<<"$out"
}
check "lintian: no errors" t_lintian
t_contents() {
	local list f
	list=$(dpkg-deb -c "$DEB" | awk '{ print $6 }')
	for f in ./usr/bin/layerfs ./usr/sbin/mount.fuse.layerfs ./usr/lib/systemd/system/layerfs@.service \
		./usr/libexec/layerfs/unit ./usr/lib/sysusers.d/layerfs.conf ./usr/share/man/man1/layerfs.1.gz \
		./etc/layerfs/example.conf ./etc/layerfs/example.list ./usr/share/layerfs/examples/demo.list \
		./usr/share/layerfs/examples/base.zip; do
		grep -qxF "$f" <<<"$list" || { echo "not in the package: $f"; return 1; }
	done
	dpkg-deb -f "$DEB" Depends | grep -q fuse3 || { echo "no Depends: fuse3"; return 1; }
	dpkg-deb -I "$DEB" conffiles | grep -qx /etc/layerfs/example.conf
}
check "the package's files, conffiles and dependencies" t_contents
[[ ${1:-} == --build-only ]] && lfs_finish

# ---- a fresh root --------------------------------------------------------------
MIRROR=$(awk '/^URIs:/ { print $2; exit } /^deb / { print $2; exit }' \
	/etc/apt/sources.list.d/debian.sources /etc/apt/sources.list 2>/dev/null)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
R=$W/root
t_debootstrap() {
	mkdir -p "$OUT/debs"
	debootstrap --variant=minbase --cache-dir="$OUT/debs" "$SUITE" "$R" "$MIRROR" \
		>"$W/debootstrap.log" 2>&1 || { tail -n 20 "$W/debootstrap.log"; return 1; }
}
check "debootstrap $SUITE (minbase) from $MIRROR" t_debootstrap || lfs_finish
cp "$DEB" "$R/tmp/layerfs.deb"
# everything in there runs in a private mount namespace: /proc, /dev and
# the FUSE mount vanish with it
inroot() {
	unshare -m --propagation private env R="$R" bash -c '
		set -e
		mount -t proc proc "$R/proc"
		mount --rbind /dev "$R/dev"
		exec chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"' _ "$@"
}
t_install() {
	inroot apt-get update -q >"$W/apt.log" 2>&1 &&
		inroot apt-get install -y -q --no-install-recommends /tmp/layerfs.deb >>"$W/apt.log" 2>&1 ||
		{ tail -n 20 "$W/apt.log"; return 1; }
	inroot layerfs --version
}
check "apt installs the .deb and its dependencies" t_install || lfs_finish
check "postinst made the user layerfs" inroot getent passwd layerfs
t_mount_example() {
	inroot sh -c '
		set -e
		mkdir -p /mnt/demo
		layerfs mount -o allow_other /usr/share/layerfs/examples/demo.list /mnt/demo
		trap "layerfs umount /mnt/demo" EXIT
		head -n 1 /mnt/demo/python/greeting/__init__.py
		cat /mnt/demo/etc/app.conf >/dev/null
		pid=$(layerfs stats /mnt/demo | awk "\$1 == \"pid\" { print \$2 }")
		uid=$(id -u layerfs)
		grep -E "^(Uid|CapEff|NoNewPrivs|Seccomp):" /proc/$pid/status
		grep -qE "^Uid:[[:space:]]+$uid[[:space:]]" /proc/$pid/status
		grep -q "^CapEff:[[:space:]]*0000000000000000$" /proc/$pid/status
		grep -q "^Seccomp:[[:space:]]*2$" /proc/$pid/status
		getfattr --only-values -n user.layerfs.layer /mnt/demo/python/greeting/__init__.py 2>/dev/null || :
		echo'
}
check "the example stack mounts in the fresh root, served as layerfs" t_mount_example
lfs_finish
