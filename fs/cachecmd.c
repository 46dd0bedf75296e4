#include "cachecmd.h"

#include "../cache/disk.h"
#include "../cache/hostdir.h"
#include "log.h"
#include "options.h"
#include "privs.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
	"usage: layerfs cache stats  [-o cache_dir=DIR]\n"
	"       layerfs cache verify [-o cache_dir=DIR]\n"
	"       layerfs cache prune  [-o cache_dir=DIR,cache_dir_size=SIZE]\n"
	"       layerfs cache clear  [-o cache_dir=DIR]\n"
	"(DIR defaults to " LFS_DEFAULT_CACHE_DIR ")\n";

/* The kept trees (cache_dir/trees): how many, and removing them. */
static uint64_t trees(int dirfd, int remove)
{
	int fd = openat(dirfd, "trees", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	uint64_t n = 0;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	while ((de = readdir(d)))
		if (de->d_type == DT_REG && (!remove || unlinkat(fd, de->d_name, 0) == 0))
			n++;
	closedir(d);
	return n;
}

static void human(char *buf, size_t size, uint64_t n)
{
	static const char units[] = "BKMGT";
	double v = (double)n;
	int u = 0;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	snprintf(buf, size, u ? "%.1f %ciB" : "%.0f %c", v, units[u]);
}

static int stats(int dirfd, const char *dir, uint64_t quota)
{
	struct lfs_disk_census c;
	char bytes[32], q[32];
	int rc = lfs_disk_census(dirfd, &c);

	if (rc) {
		lfs_err("cache_dir %s: %s", dir, strerror(-rc));
		return 1;
	}
	human(bytes, sizeof(bytes), c.bytes);
	human(q, sizeof(q), quota);
	printf("cache directory    %s\n", dir);
	printf("size               %s of %s (%.1f %%)\n", bytes, q,
	       quota ? 100.0 * (double)c.bytes / (double)quota : 0.0);
	printf("layer versions     %llu\n", (unsigned long long)c.layers);
	printf("stack trees        %llu\n", (unsigned long long)trees(dirfd, 0));
	printf("remote objects     %llu (%llu chunks as fetched)\n", (unsigned long long)c.objects,
	       (unsigned long long)c.chunks);
	printf("records            %llu (%llu blocks, %llu resume points, %llu block CRC tables)\n",
	       (unsigned long long)c.records, (unsigned long long)c.blocks,
	       (unsigned long long)c.points, (unsigned long long)c.crc_tables);
	human(bytes, sizeof(bytes), c.block_plain);
	human(q, sizeof(q), c.block_bytes);
	printf("blocks             %s held in %s on disk (zstd ratio %.2f)\n", bytes, q,
	       c.block_bytes ? (double)c.block_plain / (double)c.block_bytes : 0.0);
	for (size_t i = 0; i < c.nper_layer; i++) {
		const struct lfs_disk_census_layer *l = &c.per_layer[i];

		human(bytes, sizeof(bytes), l->bytes);
		human(q, sizeof(q), l->block_plain);
		printf("layer %.16s   %s on disk, %llu blocks holding %s (ratio %.2f)\n", l->digest,
		       bytes, (unsigned long long)l->blocks, q,
		       l->block_bytes ? (double)l->block_plain / (double)l->block_bytes : 0.0);
	}
	if (c.layers > c.nper_layer)
		printf("                   (%llu more layer versions not listed)\n",
		       (unsigned long long)(c.layers - c.nper_layer));
	if (c.stray)
		printf("stray files        %llu (a writer's temporary files; pruning removes old ones)\n",
		       (unsigned long long)c.stray);
	printf("block lookups      %llu hits, %llu misses",
	       (unsigned long long)c.hits, (unsigned long long)c.misses);
	if (c.hits + c.misses)
		printf(" (%.1f %% hits)", 100.0 * (double)c.hits / (double)(c.hits + c.misses));
	printf(", by every daemon since the directory was made or cleared\n");
	return 0;
}

int lfs_cache_command(int argc, char **argv)
{
	struct lfs_options o;
	const char *dir;
	uint64_t quota;
	int dirfd, rc = 1;
	char err[1024];

	if (argc < 2) {
		fputs(usage, stderr);
		return 2;
	}
	if (lfs_options_parse(argc - 1, argv + 1, &o)) {
		lfs_options_free(&o);
		return 2;
	}
	dir = o.cache_dir ? o.cache_dir : LFS_DEFAULT_CACHE_DIR;
	if (o.npos) {
		fputs(usage, stderr);
		lfs_options_free(&o);
		return 2;
	}
	{
		/* the directory is the daemon's user's, as mount makes it */
		struct lfs_privs p;

		if (lfs_privs_resolve(o.user, &p, err, sizeof(err)) == 0 && p.switch_user)
			lfs_hostdir_set_owner(p.uid, p.gid);
	}
	if (lfs_hostdir_open(dir, &dirfd, err, sizeof(err))) {
		lfs_err("%s", err);
		lfs_options_free(&o);
		return 1;
	}
	quota = o.stack.cache_dir_size ? o.stack.cache_dir_size : lfs_disk_default_quota(dirfd);
	if (!strcmp(argv[1], "stats")) {
		rc = stats(dirfd, dir, quota);
	} else if (!strcmp(argv[1], "verify")) {
		uint64_t checked, bad;

		rc = lfs_disk_verify(dirfd, &checked, &bad) ? 1 : 0;
		if (!rc)
			printf("%s: %llu records checked, %llu bad ones dropped\n", dir,
			       (unsigned long long)checked, (unsigned long long)bad);
	} else if (!strcmp(argv[1], "prune")) {
		struct lfs_disk_config cfg = { .quota = quota };
		struct lfs_disk *d;

		if (lfs_disk_open(dirfd, &cfg, &d, err, sizeof(err)) == 0) {
			uint64_t dropped = lfs_disk_prune(d);
			struct lfs_disk_stats st;

			lfs_disk_get_stats(d, &st);
			printf("%s: %llu bytes dropped (%llu records), %llu bytes kept, quota %llu\n", dir,
			       (unsigned long long)dropped, (unsigned long long)st.evictions,
			       (unsigned long long)st.usage, (unsigned long long)quota);
			lfs_disk_close(d);
			rc = 0;
		} else {
			lfs_err("%s", err);
		}
	} else if (!strcmp(argv[1], "clear")) {
		rc = lfs_disk_clear(dirfd) ? 1 : 0;
		trees(dirfd, 1);
		if (!rc)
			printf("%s: cleared\n", dir);
	} else {
		fputs(usage, stderr);
		rc = 2;
	}
	if (rc == 1 && strcmp(argv[1], "prune") && strcmp(argv[1], "stats"))
		lfs_err("cache_dir %s: %s failed", dir, argv[1]);
	close(dirfd);
	lfs_options_free(&o);
	return rc;
}
