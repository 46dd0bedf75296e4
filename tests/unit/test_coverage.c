/* Chunk coverage of a remote object (cache/coverage.h): marking, the
 * first chunk missing, completeness, and what the background hasher does
 * about the next chunk in each case. */
#include "helpers.h"

#include "../../cache/coverage.h"

static void test_chunks(void **state)
{
	(void)state;
	assert_int_equal(lfs_coverage_chunks(0, 256), 0);
	assert_int_equal(lfs_coverage_chunks(1, 256), 1);
	assert_int_equal(lfs_coverage_chunks(256, 256), 1);
	assert_int_equal(lfs_coverage_chunks(257, 256), 2);
	assert_int_equal(lfs_coverage_chunks(10ull << 30, 256 << 10), 40960);
	assert_int_equal(lfs_coverage_chunks(100, 0), 0);
}

static void test_mark_and_complete(void **state)
{
	struct lfs_coverage c;

	(void)state;
	assert_int_equal(lfs_coverage_init(&c, 130), 0);
	assert_false(lfs_coverage_complete(&c));
	assert_int_equal(lfs_coverage_first_missing(&c, 0), 0);
	/* out of order, twice, out of range */
	assert_int_equal(lfs_coverage_mark(&c, 129), 1);
	assert_int_equal(lfs_coverage_mark(&c, 129), 0);
	assert_int_equal(lfs_coverage_mark(&c, 130), 0);
	assert_int_equal(lfs_coverage_mark(&c, 1ull << 40), 0);
	assert_true(lfs_coverage_has(&c, 129));
	assert_false(lfs_coverage_has(&c, 128));
	assert_false(lfs_coverage_has(&c, 130));
	assert_int_equal(c.have, 1);
	for (uint64_t i = 0; i < 129; i++)
		if (i != 64 && i != 63)
			assert_int_equal(lfs_coverage_mark(&c, i), 1);
	assert_false(lfs_coverage_complete(&c));
	assert_int_equal(lfs_coverage_first_missing(&c, 0), 63);
	assert_int_equal(lfs_coverage_first_missing(&c, 64), 64);
	assert_int_equal(lfs_coverage_first_missing(&c, 65), 130);
	assert_int_equal(lfs_coverage_first_missing(&c, 500), 130);
	lfs_coverage_mark(&c, 64);
	lfs_coverage_mark(&c, 63);
	assert_true(lfs_coverage_complete(&c));
	assert_int_equal(c.have, 130);
	assert_int_equal(lfs_coverage_first_missing(&c, 0), 130);
	lfs_coverage_free(&c);
	assert_null(c.bits);
}

/* An object held whole in its tail has no chunk: complete at once. */
static void test_empty(void **state)
{
	struct lfs_coverage c;

	(void)state;
	assert_int_equal(lfs_coverage_init(&c, 0), 0);
	assert_true(lfs_coverage_complete(&c));
	assert_int_equal(lfs_coverage_mark(&c, 0), 0);
	assert_int_equal(lfs_coverage_first_missing(&c, 0), 0);
	lfs_coverage_free(&c);
}

/* Exactly 64 chunks: the word boundary. */
static void test_word_boundary(void **state)
{
	struct lfs_coverage c;

	(void)state;
	assert_int_equal(lfs_coverage_init(&c, 64), 0);
	for (uint64_t i = 0; i < 63; i++)
		lfs_coverage_mark(&c, i);
	assert_int_equal(lfs_coverage_first_missing(&c, 0), 63);
	lfs_coverage_mark(&c, 63);
	assert_int_equal(lfs_coverage_first_missing(&c, 0), 64);
	assert_true(lfs_coverage_complete(&c));
	lfs_coverage_free(&c);
}

static void test_hash_step(void **state)
{
	struct lfs_coverage c;

	(void)state;
	assert_int_equal(lfs_coverage_init(&c, 4), 0);
	/* never fetched: wait for a reader, whatever else holds */
	assert_int_equal(lfs_hash_step(&c, 0, 0, 1, 0), LFS_HASH_WAIT);
	assert_int_equal(lfs_hash_step(&c, 0, 0, 0, 0), LFS_HASH_WAIT);
	/* in memory: from there (in order, as chunks arrive) */
	lfs_coverage_mark(&c, 0);
	assert_int_equal(lfs_hash_step(&c, 0, 1, 1, 1), LFS_HASH_MEMORY);
	/* fetched once, gone from memory: the disk first */
	assert_int_equal(lfs_hash_step(&c, 0, 0, 1, 0), LFS_HASH_DISK);
	/* not on disk either: wait while the rest is unfetched ... */
	assert_int_equal(lfs_hash_step(&c, 0, 0, 0, 0), LFS_HASH_WAIT);
	lfs_coverage_mark(&c, 1);
	lfs_coverage_mark(&c, 2);
	lfs_coverage_mark(&c, 3);
	/* ... or while the writer may still put it on disk ... */
	assert_int_equal(lfs_hash_step(&c, 0, 0, 0, 1), LFS_HASH_WAIT);
	/* ... then, every byte fetched once, it is fetched again */
	assert_int_equal(lfs_hash_step(&c, 0, 0, 0, 0), LFS_HASH_FETCH);
	assert_int_equal(lfs_hash_step(&c, 3, 1, 0, 0), LFS_HASH_MEMORY);
	lfs_coverage_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_chunks),
		cmocka_unit_test(test_mark_and_complete),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_word_boundary),
		cmocka_unit_test(test_hash_step),
	};

	return cmocka_run_group_tests_name("coverage", tests, NULL, NULL);
}
