/* The read path: bytes of a zip member at any offset, through the cache.
 *
 * A member is read through a handle (lfs_member_new) made once and kept
 * for as long as the member may be read.  Members are served from
 * decompressed blocks of `block_size` bytes held in the cache:
 *   - a member of at most one block is decoded whole in one call and its
 *     CRC-32 checked before any byte is served (stored ones too);
 *   - a larger deflated member is inflated as a stream (stream.h) in
 *     block-sized steps, making a portable resume point (resume.h) at the
 *     first deflate block boundary past every `spacing` bytes of output, so
 *     that once a member has been inflated once, any read costs at most
 *     about one spacing of inflation.  A stream that stops is parked in the
 *     cache so a sequential reader continues it.  When a stream reaches
 *     the member's end, its size and CRC-32 are checked, and the running
 *     CRC at every block's end is kept: every block made again later is
 *     checked against it;
 *   - a larger stored member is read in place from the source and
 *     CRC-checked piecewise (crcpieces.h) as its reads cover it.
 *
 * Who waits for whom: a thread that needs a block a stream is about to
 * make waits for that stream alone (the member's streams are claimed, like
 * a filling cache entry); no lock is held across a read of the source or
 * an inflation.  Read-ahead and prefetch run in the inflate pool (pool.h),
 * never in the thread answering a request.
 *
 * Behind the memory cache may be a disk tier (disk.h): a block missing from
 * memory is looked up there before anything is inflated, and what is
 * inflated (blocks, resume points, a verified member's block CRCs) is
 * written there by the pool, off the path of the read that needed it.
 *
 * Memory: the budget covers the cache's entries (blocks, resume points,
 * parked streams, each charged at its allocated size) and, reserved
 * against it, the member handles and what the caller reserves (the tree
 * and indexes).  Beside it: at most 4 MiB of spare block buffers, blocks
 * held for replies and for the disk writer (at most 8 MiB), and one
 * scratch buffer of at most a block per thread.
 *
 * Faults: data faults (corrupt data, CRC or size mismatch, a block that
 * differs from what the member gave before) fail the member: EIO from then
 * on, reported once through the fault callback.  Source faults (a read of
 * the layer failed) fail that read only; the next read tries again.  A
 * layer whose bytes changed (-ESTALE from its source) fails every read that
 * needs them.  The reader carries no names: the callback's owner pointer
 * lets the caller say which layer and entry.
 *
 * All calls are thread-safe. */
#ifndef LFS_READER_H
#define LFS_READER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "cache.h"
#include "disk.h"
#include "pool.h"
#include "source.h"

/* Member flags (lfs_member_flags). */
#define LFS_MEMBER_FAILED 1u
#define LFS_MEMBER_VERIFIED 2u	/* its CRC-32 matched once */
#define LFS_MEMBER_UNCHECKED 4u	/* large stored, read too scattered to check */
#define LFS_MEMBER_JUMPED 8u	/* made whole ahead after a jump (prefetch_jumps) */

/* Counters of one layer; updated atomically. */
struct lfs_layer_counters {
	uint64_t bytes_read;	 /* compressed bytes read from the source */
	uint64_t bytes_inflated; /* bytes produced by decoding */
	uint64_t bytes_served;	 /* bytes returned to readers */
};

/* What the layer says about a member. */
struct lfs_member_desc {
	uint64_t layer;		/* cache key: the layer, unique in the process */
	uint64_t key;		/* cache key: the member within the layer */
	uint64_t data_off;	/* where the member's data starts in the source */
	uint64_t comp_size;
	uint64_t size;
	uint32_t crc;
	uint16_t method;	/* zip method: 0 stored, 8 deflated */
	/* Where the layer's disk tier is, once its digest is known: a slot
	 * the caller sets atomically (NULL: none yet).  NULL: never. */
	struct lfs_disk_layer *const *disk;
	/* While that slot is still NULL because the layer's digest is being
	 * made: where the blocks made meanwhile are noted, to be written
	 * once it is known (lfs_disk_later_attach).  NULL: nothing noted. */
	struct lfs_disk_later *later;
};

enum lfs_fault {
	LFS_FAULT_DATA,		/* the member's data is bad: EIO from now on */
	LFS_FAULT_SOURCE,	/* a read of the layer failed: EIO for that read */
	LFS_FAULT_CHANGED,	/* the layer's bytes changed: EIO for what needs them */
};

struct lfs_member;

