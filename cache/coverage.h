/* Which chunks of a remote object have been held at least once, and what
 * the background hasher does next: the pure part of checking a listed
 * SHA-256 against every byte of an object (source_http.c; docs/remote.md,
 * "The listed digest").
 *
 * A chunk is marked when it becomes ready in memory (fetched, or found in
 * the host's disk tier).  Once every chunk is marked, every byte of the
 * object has been fetched at least once, and the digest is due.  SHA-256
 * takes its bytes in order only, so the hasher walks the chunks in order,
 * hashing each one while it is still in memory; lfs_hash_step() says what
 * to do about the next one.
 *
 * Not thread-safe: the caller holds its lock. */
#ifndef LFS_COVERAGE_H
#define LFS_COVERAGE_H

#include <stdint.h>

struct lfs_coverage {
	uint64_t n;		/* chunks */
	uint64_t have;		/* of them, marked */
	uint64_t *bits;		/* n bits */
};

/* Chunks of chunk_size bytes (the last one may be short) in `bytes`. */
uint64_t lfs_coverage_chunks(uint64_t bytes, uint64_t chunk_size);

/* n chunks, none marked (n may be 0: complete at once).  0 or -ENOMEM. */
int lfs_coverage_init(struct lfs_coverage *c, uint64_t n);
void lfs_coverage_free(struct lfs_coverage *c);

/* Marks chunk i: 1 when it was not marked before, 0 when it was (or i is
 * out of range). */
int lfs_coverage_mark(struct lfs_coverage *c, uint64_t i);
int lfs_coverage_has(const struct lfs_coverage *c, uint64_t i);
int lfs_coverage_complete(const struct lfs_coverage *c);
/* The first chunk at or after `from` not marked; n when there is none. */
uint64_t lfs_coverage_first_missing(const struct lfs_coverage *c, uint64_t from);

enum lfs_hash_step {
	LFS_HASH_MEMORY,	/* it is in memory: hash it from there */
	LFS_HASH_DISK,		/* it was held and may be on disk: read it there */
	LFS_HASH_FETCH,		/* every chunk was fetched, this one is gone: fetch it again */
	LFS_HASH_WAIT,		/* wait (for it to be fetched, written, or for the rest) */
};

/* What the hasher does about chunk `next`, the first not yet hashed:
 * in_memory: it is ready in memory now; on_disk_maybe: the object has a
 * disk tier and nothing said the chunk is absent from it since the last
 * look; writes_pending: chunks are on their way to the disk.  A chunk is
 * fetched again only once every chunk has been fetched (the digest is
 * checked once all bytes have been) and nothing is left to write that
 * could hold it. */
enum lfs_hash_step lfs_hash_step(const struct lfs_coverage *c, uint64_t next, int in_memory,
				 int on_disk_maybe, int writes_pending);

#endif
