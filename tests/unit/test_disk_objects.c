/* The disk tier's source chunks (remote objects' bytes as fetched): they
 * round-trip, a chunk of another version of the object is a quiet miss,
 * damage is a miss with a note, and census, verify, prune and clear see
 * them beside the layers' blocks; forgetting an object or a layer digest
 * removes its records, at every size, and nothing is read or written
 * through its directories again. */
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "../../cache/disk.h"

static char *dir;
static int dirfd_;
static int notes[3];

static void on_note(void *ctx, enum lfs_disk_note what, const char *detail)
{
	(void)ctx;
	(void)detail;
	__atomic_add_fetch(&notes[what], 1, __ATOMIC_RELAXED);
}

static int setup(void **state)
{
	(void)state;
	dir = tmpdir_new();
	chmod(dir, 0700);
	dirfd_ = open(dir, O_RDONLY | O_DIRECTORY);
	assert_true(dirfd_ >= 0);
	memset(notes, 0, sizeof(notes));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	close(dirfd_);
	tmpdir_free(dir);
	return 0;
}

static struct lfs_disk *open_disk(uint64_t quota)
{
	struct lfs_disk_config cfg = { quota, 1, on_note, NULL };
	struct lfs_disk *d;
	char err[256];

	assert_int_equal(lfs_disk_open(dirfd_, &cfg, &d, err, sizeof(err)), 0);
	return d;
}

static const unsigned char where[LFS_DIGEST_LEN] = { 0x0b, 0x1e, 0xc7 };
static const unsigned char v1[LFS_DIGEST_LEN] = { 1 };
static const unsigned char v2[LFS_DIGEST_LEN] = { 2 };

static void fill(unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(i * 31 + seed * 7 + (i >> 9));
}

static char *chunk_path(uint32_t cs, const char *name)
{
	char hex[LFS_DIGEST_HEX], rel[256];

	lfs_digest_hex(where, hex);
	snprintf(rel, sizeof(rel), "v1/objects/%s/%u/%s", hex, cs, name);
	return path_in(dir, rel);
}

static void test_round_trip_and_versions(void **state)
{
	struct lfs_disk *d = open_disk(0);
	struct lfs_disk_object *o = lfs_disk_object(d, where, 65536);
	unsigned char a[65536], b[65536], *head;
	void *got;
	size_t len;
	char *p;
	struct stat st;

	(void)state;
	assert_non_null(o);
	assert_ptr_equal(lfs_disk_object(d, where, 65536), o);
	fill(a, sizeof(a), 1);
	assert_int_equal(lfs_disk_get_chunk(o, v1, 3, b, sizeof(b)), -ENOENT);
	assert_int_equal(lfs_disk_put_chunk(o, v1, 3, a, sizeof(a)), 0);
	memset(b, 0, sizeof(b));
	assert_int_equal(lfs_disk_get_chunk(o, v1, 3, b, sizeof(b)), 0);
	assert_memory_equal(a, b, sizeof(a));
	/* a short last chunk */
	assert_int_equal(lfs_disk_put_chunk(o, v1, 4, a, 1000), 0);
	assert_int_equal(lfs_disk_get_chunk(o, v1, 4, b, 1000), 0);
	assert_memory_equal(a, b, 1000);
	/* another version of the object: a miss, the old chunk goes, no note */
	p = chunk_path(65536, "3");
	assert_int_equal(lfs_disk_get_chunk(o, v2, 3, b, sizeof(b)), -ENOENT);
	assert_int_equal(stat(p, &st), -1);
	assert_int_equal(notes[LFS_DISK_BAD_RECORD], 0);
	free(p);
	/* the head: opaque, whole */
	head = malloc(70000);
	fill(head, 70000, 9);
	assert_int_equal(lfs_disk_get_head(o, &got, &len), -ENOENT);
	assert_int_equal(lfs_disk_put_head(o, head, 70000), 0);
	assert_int_equal(lfs_disk_get_head(o, &got, &len), 0);
	assert_int_equal(len, 70000);
	assert_memory_equal(got, head, 70000);
	free(got);
	free(head);
	/* another chunk size is another directory */
	assert_ptr_not_equal(lfs_disk_object(d, where, 131072), o);
	assert_int_equal(lfs_disk_get_chunk(lfs_disk_object(d, where, 131072), v1, 4, b, 1000),
			 -ENOENT);
	lfs_disk_close(d);
}

