#include "pool.h"

#include <errno.h>
#include <sched.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_THREADS 64
/* <linux/ioprio.h>'s, which not every libc's headers carry */
#define IOPRIO_WHO_PROCESS 1 /* with 0: the calling thread */
#define IOPRIO_IDLE (3 << 13)

struct queue {
	struct lfs_pool_job *head, *tail;
};

struct lfs_pool {
	pthread_mutex_t lock;
	pthread_cond_t work;	/* a job was queued, or stopping */
	pthread_cond_t idle;	/* nothing queued or running */
	struct queue q[LFS_PRIO_COUNT];	/* lock */
	uint64_t queued, running;	/* lock */
	uint64_t queued_at[LFS_PRIO_COUNT]; /* lock */
	uint64_t run[LFS_PRIO_COUNT];	/* lock */
	unsigned want, started;		/* threads wanted, started (lock); the
					 * second half are idle threads */
	int stopping;			/* lock */
	pthread_t threads[MAX_THREADS];
};

/* The most urgent job in priorities [from, to). */
static struct lfs_pool_job *take(struct lfs_pool *p, int from, int to, int *prio)
{
	for (int i = from; i < to; i++) {
		struct lfs_pool_job *j = p->q[i].head;

		if (j) {
			p->q[i].head = j->next;
			if (!p->q[i].head)
				p->q[i].tail = NULL;
			p->queued--;
			p->queued_at[i]--;
			*prio = i;
			return j;
		}
	}
	return NULL;
}

struct worker_arg {
	struct lfs_pool *p;
	int background;
};

/* The first priority of the idle class. */
#define IDLE_FROM LFS_PRIO_PREFETCH

/* Jobs of its class waiting? */
static int has_work(const struct lfs_pool *p, int background)
{
	uint64_t idle = p->queued_at[LFS_PRIO_PREFETCH] + p->queued_at[LFS_PRIO_BACKGROUND];

	return background ? idle != 0 : p->queued != idle;
}

/* Idle threads run as SCHED_IDLE: what nobody waits for (prefetch, writing
 * blocks out, hashing) uses only the CPU time nothing else wants, so a
 * function's start is not slowed by it; and in the idle I/O class, so that
 * their reads (hashing a layer never seen reads all of it) wait for the
 * function's where the disk's scheduler has classes (mq-deadline, bfq;
 * docs/coldstart.md, hostfirst).  The others run as SCHED_BATCH: read-ahead
 * is throughput work, and a batch thread woken for a job does not preempt
 * the thread that queued it, the worker about to reply to a sequential
 * reader (docs/performance.md, sched=auto).  Named, for top -H and the
 * tests. */
static void *worker(void *arg)
{
	struct worker_arg a = *(struct worker_arg *)arg;
	struct lfs_pool *p = a.p;
	struct sched_param sp = { 0 };

	free(arg);
	(void)pthread_setname_np(pthread_self(), a.background ? "layerfs-idle" : "layerfs-pool");
	(void)pthread_setschedparam(pthread_self(), a.background ? SCHED_IDLE : SCHED_BATCH, &sp);
	if (a.background)
		(void)syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, IOPRIO_IDLE);
	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct lfs_pool_job *j;
		int prio;

		while (!p->stopping && !has_work(p, a.background))
			pthread_cond_wait(&p->work, &p->lock);
		if (p->stopping)
			break;
		j = a.background ? take(p, IDLE_FROM, LFS_PRIO_COUNT, &prio)
				 : take(p, 0, IDLE_FROM, &prio);
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
	threads = threads > MAX_THREADS / 2 ? MAX_THREADS / 2 : threads;
	p->want = 2 * threads;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->idle, NULL);
	return p;
}

int lfs_pool_submit(struct lfs_pool *p, struct lfs_pool_job *job, enum lfs_prio prio)
{
	struct queue *q = &p->q[prio];

	pthread_mutex_lock(&p->lock);
	while (p->started < p->want) {
		struct worker_arg *a = malloc(sizeof(*a));

		if (!a)
			break;
		a->p = p;
		a->background = p->started >= p->want / 2;
		if (pthread_create(&p->threads[p->started], NULL, worker, a)) {
			free(a);
			break;
		}
		p->started++;
	}
	if (p->started < p->want || p->stopping) {
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
	p->queued_at[prio]++;
	/* one condition for both classes: wake them all, the wrong class
	 * goes back to sleep */
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

unsigned lfs_pool_run_here(struct lfs_pool *p, enum lfs_prio prio,
			   void (*run)(struct lfs_pool_job *job, int cancelled))
{
	struct queue *q = &p->q[prio];
	struct lfs_pool_job *mine = NULL, **tail = &mine, *prev = NULL;
	unsigned n = 0;

	pthread_mutex_lock(&p->lock);
	for (struct lfs_pool_job *j = q->head, *next; j; j = next) {
		next = j->next;
		if (j->run != run) {
			prev = j;
			continue;
		}
		if (prev)
			prev->next = next;
		else
			q->head = next;
		if (q->tail == j)
			q->tail = prev;
		j->next = NULL;
		*tail = j;
		tail = &j->next;
		n++;
	}
	p->queued -= n;
	p->queued_at[prio] -= n;
	p->running += n;
	pthread_mutex_unlock(&p->lock);
	for (struct lfs_pool_job *j = mine, *next; j; j = next) {
		next = j->next;
		j->run(j, 0);
	}
	pthread_mutex_lock(&p->lock);
	p->running -= n;
	p->run[prio] += n;
	if (!p->queued && !p->running)
		pthread_cond_broadcast(&p->idle);
	pthread_mutex_unlock(&p->lock);
	return n;
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
	out->threads = p->started / 2;
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
	while ((j = take(p, 0, LFS_PRIO_COUNT, &prio)))
		j->run(j, 1);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->idle);
	free(p);
}
