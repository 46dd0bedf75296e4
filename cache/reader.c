#include "reader.h"

#include "crcpieces.h"
#include "source.h"
#include "../fs/log.h"

#include <errno.h>
#include <stddef.h>
#include <isa-l/igzip_lib.h>
#include <libdeflate.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define IN_CHUNK (64u << 10)
#define DEFAULT_CACHE_SIZE (256ull << 20)
#define DEFAULT_BLOCK_SIZE (256u << 10)
#define DEFAULT_SPACING (1u << 20)
#define POOL_MAX 32
#define POOL_BYTES (4u << 20)

/* A stretch of a member being read ahead: one thread inflates ahead of a
 * sequential reader; later reads within its window only move the target. */
struct ra_job {
	uint64_t layer_id, key;	/* the member */
	uint64_t target;	/* inflate up to this block (exclusive) */
	int used;		/* RA_FREE, RA_RUNNING or RA_ENDED */
};

/* An ended job is kept (until its slot is needed) so that its reader, which
 * finds the blocks it left ready, starts the next one before it catches up
 * with the parked stream and has to wait for a block. */
enum { RA_FREE, RA_RUNNING, RA_ENDED };

#define RA_JOBS 64
#define CRC_SLOTS 64	/* large stored members checked at once */
#define CRC_PIECES 16	/* separate pieces of one before it is given up */
#define MAX_PARKED_PROBES 16 /* blocks behind a read searched for a parked stream */
#define MAX_SHARDS 16		/* cache shards (locks and LRUs) */
#define SHARD_MIN_BYTES (16ull << 20) /* the least budget of one */

struct lfs_reader {
	struct lfs_cache *cache;
	uint32_t block_size, spacing;
	pthread_key_t tls;	/* per-thread libdeflate decompressor */
	pthread_mutex_t stripes[256]; /* serialise fills of one member, by hash */
	uint32_t readahead_blocks;
	pthread_mutex_t pool_lock;
	void *pool[POOL_MAX];	/* spare full-size block buffers (pool_lock) */
	unsigned pooled;	/* pool_lock */
	unsigned pool_max;	/* at most POOL_MAX, and POOL_BYTES in all */
	pthread_cond_t refill;	/* wakes the refill thread (pool_lock) */
	int refill_state;	/* 0 not started, 1 running, 2 stopping (pool_lock) */
	pthread_t refill_thread;
	uint64_t bytes_read, bytes_inflated, resume_points_made, members_failed;
	uint64_t block_hits;	/* blocks found ready before claiming (lfs_cache_get) */
	struct lfs_crc_pieces *crcs; /* large stored members, as they are read */
	pthread_mutex_t ra_lock;
	struct ra_job ra_jobs[RA_JOBS]; /* members being read ahead (ra_lock) */
	unsigned ra_running;		/* jobs in use (ra_lock) */
};

/* A resume point: where the compressed stream continues and the inflater
 * state (bit buffer, Huffman tables, 32 KiB history, running CRC).  It
 * depends on nothing but the member's bytes (and the ISA-L version), so it
 * could be stored and used by another process.  Only the part of the state
 * in use is kept: ISA-L keeps its history in the first tmp_out_valid bytes
 * of its 64 KiB output buffer, the last member of the structure, and that is
 * 32 KiB after an output-full return.  So a point takes about 54 KiB, not
 * the structure's 85. */
struct resume_point {
	uint64_t in_pos;	/* compressed offset of the next unread byte */
	uint64_t out_pos;	/* uncompressed offset, a multiple of spacing */
	size_t state_len;	/* leading bytes of struct inflate_state kept */
	unsigned char state[];
};

static size_t state_in_use(const struct inflate_state *st)
{
	size_t head = offsetof(struct inflate_state, tmp_out_buffer);

	if (st->tmp_out_valid < 0 || (size_t)st->tmp_out_valid > sizeof(st->tmp_out_buffer))
		return sizeof(*st); /* cannot happen; keep everything */
	return head + (size_t)st->tmp_out_valid;
}

