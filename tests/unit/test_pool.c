/* The inflate pool (cache/pool.h): lfs_pool_run_here runs the queued jobs
 * of one kind in the caller's thread, which is how an exiting daemon
 * finishes its disk writes when a busy host starves the idle threads.
 * Deterministic: the pool's threads are held in a job of their own while
 * the others are queued, so nothing depends on scheduling. */
#include "helpers.h"

#include "../../cache/pool.h"

#include <pthread.h>

struct gate {
	struct lfs_pool_job job;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int started, open;
};

static void gate_run(struct lfs_pool_job *job, int cancelled)
{
	struct gate *g = (struct gate *)job;

	(void)cancelled;
	pthread_mutex_lock(&g->lock);
	g->started++;
	pthread_cond_broadcast(&g->cond);
	while (!g->open)
		pthread_cond_wait(&g->cond, &g->lock);
	pthread_mutex_unlock(&g->lock);
}

struct counted {
	struct lfs_pool_job job;
	pthread_t ran_in;
	int runs, cancelled;
};

static void write_run(struct lfs_pool_job *job, int cancelled)
{
	struct counted *c = (struct counted *)job;

	c->ran_in = pthread_self();
	c->runs++;
	c->cancelled = cancelled;
}

static void other_run(struct lfs_pool_job *job, int cancelled)
{
	write_run(job, cancelled);
}

static void test_run_here_takes_only_its_kind(void **state)
{
	struct lfs_pool *p = lfs_pool_new(1);
	struct gate g = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
	struct counted w[5], o;

	(void)state;
	assert_non_null(p);
	/* the one idle-class thread held in the gate */
	g.job.run = gate_run;
	assert_int_equal(lfs_pool_submit(p, &g.job, LFS_PRIO_BACKGROUND), 0);
	pthread_mutex_lock(&g.lock);
	while (!g.started)
		pthread_cond_wait(&g.cond, &g.lock);
	pthread_mutex_unlock(&g.lock);
	for (int i = 0; i < 5; i++) {
		w[i] = (struct counted){ .job = { write_run, NULL } };
		assert_int_equal(lfs_pool_submit(p, &w[i].job, LFS_PRIO_BACKGROUND), 0);
	}
	o = (struct counted){ .job = { other_run, NULL } };
	assert_int_equal(lfs_pool_submit(p, &o.job, LFS_PRIO_BACKGROUND), 0);

	assert_int_equal(lfs_pool_run_here(p, LFS_PRIO_BACKGROUND, write_run), 5);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(w[i].runs, 1);
		assert_int_equal(w[i].cancelled, 0);
		assert_true(pthread_equal(w[i].ran_in, pthread_self()));
	}
	assert_int_equal(o.runs, 0); /* another kind stays queued */
	assert_int_equal(lfs_pool_run_here(p, LFS_PRIO_BACKGROUND, write_run), 0);

	pthread_mutex_lock(&g.lock);
	g.open = 1;
	pthread_cond_broadcast(&g.cond);
	pthread_mutex_unlock(&g.lock);
	lfs_pool_wait_idle(p);
	assert_int_equal(o.runs, 1);
	assert_false(pthread_equal(o.ran_in, pthread_self()));
	for (int i = 0; i < 5; i++)
		assert_int_equal(w[i].runs, 1); /* none run twice */
	lfs_pool_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_run_here_takes_only_its_kind),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
