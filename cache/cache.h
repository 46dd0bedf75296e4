/* The block cache: decompressed blocks, resume points and parked inflate
 * streams, in one byte budget.
 *
 * Keys name a layer (a number unique in the process: this tier is the
 * daemon's own memory), a member within it and an index, never a path.
 * The low bits of the index say what an entry is (LFS_KEY_BLOCK/RESUME/
 * PARKED).
 *
 * Concurrency: entries are spread over shards, each with its own lock, LRU
 * list and share of the budget.  A lookup that misses may *claim* the key:
 * the claimant fills it while every other thread that wants the same key
 * waits, so a block is decompressed once however many readers want it.
 * Entries are reference counted; data is copied out with no lock held, and
 * an entry in use is never evicted.  So the budget is exceeded at most by
 * the entries currently referenced (in flight).
 *
 * All functions are thread-safe. */
#ifndef LFS_CACHE_H
#define LFS_CACHE_H

#include <stddef.h>
#include <stdint.h>

enum lfs_key_kind {
	LFS_KEY_BLOCK = 0,	/* decompressed bytes [i*B, (i+1)*B) of a member */
	LFS_KEY_RESUME = 1,	/* resume point at i*spacing */
	LFS_KEY_PARKED = 2,	/* a live stream positioned at block i (taken, not shared) */
};

struct lfs_cache_key {
	uint64_t layer;		/* the layer */
	uint64_t member;	/* member within the layer (local header offset) */
	uint64_t index;		/* (i << 2) | kind */
};

static inline struct lfs_cache_key lfs_key(uint64_t layer, uint64_t member,
					   enum lfs_key_kind kind, uint64_t i)
{
	struct lfs_cache_key k = { layer, member, (i << 2) | (uint64_t)kind };

	return k;
}

struct lfs_cache;
struct lfs_centry;

struct lfs_cache_stats {
	uint64_t hits, misses, evictions, inserts;
	uint64_t bytes;		/* current charge of all entries */
	uint64_t budget;	/* what entries may take: the budget less what is reserved */
	uint64_t reserved;	/* see lfs_cache_reserve */
	uint64_t entries;
	uint64_t resume_points;	/* resident resume points */
};

/* budget: bytes; nshards: 0 picks a default. */
struct lfs_cache *lfs_cache_new(uint64_t budget, unsigned nshards);
void lfs_cache_free(struct lfs_cache *c);

/* How entry data is given back (default: free()); set before any other
 * call.  The read path recycles block buffers through it. */
void lfs_cache_set_release(struct lfs_cache *c, void (*release)(void *ctx, void *data,
								  size_t len),
			   void *ctx);

/* What an entry of len bytes really takes (default: len), for its charge
 * against the budget; set before any other call.  The read path rounds
 * small buffers up to size classes and charges what it allocates. */
void lfs_cache_set_sizer(struct lfs_cache *c, size_t (*sizer)(size_t len));

/* Returns a referenced, ready entry, or NULL when absent.  If the key is
 * being filled by another thread, waits for it (NULL if that fill failed). */
struct lfs_centry *lfs_cache_get(struct lfs_cache *c, const struct lfs_cache_key *k);

/* Like lfs_cache_get, but on a miss claims the key: *claimed is set, the
 * returned entry is empty and the caller must end with lfs_cache_publish()
 * or lfs_cache_abandon().  Returns NULL only with *err set: a fill this
 * call waited for failed (*err < 0), or memory ran out. */
struct lfs_centry *lfs_cache_acquire(struct lfs_cache *c, const struct lfs_cache_key *k,
				     int *claimed, int *err);

/* Completes a claimed entry with `data` (malloc'd, ownership passes to the
 * cache), wakes the waiters.  The caller keeps its reference. */
void lfs_cache_publish(struct lfs_cache *c, struct lfs_centry *e, void *data, size_t len);

/* Fails a claimed entry: waiters get `err`, the key is free again.  Drops
 * the caller's reference. */
void lfs_cache_abandon(struct lfs_cache *c, struct lfs_centry *e, int err);

/* Inserts data under k unless present (then data is freed).  Never blocks
 * on fills.  Ownership of data passes to the cache. */
void lfs_cache_insert(struct lfs_cache *c, const struct lfs_cache_key *k, void *data,
		      size_t len);

/* Like lfs_cache_insert, and returns a referenced entry for k: the new one,
 * or the one already there (data is then freed).  Waits for a key being
 * filled; when that fill fails, data goes in.  NULL only when memory ran
 * out. */
struct lfs_centry *lfs_cache_insert_get(struct lfs_cache *c, const struct lfs_cache_key *k,
					void *data, size_t len);

/* Removes an unreferenced ready entry and hands its data to the caller
 * (NULL when absent or in use).  For parked streams, which one thread at a
 * time continues. */
void *lfs_cache_take(struct lfs_cache *c, const struct lfs_cache_key *k, size_t *len);

void lfs_cache_release(struct lfs_cache *c, struct lfs_centry *e);
/* One more reference to an entry the caller holds a reference to. */
void lfs_cache_ref(struct lfs_cache *c, struct lfs_centry *e);

/* A mark on an entry, for whoever made it: set it, and take it (returns
 * whether it was set, and clears it).  The read path marks what prefetch
 * made, to count what the function then read of it. */
void lfs_centry_mark(struct lfs_centry *e);
int lfs_centry_take_mark(struct lfs_centry *e);

const void *lfs_centry_data(const struct lfs_centry *e);
size_t lfs_centry_len(const struct lfs_centry *e);

/* Drops every unreferenced entry of the given kind (e.g. all blocks, while
 * keeping resume points). */
void lfs_cache_drop(struct lfs_cache *c, enum lfs_key_kind kind);

void lfs_cache_get_stats(struct lfs_cache *c, struct lfs_cache_stats *out);

/* Memory the caller holds outside the cache (the tree, indexes, member
 * handles) counted against the budget: entries get the budget less what is
 * reserved, but never less than a quarter of it.  delta may be negative.
 * Takes effect at the next insertion or release. */
void lfs_cache_reserve(struct lfs_cache *c, int64_t delta);

#endif