static void test_damage_is_a_miss(void **state)
{
	struct lfs_disk *d = open_disk(0);
	struct lfs_disk_object *o = lfs_disk_object(d, where, 4096);
	unsigned char a[4096], b[4096];
	char *p = chunk_path(4096, "7");
	FILE *f;

	(void)state;
	fill(a, sizeof(a), 2);
	assert_int_equal(lfs_disk_put_chunk(o, v1, 7, a, sizeof(a)), 0);
	f = fopen(p, "r+b");
	assert_non_null(f);
	fseek(f, 1000, SEEK_SET);
	fputc(0x55 ^ a[1000 - 80], f);
	fclose(f);
	assert_int_equal(lfs_disk_get_chunk(o, v1, 7, b, sizeof(b)), -ENOENT);
	assert_int_equal(notes[LFS_DISK_BAD_RECORD], 1);
	/* the wrong length for its place (a chunk moved to another index) */
	assert_int_equal(lfs_disk_put_chunk(o, v1, 8, a, 100), 0);
	assert_int_equal(lfs_disk_get_chunk(o, v1, 8, b, sizeof(b)), -ENOENT);
	assert_int_equal(notes[LFS_DISK_BAD_RECORD], 2);
	free(p);
	lfs_disk_close(d);
}

static void test_census_verify_prune_clear(void **state)
{
	struct lfs_disk *d = open_disk(0);
	struct lfs_disk_object *o = lfs_disk_object(d, where, 65536);
	struct lfs_disk_layer *l;
	static const unsigned char layer[LFS_DIGEST_LEN] = { 0xaa };
	unsigned char a[65536];
	struct lfs_disk_census c;
	uint64_t checked, bad;
	char *p;
	FILE *f;

	(void)state;
	fill(a, sizeof(a), 3);
	for (uint64_t i = 0; i < 20; i++)
		assert_int_equal(lfs_disk_put_chunk(o, v1, i, a, sizeof(a)), 0);
	assert_int_equal(lfs_disk_put_head(o, a, 100), 0);
	l = lfs_disk_layer(d, layer, 65536);
	assert_int_equal(lfs_disk_put(l, 5, 0, a, sizeof(a), 0), 0);
	lfs_disk_close(d);

	assert_int_equal(lfs_disk_census(dirfd_, &c), 0);
	assert_int_equal(c.layers, 1);
	assert_int_equal(c.objects, 1);
	assert_int_equal(c.chunks, 20);
	assert_int_equal(c.blocks, 1);
	assert_int_equal(c.records, 22);
	assert_int_equal(c.stray, 0);
	assert_true(c.bytes >= 21 * 65536);

	p = chunk_path(65536, "2");
	f = fopen(p, "r+b");
	fseek(f, 5000, SEEK_SET);
	fputc(0, f);
	fputc(1, f);
	fclose(f);
	free(p);
	assert_int_equal(lfs_disk_verify(dirfd_, &checked, &bad), 0);
	assert_int_equal(checked, 22);
	assert_int_equal(bad, 1);
	assert_int_equal(lfs_disk_verify(dirfd_, &checked, &bad), 0);
	assert_int_equal(bad, 0);

	/* the quota counts chunks: pruning to 512 KiB drops most of them */
	d = open_disk(512 << 10);
	assert_true(lfs_disk_prune(d) > 0);
	lfs_disk_close(d);
	assert_int_equal(lfs_disk_census(dirfd_, &c), 0);
	assert_true(c.bytes <= 512 << 10);

	assert_int_equal(lfs_disk_clear(dirfd_), 0);
	assert_int_equal(lfs_disk_census(dirfd_, &c), 0);
	assert_int_equal(c.records, 0);
}

/* What a digest that proved wrong names goes: an object's chunks and head
 * at every chunk size, a layer's blocks, points and CRC tables at every
 * block size; other objects and layers stay. */
