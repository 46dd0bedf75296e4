/* The reader's insides, shared by its files (not part of its contract:
 * reader.h is).
 *
 *   reader.c   handles, members of one block, stored members, pins, faults
 *   streams.c  members larger than a block: who makes which block with
 *              which stream, who waits, read-ahead and prefetch
 *   tier.c     the disk tier behind the memory cache, and the governor of
 *              the daemon's memory
 *
 * Locking: a member's streams are claimed under m->s->lock, which is held
 * only briefly (never across I/O or inflation); lock order is the member's,
 * then a cache shard's; the cache never calls back into the reader. */
#ifndef LFS_READER_IMPL_H
#define LFS_READER_IMPL_H

#include "reader.h"

#include "bufpool.h"
#include "codec.h"
#include "crcpieces.h"
#include "resume.h"
#include "stream.h"

#include <pthread.h>
#include <stdint.h>

#define DEFAULT_CACHE_SIZE (256ull << 20)
#define DEFAULT_BLOCK_SIZE (256u << 10)
#define DEFAULT_SPACING (1u << 20)
#define SPARE_BYTES (2u << 20)	/* spare block buffers outside the budget */
#define CRC_SLOTS 64		/* large stored members checked at once */
#define CRC_PIECES 16		/* separate pieces of one before it is given up */
#define MAX_PARKED_PROBES 16	/* blocks behind a read searched for a parked stream */
#define MAX_SHARDS 16		/* cache shards (locks and LRUs) */
#define SHARD_MIN_BYTES (16ull << 20) /* the least budget of one */
#define MAX_RUNNING 8		/* streams of one member others can wait for */
#define CRC_PAGE 512		/* block CRCs per page of the member's table */
#define MAX_CRC_BLOCKS (1ull << 24) /* members with more blocks keep no table */
#define DISK_PIN_MAX (8ull << 20) /* blocks held for the disk writer at most */
#define CEILING_SLACK (32ull << 20) /* the daemon's memory may pass the budget by this */
#define GOVERN_EVERY (4ull << 20)	/* bytes made between two looks at the memory */
#define DISK_POINT_PROBES 4	/* resume points looked for on disk before a stream */

/* A stream being advanced by some thread: it makes block `pos` next and
 * goes on through `target`. */
struct running {
	uint64_t pos, target;
	int active;
	int readahead;		/* a read-ahead job's: its target may be pushed */
	int prefetch;		/* a prefetch job's */
};

/* A read-ahead job: make blocks [from, target] of m, continuing the
 * stream parked where they start. */
struct ra_job {
	struct lfs_pool_job job;
	struct lfs_reader *r;
	struct lfs_member *m;
	uint64_t from, target;	/* m->s->lock while queued */
};

#define RA_QUEUED 4		/* read-ahead jobs of one member waiting at once */
#define RA_SEEN 16		/* members counted as being read ahead, at most */
#define RA_SEEN_NS 1000000000ull /* ... for as long after they asked for it */

/* What only a streamed member (larger than a block) needs: its streams,
 * their waiters, read-ahead and block CRCs.  Kept apart so that the
 * handles of the many small members stay small (they are most of a
 * layer's entries, and a handle is made for every member read). */
struct member_streams {
	/* Cumulative CRC-32 at each block's end, (1 << 32 | crc) once known:
	 * pages allocated as streams first pass them (atomic pointers). */
	uint64_t **crc_pages;
	uint64_t ncrc_pages;
	int disk_crcs;			/* atomic: 0 not looked for, 1 looked for, 2 stored */
	pthread_mutex_t lock;		/* the fields below */
	pthread_cond_t moved;		/* a running stream made a block or stopped */
	struct running run[MAX_RUNNING];
	unsigned waiters;
	uint64_t ra_stop;		/* where read-ahead last stopped at its target */
	struct ra_job *ra_queued[RA_QUEUED]; /* read-ahead jobs waiting in the pool */
};

struct lfs_member {
	struct lfs_source *src;
	struct lfs_member_desc d;
	const struct lfs_codec *codec;	/* NULL: method not supported */
	struct lfs_layer_counters *counters;
	void *owner;
	uint64_t nblocks;
	uint64_t reach;			/* furthest offset a stream reached, atomic */
	uint64_t order_end, order_run;	/* lfs_pin.in_order: where the run reached,
					 * its bytes; atomic */
	uint32_t flags;			/* LFS_MEMBER_*, atomic */
	struct member_streams *s;	/* streamed members only */
	struct lfs_reader *r;		/* whose budget the handle is counted in */
};

