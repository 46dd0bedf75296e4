/* Fuzz target: arbitrary bytes as a layer, then ranges of every member read
 * through the cache, resume points and parked streams.  Whatever the bytes:
 * a read never returns more than it was asked for or than the member
 * holds; two readers with other block and resume sizes (so other streams,
 * other resume points, other read histories) never disagree where both
 * succeed; and where libdeflate inflates the whole member to its declared
 * size and CRC, every read of either reader succeeds and returns exactly
 * those bytes, as many as were asked for up to the member's end (neither an
 * error nor a short read is right for a member that is fine). */
#include <libdeflate.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "../../cache/reader.h"
#include "../../fs/zipindex.h"
#include "fuzz_common.h"

#define MAX_REF (1u << 20)	/* members inflated whole for reference */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { C_OPENED, C_MEMBERS, C_REFERENCED, C_REF_READS };
struct fuzz_count fuzz_counts[] = {
	{ "opened", 0 },	 /* inputs the index opened */
	{ "members", 0 },	 /* members read through both readers */
	{ "referenced", 0 },	 /* ... of which libdeflate inflated whole */
	{ "reference_reads", 0 }, /* reads compared with libdeflate's bytes */
	{ NULL, 0 },
};

/* A read of a member with reference bytes: exactly min(len, size - off)
 * bytes, those of the reference. */
static void check_ref(const unsigned char *ref, uint64_t size, const unsigned char *got, ssize_t n,
		      size_t len, uint64_t off)
{
	size_t want = off >= size ? 0 : len < size - off ? len : (size_t)(size - off);

	if (n != (ssize_t)want || (want && memcmp(got, ref + off, want)))
		__builtin_trap();
}

static struct lfs_reader *reader(uint64_t budget, uint32_t block, uint32_t spacing)
{
	struct lfs_reader_config cfg = { .cache_size = budget, .block_size = block,
					 .spacing = spacing, .readahead = 2 * (uint64_t)block,
					 .threads = 1 };
	char err[128];

	return lfs_reader_config_check(&cfg, err, sizeof(err)) ? NULL : lfs_reader_new(&cfg);
}

/* The member inflated whole by libdeflate, when it inflates to exactly its
 * declared size with its CRC; NULL otherwise. */
static unsigned char *reference(struct lfs_zip_index *zi, const struct lfs_zip_entry *e,
				uint64_t off)
{
	unsigned char *in, *out;
	size_t got = 0;
	int ok = 0;

	if (e->size > MAX_REF || e->comp_size > MAX_REF || (e->method != 0 && e->method != 8))
		return NULL;
	in = malloc(e->comp_size + 1);
	out = malloc(e->size + 1);
	if (in && out && lfs_source_read(zi->src, in, e->comp_size, off) == 0) {
		if (e->method == 0) {
			ok = e->comp_size == e->size;
			memcpy(out, in, e->comp_size);
		} else {
			struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();

			ok = d && libdeflate_deflate_decompress(d, in, e->comp_size, out, e->size,
							       &got) == LIBDEFLATE_SUCCESS &&
			     got == e->size;
			libdeflate_free_decompressor(d);
		}
		ok = ok && crc32(0, out, (uInt)e->size) == e->crc;
	}
	free(in);
	if (!ok) {
		free(out);
		return NULL;
	}
	return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct lfs_zip_limits lim = { 1000, 4096 };
	struct lfs_zip_index *zi = NULL;
	struct lfs_reader *r1, *r2;
	char path[64], err[512];
	unsigned char *a = malloc(70000), *b = malloc(70000);
	int fd = fuzz_file(data, size, path, sizeof(path));

	if (fd < 0 || lfs_zip_open(path, &lim, &zi, err, sizeof(err))) {
		if (fd >= 0)
			close(fd);
		free(a);
		free(b);
		return 0;
	}
	fuzz_count(C_OPENED);
	r1 = reader(64 << 10, 4096, 8192);
	r2 = reader(1 << 20, 16384, 65536);
	for (uint64_t i = 0; r1 && r2 && i < zi->count && i < 20; i++) {
		const struct lfs_zip_entry *e = &zi->entries[i];
		struct lfs_member_desc d = { .layer = 1, .key = e->lho, .comp_size = e->comp_size,
					     .size = e->size, .crc = e->crc, .method = e->method };
		struct lfs_member *m1, *m2;
		unsigned char *ref;

		if (e->kind == LFS_ZIP_DIR || lfs_zip_data_offset(zi, i, &d.data_off))
			continue;
		d.key = i; /* entries sharing data still get their own blocks */
		m1 = lfs_member_new(r1, zi->src, &d, NULL, NULL);
		m2 = lfs_member_new(r2, zi->src, &d, NULL, NULL);
		ref = reference(zi, e, d.data_off);
		if (m1 && m2) {
			fuzz_count(C_MEMBERS);
			if (ref)
				fuzz_count(C_REFERENCED);
		}
		for (int k = 0; m1 && m2 && k < 6; k++) {
			/* offsets from the input's own bytes, spread over the member */
			uint64_t off = e->size ? ((uint64_t)data[(i * 7 + (uint64_t)k) % size] << 12) %
							 (e->size + 4096)
					       : 0;
			size_t len = 1 + (size_t)data[(i + (uint64_t)k * 3) % size] * 257;
			ssize_t x = lfs_reader_read(r1, m1, a, len, off);
			ssize_t y = lfs_reader_read(r2, m2, b, len, off);

			if (x > (ssize_t)len || (x > 0 && off + (uint64_t)x > e->size))
				__builtin_trap();
			if (x >= 0 && y >= 0 && (x != y || memcmp(a, b, (size_t)x)))
				__builtin_trap();
			if (ref) {
				check_ref(ref, e->size, a, x, len, off);
				check_ref(ref, e->size, b, y, len, off);
				fuzz_count(C_REF_READS);
			}
			if (k == 2)
				lfs_reader_drop_blocks(r1);
		}
		lfs_reader_wait_idle(r1);
		lfs_reader_wait_idle(r2);
		lfs_member_free(m1);
		lfs_member_free(m2);
		free(ref);
	}
	lfs_reader_free(r1);
	lfs_reader_free(r2);
	lfs_zip_close(zi);
	close(fd);
	free(a);
	free(b);
	return 0;
}
