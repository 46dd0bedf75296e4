/* The read path: bytes of a zip member at any offset, through the cache.
 *
 * Stored members are read straight from the zip (no cache).  Deflated
 * members are served from decompressed blocks of `block_size` bytes:
 *   - a member no larger than one block is inflated whole in one call
 *     (libdeflate) and its CRC checked before any byte is served;
 *   - a larger member is inflated as a stream (ISA-L) in block-sized steps.
 *     Every `spacing` bytes of output the stream's whole state is saved as
 *     a resume point (the inflater state holds the bit position and the
 *     32 KiB history).  A block is produced from the nearest resume point at
 *     or before it, so once a member has been inflated once, any read costs
 *     at most `spacing` bytes of inflation.  The stream that produced the
 *     last block is parked in the cache so that sequential reading continues
 *     it without copying state.  When a stream reaches the member's end its
 *     size and CRC-32 are checked; a stream that ends early, runs long or
 *     fails its CRC marks the member failed: EIO from then on, one log line.
 *
 * Resume points and parked streams are cache entries, so their memory counts
 * against the budget like blocks do. */
#ifndef LFS_READER_H
#define LFS_READER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "cache.h"
#include "source.h"

/* Per-member flags, kept by the caller (one word per member, zeroed). */
#define LFS_MEMBER_FAILED 1u
#define LFS_MEMBER_VERIFIED 2u
#define LFS_MEMBER_UNCHECKED 4u	/* large stored, read too scattered to check */

/* Counters of one layer; updated atomically. */
struct lfs_layer_counters {
	uint64_t bytes_read;	 /* compressed bytes read from the zip */
	uint64_t bytes_inflated; /* bytes produced by inflation */
	uint64_t bytes_served;	 /* bytes returned to readers */
};

struct lfs_member {
	struct lfs_source *src;	/* the zip */
	uint64_t data_off;	/* where the member's data starts in fd */
	uint64_t comp_size;
	uint64_t size;
	uint32_t crc;
	uint16_t method;	/* 0 stored, 8 deflated */
	uint64_t layer_id;	/* cache key: layer content */
	uint64_t key;		/* cache key: member within the layer; see
				 * lfs_member_key() */
	uint32_t *flags;	/* LFS_MEMBER_*, updated atomically */
	uint64_t *reach;	/* furthest offset any stream of it reached, updated
				 * atomically; bounds the search for resume points
				 * (NULL: no bound) */
	const char *layer_name;	/* for log lines */
	const char *entry_name;
	int entry_name_len;
	struct lfs_layer_counters *counters; /* may be NULL */
};

/* The member part of a cache key: where the data is *and* what the central
 * directory says about it, so that two entries sharing one local header
 * with different sizes or CRCs never share blocks. */
static inline uint64_t lfs_member_key(uint64_t lho, uint64_t comp_size, uint64_t size,
				      uint32_t crc, uint16_t method)
{
	uint64_t h = lho * 0x9e3779b97f4a7c15ull;

	h ^= (comp_size + 0x632be59bd9b4e019ull) * 0xbf58476d1ce4e5b9ull;
	h ^= (size + 0x85ebca77c2b2ae63ull) * 0x94d049bb133111ebull;
	h ^= ((uint64_t)crc << 16 | method) * 0xff51afd7ed558ccdull;
	return h ^ (h >> 31);
}

struct lfs_reader_config {
	uint64_t cache_size;	/* budget in bytes */
	uint32_t block_size;	/* power of two, >= 4096 */
	uint32_t spacing;	/* multiple of block_size */
	uint64_t readahead;	/* bytes inflated ahead of a sequential reader */
};

/* How a read of a deflated member went, for read-ahead. */
enum lfs_seq {
	LFS_SEQ_NO,		/* a block needed a fresh stream, or a stream
				 * continued from elsewhere than where it stopped */
	LFS_SEQ_READY,		/* every block was ready */
	LFS_SEQ_CONTINUED,	/* no fresh stream, and a block was made by the
				 * stream parked right where the read went on */
};

/* Blocks held for a reply: iov points into them until lfs_reader_unpin(). */
struct lfs_pin {
	struct iovec *iov;
	size_t niov;
	struct lfs_centry **entries;
	size_t count;
	void *buf;		/* stored members: the bytes read */
	enum lfs_seq sequential; /* how the read went (see lfs_reader_readahead) */
};

struct lfs_reader_stats {
	struct lfs_cache_stats cache;
	uint64_t bytes_read, bytes_inflated, resume_points_made, members_failed;
};

struct lfs_reader;

/* Checks and fills in defaults (0 fields); -EINVAL with a reason in err. */
int lfs_reader_config_check(struct lfs_reader_config *cfg, char *err, size_t errlen);

struct lfs_reader *lfs_reader_new(const struct lfs_reader_config *cfg);
void lfs_reader_free(struct lfs_reader *r);

/* Copies up to len bytes of member m at offset off into buf.  Returns the
 * byte count (short only at the member's end, 0 past it) or a negative
 * errno (-EIO for corrupt or unsupported data). */
ssize_t lfs_reader_read(struct lfs_reader *r, const struct lfs_member *m, void *buf,
			size_t len, uint64_t off);

/* Like lfs_reader_read, without the copy: pins the blocks holding the
 * range and describes it in p->iov.  The caller must lfs_reader_unpin(). */
ssize_t lfs_reader_pin(struct lfs_reader *r, const struct lfs_member *m, uint64_t off,
		       size_t len, struct lfs_pin *p);
void lfs_reader_unpin(struct lfs_reader *r, struct lfs_pin *p);

/* Called after a read that ended at `end` has been answered, with the
 * pin's `sequential`.  A read that continued a parked stream from where it
 * stopped (a reader going through the member in order, unlike a program
 * faulting in pages of a mapped library here and there) starts read-ahead:
 * up to `readahead` bytes beyond `end` are inflated, continuing the stream
 * parked after the last ready block, so the next reads find their blocks
 * ready.  Runs in the caller's thread after the reply, so the work overlaps
 * with the reader consuming it; one thread at a time per stretch of a
 * member.  Later reads inside the stretch, even those that found every
 * block ready, only extend its target.  The `readahead` bytes are shared
 * by the stretches being read ahead at once. */
void lfs_reader_readahead(struct lfs_reader *r, const struct lfs_member *m, uint64_t end,
			  enum lfs_seq seq);

/* Marks m failed (EIO from then on) and logs `why` with layer and entry,
 * the first time only.  Returns -EIO. */
int lfs_reader_fail(struct lfs_reader *r, const struct lfs_member *m, const char *why);

/* Drops cached blocks (keeping resume points). */
void lfs_reader_drop_blocks(struct lfs_reader *r);

void lfs_reader_get_stats(struct lfs_reader *r, struct lfs_reader_stats *out);

#endif
