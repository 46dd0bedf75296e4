#!/usr/bin/env bash
# Runtimes using a mounted layer the way Lambda functions do: python imports
# from python/, node requires from nodejs/node_modules/, executables from
# bin/, shared objects from lib/ (mmap'd by the loader).
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lfs_init
lfs_gen
lfs_tmpdir T

lfs_list "$T/rt.list" "$L/stack1.zip" "$L/runtime.zip"
if check "runtime: mount" lfs_mount "$T/rt.list" "$T/m"; then
	M=$T/m
	check "python: import a package from python/" \
		env PYTHONPATH="$M/python" "$PY" -c '
import sys, lfspkg, lfspkg.sub.helper
assert lfspkg.MAGIC == "layerfs-python-ok", lfspkg.MAGIC
assert lfspkg.answer() == 42
assert lfspkg.__file__.startswith(sys.argv[1] + "/python/"), lfspkg.__file__
' "$M"
	check "python: import with bytecode writing attempted (read-only dir)" \
		env -u PYTHONDONTWRITEBYTECODE PYTHONPATH="$M/python" "$PY" -c 'import lfspkg; print(lfspkg.answer())'
	check "python: no __pycache__ was written into the mount" test ! -e "$M/python/lfspkg/__pycache__"
	if command -v node >/dev/null 2>&1; then
		check "node: require a module from nodejs/node_modules/ (NODE_PATH)" \
			env NODE_PATH="$M/nodejs/node_modules" node -e '
const m = require("lfsmod");
if (m.magic !== "layerfs-node-ok" || m.answer() !== 42) { console.error(m); process.exit(1); }
if (!require.resolve("lfsmod").startsWith(process.argv[1] + "/nodejs/")) process.exit(2);
' "$M"
		check "node: require by absolute path" \
			node -e 'process.exit(require(process.argv[1]).answer() === 42 ? 0 : 1)' "$M/nodejs/node_modules/lfsmod"
	else
		lfs_log "node not installed: node checks skipped"
	fi
	check "bin: execute a script from bin/" eq "$("$M/bin/lfs-hello" a b 2>&1)" "layerfs-bin-ok a b"
	check "bin: found through PATH" eq "$(PATH="$M/bin:$PATH" lfs-hello c 2>&1)" "layerfs-bin-ok c"
	if [[ -f $G/src/runtime/lib/liblfsanswer.so ]]; then
		check "lib: dlopen a shared object from lib/ (mmap)" \
			"$PY" -c 'import ctypes, sys; sys.exit(0 if ctypes.CDLL(sys.argv[1]).lfs_answer() == 42 else 1)' \
			"$M/lib/liblfsanswer.so"
		check "lib: found through LD_LIBRARY_PATH" \
			env LD_LIBRARY_PATH="$M/lib" "$PY" -c 'import ctypes, sys; sys.exit(0 if ctypes.CDLL("liblfsanswer.so").lfs_answer() == 42 else 1)'
	else
		lfs_log "no C compiler when generating: shared object checks skipped"
	fi
	check "runtime: lower layer still visible next to the runtime layer" \
		eq "$(cat "$M/common/only1.txt" 2>&1)" "only in layer 1"
fi

lfs_finish