/* A live stream with its input buffer; st.next_in points into in[]. */
struct stream {
	uint64_t in_pos;	/* compressed offset of in[0] */
	uint32_t in_len;
	uint64_t out_pos;
	struct inflate_state st;
	unsigned char in[IN_CHUNK];
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

static void free_decompressor(void *d) { libdeflate_free_decompressor(d); }

/* Each shard of the cache keeps its own LRU within an equal share of the
 * budget, so a share must hold many of the largest entries (a parked stream
 * is about 150 KiB).  With 16 shards of a 4 MiB budget, four readers had
 * their parked streams and resume points evicted under them and inflated
 * 10-25 times what they read.  Small budgets get fewer shards. */
static unsigned cache_shards(uint64_t budget)
{
	uint64_t n = budget / SHARD_MIN_BYTES;

	return n < 1 ? 1 : n > MAX_SHARDS ? MAX_SHARDS : (unsigned)n;
}

/* Full-size block buffers come from a small pool.  Evicted blocks go back
 * to it: a full cache evicts one block for every block it makes, and
 * handing the same memory back avoids the allocator's fragmentation (which
 * let RSS drift far past the budget).  While the cache is still filling, a
 * refill thread keeps the pool stocked with buffers whose pages it has
 * already faulted in, on whichever core is free: writing into fresh pages
 * made inflation about a quarter slower when the inflating thread took the
 * page faults itself.  The thread starts on first use, so after the daemon
 * has forked. */
static void *refill_main(void *arg)
{
	struct lfs_reader *r = arg;

	/* Woken when the pool runs low, it fills it up: one wake-up per
	 * quarter of the pool rather than one per block taken. */
	pthread_mutex_lock(&r->pool_lock);
	while (r->refill_state == 1) {
		if (r->pooled >= r->pool_max) {
			pthread_cond_wait(&r->refill, &r->pool_lock);
			continue;
		}
		pthread_mutex_unlock(&r->pool_lock);
		{
			volatile unsigned char *p = malloc(r->block_size);

			for (uint32_t off = 0; p && off < r->block_size; off += 4096)
				p[off] = 0;
			pthread_mutex_lock(&r->pool_lock);
			if (p && r->pooled < r->pool_max)
				r->pool[r->pooled++] = (void *)(uintptr_t)p;
			else
				free((void *)(uintptr_t)p);
			if (!p)
				break;
		}
	}
	pthread_mutex_unlock(&r->pool_lock);
	return NULL;
}

static void *block_alloc(struct lfs_reader *r, uint32_t len)
{
	void *p = NULL;

	if (len == r->block_size) {
		pthread_mutex_lock(&r->pool_lock);
		if (r->pooled)
			p = r->pool[--r->pooled];
		if (r->refill_state == 0 &&
		    pthread_create(&r->refill_thread, NULL, refill_main, r) == 0)
			r->refill_state = 1;
		if (r->pooled <= r->pool_max / 4)
			pthread_cond_signal(&r->refill);
		pthread_mutex_unlock(&r->pool_lock);
	}
	return p ? p : malloc(len);
}

static void block_release(void *ctx, void *data, size_t len)
{
	struct lfs_reader *r = ctx;

	if (data && len == r->block_size) {
		pthread_mutex_lock(&r->pool_lock);
		if (r->pooled < r->pool_max) {
			r->pool[r->pooled++] = data;
			data = NULL;
		}
		pthread_mutex_unlock(&r->pool_lock);
	}
	free(data);
}

struct lfs_reader *lfs_reader_new(const struct lfs_reader_config *cfg)
{
	struct lfs_reader *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->block_size = cfg->block_size;
	r->readahead_blocks = (uint32_t)(cfg->readahead / cfg->block_size);
	r->spacing = cfg->spacing;
	for (size_t i = 0; i < sizeof(r->stripes) / sizeof(r->stripes[0]); i++)
		pthread_mutex_init(&r->stripes[i], NULL);
	pthread_mutex_init(&r->pool_lock, NULL);
	pthread_mutex_init(&r->ra_lock, NULL);
	pthread_cond_init(&r->refill, NULL);
	r->pool_max = POOL_BYTES / cfg->block_size;
	r->pool_max = r->pool_max < 1 ? 1 : r->pool_max > POOL_MAX ? POOL_MAX : r->pool_max;
	r->cache = lfs_cache_new(cfg->cache_size, cache_shards(cfg->cache_size));
	r->crcs = lfs_crc_pieces_new(CRC_SLOTS, CRC_PIECES);
	if (!r->cache || !r->crcs || pthread_key_create(&r->tls, free_decompressor)) {
		lfs_cache_free(r->cache);
		lfs_crc_pieces_free(r->crcs);
		free(r);
		return NULL;
	}
	lfs_cache_set_release(r->cache, block_release, r);
	return r;
}

void lfs_reader_free(struct lfs_reader *r)
{
	void *d;

	if (!r)
		return;
	d = pthread_getspecific(r->tls);
	if (d)
		libdeflate_free_decompressor(d);
	pthread_key_delete(r->tls);
	lfs_cache_free(r->cache);
	lfs_crc_pieces_free(r->crcs);
	pthread_mutex_lock(&r->pool_lock);
	if (r->refill_state == 1) {
		r->refill_state = 2;
		pthread_cond_signal(&r->refill);
		pthread_mutex_unlock(&r->pool_lock);
		pthread_join(r->refill_thread, NULL);
		pthread_mutex_lock(&r->pool_lock);
	}
	while (r->pooled)
		free(r->pool[--r->pooled]);
	pthread_mutex_unlock(&r->pool_lock);
	free(r);
}

int lfs_reader_fail(struct lfs_reader *r, const struct lfs_member *m, const char *why)
{
	uint32_t old = __atomic_fetch_or(m->flags, LFS_MEMBER_FAILED, __ATOMIC_ACQ_REL);
	char name[256];

	if (!(old & LFS_MEMBER_FAILED)) {
		add(&r->members_failed, 1);
		lfs_err("%s: entry '%s': %s; reads fail with EIO", m->layer_name,
			lfs_log_name(name, sizeof(name), m->entry_name, (size_t)m->entry_name_len),
			why);
	}
	return -EIO;
}

static int member_fail(struct lfs_reader *r, const struct lfs_member *m, const char *why)
{
	return lfs_reader_fail(r, m, why);
}

static int read_zip(struct lfs_reader *r, const struct lfs_member *m, void *buf, size_t len,
		    uint64_t off)
{
	int rc = lfs_source_read(m->src, buf, len, m->data_off + off);

	if (rc)
		return member_fail(r, m, "cannot read its data from the zip");
	add(&r->bytes_read, len);
	if (m->counters)
		add(&m->counters->bytes_read, len);
	return 0;
}

static void count_inflated(struct lfs_reader *r, const struct lfs_member *m, uint64_t n)
{
	add(&r->bytes_inflated, n);
	if (m->counters)
		add(&m->counters->bytes_inflated, n);
}

/* Inflates a member of at most one block in one call.  Returns the block. */
static int inflate_whole(struct lfs_reader *r, const struct lfs_member *m, void **out)
{
	struct libdeflate_decompressor *d = pthread_getspecific(r->tls);
	unsigned char *cbuf, *obuf;
	size_t in_used = 0, out_len = 0;
	enum libdeflate_result res;
	int rc;

	if (!d) {
		d = libdeflate_alloc_decompressor();
		if (!d || pthread_setspecific(r->tls, d)) {
			libdeflate_free_decompressor(d);
			return -ENOMEM;
		}
	}
	cbuf = malloc(m->comp_size ? m->comp_size : 1);
	/* one spare byte tells a stream that runs long from an exact one */
	obuf = malloc(m->size + 1);
	if (!cbuf || !obuf) {
		free(cbuf);
		free(obuf);
		return -ENOMEM;
	}
	rc = read_zip(r, m, cbuf, m->comp_size, 0);
	if (rc)
		goto out;
	res = libdeflate_deflate_decompress_ex(d, cbuf, m->comp_size, obuf, m->size + 1,
					       &in_used, &out_len);
	if (res == LIBDEFLATE_BAD_DATA)
		rc = member_fail(r, m, "corrupt deflate data");
	else if (res == LIBDEFLATE_INSUFFICIENT_SPACE || (res == LIBDEFLATE_SUCCESS && out_len > m->size))
		rc = member_fail(r, m, "stream runs past its declared size");
	else if (res != LIBDEFLATE_SUCCESS || out_len < m->size)
		rc = member_fail(r, m, "stream ends before its declared size");
	else if (libdeflate_crc32(0, obuf, m->size) != m->crc)
		rc = member_fail(r, m, "CRC-32 mismatch");
	if (!rc) {
		count_inflated(r, m, m->size);
		__atomic_fetch_or(m->flags, LFS_MEMBER_VERIFIED, __ATOMIC_RELEASE);
		*out = obuf;
		obuf = NULL;
	}
out:
	free(cbuf);
	free(obuf);
	return rc;
}

static struct stream *stream_new(void)
{
	struct stream *s = malloc(sizeof(*s));

