#include "cache.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* uthash with our own key hash (the default Jenkins hash is slower and our
 * keys are already well mixed integers). */
#define HASH_FUNCTION(keyptr, keylen, hashv) ((hashv) = key_hash((const struct lfs_cache_key *)(keyptr)))
#include <uthash.h>

#define DEFAULT_SHARDS 16

enum entry_state { FILLING, READY, FAILED };

struct lfs_centry {
	struct lfs_cache_key key;
	void *data;
	size_t len;
	size_t charge;		/* bytes counted against the budget */
	unsigned refs;		/* shard lock */
	int mark;		/* atomic; lfs_centry_mark */
	enum entry_state state;	/* shard lock */
	int err;		/* FAILED: what waiters get */
	struct shard *shard;
	struct lfs_centry *prev, *next; /* LRU, most recent first; READY only */
	UT_hash_handle hh;
};

struct shard {
	pthread_mutex_t lock;
	pthread_cond_t filled;	/* broadcast when a FILLING entry settles */
	struct lfs_centry *map;	/* lock */
	struct lfs_centry *lru_head, *lru_tail; /* lock */
	uint64_t bytes, budget;	/* lock */
	uint64_t hits, misses, evictions, inserts, resume_points; /* lock */
	struct lfs_cache *cache;
};

struct lfs_cache {
	unsigned nshards;
	struct shard *shards;
	void (*release)(void *ctx, void *data, size_t len); /* set before use */
	void *release_ctx;
	size_t (*sizer)(size_t len);		/* set before use, or NULL */
	uint64_t budget;			/* as given */
	int64_t reserved;			/* atomic; lfs_cache_reserve */
};

static uint32_t key_hash(const struct lfs_cache_key *k)
{
	uint64_t h = k->layer * 0x9e3779b97f4a7c15ull;

	h ^= k->member + 0x7f4a7c159e3779b9ull + (h << 6) + (h >> 2);
	h ^= k->index * 0xc2b2ae3d27d4eb4full;
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 32;
	return (uint32_t)h;
}

static struct shard *shard_of(struct lfs_cache *c, const struct lfs_cache_key *k)
{
	/* Use different bits than uthash's bucket choice. */
	uint64_t h = (k->member ^ (k->index >> 2) ^ (k->index << 7) ^ k->layer) * 0x9e3779b97f4a7c15ull;

	return &c->shards[(h >> 40) % c->nshards];
}

static int is_resume(const struct lfs_centry *e)
{
	return (e->key.index & 3) == LFS_KEY_RESUME;
}

struct lfs_cache *lfs_cache_new(uint64_t budget, unsigned nshards)
{
	struct lfs_cache *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->nshards = nshards ? nshards : DEFAULT_SHARDS;
	c->budget = budget;
	c->shards = calloc(c->nshards, sizeof(*c->shards));
	if (!c->shards) {
		free(c);
		return NULL;
	}
	for (unsigned i = 0; i < c->nshards; i++) {
		pthread_mutex_init(&c->shards[i].lock, NULL);
		pthread_cond_init(&c->shards[i].filled, NULL);
		c->shards[i].budget = budget / c->nshards;
		c->shards[i].cache = c;
	}
	return c;
}

static void data_free(struct lfs_cache *c, void *data, size_t len)
{
	if (c->release)
		c->release(c->release_ctx, data, len);
	else
		free(data);
}

static void entry_free(struct lfs_centry *e)
{
	data_free(e->shard->cache, e->data, e->len);
	free(e);
}

void lfs_cache_set_sizer(struct lfs_cache *c, size_t (*sizer)(size_t len)) { c->sizer = sizer; }

void lfs_cache_set_release(struct lfs_cache *c, void (*release)(void *ctx, void *data,
								  size_t len),
			   void *ctx)
{
	c->release = release;
	c->release_ctx = ctx;
}

void lfs_cache_free(struct lfs_cache *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < c->nshards; i++) {
		struct shard *s = &c->shards[i];
		struct lfs_centry *e, *tmp;

		HASH_ITER(hh, s->map, e, tmp) {
			HASH_DEL(s->map, e);
			entry_free(e);
		}
		pthread_mutex_destroy(&s->lock);
		pthread_cond_destroy(&s->filled);
	}
	free(c->shards);
	free(c);
}

