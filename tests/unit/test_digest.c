/* SHA-256 through the libcrypto digest.c loads on first use: the standard's
 * test vectors, piece by piece as in one call, a source as its bytes, and
 * the memo's round trip. */
#include "helpers.h"

#include "../../cache/digest.h"
#include "../../cache/source.h"

#include <errno.h>
#include <fcntl.h>

static void hex_of(const void *data, size_t len, char hex[LFS_DIGEST_HEX])
{
	unsigned char d[LFS_DIGEST_LEN];

	assert_int_equal(lfs_digest_bytes(data, len, d), 0);
	lfs_digest_hex(d, hex);
}

static void test_vectors(void **state)
{
	const char *why = "unset";
	char hex[LFS_DIGEST_HEX];

	(void)state;
	assert_int_equal(lfs_crypto_load(&why), 0);
	assert_null(why);
	assert_non_null(strstr(lfs_crypto_version(), "OpenSSL"));
	/* FIPS 180-2, appendix B */
	hex_of("", 0, hex);
	assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	hex_of("abc", 3, hex);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	hex_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56, hex);
	assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_pieces_and_sources(void **state)
{
	const size_t n = (3u << 20) + 12345; /* more than digest.c's 1 MiB chunk */
	unsigned char *b = malloc(n), whole[LFS_DIGEST_LEN], pieces[LFS_DIGEST_LEN];
	unsigned char from_src[LFS_DIGEST_LEN];
	struct lfs_sha256 *h = lfs_sha256_new();
	struct lfs_source *src;

	(void)state;
	assert_non_null(b);
	assert_non_null(h);
	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)(i * 2654435761u >> 13);
	assert_int_equal(lfs_digest_bytes(b, n, whole), 0);
	for (size_t off = 0, step = 1; off < n; off += step, step = step * 3 + 1)
		assert_int_equal(lfs_sha256_update(h, b + off, off + step > n ? n - off : step), 0);
	assert_int_equal(lfs_sha256_final(h, pieces), 0);
	lfs_sha256_free(h);
	assert_memory_equal(pieces, whole, LFS_DIGEST_LEN);
	src = lfs_source_mem_new(b, n, 0);
	assert_non_null(src);
	assert_int_equal(lfs_digest_source(src, from_src), 0);
	assert_memory_equal(from_src, whole, LFS_DIGEST_LEN);
	lfs_source_close(src);
	free(b);
}

static void test_memo(void **state)
{
	char *dir = tmpdir_new();
	unsigned char d[LFS_DIGEST_LEN], got[LFS_DIGEST_LEN];
	int fd;

	(void)state;
	fd = open(dir, O_RDONLY | O_DIRECTORY);
	assert_true(fd >= 0);
	assert_int_equal(lfs_digest_bytes("layer", 5, d), 0);
	assert_int_equal(lfs_digest_memo_get(fd, "file 1:2 3 4", got), -ENOENT);
	assert_int_equal(lfs_digest_memo_put(fd, "file 1:2 3 4", d), 0);
	assert_int_equal(lfs_digest_memo_get(fd, "file 1:2 3 4", got), 0);
	assert_memory_equal(got, d, LFS_DIGEST_LEN);
	assert_int_equal(lfs_digest_memo_get(fd, "file 1:2 3 5", got), -ENOENT);
	close(fd);
	tmpdir_free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors),
		cmocka_unit_test(test_pieces_and_sources),
		cmocka_unit_test(test_memo),
	};

	return cmocka_run_group_tests_name("digest", tests, NULL, NULL);
}