struct lfs_reader_config {
	uint64_t cache_size;	/* budget in bytes */
	uint32_t block_size;	/* power of two, >= 4096 */
	uint32_t spacing;	/* multiple of block_size */
	uint64_t readahead;	/* bytes inflated ahead of a sequential reader */
	unsigned threads;	/* inflate pool threads (0: one per core) */
	/* Told of every fault (see above); owner is the member's.  Called from
	 * any thread, with no lock of the reader held.  NULL: none. */
	void (*fault)(void *ctx, void *owner, enum lfs_fault kind, const char *why);
	void *fault_ctx;
	/* The disk tier behind the memory cache (NULL: none); the reader
	 * writes what it inflates there, in the pool.  The caller keeps it
	 * open until the reader is freed. */
	struct lfs_disk *disk;
	/* Members smaller than this are neither read from nor written to the
	 * disk tier (0: every member is).  A record per small member costs a
	 * file and a random read of its own, while in the layer it lies next
	 * to its neighbours and comes in with them in one large read: reading
	 * them again from the layer is faster than from such records. */
	uint64_t disk_min;
	/* A read that jumps far into a member no stream is near (an mmap'd
	 * library's page fault) has the rest of the member made ahead in the
	 * pool's prefetch class, once per member up to a quarter of the
	 * budget: its next faults land anywhere in it. */
	int prefetch_jumps;
};

/* How a read of a streamed member went, for read-ahead. */
enum lfs_seq {
	LFS_SEQ_NO,		/* a block needed a fresh stream, or a stream
				 * continued from elsewhere than where it stopped */
	LFS_SEQ_READY,		/* every block was ready */
	LFS_SEQ_CONTINUED,	/* no fresh stream, and a block was made by the
				 * stream parked (or running) right where the read
				 * went on */
};

/* Blocks held for a reply: iov points into them until lfs_reader_unpin(). */
struct lfs_pin {
	struct iovec *iov;
	size_t niov;
	struct lfs_centry **entries;
	size_t count;
	void *buf;		/* large stored members: the bytes read */
	enum lfs_seq sequential; /* how the read went (see lfs_reader_readahead) */
	/* Bytes of the member read in order up to the end of this read: reads
	 * that start within LFS_IN_ORDER_SLACK of where the furthest read
	 * ended continue a run (the kernel's read-ahead requests can arrive
	 * out of order); any other read starts a new one.  Approximate when
	 * threads read one member at once. */
	uint64_t in_order;
};

#define LFS_IN_ORDER_SLACK (1u << 20)

struct lfs_reader_stats {
	struct lfs_cache_stats cache;
	struct lfs_pool_stats pool;
	uint64_t bytes_read, bytes_inflated, resume_points_made, members_failed;
	uint64_t source_errors;	/* reads that failed on the source */
	uint64_t stream_waits;	/* reads that waited for another thread's stream */
	uint64_t demand_fills;	/* blocks reads inflated on their own threads */
	uint64_t prefetch_waits; /* reads that waited for a block a prefetch was making */
	uint64_t readahead_jobs; /* read-ahead jobs started */
	uint64_t prefetch_jobs;	/* prefetch jobs run */
	uint64_t prefetch_made;	/* bytes prefetch made (not found made) */
	uint64_t prefetch_used;	/* of those, bytes a read then took */
	uint64_t jump_prefetches; /* members made whole ahead after a jump */
	uint64_t spare_bytes;	/* block buffers kept spare, outside the budget */
	uint64_t held_back;	/* budget the memory governor holds back now */
	uint64_t governor_runs;
	uint64_t disk_hits;	/* blocks served from the disk tier */
	uint64_t disk_points;	/* resume points read back from it */
	uint64_t disk_writes_queued, disk_writes_skipped;
	uint64_t disk_writes_pending;	/* queued, not written yet */
	struct lfs_disk_stats disk;
};

struct lfs_reader;

/* Checks and fills in defaults (0 fields); -EINVAL with a reason in err. */
int lfs_reader_config_check(struct lfs_reader_config *cfg, char *err, size_t errlen);

struct lfs_reader *lfs_reader_new(const struct lfs_reader_config *cfg);
/* Blocks made before a layer's digest is known have no place in the disk
 * tier yet (it is keyed by the digest).  The caller makes one of these for
 * such a layer and points its members' descriptors at it; the reader notes
 * each block it makes there (member, index, running CRC; at most 65,536),
 * and lfs_disk_later_attach, called once the layer's disk slot is set,
 * queues them for the disk writer, which writes those still in memory.
 * Thread-safe.  NULL when memory ran out (then nothing is noted). */
struct lfs_disk_later *lfs_disk_later_new(void);
/* l: the layer's disk tier, just set in its slot; NULL: the layer gets
 * none (what was noted is forgotten).  Notes nothing more after it. */
