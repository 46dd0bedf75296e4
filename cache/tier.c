/* The disk tier behind the memory cache (disk.h): blocks looked up
 * there before anything is inflated, and what is inflated written there by
 * the pool; and the governor that keeps the daemon's memory under its
 * ceiling. */
#include "reader_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <libdeflate.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
void rd_govern(struct lfs_reader *r, uint64_t made)
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
	}
	/* after a write of either kind: a late block's may pass the quota too */
	if (!cancelled && lfs_disk_prune_due(r->disk))
		(void)lfs_disk_prune(r->disk);
	if (j->block) {
		__atomic_sub_fetch(&r->disk_pinned, lfs_centry_len(j->block), __ATOMIC_RELAXED);
		lfs_cache_release(r->cache, j->block);
	}
	free(j->data);
	free(j);
	add(&r->disk_done, 1);
}

void rd_disk_drain(struct lfs_reader *r)
{
	const struct timespec tick = { 0, 5 * 1000 * 1000 };

	if (!__atomic_load_n(&r->disk_queued, __ATOMIC_RELAXED))
		return;
	lfs_pool_run_here(r->pool, LFS_PRIO_BACKGROUND, disk_run);
	/* and the writes idle threads were in the middle of */
	for (int i = 0; i < 2000; i++) { /* 10 s */
		if (__atomic_load_n(&r->disk_done, __ATOMIC_RELAXED) >=
		    __atomic_load_n(&r->disk_queued, __ATOMIC_RELAXED))
			return;
		nanosleep(&tick, NULL);
	}
}

static void disk_submit(struct lfs_reader *r, struct disk_job *j)
{
	add(&r->disk_queued, 1);
	if (lfs_pool_submit(r->pool, &j->job, LFS_PRIO_BACKGROUND))
		disk_run(&j->job, 1);
}

/* ---- blocks made before the digest was known ---- */

#define LATER_MAX 65536

struct later_block {
	uint64_t layer_key, member, index;
	uint32_t cum;
};

struct lfs_disk_later {
	pthread_mutex_t lock;
	int closed;			/* lock; atomic reads: notes nothing more */
	struct later_block *v;		/* lock */
	size_t n, cap;
};

struct lfs_disk_later *lfs_disk_later_new(void)
{
	struct lfs_disk_later *dl = calloc(1, sizeof(*dl));

	if (dl)
		pthread_mutex_init(&dl->lock, NULL);
	return dl;
}

void lfs_disk_later_free(struct lfs_disk_later *dl)
{
	if (!dl)
		return;
	pthread_mutex_destroy(&dl->lock);
	free(dl->v);
	free(dl);
}

int rd_disk_later(const struct lfs_member *m)
{
	return m->d.later && disk_kept(m) && !__atomic_load_n(&m->d.later->closed, __ATOMIC_ACQUIRE);
}

/* Notes block b of m for lfs_disk_later_attach: 1, or 0 when the list is
 * closed (its disk slot may be set by now). */
static int later_note(struct lfs_reader *r, struct lfs_member *m, uint64_t b, uint32_t cum)
{
	struct lfs_disk_later *dl = m->d.later;

	pthread_mutex_lock(&dl->lock);
	if (dl->closed) {
		pthread_mutex_unlock(&dl->lock);
		return 0;
	}
	if (dl->n == dl->cap && dl->cap < LATER_MAX) {
		size_t cap = dl->cap ? 2 * dl->cap : 256;
		struct later_block *v = realloc(dl->v, cap * sizeof(*v));

		if (v) {
			dl->v = v;
			dl->cap = cap;
		}
	}
	if (dl->n < dl->cap)
		dl->v[dl->n++] = (struct later_block){ m->d.layer, m->d.key, b, cum };
	else
		add(&r->disk_skipped, 1);
	pthread_mutex_unlock(&dl->lock);
	return 1;
}

void lfs_disk_later_attach(struct lfs_reader *r, struct lfs_disk_later *dl,
			   struct lfs_disk_layer *l)
{
	struct later_block *v;
	size_t n;

