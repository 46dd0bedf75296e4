/* Block assembly: which stream makes which block, who waits, who reads
 * ahead.  See reader.h for the contract.
 *
 * A member larger than one block has streams (stream.h) that move through
 * it.  A stream between reads is parked in the cache under the block it
 * makes next; a thread that takes one to advance it registers it in the
 * member's `run` slots (position and target) under the member's lock, so
 * that a thread wanting a block that stream is about to make waits on the
 * member's condition instead of inflating the same span again, and no lock
 * is held while the stream runs.  The lock order is member, then cache
 * shard; the cache never calls back into the reader. */
#include "reader.h"

#include "bufpool.h"
#include "codec.h"
#include "crcpieces.h"
#include "resume.h"
#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <libdeflate.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

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
	uint32_t crc_block_op_valid;
	uLong crc_block_op;		/* crc32_combine_gen(block_size) */
	void (*fault)(void *ctx, void *owner, enum lfs_fault kind, const char *why);
	void *fault_ctx;
	unsigned ra_active;		/* read-ahead streams running, atomic */
	struct lfs_disk *disk;
	uint64_t disk_pinned;		/* bytes held for the disk writer, atomic */
	uint64_t disk_hits, disk_points, disk_queued, disk_done, disk_skipped;
	uint64_t budget;		/* cache_size */
	uint64_t made;			/* bytes made since the governor looked, atomic */
	int governing;			/* atomic: a thread looks now */
	int64_t given_back;		/* atomic: budget the governor holds back */
	uint64_t governor_runs;
	uint64_t bytes_read, bytes_inflated, resume_points_made, members_failed;
	uint64_t source_errors, stream_waits, readahead_jobs;
	uint64_t block_hits;		/* blocks found ready (lfs_cache_get) */
};

/* How a block came to be ready. */
enum block_source {
	BLOCK_READY,		/* found in the cache */
	BLOCK_CONTINUED,	/* made by a stream parked or running right before it */
	BLOCK_RESTARTED,	/* made by a stream from a resume point, the start,
				 * or parked some blocks before it */
};

static void add(uint64_t *counter, uint64_t n)
{
	__atomic_add_fetch(counter, n, __ATOMIC_RELAXED);
}

int lfs_reader_config_check(struct lfs_reader_config *cfg, char *err, size_t errlen)
{
	if (!cfg->cache_size)
		cfg->cache_size = DEFAULT_CACHE_SIZE;
	if (!cfg->block_size)
		cfg->block_size = DEFAULT_BLOCK_SIZE;
	if (!cfg->spacing)
		cfg->spacing = cfg->block_size > DEFAULT_SPACING ? cfg->block_size
								  : DEFAULT_SPACING;
	if (cfg->block_size < 4096 || cfg->block_size > (64u << 20) ||
	    (cfg->block_size & (cfg->block_size - 1))) {
		snprintf(err, errlen, "block_size must be a power of two from 4K to 64M");
		return -EINVAL;
	}
	if (cfg->spacing % cfg->block_size) {
		snprintf(err, errlen, "resume_spacing must be a multiple of block_size");
		return -EINVAL;
	}
	if (cfg->readahead > cfg->cache_size / 4)
		cfg->readahead = cfg->cache_size / 4; /* never crowd out what is read */
	if (cfg->cache_size < 4ull * cfg->block_size) {
		snprintf(err, errlen, "cache_size must hold at least four blocks");
		return -EINVAL;
	}
	return 0;
}

/* Each shard of the cache keeps its own LRU within an equal share of the
 * budget, so a share must hold many of the largest entries (a parked stream
 * is about 180 KiB, a block up to 64 MiB).  With 16 shards of a 4 MiB
 * budget, four readers had their parked streams and resume points evicted
 * under them and inflated 10-25 times what they read; with 16 MiB blocks
 * and 16 shards, a block was larger than its shard and evicted at its last
 * release.  Small budgets and large blocks get fewer shards. */
static unsigned cache_shards(uint64_t budget, uint32_t block_size)
{
	uint64_t least = SHARD_MIN_BYTES > 8ull * block_size ? SHARD_MIN_BYTES : 8ull * block_size;
	uint64_t n = budget / least;

	return n < 1 ? 1 : n > MAX_SHARDS ? MAX_SHARDS : (unsigned)n;
}

static void release_data(void *ctx, void *data, size_t len)
{
	lfs_bufpool_put(((struct lfs_reader *)ctx)->bufs, data, len);
}

/* An entry's data was allocated for its length and the spare byte a whole
 * member is decoded with, in a size class. */
static size_t entry_size(size_t len) { return lfs_bufpool_class(len + 1); }

struct lfs_reader *lfs_reader_new(const struct lfs_reader_config *cfg)
{
	struct lfs_reader *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->block_size = cfg->block_size;
	r->spacing = cfg->spacing;
	r->readahead_blocks = (uint32_t)(cfg->readahead / cfg->block_size);
	r->fault = cfg->fault;
	r->fault_ctx = cfg->fault_ctx;
	r->disk = cfg->disk;
	r->budget = cfg->cache_size;
	r->crc_block_op = crc32_combine_gen((z_off_t)cfg->block_size);
	r->cache = lfs_cache_new(cfg->cache_size, cache_shards(cfg->cache_size, cfg->block_size));
	r->bufs = lfs_bufpool_new(cfg->block_size, SPARE_BYTES);
	r->pool = lfs_pool_new(cfg->threads);
	r->crcs = lfs_crc_pieces_new(CRC_SLOTS, CRC_PIECES);
	if (!r->cache || !r->bufs || !r->pool || !r->crcs) {
		lfs_reader_free(r);
		return NULL;
	}
	lfs_cache_set_release(r->cache, release_data, r);
	lfs_cache_set_sizer(r->cache, entry_size);
	return r;
}

void lfs_reader_free(struct lfs_reader *r)
{
	if (!r)
		return;
	lfs_pool_free(r->pool); /* first: its jobs use the cache */
	lfs_cache_free(r->cache);
	lfs_bufpool_free(r->bufs);
	lfs_crc_pieces_free(r->crcs);
	free(r);
}

uint32_t lfs_reader_block_size(const struct lfs_reader *r) { return r->block_size; }
struct lfs_pool *lfs_reader_pool(struct lfs_reader *r) { return r->pool; }
void lfs_reader_reserve(struct lfs_reader *r, int64_t bytes) { lfs_cache_reserve(r->cache, bytes); }

/* ---- members ---- */

size_t lfs_member_size(void) { return sizeof(struct lfs_member); }

int lfs_member_init(struct lfs_member *m, struct lfs_reader *r, struct lfs_source *src,
		    const struct lfs_member_desc *d, struct lfs_layer_counters *counters,
		    void *owner)
{
	memset(m, 0, sizeof(*m));
	m->src = src;
	m->d = *d;
	m->codec = lfs_codec_for(d->method);
	m->counters = counters;
	m->owner = owner;
	m->nblocks = d->size / r->block_size + (d->size % r->block_size != 0);
	m->r = r;
	lfs_cache_reserve(r->cache, (int64_t)sizeof(*m));
	if (!m->codec || !m->codec->streams || d->size <= r->block_size)
		return 0;
	m->s = calloc(1, sizeof(*m->s));
	if (!m->s)
		return -ENOMEM;
	lfs_cache_reserve(r->cache, (int64_t)(sizeof(*m->s) + m->nblocks / CRC_PAGE * 8));
	if (m->nblocks <= MAX_CRC_BLOCKS) {
		m->s->ncrc_pages = (m->nblocks + CRC_PAGE - 1) / CRC_PAGE;
		m->s->crc_pages = calloc(m->s->ncrc_pages, sizeof(*m->s->crc_pages));
		if (!m->s->crc_pages) {
			free(m->s);
			m->s = NULL;
			return -ENOMEM;
		}
	}
	pthread_mutex_init(&m->s->lock, NULL);
	pthread_cond_init(&m->s->moved, NULL);
	return 0;
}

