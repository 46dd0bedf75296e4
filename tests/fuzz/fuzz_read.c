/* Fuzz target: arbitrary bytes as a layer, then ranges of every member read
 * through the cache, resume points and parked streams.  Whatever the bytes,
 * a read returns an error or exactly the bytes a second, independent read of
 * the same range returns (a different path through the cache), and never
 * more than the member's size. */
#include <stdlib.h>
#include <string.h>

#include "../../cache/reader.h"
#include "../../fs/zipindex.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct lfs_reader_config cfg = { 64 << 10, 4096, 8192, 8192 };
	struct lfs_zip_limits lim = { 1000, 4096 };
	struct lfs_zip_index *zi = NULL;
	struct lfs_reader *r;
	char path[64], err[512];
	unsigned char *a = malloc(70000), *b = malloc(70000);
	int fd = fuzz_file(data, size, path, sizeof(path));

	if (fd < 0 || lfs_reader_config_check(&cfg, err, sizeof(err)) ||
	    lfs_zip_open(path, &lim, &zi, err, sizeof(err))) {
		if (fd >= 0)
			close(fd);
		free(a);
		free(b);
		return 0;
	}
	r = lfs_reader_new(&cfg);
	for (uint64_t i = 0; i < zi->count && i < 20; i++) {
		const struct lfs_zip_entry *e = &zi->entries[i];
		uint32_t flags = 0, flags2 = 0;
		uint64_t reach = 0, reach2 = 0;
		struct lfs_member m = { .src = zi->src, .comp_size = e->comp_size, .size = e->size,
					.crc = e->crc, .method = e->method, .layer_id = zi->layer_id,
					.key = lfs_member_key(e->lho, e->comp_size, e->size,
							      e->crc, e->method),
					.flags = &flags, .reach = &reach,
					.layer_name = "fuzz",
					.entry_name = "e", .entry_name_len = 1 };
		struct lfs_member m2;

		if (e->kind == LFS_ZIP_DIR || lfs_zip_data_offset(zi, i, &m.data_off))
			continue;
		m2 = m;
		m2.flags = &flags2;
		m2.reach = &reach2;
		m2.key = m.key ^ 0x5a5a5a5a5a5aull; /* separate cache entries */
		for (int k = 0; k < 6; k++) {
			/* offsets from the input's own bytes, spread over the member */
			uint64_t off = e->size ? ((uint64_t)data[(i * 7 + (uint64_t)k) % size] << 12) %
							 (e->size + 4096)
					       : 0;
			size_t len = 1 + (size_t)data[(i + (uint64_t)k * 3) % size] * 257;
			ssize_t x = lfs_reader_read(r, &m, a, len, off);
			ssize_t y = lfs_reader_read(r, &m2, b, len, off);

			if (x > (ssize_t)len || (x > 0 && off + (uint64_t)x > e->size))
				__builtin_trap();
			if (x >= 0 && y >= 0 && (x != y || memcmp(a, b, (size_t)x)))
				__builtin_trap();
			if (k == 2)
				lfs_reader_drop_blocks(r);
		}
	}
	lfs_reader_free(r);
	lfs_zip_close(zi);
	close(fd);
	free(a);
	free(b);
	return 0;
}
