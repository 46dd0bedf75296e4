/* Members larger than a block: which stream makes which block, who
 * waits, who reads ahead.
 *
 * A member larger than one block has streams (stream.h) that move through
 * it.  A stream between reads is parked in the cache under the block it
 * makes next; a thread that takes one to advance it registers it in the
 * member's `run` slots (position and target) under the member's lock, so
 * that a thread wanting a block that stream is about to make waits on the
 * member's condition instead of inflating the same span again, and no lock
 * is held while the stream runs. */
#include "reader_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <libdeflate.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- streamed members ---- */

struct stream_ctx {
	struct lfs_reader *r;
	struct lfs_member *m;
	int prefetch;		/* the blocks are made for a prefetch: marked */
};

/* A block a prefetch made: marked, and counted. */
static void made_for_prefetch(struct lfs_reader *r, struct lfs_centry *e)
{
	lfs_centry_mark(e);
	add(&r->prefetch_made, lfs_centry_len(e));
}

static int io_fetch(void *ctx, void *buf, size_t len, uint64_t off)
{
	struct stream_ctx *c = ctx;

	return rd_fetch(c->r, c->m, buf, len, off);
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
		rd_disk_write_copy(c->r, c->m, 1, index, rec, len);
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
int rd_known_crc(const struct lfs_member *m, uint64_t b, uint32_t *crc)
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

void rd_record_crc(struct lfs_member *m, uint64_t b, uint32_t crc)
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

void rd_note_reach(struct lfs_member *m, uint64_t pos)
{
	uint64_t seen = __atomic_load_n(&m->reach, __ATOMIC_RELAXED);

	while (seen < pos && !__atomic_compare_exchange_n(&m->reach, &seen, pos, 1,
							  __ATOMIC_RELEASE, __ATOMIC_RELAXED))
		;
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
				    int readahead, int prefetch)
{
	for (unsigned i = 0; i < MAX_RUNNING; i++) {
		struct running *rs = &m->s->run[i];

		if (!rs->active) {
			*rs = (struct running){ pos, target, 1, readahead, prefetch };
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
		rd_count_inflated(r, m, k * B - pos);
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
			rd_count_inflated(r, m, len);
			now = lfs_stream_crc(s);
			if (lfs_stream_pos(s) == m->d.size) {
				rc = lfs_stream_finish(s, &io, m->d.crc, &why);
				if (!rc)
					__atomic_fetch_or(&m->flags, LFS_MEMBER_VERIFIED,
							  __ATOMIC_RELEASE);
			}
		}
		/* every block made again must be the one made first */
		if (!rc && !rd_known_crc(m, k, &crc))
			rd_record_crc(m, k, now);
		else if (!rc && crc != now) {
			rc = -EBADMSG;
			why = "a block differs from the first time it was made (the layer changed?)";
		}
		if (rc) {
			lfs_bufpool_put(r->bufs, buf, len);
			break;
		}
		rd_note_reach(m, lfs_stream_pos(s));
		rd_govern(r, len);
		if (out)
			add(&r->demand_fills, 1);
		if ((out && k == want) || disk_of(m) || rd_disk_later(m) || c->prefetch) {
			struct lfs_centry *e = lfs_cache_insert_get(r->cache, &bk, buf, len);

			if (e && c->prefetch)
				made_for_prefetch(r, e);
			if (e)
				rd_disk_write_block(r, m, k, e, now);
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
			rd_store_crcs(r, m);
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
		return rd_source_fault(r, m, rc);
	return rc;
}

/* A referenced, ready block b of a streamed member. */
int rd_get_streamed(struct lfs_reader *r, struct lfs_member *m, uint64_t b,
			struct lfs_centry **out, enum block_source *how)
{
	struct lfs_cache_key k = key_of(m, LFS_KEY_BLOCK, b);
	struct stream_ctx c = { r, m, 0 };
	int waited = 0;

	for (;;) {
		struct lfs_centry *e = lfs_cache_get(r->cache, &k);
		struct lfs_stream *s;
		struct running *rs;
		struct start st;
		uint64_t target = b;
		int rc;

		if (!e && !failed(m) && disk_of(m)) {
			e = rd_disk_block(r, m, b);
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
			rd_disk_points(r, m, b);
		}
		if (!e && !failed(m)) {
			pthread_mutex_lock(&m->s->lock);
			/* again under the lock: a stream that made it since has
			 * told the waiters already */
			e = lfs_cache_get(r->cache, &k);
			if (!e && (rs = running_towards(r, m, b))) {
				if (!waited)
					add(rs->prefetch ? &r->prefetch_waits : &r->stream_waits, 1);
				waited = 1;
				m->s->waiters++;
				pthread_cond_wait(&m->s->moved, &m->s->lock);
				m->s->waiters--;
				pthread_mutex_unlock(&m->s->lock);
				continue;
			}
			if (!e) {
				*how = plan_stream(r, m, b, &st);
				rs = register_run(m, (st.pos + r->block_size - 1) / r->block_size, b, 0,
						  0);
				pthread_mutex_unlock(&m->s->lock);
				rc = open_stream(r, &c, &st, &s);
				if (rc) {
					unregister_run(m, rs);
					return rc == -ENOMEM ? rc : rd_source_fault(r, m, rc);
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

/* ---- read-ahead and prefetch, in the pool ---- */

/* How many members are being read ahead, m among them: those that asked
 * for read-ahead in the last RA_SEEN_NS (at most RA_SEEN), or the streams
 * running for it if more.  Running streams alone miss readers slower than
 * inflation: their windows are made, then wait to be read, and each such
 * reader had a whole window to itself (four of them inflated 11 to 16 times
 * what they read in test_readahead_is_shared). */
static unsigned ra_members(struct lfs_reader *r, const struct lfs_member *m)
{
	struct timespec ts;
	uint64_t now;
	unsigned n = 0, slot = RA_SEEN, running = __atomic_load_n(&r->ra_active, __ATOMIC_RELAXED);

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec + 1;
	pthread_mutex_lock(&r->ra_lock);
	for (unsigned i = 0; i < RA_SEEN && slot == RA_SEEN; i++)
		if (r->ra_seen[i].m == m)
			slot = i;
	for (unsigned i = 0; i < RA_SEEN && slot == RA_SEEN; i++)
		if (now - r->ra_seen[i].at >= RA_SEEN_NS)
			slot = i; /* free, or not asked for long enough */
	if (slot == RA_SEEN) { /* all taken: the one that asked longest ago */
		slot = 0;
		for (unsigned i = 1; i < RA_SEEN; i++)
			if (r->ra_seen[i].at < r->ra_seen[slot].at)
				slot = i;
	}
	r->ra_seen[slot].m = m;
	r->ra_seen[slot].at = now;
	for (unsigned i = 0; i < RA_SEEN; i++)
		n += now - r->ra_seen[i].at < RA_SEEN_NS;
	pthread_mutex_unlock(&r->ra_lock);
	return n > running ? n : running;
}

/* Blocks to inflate ahead of one reader: the read-ahead is shared by the
 * members being read ahead at once.  Four readers with a window each had
 * the cache evict blocks inflated ahead before they were read, and inflate
 * nearly twice what they read (docs/performance.md, make bench's item 6). */
static uint64_t ra_window(struct lfs_reader *r, unsigned members)
{
	uint64_t n = r->readahead_blocks / (members ? members : 1);

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
	struct stream_ctx c = { r, m, !continue_only };
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
			e = rd_disk_block(r, m, k);
			if (e) {
				if (c.prefetch)
					made_for_prefetch(r, e);
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
				  continue_only, c.prefetch);
		pthread_mutex_unlock(&m->s->lock);
		rc = open_stream(r, &c, &st, &s);
		if (rc) {
			unregister_run(m, rs);
			if (rc != -ENOMEM)
				rd_source_fault(r, m, rc);
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
	uint64_t B = r->block_size, blk = (end + B - 1) / B, last, window;
	struct ra_job *job = NULL;

	if (seq == LFS_SEQ_NO || !streamed(r, m) || !r->readahead_blocks || failed(m) ||
	    blk >= m->nblocks)
		return;
	window = ra_window(r, ra_members(r, m));
	pthread_mutex_lock(&m->s->lock);
	last = blk + window - 1;
	if (!join_running(m, blk, last) && !join_queued(m, blk, last) &&
	    (seq == LFS_SEQ_CONTINUED ||
	     /* A read that found all its blocks ready starts read-ahead only
	      * where the last one stopped, just ahead: otherwise it may be a
	      * random read among blocks some other stream made, and read-ahead
	      * from there walked on to that stream and inflated a whole
	      * window. */
	     (m->s->ra_stop && blk <= m->s->ra_stop && m->s->ra_stop - blk < window))) {
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
		add(&j->r->prefetch_jobs, 1);
		if (streamed(j->r, j->m)) {
			fill_range(j->r, j->m, j->first, j->last, 0);
		} else if (!in_place(j->r, j->m) && !failed(j->m)) {
			struct lfs_cache_key k = key_of(j->m, LFS_KEY_BLOCK, 0);
			struct lfs_centry *e = lfs_cache_get(j->r->cache, &k);

			if (!e && rd_get_whole(j->r, j->m, &e, 0) == 0)
				made_for_prefetch(j->r, e);
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

