#include "coverage.h"

#include <errno.h>
#include <stdlib.h>

uint64_t lfs_coverage_chunks(uint64_t bytes, uint64_t chunk_size)
{
	return chunk_size ? bytes / chunk_size + (bytes % chunk_size != 0) : 0;
}

int lfs_coverage_init(struct lfs_coverage *c, uint64_t n)
{
	c->n = n;
	c->have = 0;
	/* one word at least, so that a chunkless object has bits too */
	c->bits = calloc(n / 64 + 1, sizeof(*c->bits));
	return c->bits ? 0 : -ENOMEM;
}

void lfs_coverage_free(struct lfs_coverage *c)
{
	free(c->bits);
	c->bits = NULL;
	c->n = c->have = 0;
}

int lfs_coverage_mark(struct lfs_coverage *c, uint64_t i)
{
	uint64_t bit = 1ull << (i % 64);

	if (i >= c->n || (c->bits[i / 64] & bit))
		return 0;
	c->bits[i / 64] |= bit;
	c->have++;
	return 1;
}

int lfs_coverage_has(const struct lfs_coverage *c, uint64_t i)
{
	return i < c->n && (c->bits[i / 64] >> (i % 64) & 1);
}

int lfs_coverage_complete(const struct lfs_coverage *c) { return c->have == c->n; }

uint64_t lfs_coverage_first_missing(const struct lfs_coverage *c, uint64_t from)
{
	for (uint64_t i = from; i < c->n;) {
		uint64_t word = ~c->bits[i / 64] >> (i % 64);

		if (word) {
			i += (uint64_t)__builtin_ctzll(word);
			return i < c->n ? i : c->n;
		}
		i = (i / 64 + 1) * 64;
	}
	return c->n;
}

enum lfs_hash_step lfs_hash_step(const struct lfs_coverage *c, uint64_t next, int in_memory,
				 int on_disk_maybe, int writes_pending)
{
	if (in_memory)
		return LFS_HASH_MEMORY;
	if (!lfs_coverage_has(c, next))
		return LFS_HASH_WAIT;	/* never fetched yet: a reader will */
	if (on_disk_maybe)
		return LFS_HASH_DISK;
	if (writes_pending || !lfs_coverage_complete(c))
		return LFS_HASH_WAIT;
	return LFS_HASH_FETCH;
}