static void test_forget(void **state)
{
	static const unsigned char other[LFS_DIGEST_LEN] = { 0x07 };
	static const unsigned char layer[LFS_DIGEST_LEN] = { 0x1a, 0x7e };
	struct lfs_disk *d = open_disk(0);
	struct lfs_disk_object *o = lfs_disk_object(d, where, 65536);
	struct lfs_disk_object *o2 = lfs_disk_object(d, where, 131072);
	struct lfs_disk_object *keep = lfs_disk_object(d, other, 65536);
	struct lfs_disk_layer *l = lfs_disk_layer(d, layer, 65536);
	struct lfs_disk_layer *l2 = lfs_disk_layer(d, layer, 16384);
	struct lfs_disk_layer *lkeep = lfs_disk_layer(d, other, 65536);
	unsigned char a[4096], b[4096], got[LFS_DIGEST_LEN];
	uint32_t crcs[2] = { 1, 2 }, cum;
	struct lfs_disk_census c;
	char hex[LFS_DIGEST_HEX], rel[256], *p;
	struct stat st;

	(void)state;
	fill(a, sizeof(a), 3);
	assert_int_equal(lfs_disk_put_chunk(o, v1, 0, a, sizeof(a)), 0);
	assert_int_equal(lfs_disk_put_head(o, a, 100), 0);
	assert_int_equal(lfs_disk_put_chunk(o2, v1, 0, a, sizeof(a)), 0);
	assert_int_equal(lfs_disk_put_chunk(keep, v1, 0, a, sizeof(a)), 0);
	assert_int_equal(lfs_disk_put(l, 5, 0, a, sizeof(a), 9), 0);
	assert_int_equal(lfs_disk_put_point(l, 5, 1, a, 100), 0);
	assert_int_equal(lfs_disk_put_crcs(l, 5, 2, crcs), 0);
	assert_int_equal(lfs_disk_put(l2, 5, 0, a, sizeof(a), 9), 0);
	assert_int_equal(lfs_disk_put(lkeep, 5, 0, a, sizeof(a), 9), 0);
	lfs_disk_object_where(o, got);
	assert_memory_equal(got, where, LFS_DIGEST_LEN);

	assert_int_equal(lfs_disk_forget_object(d, where), 0);
	assert_int_equal(lfs_disk_forget_layer(d, layer), 0);
	/* gone from the directory */
	lfs_digest_hex(where, hex);
	snprintf(rel, sizeof(rel), "v1/objects/%s", hex);
	p = path_in(dir, rel);
	assert_int_equal(stat(p, &st), -1);
	free(p);
	lfs_digest_hex(layer, hex);
	snprintf(rel, sizeof(rel), "v1/%s", hex);
	p = path_in(dir, rel);
	assert_int_equal(stat(p, &st), -1);
	free(p);
	/* and through what was opened for it: misses, and no write lands */
	assert_int_equal(lfs_disk_get_chunk(o, v1, 0, b, sizeof(b)), -ENOENT);
	assert_int_equal(lfs_disk_put_chunk(o, v1, 1, a, sizeof(a)), -ENOENT);
	assert_int_equal(lfs_disk_get(l, 5, 0, b, sizeof(b), &cum), -ENOENT);
	assert_true(lfs_disk_put(l, 5, 1, a, sizeof(a), 9) < 0);
	assert_ptr_equal(lfs_disk_layer(d, layer, 65536), l); /* still forgotten */
	assert_true(lfs_disk_put(lfs_disk_layer(d, layer, 65536), 5, 2, a, sizeof(a), 9) < 0);
	/* the others are untouched */
	assert_int_equal(lfs_disk_get_chunk(keep, v1, 0, b, sizeof(b)), 0);
	assert_memory_equal(a, b, sizeof(a));
	assert_int_equal(lfs_disk_get(lkeep, 5, 0, b, sizeof(b), &cum), 0);
	assert_int_equal(notes[LFS_DISK_WRITES_OFF], 0);
	assert_int_equal(notes[LFS_DISK_BAD_RECORD], 0);
	lfs_disk_close(d);
	assert_int_equal(lfs_disk_census(dirfd_, &c), 0);
	assert_int_equal(c.objects, 1);
	assert_int_equal(c.chunks, 1);
	assert_int_equal(c.layers, 1);
	assert_int_equal(c.blocks, 1);
	/* forgetting what is not there is no error */
	d = open_disk(0);
	assert_int_equal(lfs_disk_forget_object(d, where), 0);
	assert_int_equal(lfs_disk_forget_layer(d, layer), 0);
	lfs_disk_close(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip_and_versions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_damage_is_a_miss, setup, teardown),
		cmocka_unit_test_setup_teardown(test_census_verify_prune_clear, setup, teardown),
		cmocka_unit_test_setup_teardown(test_forget, setup, teardown),
	};

	return cmocka_run_group_tests_name("disk_objects", tests, NULL, NULL);
}
