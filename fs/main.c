/* layerfs: the command line.  Each command lives in its own file: mount
 * (daemon.c), check (check.c), umount, stats, dropcache and trace stop (ctl.c); the
 * options are options.c's. */
#include "../cache/digest.h"
#include "cachecmd.h"
#include "check.h"
#include "ctl.h"
#include "daemon.h"
#include "log.h"
#include "options.h"

#include "version.h" /* made by the Makefile */

#include <isa-l.h>
#include <libdeflate.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

static void version(void)
{
	printf("layerfs %s (commit %s)\n"
	       "libfuse %s, ISA-L %d.%d.%d, libdeflate %s, zlib %s, %s\n",
	       LAYERFS_VERSION, LAYERFS_COMMIT, fuse_pkgversion(), ISAL_MAJOR_VERSION,
	       ISAL_MINOR_VERSION, ISAL_PATCH_VERSION, LIBDEFLATE_VERSION_STRING, zlibVersion(),
	       lfs_crypto_version());
}

static int with_options(int argc, char **argv, int (*run)(struct lfs_options *))
{
	struct lfs_options o;
	int rc = 1;

	if (lfs_options_parse(argc, argv, &o) == 0) {
		lfs_log_set_level(o.debug ? LFS_LOG_DEBUG : LFS_LOG_INFO);
		lfs_log_set_journal(o.journal);
		rc = run(&o);
	}
	lfs_options_free(&o);
	return rc;
}

int main(int argc, char **argv)
{
	/* Cache blocks are allocated in one thread and freed in another;
	 * with glibc's default of 8 arenas per core, freed blocks linger in
	 * idle arenas and the daemon's RSS drifts well past the cache budget.
	 * Buffers of 64 KiB and more (blocks, whole members) are mapped on
	 * their own, so a freed one goes back to the system at once instead
	 * of leaving a hole in the heap (glibc's threshold would otherwise
	 * grow to 32 MiB as such buffers are freed); docs/performance.md. */
	mallopt(M_ARENA_MAX, 2);
	mallopt(M_MMAP_THRESHOLD, 64 << 10);
	mallopt(M_TRIM_THRESHOLD, 1 << 20);
	if (argc < 2) {
		lfs_options_usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		lfs_options_usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		version();
		return 0;
	}
	if (!strcmp(argv[1], "mount"))
		return with_options(argc - 1, argv + 1, lfs_daemon_mount);
	if (!strcmp(argv[1], "check"))
		return with_options(argc - 1, argv + 1, lfs_check_run);
	if (!strcmp(argv[1], "cache"))
		return lfs_cache_command(argc - 1, argv + 1);
	if (argc == 3 && !strcmp(argv[1], "umount"))
		return lfs_ctl_umount(argv[2]);
	if (!strcmp(argv[1], "stats"))
		return lfs_ctl_stats(argc - 2, argv + 2);
	if (argc == 3 && !strcmp(argv[1], "dropcache"))
		return lfs_ctl_dropcache(argv[2]);
	if (argc == 4 && !strcmp(argv[1], "trace") && !strcmp(argv[2], "stop"))
		return lfs_ctl_trace_stop(argv[3]);
	/* mount.fuse3 runs "layerfs LIST MOUNTPOINT -o OPTIONS" for
	 * `mount -t fuse.layerfs` and fstab lines. */
	if (argc >= 3 && argv[1][0] != '-')
		return with_options(argc, argv, lfs_daemon_mount);
	lfs_options_usage(stderr);
	return 2;
}
