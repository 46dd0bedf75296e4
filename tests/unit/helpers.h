/* Shared helpers for the unit tests: temp files and test data. */
#ifndef LFS_TEST_HELPERS_H
#define LFS_TEST_HELPERS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

/* A temporary directory removed by the test's teardown. */
static inline char *tmpdir_new(void)
{
	char tmpl[] = "/tmp/lfs-unit-XXXXXX";
	char *d = mkdtemp(tmpl);

	assert_non_null(d);
	return strdup(d);
}

static inline void tmpdir_free(char *dir)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	free(dir);
}

static inline char *path_in(const char *dir, const char *name)
{
	char *p = malloc(strlen(dir) + strlen(name) + 2);

	sprintf(p, "%s/%s", dir, name);
	return p;
}

static inline void write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

/* Deterministic, moderately compressible bytes (text-like runs and noise),
 * so deflate produces several blocks of different kinds. */
static inline unsigned char *test_bytes(size_t len, uint32_t seed)
{
	unsigned char *p = malloc(len ? len : 1);
	uint32_t x = seed * 2654435761u + 1;
	static const char words[] = "import numpy as np\ndef f(x):\n    return x * 2\n# layer\n";

	for (size_t i = 0; i < len;) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		if (x % 3 == 0) {
			size_t n = 1 + x % (sizeof(words) - 1);

			for (size_t j = 0; j < n && i < len; j++)
				p[i++] = (unsigned char)words[(x + j) % (sizeof(words) - 1)];
		} else {
			p[i++] = (unsigned char)(x >> 24);
		}
	}
	return p;
}

/* Raw deflate (no zlib header) of data, as zip members hold it. */
static inline unsigned char *raw_deflate(const unsigned char *data, size_t len, int level,
					 size_t *out_len)
{
	z_stream zs;
	size_t cap = compressBound((uLong)len) + 64;
	unsigned char *out = malloc(cap);

	memset(&zs, 0, sizeof(zs));
	assert_int_equal(deflateInit2(&zs, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
	zs.next_in = (Bytef *)(uintptr_t)data; /* zlib's API is not const */
	zs.avail_in = (uInt)len;
	zs.next_out = out;
	zs.avail_out = (uInt)cap;
	assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
	*out_len = zs.total_out;
	deflateEnd(&zs);
	return out;
}

#endif
