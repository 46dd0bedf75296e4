/* Member handles, members of one block, large stored members, pins and
 * faults: see reader.h for the contract, reader_impl.h for how the files
 * share the work. */
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
 * under them and inflated many times what they read; with 16 MiB blocks
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
	r->prefetch_jumps = cfg->prefetch_jumps;
	r->fault = cfg->fault;
	r->fault_ctx = cfg->fault_ctx;
	r->disk = cfg->disk;
	r->disk_min = cfg->disk_min;
	r->budget = cfg->cache_size;
	pthread_mutex_init(&r->ra_lock, NULL);
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
	rd_disk_drain(r);
	lfs_pool_free(r->pool); /* first: its jobs use the cache */
	lfs_cache_free(r->cache);
	lfs_bufpool_free(r->bufs);
	lfs_crc_pieces_free(r->crcs);
	pthread_mutex_destroy(&r->ra_lock);
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
int rd_source_fault(struct lfs_reader *r, struct lfs_member *m, int rc)
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

/* Reads compressed bytes [off, off + len) of m. */
int rd_fetch(struct lfs_reader *r, struct lfs_member *m, void *buf, size_t len, uint64_t off)
{
	int rc = lfs_source_read(m->src, buf, len, m->d.data_off + off);

	if (rc)
		return rc;
	add(&r->bytes_read, len);
	if (m->counters)
		add(&m->counters->bytes_read, len);
	return 0;
}

void rd_count_inflated(struct lfs_reader *r, struct lfs_member *m, uint64_t n)
{
	add(&r->bytes_inflated, n);
	if (m->counters)
		add(&m->counters->bytes_inflated, n);
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
		return rd_source_fault(r, m, rc);
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
	rc = rd_fetch(r, m, cbuf ? cbuf : obuf, (size_t)m->d.comp_size, 0);
	if (rc) {
		rc = rd_source_fault(r, m, rc);
		goto out;
	}
	if (cbuf) {
		rc = m->codec->whole(cbuf, (size_t)m->d.comp_size, obuf, size, &why);
		if (rc == -EBADMSG)
			rc = lfs_reader_fail(r, m, why);
		if (rc)
			goto out;
		rd_count_inflated(r, m, size);
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

int rd_get_whole(struct lfs_reader *r, struct lfs_member *m, struct lfs_centry **out, int demand)
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
			rd_govern(r, size);
		} else {
			lfs_bufpool_put(r->bufs, data, size + 1);
			data = NULL;
			rc = fill_whole(r, m, &data);
			if (rc) {
				lfs_cache_abandon(r->cache, e, rc);
				e = NULL;
			} else {
				lfs_cache_publish(r->cache, e, data, size);
				if (demand)
					add(&r->demand_fills, 1);
				rd_disk_write_block(r, m, 0, e, m->d.crc);
				rd_govern(r, size);
			}
		}
	}
	*out = e;
	return e ? 0 : rc ? rc : -EIO;
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
		rc = rd_fetch(r, m, buf, len, off);
	if (rc)
		return rd_source_fault(r, m, rc);
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

/* The run of reads in order that the read [off, off + len) is part of,
 * in bytes (lfs_pin.in_order). */
static uint64_t note_order(struct lfs_member *m, uint64_t off, size_t len)
{
	uint64_t end = __atomic_load_n(&m->order_end, __ATOMIC_RELAXED);
	uint64_t run = __atomic_load_n(&m->order_run, __ATOMIC_RELAXED);

	if (run && off + LFS_IN_ORDER_SLACK >= end && off <= end + LFS_IN_ORDER_SLACK) {
		run += len;
		if (off + len > end)
			end = off + len;
	} else {
		run = len;
		end = off + len;
	}
	__atomic_store_n(&m->order_end, end, __ATOMIC_RELAXED);
	__atomic_store_n(&m->order_run, run, __ATOMIC_RELAXED);
	return run;
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
	p->in_order = note_order(m, off, len);
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
			rc = rd_get_streamed(r, m, blk, &e, &how);
		else
			rc = rd_get_whole(r, m, &e, 1);
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
		if (lfs_centry_take_mark(e))
			add(&r->prefetch_used, lfs_centry_len(e));
		p->entries[p->count++] = e;
		/* the cache never writes an entry's data once it is ready */
		p->iov[p->niov].iov_base = (unsigned char *)(uintptr_t)lfs_centry_data(e) + in_blk;
		p->iov[p->niov++].iov_len = n;
		done += n;
	}
	p->sequential = !streamed(r, m) || jumped ? LFS_SEQ_NO
			: continued		  ? LFS_SEQ_CONTINUED
						  : LFS_SEQ_READY;
	if (jumped && r->prefetch_jumps && off >= 2 * (uint64_t)r->block_size &&
	    m->d.size <= r->budget / 4 &&
	    !(__atomic_fetch_or(&m->flags, LFS_MEMBER_JUMPED, __ATOMIC_RELAXED) & LFS_MEMBER_JUMPED) &&
	    lfs_reader_prefetch(r, m, 0, m->nblocks - 1, LFS_PRIO_PREFETCH) == 0)
		add(&r->jump_prefetches, 1);
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
	out->demand_fills = __atomic_load_n(&r->demand_fills, __ATOMIC_RELAXED);
	out->prefetch_waits = __atomic_load_n(&r->prefetch_waits, __ATOMIC_RELAXED);
	out->jump_prefetches = __atomic_load_n(&r->jump_prefetches, __ATOMIC_RELAXED);
	out->readahead_jobs = __atomic_load_n(&r->readahead_jobs, __ATOMIC_RELAXED);
	out->prefetch_jobs = __atomic_load_n(&r->prefetch_jobs, __ATOMIC_RELAXED);
	out->prefetch_made = __atomic_load_n(&r->prefetch_made, __ATOMIC_RELAXED);
	out->prefetch_used = __atomic_load_n(&r->prefetch_used, __ATOMIC_RELAXED);
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