void lfs_member_destroy(struct lfs_member *m)
{
	if (!m)
		return;
	if (m->r) {
		int64_t held = (int64_t)sizeof(*m);

		if (m->s) {
			held += (int64_t)(sizeof(*m->s) + m->nblocks / CRC_PAGE * 8);
			for (uint64_t i = 0; i < m->s->ncrc_pages; i++)
				if (m->s->crc_pages[i])
					held += CRC_PAGE * 8;
		}
		lfs_cache_reserve(m->r->cache, -held);
	}
	m->r = NULL;
	if (!m->s)
		return;
	for (uint64_t i = 0; i < m->s->ncrc_pages; i++)
		free(m->s->crc_pages[i]);
	free(m->s->crc_pages);
	pthread_mutex_destroy(&m->s->lock);
	pthread_cond_destroy(&m->s->moved);
	free(m->s);
	m->s = NULL;
}

struct lfs_member *lfs_member_new(struct lfs_reader *r, struct lfs_source *src,
				  const struct lfs_member_desc *d,
				  struct lfs_layer_counters *counters, void *owner)
{
	struct lfs_member *m = malloc(sizeof(*m));

	if (m && lfs_member_init(m, r, src, d, counters, owner)) {
		free(m);
		m = NULL;
	}
	return m;
}

void lfs_member_free(struct lfs_member *m)
{
	lfs_member_destroy(m);
	free(m);
}

uint32_t lfs_member_flags(const struct lfs_member *m)
{
	return __atomic_load_n(&m->flags, __ATOMIC_ACQUIRE);
}

const struct lfs_member_desc *lfs_member_desc(const struct lfs_member *m) { return &m->d; }

static struct lfs_cache_key key_of(const struct lfs_member *m, enum lfs_key_kind kind,
				   uint64_t i)
{
	return lfs_key(m->d.layer, m->d.key, kind, i);
}

static uint32_t block_len(const struct lfs_reader *r, const struct lfs_member *m, uint64_t b)
{
	uint64_t left = m->d.size - b * r->block_size;

	return left < r->block_size ? (uint32_t)left : r->block_size;
}

/* ---- faults ---- */

static void report(struct lfs_reader *r, struct lfs_member *m, enum lfs_fault kind,
		   const char *why)
{
	if (r->fault)
		r->fault(r->fault_ctx, m->owner, kind, why);
}

int lfs_reader_fail(struct lfs_reader *r, struct lfs_member *m, const char *why)
{
	uint32_t old = __atomic_fetch_or(&m->flags, LFS_MEMBER_FAILED, __ATOMIC_ACQ_REL);

	if (!(old & LFS_MEMBER_FAILED)) {
		add(&r->members_failed, 1);
		report(r, m, LFS_FAULT_DATA, why);
	}
	return -EIO;
}

/* A read of the source failed: this read fails, nothing is remembered. */
static int source_fault(struct lfs_reader *r, struct lfs_member *m, int rc)
{
	char why[128];

	if (rc == -ENOMEM)
		return rc;
	add(&r->source_errors, 1);
	if (rc == -ESTALE) {
		report(r, m, LFS_FAULT_CHANGED, "the layer changed after it was mounted");
	} else {
		snprintf(why, sizeof(why), "cannot read the layer: %s", strerror(-rc));
		report(r, m, LFS_FAULT_SOURCE, why);
	}
	return -EIO;
}

static int failed(const struct lfs_member *m)
{
	return (lfs_member_flags(m) & LFS_MEMBER_FAILED) != 0;
}

/* Reads compressed bytes [off, off + len) of m. */
static int fetch(struct lfs_reader *r, struct lfs_member *m, void *buf, size_t len, uint64_t off)
{
	int rc = lfs_source_read(m->src, buf, len, m->d.data_off + off);

	if (rc)
		return rc;
	add(&r->bytes_read, len);
	if (m->counters)
		add(&m->counters->bytes_read, len);
	return 0;
}

static void count_inflated(struct lfs_reader *r, struct lfs_member *m, uint64_t n)
{
	add(&r->bytes_inflated, n);
	if (m->counters)
		add(&m->counters->bytes_inflated, n);
}

/* ---- the memory governor ---- */

