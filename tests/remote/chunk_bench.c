/* Measures a remote source's chunk size: chunk_bench URL CHUNK WORKLOAD
 *
 *   cold   what a cold start reads: the members of 12 packages (directories)
 *          of the layer, each member's local header then its data in 64 KiB
 *          pieces, one after the other, as an import reads them
 *   dense  the same with every 3rd package instead of every 12th
 *   seq    the largest member, in 128 KiB reads, with a will_need of the
 *          next 8 MiB every 4 MiB (as the reader's read-ahead would)
 *
 * Prints one line: chunk, workload, seconds, requests, bytes fetched and
 * bytes the reads needed.  Run it through tests/remote/bench.sh, which
 * starts the servers and adds the latency. */
#include "../../cache/source_http.h"
#include "../../fs/zipindex.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int read_member(struct lfs_zip_index *zi, uint64_t i, unsigned char *buf, size_t piece,
		       uint64_t *needed, int hint)
{
	const struct lfs_zip_entry *e = &zi->entries[i];
	uint64_t off, done = 0;
	int rc = lfs_zip_data_offset(zi, i, &off);

	if (rc)
		return rc;
	*needed += 30 + e->name_len;
	while (done < e->comp_size) {
		size_t n = e->comp_size - done < piece ? (size_t)(e->comp_size - done) : piece;

		if (hint && done % (4u << 20) == 0)
			lfs_source_will_need(zi->src, off + done + n, 8u << 20);
		rc = lfs_source_read(zi->src, buf, n, off + done);
		if (rc)
			return rc;
		done += n;
		*needed += n;
	}
	return 0;
}

/* Directory part of an entry's name (up to the last '/'). */
static size_t dir_len(struct lfs_zip_index *zi, uint64_t i)
{
	const char *name = lfs_zip_name(zi, &zi->entries[i]);
	size_t n = zi->entries[i].name_len;

	while (n && name[n - 1] != '/')
		n--;
	return n;
}

int main(int argc, char **argv)
{
	struct lfs_http_config cfg = { 0 };
	struct lfs_source *src;
	struct lfs_zip_index *zi;
	struct lfs_http_counters c0, c;
	unsigned char *buf = malloc(1 << 20);
	char err[512];
	uint64_t needed = 0;
	double t0;
	int rc = 0;

	if (argc != 4) {
		fprintf(stderr, "usage: chunk_bench URL CHUNK_KIB cold|dense|seq\n");
		return 2;
	}
	cfg.chunk_size = (size_t)strtoul(argv[2], NULL, 10) << 10;
	t0 = now();
	if (lfs_source_http_open(argv[1], &cfg, &src, err, sizeof(err)) ||
	    lfs_zip_open_source(src, argv[1], NULL, &zi, err, sizeof(err))) {
		fprintf(stderr, "chunk_bench: %s\n", err);
		return 1;
	}
	lfs_source_http_counters(src, &c0);
	if (!strcmp(argv[3], "cold") || !strcmp(argv[3], "dense")) {
		/* Every 12th (dense: 3rd) directory, in zip order: packages are
		 * written together, so a package's files are adjacent. */
		uint64_t ndirs = 0, stride = strcmp(argv[3], "cold") ? 3 : 12;

		for (uint64_t i = 0; i < zi->count && !rc; i++) {
			int new_dir = !i || dir_len(zi, i) != dir_len(zi, i - 1) ||
				      memcmp(lfs_zip_name(zi, &zi->entries[i]),
					     lfs_zip_name(zi, &zi->entries[i - 1]), dir_len(zi, i));

			ndirs += new_dir;
			if (ndirs % stride == 1 && zi->entries[i].kind == LFS_ZIP_FILE)
				rc = read_member(zi, i, buf, 64 << 10, &needed, 0);
		}
	} else {
		uint64_t big = 0;

		for (uint64_t i = 1; i < zi->count; i++)
			if (zi->entries[i].comp_size > zi->entries[big].comp_size)
				big = i;
		rc = read_member(zi, big, buf, 128 << 10, &needed, 1);
	}
	if (rc) {
		lfs_source_http_last_error(src, err, sizeof(err));
		fprintf(stderr, "chunk_bench: read: %s (%s)\n", strerror(-rc), err);
		return 1;
	}
	lfs_source_http_counters(src, &c);
	/* Open and index apart: they are the same for every chunk size. */
	printf("chunk %4sK %-4s %7.3f s  open requests %llu  read requests %5llu  fetched %9llu  needed %9llu  ratio %.2f\n",
	       argv[2], argv[3], now() - t0, (unsigned long long)c0.requests,
	       (unsigned long long)(c.requests - c0.requests),
	       (unsigned long long)(c.bytes_fetched - c0.bytes_fetched), (unsigned long long)needed,
	       (double)(c.bytes_fetched - c0.bytes_fetched) / (double)(needed ? needed : 1));
	lfs_zip_close(zi);
	free(buf);
	return 0;
}