static void lru_unlink(struct shard *s, struct lfs_centry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else if (s->lru_head == e)
		s->lru_head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else if (s->lru_tail == e)
		s->lru_tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_push(struct shard *s, struct lfs_centry *e)
{
	e->prev = NULL;
	e->next = s->lru_head;
	if (s->lru_head)
		s->lru_head->prev = e;
	s->lru_head = e;
	if (!s->lru_tail)
		s->lru_tail = e;
}

/* Removes a READY entry from the map and LRU; frees it when unreferenced. */
static void unmap(struct shard *s, struct lfs_centry *e)
{
	HASH_DEL(s->map, e);
	lru_unlink(s, e);
	s->bytes -= e->charge;
	if (is_resume(e))
		s->resume_points--;
	e->state = FAILED; /* no longer findable; freed by its last release */
	e->err = -ESTALE;
	if (e->refs == 0)
		entry_free(e);
}

/* A shard's share of the budget, less its share of what is reserved. */
static uint64_t share(const struct shard *s)
{
	const struct lfs_cache *c = s->cache;
	int64_t reserved = __atomic_load_n(&c->reserved, __ATOMIC_RELAXED);
	uint64_t left = reserved <= 0 ? c->budget
		      : (uint64_t)reserved > c->budget / 4 * 3 ? c->budget / 4
							  : c->budget - (uint64_t)reserved;

	return left / c->nshards;
}

/* Evicts least recently used, unreferenced entries until within budget. */
static void shrink(struct shard *s)
{
	struct lfs_centry *e = s->lru_tail;

	s->budget = share(s);
	while (s->bytes > s->budget && e) {
		struct lfs_centry *prev = e->prev;

		if (e->refs == 0) {
			unmap(s, e);
			s->evictions++;
		}
		e = prev;
	}
}

static struct lfs_centry *find(struct shard *s, const struct lfs_cache_key *k)
{
	struct lfs_centry *e;

	HASH_FIND(hh, s->map, k, sizeof(*k), e);
	return e;
}

/* With s->lock held: waits until e settles.  Returns 0 when ready. */
static int wait_ready(struct shard *s, struct lfs_centry *e)
{
	while (e->state == FILLING)
		pthread_cond_wait(&s->filled, &s->lock);
	return e->state == READY ? 0 : (e->err ? e->err : -EIO);
}

static void touch(struct shard *s, struct lfs_centry *e)
{
	if (s->lru_head != e) {
		lru_unlink(s, e);
		lru_push(s, e);
	}
}

static void put_locked(struct lfs_centry *e)
{
	if (--e->refs == 0 && e->state == FAILED)
		entry_free(e);
}

/* With s->lock held: a referenced ready entry for a present key (waiting
 * while it fills), NULL with *err set when that fill failed. */
static struct lfs_centry *ref_ready(struct shard *s, struct lfs_centry *e, int *err)
{
	e->refs++;
	*err = wait_ready(s, e);
	if (*err) {
		put_locked(e);
		return NULL;
	}
	touch(s, e);
	return e;
}

struct lfs_centry *lfs_cache_get(struct lfs_cache *c, const struct lfs_cache_key *k)
{
	struct shard *s = shard_of(c, k);
	struct lfs_centry *e;
	int err;

	pthread_mutex_lock(&s->lock);
	e = find(s, k);
	if (e)
		e = ref_ready(s, e, &err);
	pthread_mutex_unlock(&s->lock);
	return e;
}

struct lfs_centry *lfs_cache_acquire(struct lfs_cache *c, const struct lfs_cache_key *k,
				     int *claimed, int *err)
{
	struct shard *s = shard_of(c, k);
	struct lfs_centry *e;

	*claimed = 0;
	*err = 0;
	pthread_mutex_lock(&s->lock);
	e = find(s, k);
	if (e) {
		e = ref_ready(s, e, err);
		s->hits += e != NULL;
		pthread_mutex_unlock(&s->lock);
		return e;
	}
	s->misses++;
	e = calloc(1, sizeof(*e));
	if (!e) {
		pthread_mutex_unlock(&s->lock);
		*err = -ENOMEM;
		return NULL;
	}
	e->key = *k;
	e->refs = 1;
	e->state = FILLING;
	e->shard = s;
	HASH_ADD(hh, s->map, key, sizeof(e->key), e);
	*claimed = 1;
	pthread_mutex_unlock(&s->lock);
	return e;
}

/* With s->lock held: makes e a ready, findable entry holding data. */
static void settle_ready(struct shard *s, struct lfs_centry *e, void *data, size_t len)
{
	struct lfs_cache *c = s->cache;

	e->data = data;
	e->len = len;
	e->charge = (c->sizer ? c->sizer(len) : len) + sizeof(*e);
	e->state = READY;
	s->bytes += e->charge;
	s->inserts++;
	if (is_resume(e))
		s->resume_points++;
	lru_push(s, e);
	shrink(s);
}

void lfs_cache_publish(struct lfs_cache *c, struct lfs_centry *e, void *data, size_t len)
{
	struct shard *s = e->shard;

	(void)c;
	pthread_mutex_lock(&s->lock);
	settle_ready(s, e, data, len);
	pthread_cond_broadcast(&s->filled);
	pthread_mutex_unlock(&s->lock);
}

void lfs_cache_abandon(struct lfs_cache *c, struct lfs_centry *e, int err)
{
	struct shard *s = e->shard;

	(void)c;
	pthread_mutex_lock(&s->lock);
	HASH_DEL(s->map, e);
	e->state = FAILED;
	e->err = err ? err : -EIO;
	pthread_cond_broadcast(&s->filled);
	put_locked(e);
	pthread_mutex_unlock(&s->lock);
}

void lfs_cache_insert(struct lfs_cache *c, const struct lfs_cache_key *k, void *data,
		      size_t len)
{
	struct shard *s = shard_of(c, k);
	struct lfs_centry *e = calloc(1, sizeof(*e));

	pthread_mutex_lock(&s->lock);
	if (!e || find(s, k)) {
		pthread_mutex_unlock(&s->lock);
		free(e);
		data_free(c, data, len);
		return;
	}
	e->key = *k;
	e->shard = s;
	HASH_ADD(hh, s->map, key, sizeof(e->key), e);
	settle_ready(s, e, data, len);
	pthread_mutex_unlock(&s->lock);
}

struct lfs_centry *lfs_cache_insert_get(struct lfs_cache *c, const struct lfs_cache_key *k,
					void *data, size_t len)
{
	struct shard *s = shard_of(c, k);
	struct lfs_centry *e, *have;
	int err;

	e = calloc(1, sizeof(*e));
	pthread_mutex_lock(&s->lock);
	/* A fill of k that fails (a disk record that missed or was bad) frees
	 * the key: then this data goes in, it is as good as any. */
	while ((have = find(s, k)) != NULL && !(have = ref_ready(s, have, &err)))
		;
	if (have || !e) {
		pthread_mutex_unlock(&s->lock);
		free(e);
		data_free(c, data, len);
		return have;
	}
	e->key = *k;
	e->shard = s;
	e->refs = 1;
	HASH_ADD(hh, s->map, key, sizeof(e->key), e);
	settle_ready(s, e, data, len);
	pthread_mutex_unlock(&s->lock);
	return e;
}

void *lfs_cache_take(struct lfs_cache *c, const struct lfs_cache_key *k, size_t *len)
{
	struct shard *s = shard_of(c, k);
	struct lfs_centry *e;
	void *data = NULL;

	pthread_mutex_lock(&s->lock);
	e = find(s, k);
	if (e && e->state == READY && e->refs == 0) {
		data = e->data;
		*len = e->len;
		e->data = NULL;
		unmap(s, e);
	}
	pthread_mutex_unlock(&s->lock);
	return data;
}

void lfs_cache_release(struct lfs_cache *c, struct lfs_centry *e)
{
	struct shard *s;

	if (!e)
		return;
	(void)c;
	s = e->shard;
	pthread_mutex_lock(&s->lock);
	put_locked(e); /* may free e */
	if (s->bytes > share(s))
		shrink(s);
	pthread_mutex_unlock(&s->lock);
}

void lfs_cache_ref(struct lfs_cache *c, struct lfs_centry *e)
{
	(void)c;
	pthread_mutex_lock(&e->shard->lock);
	e->refs++;
	pthread_mutex_unlock(&e->shard->lock);
}

void lfs_centry_mark(struct lfs_centry *e) { __atomic_store_n(&e->mark, 1, __ATOMIC_RELAXED); }

int lfs_centry_take_mark(struct lfs_centry *e)
{
	return __atomic_load_n(&e->mark, __ATOMIC_RELAXED) &&
	       __atomic_exchange_n(&e->mark, 0, __ATOMIC_RELAXED);
}

const void *lfs_centry_data(const struct lfs_centry *e) { return e->data; }
size_t lfs_centry_len(const struct lfs_centry *e) { return e->len; }

void lfs_cache_drop(struct lfs_cache *c, enum lfs_key_kind kind)
{
	for (unsigned i = 0; i < c->nshards; i++) {
		struct shard *s = &c->shards[i];
		struct lfs_centry *e, *prev;

		pthread_mutex_lock(&s->lock);
		for (e = s->lru_tail; e; e = prev) {
			prev = e->prev;
			if (e->refs == 0 && (e->key.index & 3) == (uint64_t)kind)
				unmap(s, e);
		}
		pthread_mutex_unlock(&s->lock);
	}
}

void lfs_cache_reserve(struct lfs_cache *c, int64_t delta)
{
	__atomic_add_fetch(&c->reserved, delta, __ATOMIC_RELAXED);
}

void lfs_cache_get_stats(struct lfs_cache *c, struct lfs_cache_stats *out)
{
	int64_t reserved = __atomic_load_n(&c->reserved, __ATOMIC_RELAXED);

	memset(out, 0, sizeof(*out));
	out->reserved = reserved > 0 ? (uint64_t)reserved : 0;
	for (unsigned i = 0; i < c->nshards; i++) {
		struct shard *s = &c->shards[i];

		pthread_mutex_lock(&s->lock);
		out->hits += s->hits;
		out->misses += s->misses;
		out->evictions += s->evictions;
		out->inserts += s->inserts;
		out->bytes += s->bytes;
		out->budget += share(s);
		out->entries += HASH_COUNT(s->map);
		out->resume_points += s->resume_points;
		pthread_mutex_unlock(&s->lock);
	}
}