/* Resident bytes of the process. */
static uint64_t resident(void)
{
	int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
	char buf[128];
	unsigned long long pages, rss = 0;
	ssize_t n;

	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	if (sscanf(buf, "%llu %llu", &pages, &rss) != 2)
		return 0;
	return rss * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* The budget and the reserve count what the cache holds and what the
 * mount keeps for its tree, indexes and handles; what neither counts (the
 * allocator's holes between small blocks, in-flight buffers, threads)
 * moves with the load.  So every few MiB made, the daemon looks at its
 * resident memory, and when it is more than the budget and most of the
 * slack, it holds back as much budget (and gives it back when memory is
 * low again): the ceiling, budget + CEILING_SLACK, holds whatever the
 * unaccounted part does.  At most a quarter of the budget is held back. */
static void govern(struct lfs_reader *r, uint64_t made)
{
	uint64_t target = r->budget + CEILING_SLACK / 4 * 3, rss;
	int64_t back, want, cap = (int64_t)(r->budget / 4);

	if (__atomic_add_fetch(&r->made, made, __ATOMIC_RELAXED) < GOVERN_EVERY ||
	    __atomic_exchange_n(&r->governing, 1, __ATOMIC_ACQUIRE))
		return;
	__atomic_store_n(&r->made, 0, __ATOMIC_RELAXED);
	rss = resident();
	back = __atomic_load_n(&r->given_back, __ATOMIC_RELAXED);
	want = back;
	if (rss > target)
		want = back + (int64_t)(rss - target);
	else if (rss + CEILING_SLACK / 2 < target)
		want = back - (int64_t)(target - CEILING_SLACK / 2 - rss);
	want = want < 0 ? 0 : want > cap ? cap : want;
	if (rss && want != back) {
		lfs_cache_reserve(r->cache, want - back);
		__atomic_store_n(&r->given_back, want, __ATOMIC_RELAXED);
	}
	add(&r->governor_runs, 1);
	__atomic_store_n(&r->governing, 0, __ATOMIC_RELEASE);
}

/* ---- the disk tier ---- */

static struct lfs_disk_layer *disk_of(const struct lfs_member *m)
{
	return m->d.disk ? __atomic_load_n(m->d.disk, __ATOMIC_ACQUIRE) : NULL;
}

/* A write for the disk tier, done in the pool: a block (held referenced
 * until written), a resume point or a member's block CRCs. */
struct disk_job {
	struct lfs_pool_job job;
	struct lfs_reader *r;
	struct lfs_disk_layer *layer;
	uint64_t layer_key, member, index, nblocks;
	struct lfs_centry *block;	/* a block, or: */
	void *data;			/* a point's record, or the CRC table */
	size_t len;
	uint32_t cum_crc;
	int kind;			/* 0 block, 1 point, 2 CRCs */
};

static void disk_run(struct lfs_pool_job *job, int cancelled)
{
	struct disk_job *j = (struct disk_job *)job;
	struct lfs_reader *r = j->r;

	if (!cancelled && !j->block && j->kind == 0) {
		/* written late: the block, if it is still in memory */
		struct lfs_cache_key k = lfs_key(j->layer_key, j->member, LFS_KEY_BLOCK, j->index);
		struct lfs_centry *e = lfs_cache_get(r->cache, &k);

		if (e)
			(void)lfs_disk_put(j->layer, j->member, j->index, lfs_centry_data(e),
					   lfs_centry_len(e), j->cum_crc);
		else
			add(&r->disk_skipped, 1);
		lfs_cache_release(r->cache, e);
	} else if (!cancelled) {
		if (j->kind == 0)
			(void)lfs_disk_put(j->layer, j->member, j->index, lfs_centry_data(j->block),
					   lfs_centry_len(j->block), j->cum_crc);
		else if (j->kind == 1)
			(void)lfs_disk_put_point(j->layer, j->member, j->index, j->data, j->len);
		else
			(void)lfs_disk_put_crcs(j->layer, j->member, j->nblocks, j->data);
		if (lfs_disk_prune_due(r->disk))
			(void)lfs_disk_prune(r->disk);
	}
	if (j->block) {
		__atomic_sub_fetch(&r->disk_pinned, lfs_centry_len(j->block), __ATOMIC_RELAXED);
		lfs_cache_release(r->cache, j->block);
	}
	free(j->data);
	free(j);
	add(&r->disk_done, 1);
}

static void disk_submit(struct lfs_reader *r, struct disk_job *j)
{
	add(&r->disk_queued, 1);
	if (lfs_pool_submit(r->pool, &j->job, LFS_PRIO_BACKGROUND))
		disk_run(&j->job, 1);
}

/* Has block e (index b of m, running CRC cum at its end) written to the
 * disk tier.  The entry stays referenced until then, within a bound; past
 * the bound, the writer takes the block from the cache when its turn
 * comes (a block evicted by then is written the next time it is made). */
static void disk_write_block(struct lfs_reader *r, struct lfs_member *m, uint64_t b,
			     struct lfs_centry *e, uint32_t cum)
{
	struct lfs_disk_layer *l = disk_of(m);
	struct disk_job *j;
	uint64_t len = lfs_centry_len(e), pinned;

	if (!l)
		return;
	j = calloc(1, sizeof(*j));
	if (!j) {
		add(&r->disk_skipped, 1);
		return;
	}
	*j = (struct disk_job){ .job = { disk_run, NULL }, .r = r, .layer = l,
				.layer_key = m->d.layer, .member = m->d.key, .index = b,
				.cum_crc = cum, .kind = 0 };
	pinned = __atomic_add_fetch(&r->disk_pinned, len, __ATOMIC_RELAXED);
	if (pinned <= DISK_PIN_MAX) {
		lfs_cache_ref(r->cache, e);
		j->block = e;
	} else {
		__atomic_sub_fetch(&r->disk_pinned, len, __ATOMIC_RELAXED);
	}
	disk_submit(r, j);
}

static void disk_write_copy(struct lfs_reader *r, struct lfs_member *m, int kind, uint64_t index,
			    const void *data, size_t len)
{
	struct lfs_disk_layer *l = disk_of(m);
	struct disk_job *j;

	void *copy;

	if (!l || !(j = calloc(1, sizeof(*j))))
		return;
	copy = malloc(len ? len : 1);
	if (!copy) {
		free(j);
		return;
	}
	memcpy(copy, data, len);
	*j = (struct disk_job){ .job = { disk_run, NULL }, .r = r, .layer = l, .member = m->d.key,
				.index = index, .nblocks = kind == 2 ? len / 4 : 0, .data = copy,
				.len = len, .kind = kind };
	disk_submit(r, j);
}

/* ---- members of one block (and small stored ones) ---- */

/* The compressed bytes of a member decoded whole are read into a buffer
 * of the thread's own, kept from one member to the next: a temporary
 * allocated and freed between the long-lived blocks left the heap full of
 * holes (a fifth of the daemon's memory, reading every file of a 500 MB
 * stack). */
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

struct scratch {
	size_t cap;
	unsigned char data[];
};

static void make_scratch_key(void) { (void)pthread_key_create(&scratch_key, free); }

#define SCRATCH_MAX (64u << 10)	/* larger ones are mapped on their own: no holes */

static unsigned char *scratch(size_t len)
{
	struct scratch *sc;

	if (len > SCRATCH_MAX)
		return NULL;
	pthread_once(&scratch_once, make_scratch_key);
	sc = pthread_getspecific(scratch_key);
	if (!sc || sc->cap < len) {
		struct scratch *grown = realloc(sc, sizeof(*sc) + len);

		if (!grown)
			return NULL;
		grown->cap = len;
		sc = grown;
		if (pthread_setspecific(scratch_key, sc)) {
			free(sc);
			return NULL;
		}
	}
	return sc->data;
}

static int fill_whole(struct lfs_reader *r, struct lfs_member *m, void **out)
{
	size_t size = (size_t)m->d.size;
	unsigned char *cbuf = NULL, *obuf, *own = NULL;
	const char *why = NULL;
	int rc;

	rc = lfs_source_check(m->src);
	if (rc)
		return source_fault(r, m, rc);
	/* one spare byte tells a stream that runs long from an exact one */
	obuf = lfs_bufpool_get(r->bufs, size + 1);
	if (m->d.method != 0) {
		cbuf = scratch(m->d.comp_size ? m->d.comp_size : 1);
		if (!cbuf && m->d.comp_size > SCRATCH_MAX)
			cbuf = own = malloc(m->d.comp_size);
	}
	if (!obuf || (m->d.method != 0 && !cbuf)) {
		lfs_bufpool_put(r->bufs, obuf, size + 1);
		return -ENOMEM;
	}
	/* stored: straight into the block */
	rc = fetch(r, m, cbuf ? cbuf : obuf, (size_t)m->d.comp_size, 0);
	if (rc) {
		rc = source_fault(r, m, rc);
		goto out;
	}
	if (cbuf) {
		rc = m->codec->whole(cbuf, (size_t)m->d.comp_size, obuf, size, &why);
		if (rc == -EBADMSG)
			rc = lfs_reader_fail(r, m, why);
		if (rc)
			goto out;
		count_inflated(r, m, size);
	}
	if (libdeflate_crc32(0, obuf, size) != m->d.crc) {
		rc = lfs_reader_fail(r, m, "CRC-32 mismatch");
		goto out;
	}
	__atomic_fetch_or(&m->flags, LFS_MEMBER_VERIFIED, __ATOMIC_RELEASE);
	*out = obuf;
	obuf = NULL;
out:
	lfs_bufpool_put(r->bufs, obuf, size + 1);
	free(own);
	return rc;
}

static int get_whole(struct lfs_reader *r, struct lfs_member *m, struct lfs_centry **out)
{
	struct lfs_cache_key k = key_of(m, LFS_KEY_BLOCK, 0);
	struct lfs_centry *e;
	int claimed, rc;

	e = lfs_cache_acquire(r->cache, &k, &claimed, &rc);
	if (e && claimed) {
		struct lfs_disk_layer *l = disk_of(m);
		size_t size = (size_t)m->d.size;
		void *data = l ? lfs_bufpool_get(r->bufs, size + 1) : NULL;
		uint32_t cum;

		/* from the disk tier, checked against the member's CRC too */
		if (data && lfs_disk_get(l, m->d.key, 0, data, size, &cum) == 0 &&
		    libdeflate_crc32(0, data, size) == m->d.crc) {
			add(&r->disk_hits, 1);
			__atomic_fetch_or(&m->flags, LFS_MEMBER_VERIFIED, __ATOMIC_RELEASE);
			lfs_cache_publish(r->cache, e, data, size);
			govern(r, size);
		} else {
			lfs_bufpool_put(r->bufs, data, size + 1);
			data = NULL;
			rc = fill_whole(r, m, &data);
			if (rc) {
				lfs_cache_abandon(r->cache, e, rc);
				e = NULL;
			} else {
				lfs_cache_publish(r->cache, e, data, size);
				disk_write_block(r, m, 0, e, m->d.crc);
				govern(r, size);
			}
		}
	}
	*out = e;
	return e ? 0 : rc ? rc : -EIO;
}

/* ---- streamed members ---- */

struct stream_ctx {
	struct lfs_reader *r;
	struct lfs_member *m;
};

static int io_fetch(void *ctx, void *buf, size_t len, uint64_t off)
{
	struct stream_ctx *c = ctx;

	return fetch(c->r, c->m, buf, len, off);
}

static int have_point(struct stream_ctx *c, uint64_t index)
{
	struct lfs_cache_key k = key_of(c->m, LFS_KEY_RESUME, index);
	struct lfs_centry *e = lfs_cache_get(c->r->cache, &k);

	lfs_cache_release(c->r->cache, e);
	return e != NULL;
}

/* The stream is past a mark, inside the block whose end would be the
 * point, at `index` or (a block running over into the next spacing) the
 * one after. */
static int io_want_point(void *ctx, uint64_t index)
{
	struct stream_ctx *c = ctx;

	return !have_point(c, index) && !have_point(c, index + 1);
}

static void io_point(void *ctx, unsigned char *rec, size_t len, uint64_t index)
{
	struct stream_ctx *c = ctx;
	struct lfs_cache_key k = key_of(c->m, LFS_KEY_RESUME, index);
	struct lfs_centry *e = lfs_cache_insert_get(c->r->cache, &k, rec, len);

	/* the record it keeps is this one unless another stream was first */
	if (e && lfs_centry_data(e) == rec) {
		add(&c->r->resume_points_made, 1);
		disk_write_copy(c->r, c->m, 1, index, rec, len);
	}
	lfs_cache_release(c->r->cache, e);
}

static struct lfs_stream_io stream_io(struct stream_ctx *c)
{
	struct lfs_stream_io io = {
		.fetch = io_fetch,
		.want_point = io_want_point,
		.point = io_point,
		.ctx = c,
		.comp_size = c->m->d.comp_size,
		.spacing = c->r->spacing,
	};

	return io;
}

/* The CRC-32 at the end of block b as first seen: 1 with *crc, else 0. */
static int known_crc(const struct lfs_member *m, uint64_t b, uint32_t *crc)
{
	uint64_t *page, v;

	if (!m->s->crc_pages || b >= m->nblocks)
		return 0;
	page = __atomic_load_n(&m->s->crc_pages[b / CRC_PAGE], __ATOMIC_ACQUIRE);
	if (!page)
		return 0;
	v = __atomic_load_n(&page[b % CRC_PAGE], __ATOMIC_RELAXED);
	*crc = (uint32_t)v;
	return (v >> 32) != 0;
}

static void record_crc(struct lfs_member *m, uint64_t b, uint32_t crc)
{
	uint64_t **slot, *page, *fresh;

	if (!m->s->crc_pages || b >= m->nblocks)
		return;
	slot = &m->s->crc_pages[b / CRC_PAGE];
	page = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
	if (!page) {
		fresh = calloc(CRC_PAGE, sizeof(*fresh));
		if (!fresh)
			return; /* only costs a check later */
		if (m->r)
			lfs_cache_reserve(m->r->cache, CRC_PAGE * sizeof(*fresh));
		page = NULL;
		if (__atomic_compare_exchange_n(slot, &page, fresh, 0, __ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE))
			page = fresh;
		else
			free(fresh);
	}
	__atomic_store_n(&page[b % CRC_PAGE], 1ull << 32 | crc, __ATOMIC_RELAXED);
}

static void note_reach(struct lfs_member *m, uint64_t pos)
{
	uint64_t seen = __atomic_load_n(&m->reach, __ATOMIC_RELAXED);

	while (seen < pos && !__atomic_compare_exchange_n(&m->reach, &seen, pos, 1,
							  __ATOMIC_RELEASE, __ATOMIC_RELAXED))
		;
}

/* Once a member's CRC passed, its table of block CRCs goes to the disk
 * tier, for a later daemon to check every block it makes again. */
static void store_crcs(struct lfs_reader *r, struct lfs_member *m)
{
	uint32_t *crcs;
	int expect = 1;

	if (!disk_of(m) || !m->s->crc_pages ||
	    !(lfs_member_flags(m) & LFS_MEMBER_VERIFIED) ||
	    !__atomic_compare_exchange_n(&m->s->disk_crcs, &expect, 2, 0, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE))
		return;
	crcs = malloc(m->nblocks * sizeof(*crcs));
	for (uint64_t b = 0; crcs && b < m->nblocks; b++) {
		if (!known_crc(m, b, &crcs[b])) {
			free(crcs);
			return; /* a block not seen by this daemon */
		}
	}
	if (crcs)
		disk_write_copy(r, m, 2, 0, crcs, m->nblocks * sizeof(*crcs));
	free(crcs);
}

/* Before the first stream of m: the block CRCs a daemon stored when the
 * member passed its CRC, so every block made again here is checked. */
static void load_crcs(struct lfs_member *m)
{
	struct lfs_disk_layer *l = disk_of(m);
	uint32_t *crcs;
	int expect = 0;

	if (!l || !m->s->crc_pages ||
	    !__atomic_compare_exchange_n(&m->s->disk_crcs, &expect, 1, 0, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE))
		return;
	crcs = malloc(m->nblocks * sizeof(*crcs));
	if (crcs && lfs_disk_get_crcs(l, m->d.key, m->nblocks, crcs) == 0) {
		for (uint64_t b = 0; b < m->nblocks; b++)
			record_crc(m, b, crcs[b]);
		__atomic_fetch_or(&m->flags, LFS_MEMBER_VERIFIED, __ATOMIC_RELEASE);
		__atomic_store_n(&m->s->disk_crcs, 2, __ATOMIC_RELEASE);
	}
	free(crcs);
}

/* Block b from the disk tier into the cache: a referenced entry, or NULL.
 * A block whose running CRC disagrees with what this member gave before is
 * not taken. */
static struct lfs_centry *disk_block(struct lfs_reader *r, struct lfs_member *m, uint64_t b)
{
	struct lfs_disk_layer *l = disk_of(m);
	struct lfs_cache_key k = key_of(m, LFS_KEY_BLOCK, b);
	uint32_t len, cum, seen;
	unsigned char *buf;
	struct lfs_centry *e;
	int claimed, rc;

	if (!l)
		return NULL;
	load_crcs(m);
	/* claimed while it is read, so a block is read from disk once however
	 * many threads want it (the waiters of a miss go on to a stream) */
	e = lfs_cache_acquire(r->cache, &k, &claimed, &rc);
	if (!e || !claimed)
		return e;
	len = block_len(r, m, b);
	buf = lfs_bufpool_get(r->bufs, len);
	if (!buf || lfs_disk_get(l, m->d.key, b, buf, len, &cum) ||
	    (known_crc(m, b, &seen) && seen != cum)) {
		lfs_bufpool_put(r->bufs, buf, len);
		lfs_cache_abandon(r->cache, e, -ENOENT);
		return NULL;
	}
	record_crc(m, b, cum);
	add(&r->disk_hits, 1);
	lfs_cache_publish(r->cache, e, buf, len);
	govern(r, len);
	return e;
}

/* Before starting a stream for block b: the resume points on disk at or
 * before it, into the cache, where plan_stream looks.  No lock held. */
static void disk_points(struct lfs_reader *r, struct lfs_member *m, uint64_t b)
{
	struct lfs_disk_layer *l = disk_of(m);
	uint64_t j = b * r->block_size / r->spacing;

	for (int probes = 0; l && j > 0 && probes < DISK_POINT_PROBES; probes++, j--) {
		struct lfs_cache_key k = key_of(m, LFS_KEY_RESUME, j);
		struct lfs_centry *e = lfs_cache_get(r->cache, &k);
		struct lfs_resume rp;
		void *rec;
		size_t len;

		if (e) {
			lfs_cache_release(r->cache, e);
			return; /* in memory already */
		}
		if (lfs_disk_get_point(l, m->d.key, j, &rec, &len))
			continue;
		if (lfs_resume_parse(rec, len, m->d.comp_size, m->d.size, &rp)) {
			free(rec);
			continue;
		}
		add(&r->disk_points, 1);
		note_reach(m, rp.out_pos);
		lfs_cache_insert(r->cache, &k, rec, len);
		if (rp.out_pos <= b * r->block_size)
			return;
	}
}

/* Where a stream to make block b comes from, chosen under m->s->lock and
 * opened after it (opening a resume point reads the source). */
struct start {
	struct lfs_stream *parked;	/* a parked stream, taken */
	struct lfs_centry *point;	/* else a resume point, referenced */
	struct lfs_resume rp;		/* ... parsed */
	uint64_t pos;			/* the offset the stream starts at */
};

/* With m->s->lock held: the nearest start for block b: a stream parked at b
 * or a few blocks before it, a resume point at or before b, the member's
 * start. */
static enum block_source plan_stream(struct lfs_reader *r, struct lfs_member *m, uint64_t b,
				     struct start *st)
{
	uint64_t B = r->block_size, want = b * B, j = want / r->spacing, reached, floor;
	size_t len;

	memset(st, 0, sizeof(*st));
	/* Resume points exist only below where some stream has been; never
	 * probe above that (a member declaring a huge size must not make one
	 * read probe for millions of them). */
	reached = __atomic_load_n(&m->reach, __ATOMIC_ACQUIRE) / r->spacing;
	if (reached < j)
		j = reached;
	for (; j > 0 && !st->point; j--) {
		struct lfs_cache_key rk = key_of(m, LFS_KEY_RESUME, j);
		struct lfs_centry *e = lfs_cache_get(r->cache, &rk);

		if (e && lfs_resume_parse(lfs_centry_data(e), lfs_centry_len(e), m->d.comp_size,
					  m->d.size, &st->rp) == 0 && st->rp.out_pos <= want) {
			st->point = e;
			st->pos = st->rp.out_pos;
		} else {
			lfs_cache_release(r->cache, e);
		}
	}
	/* The kernel asks for a sequential reader's next blocks at once, on
	 * several threads: the one whose block lies a little past the parked
	 * stream goes on from that stream rather than inflating again from
	 * the resume point behind it. */
	floor = (st->pos + B - 1) / B;
	if (b >= MAX_PARKED_PROBES && floor < b - MAX_PARKED_PROBES)
		floor = b - MAX_PARKED_PROBES;
	for (uint64_t k = b + 1; k-- > floor;) {
		struct lfs_cache_key pk = key_of(m, LFS_KEY_PARKED, k);

		st->parked = lfs_cache_take(r->cache, &pk, &len);
		if (st->parked) {
			lfs_cache_release(r->cache, st->point);
			st->point = NULL;
			st->pos = k * B;
			return k == b ? BLOCK_CONTINUED : BLOCK_RESTARTED;
		}
	}
	return BLOCK_RESTARTED;
}

/* After plan_stream, with no lock held: the stream itself. */
static int open_stream(struct lfs_reader *r, struct stream_ctx *c, struct start *st,
		       struct lfs_stream **out)
{
	struct lfs_stream_io io = stream_io(c);
	int rc = 0;

	if (st->parked)
		*out = st->parked;
	else if (st->point)
		rc = lfs_stream_resume(&st->rp, &io, out);
	else if (!(*out = lfs_stream_new(&io)))
		rc = -ENOMEM;
	lfs_cache_release(r->cache, st->point);
	return rc;
}

/* With m->s->lock held: a registered stream that will make block b soon
 * enough to wait for it: b lies within its target, or just past it, no
 * further ahead than a resume point would be. */
static struct running *running_towards(struct lfs_reader *r, struct lfs_member *m, uint64_t b)
{
	uint64_t near = r->spacing / r->block_size + 1;

	for (unsigned i = 0; i < MAX_RUNNING; i++) {
		struct running *rs = &m->s->run[i];

		if (rs->active && rs->pos <= b &&
		    (b <= rs->target || (b - rs->target <= MAX_PARKED_PROBES && b - rs->pos <= near)))
			return rs;
	}
	return NULL;
}

static struct running *register_run(struct lfs_member *m, uint64_t pos, uint64_t target,
				    int readahead)
{
	for (unsigned i = 0; i < MAX_RUNNING; i++) {
		struct running *rs = &m->s->run[i];

		if (!rs->active) {
			*rs = (struct running){ pos, target, 1, readahead };
			return rs;
		}
	}
	return NULL; /* runs unregistered: nobody can wait for it */
}

static void unregister_run(struct lfs_member *m, struct running *rs)
{
	pthread_mutex_lock(&m->s->lock);
	if (rs)
		rs->active = 0;
	if (m->s->waiters)
		pthread_cond_broadcast(&m->s->moved);
	pthread_mutex_unlock(&m->s->lock);
}

/* Advances stream s (taken by this thread; registered as rs, or not)
 * through block *target (rs->target when registered: read-ahead's may be
 * pushed on, and *target says where it ended), then parks it.  When out is
 * set, the stream stops at block `want` and *out holds it, referenced. */
static int run_stream(struct lfs_reader *r, struct lfs_member *m, struct stream_ctx *c,
		      struct lfs_stream *s, struct running *rs, uint64_t *target, uint64_t want,
		      struct lfs_centry **out)
{
	struct lfs_stream_io io = stream_io(c);
	uint64_t B = r->block_size, pos = lfs_stream_pos(s), k = (pos + B - 1) / B;
	const char *why = NULL;
	int rc = 0;

	if (k * B > pos) {
		/* from a resume point inside a block: up to the next one */
		rc = lfs_stream_produce(s, &io, NULL, (size_t)(k * B - pos), &why);
		count_inflated(r, m, k * B - pos);
	}
	while (!rc && k <= *target && k < m->nblocks) {
		uint32_t len = block_len(r, m, k), crc, now;
		struct lfs_cache_key bk = key_of(m, LFS_KEY_BLOCK, k);
		unsigned char *buf;

		rc = lfs_source_check(m->src);
		if (rc)
			break;
		buf = lfs_bufpool_get(r->bufs, len);
		if (!buf) {
			rc = -ENOMEM;
			break;
		}
		rc = lfs_stream_produce(s, &io, buf, len, &why);
		if (!rc) {
			count_inflated(r, m, len);
			now = lfs_stream_crc(s);
			if (lfs_stream_pos(s) == m->d.size) {
				rc = lfs_stream_finish(s, &io, m->d.crc, &why);
				if (!rc)
					__atomic_fetch_or(&m->flags, LFS_MEMBER_VERIFIED,
							  __ATOMIC_RELEASE);
			}
		}
		/* every block made again must be the one made first */
		if (!rc && !known_crc(m, k, &crc))
			record_crc(m, k, now);
		else if (!rc && crc != now) {
			rc = -EBADMSG;
			why = "a block differs from the first time it was made (the layer changed?)";
		}
		if (rc) {
			lfs_bufpool_put(r->bufs, buf, len);
			break;
		}
		note_reach(m, lfs_stream_pos(s));
		govern(r, len);
		if ((out && k == want) || disk_of(m)) {
			struct lfs_centry *e = lfs_cache_insert_get(r->cache, &bk, buf, len);

			if (e)
				disk_write_block(r, m, k, e, now);
			if (out && k == want)
				*out = e;
			else
				lfs_cache_release(r->cache, e);
			if (!e)
				rc = -ENOMEM;
		} else {
			lfs_cache_insert(r->cache, &bk, buf, len);
		}
		if (lfs_stream_pos(s) == m->d.size)
			store_crcs(r, m);
		k++;
		pthread_mutex_lock(&m->s->lock);
		if (rs) {
			rs->pos = k;
			*target = rs->target;
		}
		if (m->s->waiters)
			pthread_cond_broadcast(&m->s->moved);
		pthread_mutex_unlock(&m->s->lock);
		/* a demand read ends once its block is made; whoever waits
		 * for a later one takes the stream on from where it is parked */
		if (out && k > want)
			break;
	}
	pthread_mutex_lock(&m->s->lock);
	if (rs)
		rs->active = 0;
	if (!rc && lfs_stream_pos(s) < m->d.size) {
		struct lfs_cache_key pk = key_of(m, LFS_KEY_PARKED, k);

		lfs_cache_insert(r->cache, &pk, s, lfs_stream_footprint());
		s = NULL;
	}
	if (m->s->waiters)
		pthread_cond_broadcast(&m->s->moved);
	pthread_mutex_unlock(&m->s->lock);
	lfs_stream_free(s);
	if (rc == -EBADMSG)
		return lfs_reader_fail(r, m, why);
	if (rc && rc != -ENOMEM)
		return source_fault(r, m, rc);
	return rc;
}

/* A referenced, ready block b of a streamed member. */
static int get_streamed(struct lfs_reader *r, struct lfs_member *m, uint64_t b,
			struct lfs_centry **out, enum block_source *how)
{
	struct lfs_cache_key k = key_of(m, LFS_KEY_BLOCK, b);
	struct stream_ctx c = { r, m };
	int waited = 0;

	for (;;) {
		struct lfs_centry *e = lfs_cache_get(r->cache, &k);
		struct lfs_stream *s;
		struct running *rs;
		struct start st;
		uint64_t target = b;
		int rc;

		if (!e && !failed(m) && disk_of(m)) {
			e = disk_block(r, m, b);
			if (e) {
				struct lfs_cache_key pk = key_of(m, LFS_KEY_BLOCK, b ? b - 1 : 0);
				struct lfs_centry *before = b ? lfs_cache_get(r->cache, &pk) : NULL;

				/* a reader going on from the block before: read-ahead
				 * then fetches the next ones from disk */
				*how = before ? BLOCK_CONTINUED : BLOCK_READY;
				lfs_cache_release(r->cache, before);
				*out = e;
				return 0;
			}
			disk_points(r, m, b);
		}
		if (!e && !failed(m)) {
			pthread_mutex_lock(&m->s->lock);
			/* again under the lock: a stream that made it since has
			 * told the waiters already */
			e = lfs_cache_get(r->cache, &k);
			if (!e && running_towards(r, m, b)) {
				if (!waited)
					add(&r->stream_waits, 1);
				waited = 1;
				m->s->waiters++;
				pthread_cond_wait(&m->s->moved, &m->s->lock);
				m->s->waiters--;
				pthread_mutex_unlock(&m->s->lock);
				continue;
			}
			if (!e) {
				*how = plan_stream(r, m, b, &st);
				rs = register_run(m, (st.pos + r->block_size - 1) / r->block_size, b, 0);
				pthread_mutex_unlock(&m->s->lock);
				rc = open_stream(r, &c, &st, &s);
				if (rc) {
					unregister_run(m, rs);
					return rc == -ENOMEM ? rc : source_fault(r, m, rc);
				}
				rc = run_stream(r, m, &c, s, rs, &target, b, &e);
				if (rc)
					return rc;
				if (!e)
					continue; /* made, then evicted at once: a tiny budget */
				*out = e;
				return 0;
			}
			pthread_mutex_unlock(&m->s->lock);
		}
		if (!e)
			return -EIO;
		add(&r->block_hits, 1);
		*out = e;
		*how = waited ? BLOCK_CONTINUED : BLOCK_READY;
		return 0;
	}
}

/* ---- large stored members ---- */

/* Read in place.  Small ones go through the cache (get_whole); large ones
 * are checked as they are read, once the reads have covered them (see
 * crcpieces.h): a mismatch fails the read that completes the member and
 * every read after it. */
static int read_stored(struct lfs_reader *r, struct lfs_member *m, void *buf, size_t len,
		       uint64_t off)
{
	uint32_t crc;
	int rc = lfs_source_check(m->src);

	if (!rc)
		rc = fetch(r, m, buf, len, off);
	if (rc)
		return source_fault(r, m, rc);
	if (lfs_member_flags(m) & (LFS_MEMBER_VERIFIED | LFS_MEMBER_UNCHECKED))
		return 0;
	switch (lfs_crc_pieces_add(r->crcs, m->d.layer, m->d.key, m->d.size, off, buf, len, &crc)) {
	case 1:
		if (crc != m->d.crc)
			return lfs_reader_fail(r, m, "CRC-32 mismatch");
		__atomic_fetch_or(&m->flags, LFS_MEMBER_VERIFIED, __ATOMIC_RELEASE);
		break;
	case -1:
		/* a library faulted in here and there: checking it would cost
		 * a CRC of every read for nothing */
		__atomic_fetch_or(&m->flags, LFS_MEMBER_UNCHECKED, __ATOMIC_RELEASE);
		break;
	}
	return 0;
}

/* ---- reads ---- */

void lfs_reader_unpin(struct lfs_reader *r, struct lfs_pin *p)
{
	for (size_t i = 0; i < p->count; i++)
		lfs_cache_release(r->cache, p->entries[i]);
	free(p->entries);
	free(p->iov);
	free(p->buf);
	memset(p, 0, sizeof(*p));
}

static int in_place(const struct lfs_reader *r, const struct lfs_member *m)
{
	return m->d.method == 0 && m->d.size > r->block_size;
}

static int streamed(const struct lfs_reader *r, const struct lfs_member *m)
{
	return m->codec && m->codec->streams && m->d.size > r->block_size;
}

ssize_t lfs_reader_pin(struct lfs_reader *r, struct lfs_member *m, uint64_t off, size_t len,
		       struct lfs_pin *p)
{
	size_t done = 0, max;
	int rc, jumped = 0, continued = 0;

	memset(p, 0, sizeof(*p));
	if (failed(m))
		return -EIO;
	if (off >= m->d.size || len == 0)
		return 0;
	if (len > m->d.size - off)
		len = (size_t)(m->d.size - off);
	if (!m->codec)
		return lfs_reader_fail(r, m, "compression method not supported");
	max = in_place(r, m) ? 1 : len / r->block_size + 2;
	p->iov = malloc(max * sizeof(*p->iov));
	p->entries = malloc(max * sizeof(*p->entries));
	if (!p->iov || !p->entries) {
		lfs_reader_unpin(r, p);
		return -ENOMEM;
	}
	if (in_place(r, m)) {
		p->buf = malloc(len);
		if (!p->buf) {
			lfs_reader_unpin(r, p);
			return -ENOMEM;
		}
		rc = read_stored(r, m, p->buf, len, off);
		if (rc) {
			lfs_reader_unpin(r, p);
			return rc;
		}
		p->iov[0].iov_base = p->buf;
		p->iov[0].iov_len = len;
		p->niov = 1;
		done = len;
	}
	while (done < len) {
		uint64_t pos = off + done, blk = pos / r->block_size;
		size_t in_blk = (size_t)(pos % r->block_size), n;
		struct lfs_centry *e = NULL;
		enum block_source how = BLOCK_READY;

		if (streamed(r, m))
			rc = get_streamed(r, m, blk, &e, &how);
		else
			rc = get_whole(r, m, &e);
		/* The mark of a reader that jumped rather than one going through
		 * the member in order: a block made by a fresh stream, or by
		 * continuing a stream from anywhere but where it stopped
		 * (random reads leave streams parked all over a member, and one
		 * landing inside such a block is still random). */
		jumped |= how == BLOCK_RESTARTED || (how == BLOCK_CONTINUED && in_blk != 0);
		continued |= how == BLOCK_CONTINUED && in_blk == 0;
		if (rc) {
			lfs_reader_unpin(r, p);
			return rc;
		}
		if (lfs_centry_len(e) != block_len(r, m, blk)) {
			/* cannot happen while keys name members exactly */
			lfs_cache_release(r->cache, e);
			lfs_reader_unpin(r, p);
			return lfs_reader_fail(r, m, "cached block of an unexpected size");
		}
		n = lfs_centry_len(e) - in_blk;
		if (n > len - done)
			n = len - done;
		p->entries[p->count++] = e;
		/* the cache never writes an entry's data once it is ready */
		p->iov[p->niov].iov_base = (unsigned char *)(uintptr_t)lfs_centry_data(e) + in_blk;
		p->iov[p->niov++].iov_len = n;
		done += n;
	}
	p->sequential = !streamed(r, m) || jumped ? LFS_SEQ_NO
			: continued		  ? LFS_SEQ_CONTINUED
						  : LFS_SEQ_READY;
	if (m->counters)
		add(&m->counters->bytes_served, done);
	return (ssize_t)done;
}

ssize_t lfs_reader_read(struct lfs_reader *r, struct lfs_member *m, void *buf, size_t len,
			uint64_t off)
{
	struct lfs_pin p;
	ssize_t n = lfs_reader_pin(r, m, off, len, &p);
	unsigned char *out = buf;

	for (size_t i = 0; n > 0 && i < p.niov; i++) {
		memcpy(out, p.iov[i].iov_base, p.iov[i].iov_len);
		out += p.iov[i].iov_len;
	}
	lfs_reader_unpin(r, &p);
	return n;
}

/* ---- read-ahead and prefetch, in the pool ---- */

/* Blocks to inflate ahead of one reader: the read-ahead is shared by the
 * members being read ahead at once.  Four readers with a window each had
 * the cache evict blocks inflated ahead before they were read, and inflate
 * 1.9 GB for 1 GiB read (make bench's item 6, a 64 MiB budget). */
static uint64_t ra_window(struct lfs_reader *r)
{
	unsigned active = __atomic_load_n(&r->ra_active, __ATOMIC_RELAXED);
	uint64_t n = r->readahead_blocks / (active ? active : 1);

	return n ? n : 1;
}

/* With m->s->lock held: the first block in [from, last] not in the cache
 * (last + 1 when all are). */
static uint64_t first_missing(struct lfs_reader *r, struct lfs_member *m, uint64_t from,
			      uint64_t last)
{
	for (; from <= last && from < m->nblocks; from++) {
		struct lfs_cache_key k = key_of(m, LFS_KEY_BLOCK, from);
		struct lfs_centry *e = lfs_cache_get(r->cache, &k);

		if (!e)
			return from;
		lfs_cache_release(r->cache, e);
	}
	return last + 1;
}

/* With m->s->lock held: a running stream that will reach block b anyway;
 * its target is pushed to `last` when it reads ahead. */
static int join_running(struct lfs_member *m, uint64_t b, uint64_t last)
{
	for (unsigned i = 0; i < MAX_RUNNING; i++) {
		struct running *rs = &m->s->run[i];

		if (rs->active && rs->pos <= b && b <= rs->target + 1) {
			if (rs->readahead && rs->target < last)
				rs->target = last;
			return 1;
		}
	}
	return 0;
}

/* Makes blocks [from, last] of m with one stream, in the calling (pool)
 * thread.  With continue_only, only a stream parked right where the
 * missing blocks start is taken (read-ahead goes on from a sequential
 * reader's stream; it never starts one). */
static void fill_range(struct lfs_reader *r, struct lfs_member *m, uint64_t from, uint64_t last,
		       int continue_only)
{
	struct stream_ctx c = { r, m };
	int hinted = 0;

	if (last >= m->nblocks)
		last = m->nblocks - 1;
	for (;;) {
		struct lfs_stream *s = NULL;
		struct running *rs;
		struct start st;
		uint64_t k;
		int rc;

		pthread_mutex_lock(&m->s->lock);
		k = first_missing(r, m, from, last);
		if (k > last) {
			if (continue_only)
				m->s->ra_stop = last + 1;
			pthread_mutex_unlock(&m->s->lock);
			return;
		}
		if (failed(m) || lfs_source_changed(m->src) || join_running(m, k, last)) {
			pthread_mutex_unlock(&m->s->lock);
			return;
		}
		if (disk_of(m)) {
			struct lfs_centry *e;

			pthread_mutex_unlock(&m->s->lock);
			if (!hinted) {
				/* the kernel reads the window's records while this
				 * thread decompresses them one by one */
				lfs_disk_will_need(disk_of(m), m->d.key, k, last);
				hinted = 1;
			}
			e = disk_block(r, m, k);
			if (e) {
				lfs_cache_release(r->cache, e);
				from = k + 1;
				continue;
			}
			pthread_mutex_lock(&m->s->lock);
			if (first_missing(r, m, k, k) != k || join_running(m, k, last)) {
				pthread_mutex_unlock(&m->s->lock);
				from = k;
				continue;
			}
		}
		if (continue_only) {
			struct lfs_cache_key pk = key_of(m, LFS_KEY_PARKED, k);
			size_t len;

			memset(&st, 0, sizeof(st));
			st.parked = lfs_cache_take(r->cache, &pk, &len);
			st.pos = k * r->block_size;
			if (!st.parked) {
				pthread_mutex_unlock(&m->s->lock);
				return;
			}
			__atomic_add_fetch(&r->ra_active, 1, __ATOMIC_RELAXED);
		} else {
			(void)plan_stream(r, m, k, &st);
		}
		rs = register_run(m, (st.pos + r->block_size - 1) / r->block_size, last,
				  continue_only);
		pthread_mutex_unlock(&m->s->lock);
		rc = open_stream(r, &c, &st, &s);
		if (rc) {
			unregister_run(m, rs);
			if (rc != -ENOMEM)
				source_fault(r, m, rc);
		} else {
			rc = run_stream(r, m, &c, s, rs, &last, 0, NULL);
		}
		if (continue_only)
			__atomic_sub_fetch(&r->ra_active, 1, __ATOMIC_RELAXED);
		if (rc)
			return;
		from = k;
	}
}

static void ra_run(struct lfs_pool_job *job, int cancelled)
{
	struct ra_job *j = (struct ra_job *)job;
	struct lfs_member *m = j->m;
	uint64_t from, target;

	pthread_mutex_lock(&m->s->lock);
	for (unsigned i = 0; i < RA_QUEUED; i++)
		if (m->s->ra_queued[i] == j)
			m->s->ra_queued[i] = NULL;
	from = j->from;
	target = j->target;
	pthread_mutex_unlock(&m->s->lock);
	if (!cancelled) {
		add(&j->r->readahead_jobs, 1);
		fill_range(j->r, m, from, target, 1);
	}
	free(j);
}

/* With m->s->lock held: a queued job whose stretch a read ending before
 * block blk continues; its target goes on to `last`.  A read beyond gets a
 * job of its own: pushing this one's target would have it inflate all the
 * way there. */
static int join_queued(struct lfs_member *m, uint64_t blk, uint64_t last)
{
	for (unsigned i = 0; i < RA_QUEUED; i++) {
		struct ra_job *j = m->s->ra_queued[i];

		if (j && j->from <= blk && blk <= j->target + 1) {
			if (j->target < last)
				j->target = last;
			return 1;
		}
	}
	return 0;
}

void lfs_reader_readahead(struct lfs_reader *r, struct lfs_member *m, uint64_t end,
			  enum lfs_seq seq)
{
	uint64_t B = r->block_size, blk = (end + B - 1) / B, last;
	struct ra_job *job = NULL;

	if (seq == LFS_SEQ_NO || !streamed(r, m) || !r->readahead_blocks || failed(m) ||
	    blk >= m->nblocks)
		return;
	pthread_mutex_lock(&m->s->lock);
	last = blk + ra_window(r) - 1;
	if (!join_running(m, blk, last) && !join_queued(m, blk, last) &&
	    (seq == LFS_SEQ_CONTINUED ||
	     /* A read that found all its blocks ready starts read-ahead only
	      * where the last one stopped, just ahead: otherwise it may be a
	      * random read among blocks some other stream made, and read-ahead
	      * from there walked on to that stream and inflated a whole
	      * window. */
	     (m->s->ra_stop && blk <= m->s->ra_stop && m->s->ra_stop - blk < ra_window(r)))) {
		for (unsigned i = 0; i < RA_QUEUED && !job; i++) {
			if (m->s->ra_queued[i])
				continue;
			job = malloc(sizeof(*job));
			if (!job)
				break;
			*job = (struct ra_job){ { ra_run, NULL }, r, m, blk, last };
			m->s->ra_queued[i] = job;
		}
	}
	pthread_mutex_unlock(&m->s->lock);
	if (job && lfs_pool_submit(r->pool, &job->job, LFS_PRIO_READAHEAD))
		ra_run(&job->job, 1);
}

struct prefetch_job {
	struct lfs_pool_job job;
	struct lfs_reader *r;
	struct lfs_member *m;
	uint64_t first, last;
};

static void prefetch_run(struct lfs_pool_job *job, int cancelled)
{
	struct prefetch_job *j = (struct prefetch_job *)job;

	if (!cancelled) {
		if (streamed(j->r, j->m)) {
			fill_range(j->r, j->m, j->first, j->last, 0);
		} else if (!in_place(j->r, j->m) && !failed(j->m)) {
			struct lfs_centry *e = NULL;

			if (get_whole(j->r, j->m, &e) == 0)
				lfs_cache_release(j->r->cache, e);
		}
	}
	free(j);
}

int lfs_reader_prefetch(struct lfs_reader *r, struct lfs_member *m, uint64_t first,
			uint64_t last, enum lfs_prio prio)
{
	struct prefetch_job *j;
	int rc;

	if (!m->codec || in_place(r, m) || first >= m->nblocks || failed(m))
		return 0;
	j = malloc(sizeof(*j));
	if (!j)
		return -ENOMEM;
	*j = (struct prefetch_job){ { prefetch_run, NULL }, r, m, first, last };
	rc = lfs_pool_submit(r->pool, &j->job, prio);
	if (rc)
		free(j);
	return rc;
}

void lfs_reader_wait_idle(struct lfs_reader *r) { lfs_pool_wait_idle(r->pool); }

void lfs_reader_drop_blocks(struct lfs_reader *r)
{
	lfs_cache_drop(r->cache, LFS_KEY_BLOCK);
	lfs_cache_drop(r->cache, LFS_KEY_PARKED);
	lfs_bufpool_trim(r->bufs);
	/* what the heap holds free goes back to the system */
	malloc_trim(0);
}

void lfs_reader_get_stats(struct lfs_reader *r, struct lfs_reader_stats *out)
{
	memset(out, 0, sizeof(*out));
	lfs_cache_get_stats(r->cache, &out->cache);
	lfs_pool_get_stats(r->pool, &out->pool);
	/* the cache counts hits of lfs_cache_acquire only */
	out->cache.hits += __atomic_load_n(&r->block_hits, __ATOMIC_RELAXED);
	out->bytes_read = __atomic_load_n(&r->bytes_read, __ATOMIC_RELAXED);
	out->bytes_inflated = __atomic_load_n(&r->bytes_inflated, __ATOMIC_RELAXED);
	out->resume_points_made = __atomic_load_n(&r->resume_points_made, __ATOMIC_RELAXED);
	out->members_failed = __atomic_load_n(&r->members_failed, __ATOMIC_RELAXED);
	out->source_errors = __atomic_load_n(&r->source_errors, __ATOMIC_RELAXED);
	out->stream_waits = __atomic_load_n(&r->stream_waits, __ATOMIC_RELAXED);
	out->readahead_jobs = __atomic_load_n(&r->readahead_jobs, __ATOMIC_RELAXED);
	out->spare_bytes = lfs_bufpool_bytes(r->bufs);
	out->disk_hits = __atomic_load_n(&r->disk_hits, __ATOMIC_RELAXED);
	out->disk_points = __atomic_load_n(&r->disk_points, __ATOMIC_RELAXED);
	out->held_back = (uint64_t)__atomic_load_n(&r->given_back, __ATOMIC_RELAXED);
	out->governor_runs = __atomic_load_n(&r->governor_runs, __ATOMIC_RELAXED);
	out->disk_writes_queued = __atomic_load_n(&r->disk_queued, __ATOMIC_RELAXED);
	out->disk_writes_pending = out->disk_writes_queued - __atomic_load_n(&r->disk_done, __ATOMIC_RELAXED);
	out->disk_writes_skipped = __atomic_load_n(&r->disk_skipped, __ATOMIC_RELAXED);
	if (r->disk)
		lfs_disk_get_stats(r->disk, &out->disk);
}