void lfs_disk_later_attach(struct lfs_reader *r, struct lfs_disk_later *dl,
			   struct lfs_disk_layer *l);
/* After the reader is freed.  NULL is ignored. */
void lfs_disk_later_free(struct lfs_disk_later *dl);

/* Waits for the writes queued for the disk tier (at most 10 s: the blocks
 * they hold are what the next daemon would inflate again), then for the
 * pool's running jobs, cancels the queued ones, and frees.  The members
 * must be freed after this. */
void lfs_reader_free(struct lfs_reader *r);

/* A handle for reading one member from src (which must outlive it).
 * `counters` may be NULL; `owner` is passed back in fault reports.  NULL
 * when memory ran out. */
struct lfs_member *lfs_member_new(struct lfs_reader *r, struct lfs_source *src,
				  const struct lfs_member_desc *d,
				  struct lfs_layer_counters *counters, void *owner);
/* NULL is ignored.  Nothing may use the member any more (no read, no job
 * of the pool: free the reader first, or lfs_reader_wait_idle()). */
void lfs_member_free(struct lfs_member *m);

/* The same in memory of the caller's (lfs_member_size() bytes, aligned
 * for any type): a stack makes its handles in slabs of its own, so that
 * thousands of small, long-lived handles do not sit between the blocks
 * of the heap and keep its pages from going back.  0 or -ENOMEM. */
size_t lfs_member_size(void);
int lfs_member_init(struct lfs_member *m, struct lfs_reader *r, struct lfs_source *src,
		    const struct lfs_member_desc *d, struct lfs_layer_counters *counters,
		    void *owner);
/* Frees what lfs_member_init allocated, not m itself. */
void lfs_member_destroy(struct lfs_member *m);
uint32_t lfs_member_flags(const struct lfs_member *m);
const struct lfs_member_desc *lfs_member_desc(const struct lfs_member *m);

/* Copies up to len bytes of member m at offset off into buf.  Returns the
 * byte count (short only at the member's end, 0 past it) or a negative
 * errno (-EIO for bad, unsupported or unreadable data). */
ssize_t lfs_reader_read(struct lfs_reader *r, struct lfs_member *m, void *buf, size_t len,
			uint64_t off);

/* Like lfs_reader_read, without the copy: pins the blocks holding the
 * range and describes it in p->iov.  The caller must lfs_reader_unpin(). */
ssize_t lfs_reader_pin(struct lfs_reader *r, struct lfs_member *m, uint64_t off, size_t len,
		       struct lfs_pin *p);
void lfs_reader_unpin(struct lfs_reader *r, struct lfs_pin *p);

/* Called after a read that ended at `end` has been answered, with the
 * pin's `sequential`.  A read that continued a stream from where it
 * stopped (a reader going through the member in order, unlike a program
 * faulting in pages of a mapped library here and there) queues read-ahead
 * in the pool: up to `readahead` bytes beyond `end` are inflated by
 * continuing that stream, so the next reads find their blocks ready.  One
 * stream at a time reads ahead of a reader; its later reads only push the
 * target on, and a read that found every block ready starts read-ahead
 * only where the last one stopped just ahead.  The `readahead` bytes are
 * shared by the members being read ahead at once. */
void lfs_reader_readahead(struct lfs_reader *r, struct lfs_member *m, uint64_t end,
			  enum lfs_seq seq);

/* Has blocks [first, last] of m made in the pool at `prio` (start-up
 * prefetch): blocks already there are skipped, streams are started where
 * needed.  0, or a negative errno when it cannot be queued. */
int lfs_reader_prefetch(struct lfs_reader *r, struct lfs_member *m, uint64_t first,
			uint64_t last, enum lfs_prio prio);

/* Returns once the pool has nothing queued or running. */
void lfs_reader_wait_idle(struct lfs_reader *r);

/* Marks m failed (EIO from then on) and reports `why` as a data fault, the
 * first time only.  Returns -EIO. */
int lfs_reader_fail(struct lfs_reader *r, struct lfs_member *m, const char *why);

/* Drops cached blocks and parked streams (keeping resume points) and the
 * spare block buffers. */
void lfs_reader_drop_blocks(struct lfs_reader *r);

uint32_t lfs_reader_block_size(const struct lfs_reader *r);
/* Counts bytes the caller holds for the mount (its tree and indexes)
 * against the cache budget; see lfs_cache_reserve. */
void lfs_reader_reserve(struct lfs_reader *r, int64_t bytes);
/* The inflate pool, for the caller's own background jobs. */
struct lfs_pool *lfs_reader_pool(struct lfs_reader *r);
void lfs_reader_get_stats(struct lfs_reader *r, struct lfs_reader_stats *out);

#endif
