/* Piecewise CRC-32: reads in any order, overlapping or repeated, add up to
 * zlib's CRC of the whole; tracking gives up rather than grow. */
#include "helpers.h"

#include "../../cache/crcpieces.h"

static uint64_t next(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return *s >> 33;
}

static unsigned char *bytes(size_t n, uint64_t seed)
{
	unsigned char *b = malloc(n);

	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)next(&seed);
	return b;
}

static uint32_t zcrc(const unsigned char *b, size_t n)
{
	return (uint32_t)crc32(0, b, (uInt)n);
}

/* Adds [off, off + len) and returns what the tracker said. */
static int add(struct lfs_crc_pieces *t, uint64_t member, const unsigned char *b, size_t size,
	       uint64_t off, size_t len, uint32_t *crc)
{
	return lfs_crc_pieces_add(t, 7, member, size, off, b + off, len, crc);
}

static void test_in_order_and_shuffled(void **state)
{
	const size_t size = 1000003, chunk = 4096;
	unsigned char *b = bytes(size, 1);
	size_t nchunks = (size + chunk - 1) / chunk;
	size_t *order = malloc(nchunks * sizeof(*order));
	uint64_t s = 9;
	uint32_t crc = 0;

	(void)state;
	for (int shuffled = 0; shuffled < 2; shuffled++) {
		/* at most 16 separate pieces: shuffle only within windows of 16
		 * chunks, like read-ahead requests answered out of order */
		struct lfs_crc_pieces *t = lfs_crc_pieces_new(4, 16);
		int done = 0;

		for (size_t i = 0; i < nchunks; i++)
			order[i] = i;
		for (size_t i = 0; shuffled && i < nchunks; i++) {
			size_t w = i / 8 * 8, j = w + next(&s) % 8, tmp;

			if (j >= nchunks)
				continue;
			tmp = order[i];
			order[i] = order[j];
			order[j] = tmp;
		}
		for (size_t i = 0; i < nchunks; i++) {
			uint64_t off = order[i] * chunk;
			size_t len = off + chunk > size ? size - off : chunk;

			assert_int_equal(done, 0);
			done = add(t, 1, b, size, off, len, &crc);
		}
		assert_int_equal(done, 1);
		assert_int_equal(crc, zcrc(b, size));
		assert_int_equal(lfs_crc_pieces_tracked(t), 0); /* forgotten once done */
		lfs_crc_pieces_free(t);
	}
	free(order);
	free(b);
}

static void test_overlaps_and_rereads(void **state)
{
	const size_t size = 300000;
	unsigned char *b = bytes(size, 2);
	struct lfs_crc_pieces *t = lfs_crc_pieces_new(4, 8);
	uint32_t crc = 0;

	(void)state;
	assert_int_equal(add(t, 1, b, size, 1000, 50000, &crc), 0);
	assert_int_equal(add(t, 1, b, size, 1000, 50000, &crc), 0);	  /* again */
	assert_int_equal(add(t, 1, b, size, 20000, 10, &crc), 0);	  /* inside */
	assert_int_equal(add(t, 1, b, size, 100000, 50000, &crc), 0);	  /* apart */
	assert_int_equal(add(t, 1, b, size, 40000, 70000, &crc), 0);	  /* spans the gap */
	assert_int_equal(add(t, 1, b, size, 140000, size - 140000, &crc), 0); /* to the end */
	assert_int_equal(add(t, 1, b, size, 0, 2000, &crc), 1);		  /* the first bytes */
	assert_int_equal(crc, zcrc(b, size));
	/* one read of everything, over pieces already there */
	assert_int_equal(add(t, 1, b, size, 0, 5000, &crc), 0);
	assert_int_equal(add(t, 1, b, size, 0, size, &crc), 1);
	assert_int_equal(crc, zcrc(b, size));
	/* a read past the declared size is not a piece of the member */
	assert_int_equal(add(t, 1, b, size, size - 10, 10, &crc), 0);
	assert_int_equal(lfs_crc_pieces_add(t, 7, 1, size, size - 10, b, 20, &crc), 0);
	lfs_crc_pieces_free(t);
	free(b);
}

static void test_gives_up_rather_than_grow(void **state)
{
	const size_t size = 100000;
	unsigned char *b = bytes(size, 3);
	struct lfs_crc_pieces *t = lfs_crc_pieces_new(2, 4);
	uint32_t crc = 0;

	(void)state;
	/* five separate pieces of one member: tracking stops */
	for (uint64_t off = 0; off < 40000; off += 10000)
		assert_int_equal(add(t, 1, b, size, off, 100, &crc), 0);
	assert_int_equal(add(t, 1, b, size, 40000, 100, &crc), -1);
	assert_int_equal(lfs_crc_pieces_tracked(t), 0);
	/* a third member takes the slot of the one read least recently */
	assert_int_equal(add(t, 2, b, size, 0, 10, &crc), 0);
	assert_int_equal(add(t, 3, b, size, 0, 10, &crc), 0);
	assert_int_equal(add(t, 2, b, size, 10, 10, &crc), 0);
	assert_int_equal(add(t, 4, b, size, 0, 10, &crc), 0); /* evicts member 3 */
	assert_int_equal(lfs_crc_pieces_tracked(t), 2);
	assert_int_equal(add(t, 2, b, size, 20, size - 20, &crc), 1);
	assert_int_equal(crc, zcrc(b, size));
	assert_int_equal(add(t, 3, b, size, 10, size - 10, &crc), 0); /* started over */
	lfs_crc_pieces_free(t);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_in_order_and_shuffled),
		cmocka_unit_test(test_overlaps_and_rereads),
		cmocka_unit_test(test_gives_up_rather_than_grow),
	};

	return cmocka_run_group_tests_name("crcpieces", tests, NULL, NULL);
}