	if (!s)
		return NULL;
	isal_inflate_init(&s->st);
	/* raw deflate, with the gzip CRC-32 (the zip CRC) kept as we go */
	s->st.crc_flag = ISAL_GZIP_NO_HDR;
	s->in_pos = 0;
	s->in_len = 0;
	s->out_pos = 0;
	s->st.next_in = s->in;
	s->st.avail_in = 0;
	return s;
}

static struct stream *stream_from_resume(const struct resume_point *rp)
{
	struct stream *s = malloc(sizeof(*s));

	if (!s)
		return NULL;
	memcpy(&s->st, rp->state, rp->state_len);
	s->in_pos = rp->in_pos;
	s->in_len = 0;
	s->out_pos = rp->out_pos;
	s->st.next_in = s->in;
	s->st.avail_in = 0;
	return s;
}

static uint64_t stream_next_in(const struct stream *s)
{
	return s->in_pos + (uint64_t)(s->st.next_in - s->in);
}

static int refill(struct lfs_reader *r, const struct lfs_member *m, struct stream *s)
{
	uint64_t pos = stream_next_in(s), left = m->comp_size - pos;
	uint32_t n = left > IN_CHUNK ? IN_CHUNK : (uint32_t)left;
	int rc;

	if (n == 0)
		return 0;
	rc = read_zip(r, m, s->in, n, pos);
	if (rc)
		return rc;
	s->in_pos = pos;
	s->in_len = n;
	s->st.next_in = s->in;
	s->st.avail_in = n;
	return 1;
}

/* Produces exactly len bytes into buf, or fails the member. */
static int stream_produce(struct lfs_reader *r, const struct lfs_member *m,
			  struct stream *s, unsigned char *buf, uint32_t len)
{
	s->st.next_out = buf;
	s->st.avail_out = len;
	while (s->st.avail_out) {
		uint32_t before_out = s->st.avail_out, before_in = s->st.avail_in;
		int rc, fed = 0;

		if (s->st.block_state == ISAL_BLOCK_FINISH)
			return member_fail(r, m, "stream ends before its declared size");
		if (s->st.avail_in == 0) {
			rc = refill(r, m, s);
			if (rc < 0)
				return rc;
			fed = rc;
		}
		rc = isal_inflate(&s->st);
		if (rc < 0)
			return member_fail(r, m, "corrupt deflate data");
		if (s->st.avail_out == before_out && s->st.avail_in == before_in && !fed &&
		    s->st.block_state != ISAL_BLOCK_FINISH)
			return member_fail(r, m, "compressed data ends before the stream does");
	}
	s->out_pos += len;
	count_inflated(r, m, len);
	return 0;
}

/* After the last byte: the stream must end here and match the CRC. */
static int stream_finish(struct lfs_reader *r, const struct lfs_member *m, struct stream *s)
{
	unsigned char spare[64];

	while (s->st.block_state != ISAL_BLOCK_FINISH) {
		uint32_t before_in = s->st.avail_in;
		int rc, fed = 0;

		if (s->st.avail_in == 0) {
			rc = refill(r, m, s);
			if (rc < 0)
				return rc;
			fed = rc;
		}
		s->st.next_out = spare;
		s->st.avail_out = sizeof(spare);
		rc = isal_inflate(&s->st);
		if (rc < 0)
			return member_fail(r, m, "corrupt deflate data");
		if (s->st.avail_out != sizeof(spare))
			return member_fail(r, m, "stream runs past its declared size");
		if (s->st.avail_in == before_in && !fed && s->st.block_state != ISAL_BLOCK_FINISH)
			return member_fail(r, m, "compressed data ends before the stream does");
	}
	if (s->st.crc != m->crc)
		return member_fail(r, m, "CRC-32 mismatch");
	__atomic_fetch_or(m->flags, LFS_MEMBER_VERIFIED, __ATOMIC_RELEASE);
	return 0;
}

static void save_resume_point(struct lfs_reader *r, const struct lfs_member *m,
			      const struct stream *s)
{
	struct lfs_cache_key k = lfs_key(m->layer_id, m->key, LFS_KEY_RESUME,
					 s->out_pos / r->spacing);
	struct lfs_centry *have = lfs_cache_get(r->cache, &k);
	struct resume_point *rp;
	size_t len;

	if (have) {
		lfs_cache_release(r->cache, have);
		return;
	}
	len = state_in_use(&s->st);
	rp = malloc(sizeof(*rp) + len);
	if (!rp)
		return; /* only costs speed later */
	rp->in_pos = stream_next_in(s);
	rp->out_pos = s->out_pos;
	rp->state_len = len;
	memcpy(rp->state, &s->st, len);
	/* No addresses of this process in it: they mean nothing to another
	 * (and are set afresh on restore anyway). */
	memset(rp->state + offsetof(struct inflate_state, next_out), 0,
	       sizeof(s->st.next_out));
	memset(rp->state + offsetof(struct inflate_state, next_in), 0, sizeof(s->st.next_in));
	add(&r->resume_points_made, 1);
	lfs_cache_insert(r->cache, &k, rp, sizeof(*rp) + len);
}

/* How get_block came by a block. */
enum block_source {
	BLOCK_READY,		/* found in the cache */
	BLOCK_CONTINUED,	/* made by the stream parked right before it */
	BLOCK_RESTARTED,	/* made by a stream from a resume point, the start,
				 * or parked some blocks before it */
};

/* A stream positioned at or before block `blk`: a parked one exactly there,
 * else the nearest of a stream parked a few blocks before it and a resume
 * point, else the member's start. */
static struct stream *stream_for(struct lfs_reader *r, const struct lfs_member *m,
				 uint64_t blk, enum block_source *how)
{
	struct lfs_cache_key k = lfs_key(m->layer_id, m->key, LFS_KEY_PARKED, blk);
	struct lfs_centry *e = NULL;
	size_t len;
	struct stream *s = lfs_cache_take(r->cache, &k, &len);
	uint64_t j = blk * r->block_size / r->spacing, floor;

	*how = s ? BLOCK_CONTINUED : BLOCK_RESTARTED;
	if (s)
		return s;
	/* Resume points exist only below where some stream has been; never
	 * probe above that (a member declaring a huge size must not make one
	 * read probe for billions of them). */
	if (m->reach) {
		uint64_t reached = __atomic_load_n(m->reach, __ATOMIC_ACQUIRE) / r->spacing;

		if (reached < j)
			j = reached;
	}
	for (; j > 0; j--) {
		struct lfs_cache_key rk = lfs_key(m->layer_id, m->key, LFS_KEY_RESUME, j);

		e = lfs_cache_get(r->cache, &rk);
		if (e)
			break;
	}
	/* The kernel asks for a sequential reader's next blocks at once, on
	 * several threads: the one whose block lies a little past the parked
	 * stream goes on from that stream rather than inflating again from
	 * the resume point behind it (which cost 4 % of a cold read twice). */
	floor = j * r->spacing / r->block_size;
	if (blk - floor > MAX_PARKED_PROBES)
		floor = blk - MAX_PARKED_PROBES;
	for (uint64_t b = blk; !s && b-- > floor;) {
		k = lfs_key(m->layer_id, m->key, LFS_KEY_PARKED, b);
		s = lfs_cache_take(r->cache, &k, &len);
	}
	if (!s)
		s = e ? stream_from_resume(lfs_centry_data(e)) : stream_new();
	if (e)
		lfs_cache_release(r->cache, e);
	return s;
}

/* Fills the claimed block `target` (number blk) of a streamed member from
 * stream s (positioned at or before it), which it consumes: parked after the
 * block, or freed. */
static int fill_streamed(struct lfs_reader *r, const struct lfs_member *m, uint64_t blk,
			 struct lfs_centry *target, struct stream *s)
{
	uint64_t B = r->block_size;
	int rc = 0;

