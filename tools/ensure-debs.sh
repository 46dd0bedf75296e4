#!/usr/bin/env bash
# Installs the Debian packages a tools/ script needs, and only those missing.
#
#   tools/ensure-debs.sh PKG...        run directly
#   . tools/ensure-debs.sh; ensure_debs PKG...; apt_update_once
#
# `apt-get update` runs at most once per process tree: after it ran,
# LAYERFS_APT_UPDATED=1 is exported so child scripts skip it.  Packages
# already installed are never touched; when something is missing and we are
# not root, this says which command to run and fails.

apt_update_once() {
	if [ "${LAYERFS_APT_UPDATED:-0}" = 1 ]; then
		return 0
	fi
	if [ "$(id -u)" != 0 ]; then
		echo "ensure-debs: not root, cannot run apt-get update" >&2
		return 1
	fi
	echo "ensure-debs: apt-get update" >&2
	apt-get update -q >/dev/null || return 1
	LAYERFS_APT_UPDATED=1
	export LAYERFS_APT_UPDATED
}

deb_installed() {
	[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

ensure_debs() {
	local missing=() p
	for p in "$@"; do
		deb_installed "$p" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" != 0 ]; then
		echo "ensure-debs: missing Debian packages: ${missing[*]}" >&2
		echo "ensure-debs: run as root: apt-get update && apt-get install -y ${missing[*]}" >&2
		return 1
	fi
	apt_update_once || return 1
	echo "ensure-debs: apt-get install -y ${missing[*]}" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		"${missing[@]}" >/dev/null
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	set -euo pipefail
	ensure_debs "$@"
fi
