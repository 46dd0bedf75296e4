/* The block cache: budget, LRU eviction, references, single fill under
 * contention, failed fills, take and drop. */
#include "helpers.h"

#include <errno.h>
#include <pthread.h>

#include "../../cache/cache.h"

static void *blob(size_t len, int fill)
{
	void *p = malloc(len);

	memset(p, fill, len);
	return p;
}

static struct lfs_cache_key key(uint64_t i) { return lfs_key(1, 2, LFS_KEY_BLOCK, i); }

static void test_hit_and_miss(void **state)
{
	struct lfs_cache *c = lfs_cache_new(1 << 20, 1);
	struct lfs_cache_key k = key(5);
	struct lfs_cache_stats st;
	struct lfs_centry *e;
	int claimed, err;

	(void)state;
	assert_null(lfs_cache_get(c, &k));
	e = lfs_cache_acquire(c, &k, &claimed, &err);
	assert_non_null(e);
	assert_true(claimed);
	lfs_cache_publish(c, e, blob(100, 'x'), 100);
	lfs_cache_release(c, e);
	e = lfs_cache_acquire(c, &k, &claimed, &err);
	assert_false(claimed);
	assert_int_equal(lfs_centry_len(e), 100);
	assert_int_equal(((const char *)lfs_centry_data(e))[99], 'x');
	lfs_cache_release(c, e);
	lfs_cache_get_stats(c, &st);
	assert_int_equal(st.hits, 1);
	assert_int_equal(st.misses, 1);
	assert_int_equal(st.entries, 1);
	/* kinds are distinct keys */
	k = lfs_key(1, 2, LFS_KEY_RESUME, 5);
	assert_null(lfs_cache_get(c, &k));
	lfs_cache_free(c);
}

static void test_budget_and_lru(void **state)
{
	enum { BLK = 10000, BUDGET = 100000 };
	struct lfs_cache *c = lfs_cache_new(BUDGET, 1);
	struct lfs_cache_stats st;
	struct lfs_centry *pinned, *e;
	struct lfs_cache_key k;

	(void)state;
	k = key(0);
	lfs_cache_insert(c, &k, blob(BLK, 0), BLK);
	pinned = lfs_cache_get(c, &k); /* held: must survive eviction */
	for (uint64_t i = 1; i < 50; i++) {
		k = key(i);
		lfs_cache_insert(c, &k, blob(BLK, (int)i), BLK);
		if (i % 5 == 0) { /* keep 1 recently used */
			k = key(1);
			lfs_cache_release(c, lfs_cache_get(c, &k));
		}
		lfs_cache_get_stats(c, &st);
		/* never over budget by more than the referenced entry */
		assert_true(st.bytes <= BUDGET + BLK + 200);
	}
	lfs_cache_get_stats(c, &st);
	assert_true(st.evictions > 30);
	k = key(0);
	e = lfs_cache_get(c, &k);
	assert_ptr_equal(e, pinned);
	lfs_cache_release(c, e);
	lfs_cache_release(c, pinned);
	k = key(1);
	e = lfs_cache_get(c, &k);
	assert_non_null(e); /* recently used survived */
	lfs_cache_release(c, e);
	k = key(2);
	assert_null(lfs_cache_get(c, &k)); /* least recently used went */
	k = key(49);
	e = lfs_cache_get(c, &k);
	assert_non_null(e);
	lfs_cache_release(c, e);
	lfs_cache_free(c);
}

struct race {
	struct lfs_cache *c;
	int fills;
	pthread_mutex_t lock;
	int fail;
	int errors;
	int ok;
};

static void *racer(void *arg)
{
	struct race *r = arg;
	struct lfs_cache_key k = key(77);
	int claimed, err;
	struct lfs_centry *e = lfs_cache_acquire(r->c, &k, &claimed, &err);

	if (claimed) {
		pthread_mutex_lock(&r->lock);
		r->fills++;
		pthread_mutex_unlock(&r->lock);
		usleep(50000); /* others pile up waiting */
		if (r->fail) {
			lfs_cache_abandon(r->c, e, -EIO);
			return NULL;
		}
		lfs_cache_publish(r->c, e, blob(64, 'r'), 64);
	}
	pthread_mutex_lock(&r->lock);
	if (!e)
		r->errors += err == -EIO;
	else
		r->ok += ((const char *)lfs_centry_data(e))[0] == 'r';
	pthread_mutex_unlock(&r->lock);
	lfs_cache_release(r->c, e);
	return NULL;
}

static void run_race(struct race *r)
{
	pthread_t th[16];

	for (int i = 0; i < 16; i++)
		pthread_create(&th[i], NULL, racer, r);
	for (int i = 0; i < 16; i++)
		pthread_join(th[i], NULL);
}

