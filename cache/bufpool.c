#include "bufpool.h"

#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#define POOL_MAX 32
#define TRIM_EVERY (2u << 20)	/* bytes of small buffers freed between trims */
#define SMALL (64u << 10)	/* below this, buffers come from the heap */

enum { REFILL_NONE, REFILL_RUNNING, REFILL_STOPPING };

struct lfs_bufpool {
	size_t block_size;
	pthread_mutex_t lock;
	void *spare[POOL_MAX];	/* lock */
	unsigned count;		/* lock */
	unsigned max;		/* at most POOL_MAX */
	pthread_cond_t low;	/* wakes the refill thread (lock) */
	int refill;		/* REFILL_* (lock) */
	int trim;		/* the refill thread is to trim the heap (lock) */
	uint64_t freed;		/* small bytes freed since the last trim, atomic */
	pthread_t thread;
};

struct lfs_bufpool *lfs_bufpool_new(size_t block_size, size_t max_bytes)
{
	struct lfs_bufpool *p = calloc(1, sizeof(*p));
	size_t max = max_bytes / block_size;

	if (!p)
		return NULL;
	p->block_size = block_size;
	p->max = (unsigned)(max < 1 ? 1 : max > POOL_MAX ? POOL_MAX : max);
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->low, NULL);
	return p;
}

/* Woken when the pool runs low, it fills it up: one wake-up per quarter
 * of the pool rather than one per buffer taken. */
static void *refill_main(void *arg)
{
	struct lfs_bufpool *p = arg;

	pthread_mutex_lock(&p->lock);
	while (p->refill == REFILL_RUNNING) {
		volatile unsigned char *buf;

		if (p->trim) {
			p->trim = 0;
			pthread_mutex_unlock(&p->lock);
			malloc_trim(0);
			pthread_mutex_lock(&p->lock);
			continue;
		}
		if (p->count >= p->max) {
			pthread_cond_wait(&p->low, &p->lock);
			continue;
		}
		pthread_mutex_unlock(&p->lock);
		buf = malloc(p->block_size);
		for (size_t off = 0; buf && off < p->block_size; off += 4096)
			buf[off] = 0;
		pthread_mutex_lock(&p->lock);
		if (!buf)
			break;
		if (p->count < p->max)
			p->spare[p->count++] = (void *)(uintptr_t)buf;
		else
			free((void *)(uintptr_t)buf);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

size_t lfs_bufpool_class(size_t len)
{
	size_t top = 64, step;

	if (len >= SMALL)
		return len;
	if (len <= 64)
		return 64;
	while (top < len)
		top <<= 1;
	/* classes top/2 + k * top/8, k = 1..4 */
	step = top / 8;
	return (len + step - 1) / step * step;
}

void *lfs_bufpool_get(struct lfs_bufpool *p, size_t len)
{
	void *buf = NULL;

	if (len != p->block_size)
		return malloc(lfs_bufpool_class(len ? len : 1));
	pthread_mutex_lock(&p->lock);
	if (p->count)
		buf = p->spare[--p->count];
	if (p->refill == REFILL_NONE &&
	    pthread_create(&p->thread, NULL, refill_main, p) == 0)
		p->refill = REFILL_RUNNING;
	if (p->count <= p->max / 4)
		pthread_cond_signal(&p->low);
	pthread_mutex_unlock(&p->lock);
	return buf ? buf : malloc(len);
}

void lfs_bufpool_put(struct lfs_bufpool *p, void *buf, size_t len)
{
	if (buf && len != p->block_size)
		lfs_bufpool_freed(p, len);
	if (buf && len == p->block_size) {
		pthread_mutex_lock(&p->lock);
		if (p->count < p->max) {
			p->spare[p->count++] = buf;
			buf = NULL;
		}
		pthread_mutex_unlock(&p->lock);
	}
	free(buf);
}

void lfs_bufpool_freed(struct lfs_bufpool *p, size_t len)
{
	if (len >= SMALL ||
	    __atomic_add_fetch(&p->freed, len, __ATOMIC_RELAXED) < TRIM_EVERY)
		return;
	__atomic_store_n(&p->freed, 0, __ATOMIC_RELAXED);
	pthread_mutex_lock(&p->lock);
	if (p->refill == REFILL_RUNNING) {
		p->trim = 1;
		pthread_cond_signal(&p->low);
	}
	pthread_mutex_unlock(&p->lock);
}

void lfs_bufpool_trim(struct lfs_bufpool *p)
{
	void *spare[POOL_MAX];
	unsigned n;

	pthread_mutex_lock(&p->lock);
	n = p->count;
	for (unsigned i = 0; i < n; i++)
		spare[i] = p->spare[i];
	p->count = 0;
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < n; i++)
		free(spare[i]);
}

size_t lfs_bufpool_bytes(struct lfs_bufpool *p)
{
	size_t n;

	pthread_mutex_lock(&p->lock);
	n = p->count * p->block_size;
	pthread_mutex_unlock(&p->lock);
	return n;
}

void lfs_bufpool_free(struct lfs_bufpool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	if (p->refill == REFILL_RUNNING) {
		p->refill = REFILL_STOPPING;
		pthread_cond_signal(&p->low);
		pthread_mutex_unlock(&p->lock);
		pthread_join(p->thread, NULL);
		pthread_mutex_lock(&p->lock);
	}
	while (p->count)
		free(p->spare[--p->count]);
	pthread_mutex_unlock(&p->lock);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->low);
	free(p);
}