	if (!dl)
		return;
	pthread_mutex_lock(&dl->lock);
	__atomic_store_n(&dl->closed, 1, __ATOMIC_RELEASE);
	v = dl->v;
	n = dl->n;
	dl->v = NULL;
	dl->n = dl->cap = 0;
	pthread_mutex_unlock(&dl->lock);
	for (size_t i = 0; l && i < n; i++) {
		struct disk_job *j = calloc(1, sizeof(*j));

		if (!j) {
			add(&r->disk_skipped, n - i);
			break;
		}
		/* block NULL: taken from the cache when its turn comes */
		*j = (struct disk_job){ .job = { disk_run, NULL }, .r = r, .layer = l,
					.layer_key = v[i].layer_key, .member = v[i].member,
					.index = v[i].index, .cum_crc = v[i].cum, .kind = 0 };
		disk_submit(r, j);
	}
	free(v);
}

/* Has block e (index b of m, running CRC cum at its end) written to the
 * disk tier.  The entry stays referenced until then, within a bound; past
 * the bound, the writer takes the block from the cache when its turn
 * comes (a block evicted by then is written the next time it is made).
 * While the layer waits for its digest, the block is only noted
 * (lfs_disk_later_attach writes it then). */
void rd_disk_write_block(struct lfs_reader *r, struct lfs_member *m, uint64_t b,
			     struct lfs_centry *e, uint32_t cum)
{
	struct lfs_disk_layer *l = disk_of(m);
	struct disk_job *j;
	uint64_t len = lfs_centry_len(e), pinned;

	if (!l && m->d.later && disk_kept(m)) {
		if (later_note(r, m, b, cum))
			return;
		l = disk_of(m); /* the list closed: the slot is set by now, or never */
	}
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

void rd_disk_write_copy(struct lfs_reader *r, struct lfs_member *m, int kind, uint64_t index,
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

/* Once a member's CRC passed, its table of block CRCs goes to the disk
 * tier, for a later daemon to check every block it makes again. */
void rd_store_crcs(struct lfs_reader *r, struct lfs_member *m)
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
		if (!rd_known_crc(m, b, &crcs[b])) {
			free(crcs);
			return; /* a block not seen by this daemon */
		}
	}
	if (crcs)
		rd_disk_write_copy(r, m, 2, 0, crcs, m->nblocks * sizeof(*crcs));
	free(crcs);
}

/* Before the first stream of m: the block CRCs a daemon stored when the
 * member passed its CRC, so every block made again here is checked. */
void rd_load_crcs(struct lfs_member *m)
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
			rd_record_crc(m, b, crcs[b]);
		__atomic_fetch_or(&m->flags, LFS_MEMBER_VERIFIED, __ATOMIC_RELEASE);
		__atomic_store_n(&m->s->disk_crcs, 2, __ATOMIC_RELEASE);
	}
	free(crcs);
}

/* Block b from the disk tier into the cache: a referenced entry, or NULL.
 * A block whose running CRC disagrees with what this member gave before is
 * not taken. */
struct lfs_centry *rd_disk_block(struct lfs_reader *r, struct lfs_member *m, uint64_t b)
{
	struct lfs_disk_layer *l = disk_of(m);
	struct lfs_cache_key k = key_of(m, LFS_KEY_BLOCK, b);
	uint32_t len, cum, seen;
	unsigned char *buf;
	struct lfs_centry *e;
	int claimed, rc;

	if (!l)
		return NULL;
	rd_load_crcs(m);
	/* claimed while it is read, so a block is read from disk once however
	 * many threads want it (the waiters of a miss go on to a stream) */
	e = lfs_cache_acquire(r->cache, &k, &claimed, &rc);
	if (!e || !claimed)
		return e;
	len = block_len(r, m, b);
	buf = lfs_bufpool_get(r->bufs, len);
	if (!buf || lfs_disk_get(l, m->d.key, b, buf, len, &cum) ||
	    (rd_known_crc(m, b, &seen) && seen != cum)) {
		lfs_bufpool_put(r->bufs, buf, len);
		lfs_cache_abandon(r->cache, e, -ENOENT);
		return NULL;
	}
	rd_record_crc(m, b, cum);
	add(&r->disk_hits, 1);
	lfs_cache_publish(r->cache, e, buf, len);
	rd_govern(r, len);
	return e;
}

/* Before starting a stream for block b: the resume points on disk at or
 * before it, into the cache, where plan_stream looks.  No lock held. */
void rd_disk_points(struct lfs_reader *r, struct lfs_member *m, uint64_t b)
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
		rd_note_reach(m, rp.out_pos);
		lfs_cache_insert(r->cache, &k, rec, len);
		if (rp.out_pos <= b * r->block_size)
			return;
	}
}