static void test_single_fill_under_contention(void **state)
{
	struct race r = { .c = lfs_cache_new(1 << 20, 4), .lock = PTHREAD_MUTEX_INITIALIZER };

	(void)state;
	run_race(&r);
	assert_int_equal(r.fills, 1);
	assert_int_equal(r.ok, 16);
	lfs_cache_free(r.c);
}

static void test_failed_fill_reaches_waiters(void **state)
{
	struct race r = { .c = lfs_cache_new(1 << 20, 4), .lock = PTHREAD_MUTEX_INITIALIZER,
			  .fail = 1 };
	struct lfs_cache_key k = key(77);
	int claimed, err;
	struct lfs_centry *e;

	(void)state;
	run_race(&r);
	/* every waiter that arrived during the fill saw the error; the ones
	 * after it claimed again and failed in turn */
	assert_int_equal(r.errors + r.fills, 16);
	assert_true(r.errors >= 1);
	/* the key is free again */
	e = lfs_cache_acquire(r.c, &k, &claimed, &err);
	assert_true(claimed);
	lfs_cache_publish(r.c, e, blob(1, 1), 1);
	lfs_cache_release(r.c, e);
	lfs_cache_free(r.c);
}

struct inserter {
	struct lfs_cache *c;
	struct lfs_centry *got;
};

static void *insert_get_main(void *arg)
{
	struct inserter *in = arg;
	struct lfs_cache_key k = key(9);

	in->got = lfs_cache_insert_get(in->c, &k, blob(8, 'n'), 8);
	return NULL;
}

/* A block made while another thread's fill of it (a disk record) waits
 * and then fails: the made block goes in (it once came back as ENOMEM). */
static void test_insert_get_after_failed_fill(void **state)
{
	struct inserter in = { lfs_cache_new(1 << 20, 1), NULL };
	struct lfs_cache_key k = key(9);
	struct lfs_cache_stats st;
	struct lfs_centry *e;
	pthread_t t;
	int claimed, err;

	(void)state;
	e = lfs_cache_acquire(in.c, &k, &claimed, &err);
	assert_true(claimed);
	assert_int_equal(pthread_create(&t, NULL, insert_get_main, &in), 0);
	for (int i = 0; i < 100; i++) { /* let it wait on the fill */
		struct timespec ts = { 0, 1000000 };

		nanosleep(&ts, NULL);
	}
	lfs_cache_abandon(in.c, e, -ENOENT);
	pthread_join(t, NULL);
	assert_non_null(in.got);
	assert_int_equal(lfs_centry_len(in.got), 8);
	assert_int_equal(((const char *)lfs_centry_data(in.got))[0], 'n');
	lfs_cache_release(in.c, in.got);
	lfs_cache_get_stats(in.c, &st);
	assert_int_equal(st.entries, 1);
	lfs_cache_free(in.c);
}

static void test_take_and_drop(void **state)
{
	struct lfs_cache *c = lfs_cache_new(1 << 20, 2);
	struct lfs_cache_key park = lfs_key(1, 2, LFS_KEY_PARKED, 3);
	struct lfs_cache_key rp = lfs_key(1, 2, LFS_KEY_RESUME, 1);
	struct lfs_cache_key blk = key(1);
	struct lfs_cache_stats st;
	size_t len = 0;
	void *p;

	(void)state;
	lfs_cache_insert(c, &park, blob(10, 'p'), 10);
	p = lfs_cache_take(c, &park, &len);
	assert_non_null(p);
	assert_int_equal(len, 10);
	free(p);
	assert_null(lfs_cache_take(c, &park, &len)); /* gone */

	lfs_cache_insert(c, &rp, blob(10, 'r'), 10);
	lfs_cache_insert(c, &blk, blob(10, 'b'), 10);
	lfs_cache_insert(c, &blk, blob(10, 'B'), 10); /* present: dropped, no leak */
	lfs_cache_get_stats(c, &st);
	assert_int_equal(st.entries, 2);
	assert_int_equal(st.resume_points, 1);
	lfs_cache_drop(c, LFS_KEY_BLOCK);
	assert_null(lfs_cache_get(c, &blk));
	p = lfs_cache_get(c, &rp);
	assert_non_null(p);
	lfs_cache_release(c, p);
	lfs_cache_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hit_and_miss),
		cmocka_unit_test(test_budget_and_lru),
		cmocka_unit_test(test_single_fill_under_contention),
		cmocka_unit_test(test_failed_fill_reaches_waiters),
		cmocka_unit_test(test_insert_get_after_failed_fill),
		cmocka_unit_test(test_take_and_drop),
	};

	return cmocka_run_group_tests_name("cache", tests, NULL, NULL);
}
