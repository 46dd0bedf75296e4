#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#define MAX_THREADS 64

struct queue {
	struct lfs_pool_job *head, *tail;
};

struct lfs_pool {
	pthread_mutex_t lock;
	pthread_cond_t work;	/* a job was queued, or stopping */
	pthread_cond_t idle;	/* nothing queued or running */
	struct queue q[LFS_PRIO_COUNT];	/* lock */
	uint64_t queued, running;	/* lock */
	uint64_t run[LFS_PRIO_COUNT];	/* lock */
	unsigned want, started;		/* threads wanted, started (lock) */
	int stopping;			/* lock */
	pthread_t threads[MAX_THREADS];
};

static struct lfs_pool_job *take(struct lfs_pool *p, int *prio)
{
	for (int i = 0; i < LFS_PRIO_COUNT; i++) {
		struct lfs_pool_job *j = p->q[i].head;

		if (j) {
			p->q[i].head = j->next;
			if (!p->q[i].head)
				p->q[i].tail = NULL;
			p->queued--;
			*prio = i;
			return j;
		}
	}
	return NULL;
}

static void *worker(void *arg)
{
	struct lfs_pool *p = arg;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct lfs_pool_job *j;
		int prio;

		while (!p->stopping && !p->queued)
			pthread_cond_wait(&p->work, &p->lock);
		if (p->stopping)
			break;
		j = take(p, &prio);
		if (!j)
			continue;
		p->running++;
		pthread_mutex_unlock(&p->lock);
		j->run(j, 0);
		pthread_mutex_lock(&p->lock);
		p->running--;
		p->run[prio]++;
		if (!p->queued && !p->running)
			pthread_cond_broadcast(&p->idle);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

struct lfs_pool *lfs_pool_new(unsigned threads)
{
	struct lfs_pool *p = calloc(1, sizeof(*p));
	long cores = sysconf(_SC_NPROCESSORS_ONLN);

	if (!p)
		return NULL;
	if (!threads)
		threads = cores > 0 ? (unsigned)cores : 1;
	p->want = threads > MAX_THREADS ? MAX_THREADS : threads;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->idle, NULL);
	return p;
}

int lfs_pool_submit(struct lfs_pool *p, struct lfs_pool_job *job, enum lfs_prio prio)
{
	struct queue *q = &p->q[prio];

	pthread_mutex_lock(&p->lock);
	while (p->started < p->want &&
	       pthread_create(&p->threads[p->started], NULL, worker, p) == 0)
		p->started++;
	if (!p->started || p->stopping) {
		pthread_mutex_unlock(&p->lock);
		return -EAGAIN;
	}
	job->next = NULL;
	if (q->tail)
		q->tail->next = job;
	else
		q->head = job;
	q->tail = job;
	p->queued++;
	pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

void lfs_pool_wait_idle(struct lfs_pool *p)
{
	pthread_mutex_lock(&p->lock);
	while (p->queued || p->running)
		pthread_cond_wait(&p->idle, &p->lock);
	pthread_mutex_unlock(&p->lock);
}

void lfs_pool_get_stats(struct lfs_pool *p, struct lfs_pool_stats *out)
{
	pthread_mutex_lock(&p->lock);
	for (int i = 0; i < LFS_PRIO_COUNT; i++)
		out->run[i] = p->run[i];
	out->queued = p->queued;
	out->threads = p->started;
	pthread_mutex_unlock(&p->lock);
}

void lfs_pool_free(struct lfs_pool *p)
{
	struct lfs_pool_job *j;
	int prio;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = 1;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->started; i++)
		pthread_join(p->threads[i], NULL);
	while ((j = take(p, &prio)))
		j->run(j, 1);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->idle);
	free(p);
}