	if (!s)
		return -ENOMEM;
	for (;;) {
		uint64_t b = s->out_pos / B;
		uint32_t len = (uint32_t)(m->size - b * B < B ? m->size - b * B : B);
		unsigned char *buf = block_alloc(r, len);

		if (!buf) {
			rc = -ENOMEM;
			break;
		}
		rc = stream_produce(r, m, s, buf, len);
		if (!rc && s->out_pos == m->size)
			rc = stream_finish(r, m, s);
		if (rc) {
			block_release(r, buf, len);
			break;
		}
		if (s->out_pos < m->size && s->out_pos % r->spacing == 0)
			save_resume_point(r, m, s);
		if (m->reach) {
			uint64_t seen = __atomic_load_n(m->reach, __ATOMIC_RELAXED);

			while (seen < s->out_pos &&
			       !__atomic_compare_exchange_n(m->reach, &seen, s->out_pos, 1,
							    __ATOMIC_RELEASE, __ATOMIC_RELAXED))
				;
		}
		if (b == blk) {
			lfs_cache_publish(r->cache, target, buf, len);
			break;
		}
		struct lfs_cache_key k = lfs_key(m->layer_id, m->key, LFS_KEY_BLOCK, b);
		lfs_cache_insert(r->cache, &k, buf, len);
	}
	if (!rc && s->out_pos < m->size) {
		struct lfs_cache_key k = lfs_key(m->layer_id, m->key, LFS_KEY_PARKED,
						 s->out_pos / B);
		lfs_cache_insert(r->cache, &k, s, sizeof(*s));
	} else {
		free(s);
	}
	return rc;
}

static pthread_mutex_t *stripe_of(struct lfs_reader *r, const struct lfs_member *m)
{
	return &r->stripes[(m->key ^ m->layer_id) * 0x9e3779b97f4a7c15ull >> 56];
}

/* A referenced, ready block `blk` of a deflated member, and how it came
 * by it (*how is left alone when the block was ready). */
static int get_block(struct lfs_reader *r, const struct lfs_member *m, uint64_t blk,
		     struct lfs_centry **out, enum block_source *how)
{
	struct lfs_cache_key k = lfs_key(m->layer_id, m->key, LFS_KEY_BLOCK, blk);
	pthread_mutex_t *lock = NULL;
	struct lfs_centry *e;
	int claimed, rc;

