/* The inflate pool: a few threads for work no reader is waiting for.
 *
 * Read-ahead, prefetch and background work (writing blocks out, hashing)
 * run here, never in the thread that answers a request, so a reply is not
 * held back and the FUSE workers stay free for lookups.  Jobs wait in one
 * queue per priority; a thread always takes the most urgent job first
 * (LFS_PRIO_DEMAND, then read-ahead, then prefetch), FIFO within a
 * priority.  Prefetch and background jobs have threads of their own (as
 * many) that run as SCHED_IDLE, on CPU time nothing else wants.  A demand
 * read itself never queues here: it does its own fill in its own thread.
 *
 * Jobs are the caller's structures with a struct lfs_pool_job in them; the
 * pool links them and calls run() once, from one of its threads, with
 * cancelled = 0, or from lfs_pool_free() with cancelled = 1 for jobs that
 * never started (run must then only free the job).  Threads start at the
 * first submit (so after a daemon has forked).  All calls are thread-safe. */
#ifndef LFS_POOL_H
#define LFS_POOL_H

#include <stdint.h>

enum lfs_prio {
	LFS_PRIO_DEMAND,	/* a reader waits for it */
	LFS_PRIO_READAHEAD,	/* ahead of a sequential reader */
	LFS_PRIO_PREFETCH,	/* ahead of a start-up (trace replay) */
	LFS_PRIO_BACKGROUND,	/* nobody waits: writing out, hashing */
	LFS_PRIO_COUNT
};

struct lfs_pool_job {
	void (*run)(struct lfs_pool_job *job, int cancelled);
	struct lfs_pool_job *next;	/* the pool's */
};

struct lfs_pool_stats {
	uint64_t run[LFS_PRIO_COUNT];	/* jobs run, per priority */
	uint64_t queued;		/* waiting now */
	unsigned threads;
};

struct lfs_pool;

/* threads: 0 picks the number of cores; as many idle threads come with
 * them. */
struct lfs_pool *lfs_pool_new(unsigned threads);
/* Lets running jobs end, cancels queued ones, joins the threads.  NULL is
 * ignored. */
void lfs_pool_free(struct lfs_pool *p);

/* Queues job at prio.  0, or a negative errno (the threads cannot start):
 * then the job is not queued and stays the caller's. */
int lfs_pool_submit(struct lfs_pool *p, struct lfs_pool_job *job, enum lfs_prio prio);

/* Runs in the calling thread, at its priority, every job queued at prio
 * whose run function is `run` (the others stay queued), oldest first, and
 * returns how many: a daemon about to exit finishes its queued disk writes
 * itself instead of waiting for idle threads a busy host starves. */
unsigned lfs_pool_run_here(struct lfs_pool *p, enum lfs_prio prio,
			   void (*run)(struct lfs_pool_job *job, int cancelled));

/* Returns once nothing is queued or running (tests, dropcache). */
void lfs_pool_wait_idle(struct lfs_pool *p);

void lfs_pool_get_stats(struct lfs_pool *p, struct lfs_pool_stats *out);

#endif
