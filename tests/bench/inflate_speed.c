/* Baseline for the benchmarks: inflate zip members in-process, from
 * memory, with ISA-L (streaming), zlib (streaming) and libdeflate (whole
 * buffer), and print MB/s of output for each.
 *   inflate_speed ZIP ENTRY-NAME    one member
 *   inflate_speed ZIP --all         every deflated member, by size class:
 *                                   how the read path's choice was made */
#include <isa-l/igzip_lib.h>
#include <libdeflate.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "../../fs/zipindex.h"

#define CHUNK (128u << 10)

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static unsigned char out[CHUNK];

static double run_isal(unsigned char *in, uint64_t n, uint64_t size, uint32_t crc)
{
	struct inflate_state *st = malloc(sizeof(*st));
	double t0 = now();
	uint64_t total = 0;

	isal_inflate_init(st);
	st->crc_flag = ISAL_GZIP_NO_HDR;
	st->next_in = in;
	st->avail_in = (uint32_t)n;
	while (st->block_state != ISAL_BLOCK_FINISH) {
		st->next_out = out;
		st->avail_out = CHUNK;
		if (isal_inflate(st) < 0)
			return -1;
		total += CHUNK - st->avail_out;
	}
	t0 = now() - t0;
	if (total != size || st->crc != crc)
		return -1;
	free(st);
	return (double)size / t0 / 1e6;
}

static double run_zlib(unsigned char *in, uint64_t n, uint64_t size, uint32_t crc)
{
	z_stream zs;
	double t0 = now();
	uint64_t total = 0;
	uLong c = crc32(0, NULL, 0);
	int rc = Z_OK;

	memset(&zs, 0, sizeof(zs));
	inflateInit2(&zs, -15);
	zs.next_in = in;
	zs.avail_in = (uInt)n;
	while (rc != Z_STREAM_END) {
		zs.next_out = out;
		zs.avail_out = CHUNK;
		rc = inflate(&zs, Z_NO_FLUSH);
		if (rc != Z_OK && rc != Z_STREAM_END)
			return -1;
		c = crc32(c, out, CHUNK - zs.avail_out); /* the mount checks CRCs too */
		total += CHUNK - zs.avail_out;
	}
	t0 = now() - t0;
	inflateEnd(&zs);
	return total == size && c == crc ? (double)size / t0 / 1e6 : -1;
}

static double run_libdeflate(unsigned char *in, uint64_t n, uint64_t size, uint32_t crc)
{
	struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
	unsigned char *buf = malloc(size);
	size_t got = 0;
	double t0 = now();
	int ok = libdeflate_deflate_decompress(d, in, n, buf, size, &got) == LIBDEFLATE_SUCCESS &&
		 libdeflate_crc32(0, buf, got) == crc;

	t0 = now() - t0;
	libdeflate_free_decompressor(d);
	free(buf);
	return ok && got == size ? (double)size / t0 / 1e6 : -1;
}

/* Every deflated member, small (<= 128 KiB) and large apart. */
static int run_all(struct lfs_zip_index *zi)
{
	static const char *const names[] = { "isal", "zlib", "libdeflate" };
	double secs[2][3] = { { 0 } }, bytes[2] = { 0 };
	unsigned long members[2] = { 0 };

	for (uint64_t i = 0; i < zi->count; i++) {
		const struct lfs_zip_entry *e = &zi->entries[i];
		unsigned char *in;
		uint64_t off;
		int big = e->size > (128u << 10);

		if (e->method != 8 || e->kind != LFS_ZIP_FILE || e->size == 0)
			continue;
		in = malloc(e->comp_size);
		if (lfs_zip_data_offset(zi, i, &off) || lfs_source_read(zi->src, in, e->comp_size, off))
			return 1;
		for (int k = 0; k < 3; k++) {
			double mbps = k == 0 ? run_isal(in, e->comp_size, e->size, e->crc)
				    : k == 1 ? run_zlib(in, e->comp_size, e->size, e->crc)
					     : run_libdeflate(in, e->comp_size, e->size, e->crc);

			if (mbps <= 0)
				return 1;
			secs[big][k] += (double)e->size / (mbps * 1e6);
		}
		bytes[big] += (double)e->size;
		members[big]++;
		free(in);
	}
	for (int big = 0; big < 2; big++)
		for (int k = 0; k < 3 && members[big]; k++)
			printf("%s %s %.0f (%lu members, %.1f MB)\n", big ? "large" : "small", names[k],
			       bytes[big] / secs[big][k] / 1e6, members[big], bytes[big] / 1e6);
	return 0;
}

int main(int argc, char **argv)
{
	struct lfs_zip_index *zi;
	char err[512];
	uint64_t off;

	if (argc != 3) {
		fprintf(stderr, "usage: inflate_speed ZIP ENTRY\n");
		return 2;
	}
	if (lfs_zip_open(argv[1], NULL, &zi, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (!strcmp(argv[2], "--all"))
		return run_all(zi);
	for (uint64_t i = 0; i < zi->count; i++) {
		const struct lfs_zip_entry *e = &zi->entries[i];
		unsigned char *in;

		if (e->name_len != strlen(argv[2]) ||
		    memcmp(lfs_zip_name(zi, e), argv[2], e->name_len))
			continue;
		in = malloc(e->comp_size);
		if (lfs_zip_data_offset(zi, i, &off) || lfs_source_read(zi->src, in, e->comp_size, off))
			return 1;
		printf("isal %.0f\n", run_isal(in, e->comp_size, e->size, e->crc));
		printf("zlib %.0f\n", run_zlib(in, e->comp_size, e->size, e->crc));
		printf("libdeflate %.0f\n", run_libdeflate(in, e->comp_size, e->size, e->crc));
		free(in);
		lfs_zip_close(zi);
		return 0;
	}
	fprintf(stderr, "%s: no entry %s\n", argv[1], argv[2]);
	return 1;
}