	if (m->size > r->block_size) {
		/* Streams of one member are advanced by one thread at a time,
		 * and blocks are claimed under the same lock: a reader that
		 * arrives while another inflates towards its block waits and
		 * then finds it (or the parked stream) instead of inflating
		 * the same span again. */
		e = lfs_cache_get(r->cache, &k);
		if (e) {
			add(&r->block_hits, 1);
			*out = e;
			return 0;
		}
		lock = stripe_of(r, m);
		pthread_mutex_lock(lock);
	}
	e = lfs_cache_acquire(r->cache, &k, &claimed, &rc);
	if (e && claimed) {
		if (m->size <= r->block_size) {
			void *data = NULL;

			rc = inflate_whole(r, m, &data);
			if (!rc)
				lfs_cache_publish(r->cache, e, data, m->size);
		} else {
			rc = fill_streamed(r, m, blk, e, stream_for(r, m, blk, how));
		}
		if (rc) {
			lfs_cache_abandon(r->cache, e, rc);
			e = NULL;
		}
	}
	if (lock)
		pthread_mutex_unlock(lock);
	*out = e;
	return e ? 0 : rc;
}

/* Stored members need no cache.  Small ones are CRC-checked once before
 * any byte is served; large ones as they are read, once the reads have
 * covered them (see crcpieces.h): a mismatch fails the read that completes
 * the member and every read after it. */
static int read_stored(struct lfs_reader *r, const struct lfs_member *m, void *buf,
		       size_t len, uint64_t off)
{
	uint32_t crc;
	int rc;

	if (!(__atomic_load_n(m->flags, __ATOMIC_ACQUIRE) & LFS_MEMBER_VERIFIED) &&
	    m->size <= r->block_size) {
		unsigned char *all = malloc(m->size ? m->size : 1);

		if (!all)
			return -ENOMEM;
		rc = read_zip(r, m, all, m->size, 0);
		if (!rc && libdeflate_crc32(0, all, m->size) != m->crc)
			rc = member_fail(r, m, "CRC-32 mismatch");
		if (!rc) {
			__atomic_fetch_or(m->flags, LFS_MEMBER_VERIFIED, __ATOMIC_RELEASE);
			memcpy(buf, all + off, len);
		}
		free(all);
		return rc;
	}
	rc = read_zip(r, m, buf, len, off);
	if (rc || (__atomic_load_n(m->flags, __ATOMIC_ACQUIRE) &
		   (LFS_MEMBER_VERIFIED | LFS_MEMBER_UNCHECKED)))
		return rc;
	switch (lfs_crc_pieces_add(r->crcs, m->layer_id, m->key, m->size, off, buf, len, &crc)) {
	case 1:
		if (crc != m->crc)
			return member_fail(r, m, "CRC-32 mismatch");
		__atomic_fetch_or(m->flags, LFS_MEMBER_VERIFIED, __ATOMIC_RELEASE);
		break;
	case -1:
		/* a library faulted in here and there: checking it would cost
		 * a CRC of every read for nothing */
		__atomic_fetch_or(m->flags, LFS_MEMBER_UNCHECKED, __ATOMIC_RELEASE);
		break;
	}
	return 0;
}

void lfs_reader_unpin(struct lfs_reader *r, struct lfs_pin *p)
{
	for (size_t i = 0; i < p->count; i++)
		lfs_cache_release(r->cache, p->entries[i]);
	free(p->entries);
	free(p->iov);
	free(p->buf);
	memset(p, 0, sizeof(*p));
}

ssize_t lfs_reader_pin(struct lfs_reader *r, const struct lfs_member *m, uint64_t off,
		       size_t len, struct lfs_pin *p)
{
	size_t done = 0, max;
	int rc, jumped = 0, continued = 0;

	memset(p, 0, sizeof(*p));
	if (__atomic_load_n(m->flags, __ATOMIC_ACQUIRE) & LFS_MEMBER_FAILED)
		return -EIO;
	if (off >= m->size || len == 0)
		return 0;
	if (len > m->size - off)
		len = (size_t)(m->size - off);
	if (m->method != 0 && m->method != 8)
		return member_fail(r, m, "compression method not supported");
	max = m->method == 0 ? 1 : len / r->block_size + 2;
	p->iov = malloc(max * sizeof(*p->iov));
	p->entries = malloc(max * sizeof(*p->entries));
	if (!p->iov || !p->entries) {
		lfs_reader_unpin(r, p);
		return -ENOMEM;
	}
	if (m->method == 0) {
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

		rc = get_block(r, m, blk, &e, &how);
		/* The mark of a reader that jumped rather than one going through
		 * the member in order: a block made by a fresh stream, or by
		 * continuing a parked stream from anywhere but where it stopped
		 * (random reads leave streams parked all over a member, and one
		 * landing inside such a block is still random). */
		jumped |= how == BLOCK_RESTARTED || (how == BLOCK_CONTINUED && in_blk != 0);
		continued |= how == BLOCK_CONTINUED && in_blk == 0;
		if (rc) {
			lfs_reader_unpin(r, p);
			return rc;
		}
		if (lfs_centry_len(e) != (m->size - blk * r->block_size < r->block_size
						  ? m->size - blk * r->block_size
						  : r->block_size)) {
			/* cannot happen while keys name members exactly */
			lfs_cache_release(r->cache, e);
			lfs_reader_unpin(r, p);
			return member_fail(r, m, "cached block of an unexpected size");
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
	p->sequential = m->method != 8 || jumped ? LFS_SEQ_NO
			: continued		  ? LFS_SEQ_CONTINUED
						  : LFS_SEQ_READY;
	if (m->counters)
		add(&m->counters->bytes_served, done);
	return (ssize_t)done;
}

ssize_t lfs_reader_read(struct lfs_reader *r, const struct lfs_member *m, void *buf,
			size_t len, uint64_t off)
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

/* Makes block blk of m from the stream parked right before it, if there is
 * one.  Returns 1 when the block is ready (made now or before), 0 when there
 * is no parked stream to continue, or a negative errno. */
static int readahead_block(struct lfs_reader *r, const struct lfs_member *m, uint64_t blk)
{
	struct lfs_cache_key k = lfs_key(m->layer_id, m->key, LFS_KEY_BLOCK, blk);
	struct lfs_cache_key pk = lfs_key(m->layer_id, m->key, LFS_KEY_PARKED, blk);
	pthread_mutex_t *lock = stripe_of(r, m);
	struct lfs_centry *e;
	struct stream *s;
	size_t len;
	int claimed, rc = 1;

	pthread_mutex_lock(lock);
	e = lfs_cache_get(r->cache, &k);
	if (e) {
		lfs_cache_release(r->cache, e);
		pthread_mutex_unlock(lock);
		return 1;
	}
	s = lfs_cache_take(r->cache, &pk, &len);
	if (!s) {
		pthread_mutex_unlock(lock);
		return 0;
	}
	e = lfs_cache_acquire(r->cache, &k, &claimed, &rc);
	if (e && claimed) {
		rc = fill_streamed(r, m, blk, e, s);
		if (rc)
			lfs_cache_abandon(r->cache, e, rc);
		else
			lfs_cache_release(r->cache, e);
	} else {
		free(s);
		lfs_cache_release(r->cache, e);
	}
	pthread_mutex_unlock(lock);
	return rc ? rc : 1;
}

/* Blocks to inflate ahead of one reader: the read-ahead is shared by the
 * members being read ahead at once.  Four readers with a window each had
 * the cache evict blocks inflated ahead before they were read, and inflate
 * 1.9 GB for 1 GiB read (make bench's item 6, a 64 MiB budget, most of it
 * held by resume points).  Called with ra_lock held. */
static uint64_t ra_window(const struct lfs_reader *r)
{
	uint64_t n = r->readahead_blocks / (r->ra_running ? r->ra_running : 1);

	return n ? n : 1;
}

/* The job whose window a read ending before block `first` continues: one
 * running on the same member that has not stopped short of it.  A read
 * beyond gets a job of its own; raising this one's target would have it
 * inflate all the way there.  A read behind is absorbed (no read-ahead of
 * its own while this job runs): giving such reads jobs of their own set off
 * more read-ahead among random reads and raised their p99 from 3.3 to
 * 4.5 ms in make bench's item 3. */
static struct ra_job *ra_find(struct lfs_reader *r, const struct lfs_member *m,
			      uint64_t first)
{
	for (unsigned i = 0; i < RA_JOBS; i++)
		if (r->ra_jobs[i].used == RA_RUNNING && r->ra_jobs[i].key == m->key &&
		    r->ra_jobs[i].layer_id == m->layer_id && first <= r->ra_jobs[i].target)
			return &r->ra_jobs[i];
	return NULL;
}

/* A job of this member that ended at its target less than a window after
 * block `first`: the reader is catching up with where it stopped. */
static struct ra_job *ra_find_ended(struct lfs_reader *r, const struct lfs_member *m,
				    uint64_t first)
{
	for (unsigned i = 0; i < RA_JOBS; i++) {
		struct ra_job *j = &r->ra_jobs[i];

		if (j->used == RA_ENDED && j->key == m->key && j->layer_id == m->layer_id &&
		    first <= j->target && j->target - first <= ra_window(r))
			return j;
	}
	return NULL;
}

/* A slot for a new job when the member has no ended one: a free slot, else
 * any ended one. */
static struct ra_job *ra_slot(struct lfs_reader *r)
{
	static const int order[] = { RA_FREE, RA_ENDED };

	for (unsigned k = 0; k < 2; k++)
		for (unsigned i = 0; i < RA_JOBS; i++)
			if (r->ra_jobs[i].used == order[k])
				return &r->ra_jobs[i];
	return NULL;
}

void lfs_reader_readahead(struct lfs_reader *r, const struct lfs_member *m, uint64_t end,
			  enum lfs_seq seq)
{
	uint64_t B = r->block_size, blk = (end + B - 1) / B, target;
	struct ra_job *job;

	if (seq == LFS_SEQ_NO || m->method != 8 || m->size <= B || !r->readahead_blocks ||
	    (__atomic_load_n(m->flags, __ATOMIC_ACQUIRE) & LFS_MEMBER_FAILED))
		return;
	/* One thread reads ahead of a sequential reader; the reader's later
	 * reads only raise its target.  Many threads walking the same window
	 * took turns on the member's lock and woke each other for nothing. */
	pthread_mutex_lock(&r->ra_lock);
	job = ra_find(r, m, blk);
	if (job) {
		target = blk + ra_window(r);
		if (job->target < target)
			job->target = target;
		pthread_mutex_unlock(&r->ra_lock);
		return;
	}
	/* A read that found all its blocks ready starts a job only where one
	 * stopped at its target just ahead: otherwise it may be a random read
	 * among blocks some other stream made, and read-ahead from there
	 * walked on to that stream and inflated a whole window (random p99 in
	 * make bench's item 3 went from 3.7 to 8.4 ms with an 8 MiB window). */
	job = ra_find_ended(r, m, blk);
	if (!job && seq != LFS_SEQ_CONTINUED) {
		pthread_mutex_unlock(&r->ra_lock);
		return;
	}
	if (!job)
		job = ra_slot(r);
	if (job) {
		job->used = RA_RUNNING;
		job->layer_id = m->layer_id;
		job->key = m->key;
		r->ra_running++;
	}
	target = blk + ra_window(r);
	if (job)
		job->target = target;
	pthread_mutex_unlock(&r->ra_lock);
	/* Only a stream parked where the reader stopped is continued: that is
	 * a sequential reader, and going on costs nothing but the inflation a
	 * later read would do anyway.  One block per lock hold, so a reader
	 * that catches up waits for one block, not the whole window. */
	for (;;) {
		int rc = blk * B < m->size ? readahead_block(r, m, blk) : 0;

		pthread_mutex_lock(&r->ra_lock);
		if (job && job->target > target)
			target = job->target;
		if (rc <= 0 || ++blk >= target) {
			if (job) {
				job->used = rc > 0 ? RA_ENDED : RA_FREE;
				r->ra_running--;
			}
			pthread_mutex_unlock(&r->ra_lock);
			return;
		}
		pthread_mutex_unlock(&r->ra_lock);
	}
}

void lfs_reader_drop_blocks(struct lfs_reader *r)
{
	lfs_cache_drop(r->cache, LFS_KEY_BLOCK);
	lfs_cache_drop(r->cache, LFS_KEY_PARKED);
}

void lfs_reader_get_stats(struct lfs_reader *r, struct lfs_reader_stats *out)
{
	lfs_cache_get_stats(r->cache, &out->cache);
	/* the cache counts hits of lfs_cache_acquire only */
	out->cache.hits += __atomic_load_n(&r->block_hits, __ATOMIC_RELAXED);
	out->bytes_read = __atomic_load_n(&r->bytes_read, __ATOMIC_RELAXED);
	out->bytes_inflated = __atomic_load_n(&r->bytes_inflated, __ATOMIC_RELAXED);
	out->resume_points_made = __atomic_load_n(&r->resume_points_made, __ATOMIC_RELAXED);
	out->members_failed = __atomic_load_n(&r->members_failed, __ATOMIC_RELAXED);
}