struct lfs_reader {
	struct lfs_cache *cache;
	struct lfs_bufpool *bufs;
	struct lfs_pool *pool;
	struct lfs_crc_pieces *crcs;	/* large stored members, as they are read */
	uint32_t block_size, spacing;
	uint32_t readahead_blocks;
	int prefetch_jumps;
	void (*fault)(void *ctx, void *owner, enum lfs_fault kind, const char *why);
	void *fault_ctx;
	unsigned ra_active;		/* read-ahead streams running, atomic */
	pthread_mutex_t ra_lock;	/* ra_seen */
	struct {
		const struct lfs_member *m;
		uint64_t at;		/* CLOCK_MONOTONIC_COARSE, ns; 0: free */
	} ra_seen[RA_SEEN];		/* members that asked for read-ahead lately */
	struct lfs_disk *disk;
	uint64_t disk_min;		/* smaller members skip the disk tier */
	uint64_t disk_pinned;		/* bytes held for the disk writer, atomic */
	uint64_t disk_hits, disk_points, disk_queued, disk_done, disk_skipped;
	uint64_t budget;		/* cache_size */
	uint64_t made;			/* bytes made since the governor looked, atomic */
	int governing;			/* atomic: a thread looks now */
	int64_t given_back;		/* atomic: budget the governor holds back */
	uint64_t governor_runs;
	uint64_t bytes_read, bytes_inflated, resume_points_made, members_failed;
	uint64_t source_errors, stream_waits, readahead_jobs;
	uint64_t demand_fills, prefetch_waits, jump_prefetches;
	uint64_t prefetch_jobs, prefetch_made, prefetch_used; /* bytes, for the last two */
	uint64_t block_hits;		/* blocks found ready (lfs_cache_get) */
};

/* How a block came to be ready. */
enum block_source {
	BLOCK_READY,		/* found in the cache */
	BLOCK_CONTINUED,	/* made by a stream parked or running right before it */
	BLOCK_RESTARTED,	/* made by a stream from a resume point, the start,
				 * or parked some blocks before it */
};

static inline void add(uint64_t *counter, uint64_t n)
{
	__atomic_add_fetch(counter, n, __ATOMIC_RELAXED);
}

static inline struct lfs_cache_key key_of(const struct lfs_member *m, enum lfs_key_kind kind,
					  uint64_t i)
{
	return lfs_key(m->d.layer, m->d.key, kind, i);
}

static inline uint32_t block_len(const struct lfs_reader *r, const struct lfs_member *m,
				 uint64_t b)
{
	uint64_t left = m->d.size - b * r->block_size;

	return left < r->block_size ? (uint32_t)left : r->block_size;
}

static inline int failed(const struct lfs_member *m)
{
	return (lfs_member_flags(m) & LFS_MEMBER_FAILED) != 0;
}

/* Whether m's blocks belong in the disk tier at all (disk_min). */
static inline int disk_kept(const struct lfs_member *m)
{
	return m->d.size >= m->r->disk_min;
}

/* m's layer in the disk tier: NULL when it has none (yet), or when m is
 * too small to be kept there. */
static inline struct lfs_disk_layer *disk_of(const struct lfs_member *m)
{
	return m->d.disk && disk_kept(m) ? __atomic_load_n(m->d.disk, __ATOMIC_ACQUIRE) : NULL;
}

/* Large stored members are read in place, not through the cache. */
static inline int in_place(const struct lfs_reader *r, const struct lfs_member *m)
{
	return m->d.method == 0 && m->d.size > r->block_size;
}

/* Members larger than a block of a streaming codec: streams.c's. */
static inline int streamed(const struct lfs_reader *r, const struct lfs_member *m)
{
	return m->codec && m->codec->streams && m->d.size > r->block_size;
}

/* reader.c */
int rd_fetch(struct lfs_reader *r, struct lfs_member *m, void *buf, size_t len, uint64_t off);
void rd_count_inflated(struct lfs_reader *r, struct lfs_member *m, uint64_t n);
int rd_source_fault(struct lfs_reader *r, struct lfs_member *m, int rc);
/* demand: for a read (counted in demand_fills), not for the pool */
int rd_get_whole(struct lfs_reader *r, struct lfs_member *m, struct lfs_centry **out, int demand);

/* streams.c */
int rd_get_streamed(struct lfs_reader *r, struct lfs_member *m, uint64_t b,
		    struct lfs_centry **out, enum block_source *how);
int rd_known_crc(const struct lfs_member *m, uint64_t b, uint32_t *crc);
void rd_record_crc(struct lfs_member *m, uint64_t b, uint32_t crc);
void rd_note_reach(struct lfs_member *m, uint64_t pos);

/* tier.c */
void rd_govern(struct lfs_reader *r, uint64_t made);
/* 1 while blocks m makes are noted for a disk tier to come (reader.h,
 * lfs_disk_later_new). */
int rd_disk_later(const struct lfs_member *m);
void rd_disk_write_block(struct lfs_reader *r, struct lfs_member *m, uint64_t b,
			 struct lfs_centry *e, uint32_t cum);
void rd_disk_write_copy(struct lfs_reader *r, struct lfs_member *m, int kind, uint64_t index,
			const void *data, size_t len);
void rd_store_crcs(struct lfs_reader *r, struct lfs_member *m);
void rd_load_crcs(struct lfs_member *m);
struct lfs_centry *rd_disk_block(struct lfs_reader *r, struct lfs_member *m, uint64_t b);
void rd_disk_points(struct lfs_reader *r, struct lfs_member *m, uint64_t b);
/* At free: the queued disk writes done in this thread, then those running
 * waited for (at most 10 s). */
void rd_disk_drain(struct lfs_reader *r);

#endif
