/* The disk tier: records round-trip, every kind of damage is dropped and
 * is a miss (never wrong bytes), the quota drops least recently used
 * records, and threads reading and writing one directory never see a torn
 * record. */
#include "helpers.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>

#include "../../cache/disk.h"
#include "../../cache/hostdir.h"

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
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	close(dirfd_);
	tmpdir_free(dir);
	return 0;
}

static struct lfs_disk *open_disk(uint64_t quota, int level)
{
	struct lfs_disk_config cfg = { quota, level, on_note, NULL };
	struct lfs_disk *d;
	char err[256];

	assert_int_equal(lfs_disk_open(dirfd_, &cfg, &d, err, sizeof(err)), 0);
	return d;
}

static const unsigned char digest_a[LFS_DIGEST_LEN] = { 0xaa, 1, 2, 3 };
static const unsigned char digest_b[LFS_DIGEST_LEN] = { 0xbb, 1, 2, 3 };

/* The path of a block record of digest_a at block size B. */
static char *record_path(uint32_t B, uint64_t member, uint64_t index)
{
	char hex[LFS_DIGEST_HEX], *p = malloc(strlen(dir) + 200);

	lfs_digest_hex(digest_a, hex);
	sprintf(p, "%s/v1/%s/%u/%016llx.%llx", dir, hex, B, (unsigned long long)member,
		(unsigned long long)index);
	return p;
}

static void test_round_trip(void **state)
{
	const uint32_t B = 65536;
	unsigned char *data = test_bytes(B, 1), *got = malloc(B);
	uint32_t cum = 0;

	(void)state;
	for (int level = 0; level < 4; level += 3) {
		struct lfs_disk *d = open_disk(0, level);
		struct lfs_disk_layer *l = lfs_disk_layer(d, digest_a, B);
		struct lfs_disk_stats st;

		assert_non_null(l);
		assert_int_equal(lfs_disk_get(l, 7, 3, got, B, &cum), -ENOENT);
		assert_int_equal(lfs_disk_put(l, 7, 3, data, B, 0x1234), 0);
		memset(got, 0, B);
		assert_int_equal(lfs_disk_get(l, 7, 3, got, B, &cum), 0);
		assert_memory_equal(got, data, B);
		assert_int_equal(cum, 0x1234);
		/* another key, another length, another layer, another block size */
		assert_int_equal(lfs_disk_get(l, 7, 4, got, B, &cum), -ENOENT);
		assert_int_equal(lfs_disk_get(l, 8, 3, got, B, &cum), -ENOENT);
		assert_int_equal(lfs_disk_get(l, 7, 3, got, B - 1, &cum), -ENOENT);
		assert_int_equal(lfs_disk_get(lfs_disk_layer(d, digest_b, B), 7, 3, got, B, &cum),
				 -ENOENT);
		assert_int_equal(lfs_disk_get(lfs_disk_layer(d, digest_a, 2 * B), 7, 3, got, B, &cum),
				 -ENOENT);
		lfs_disk_get_stats(d, &st);
		assert_true(level ? st.bytes_written < B : st.bytes_written > B);
		lfs_disk_close(d);
		assert_int_equal(lfs_disk_clear(dirfd_), 0);
	}
	free(data);
	free(got);
}

static void test_points_and_crcs(void **state)
{
	struct lfs_disk *d = open_disk(0, 1);
	struct lfs_disk_layer *l = lfs_disk_layer(d, digest_a, 4096);
	unsigned char *rec = test_bytes(33000, 2);
	uint32_t crcs[100], back[100];
	void *got;
	size_t len;

	(void)state;
	for (int i = 0; i < 100; i++)
		crcs[i] = (uint32_t)i * 2654435761u;
	assert_int_equal(lfs_disk_get_point(l, 5, 2, &got, &len), -ENOENT);
	assert_int_equal(lfs_disk_put_point(l, 5, 2, rec, 33000), 0);
	assert_int_equal(lfs_disk_get_point(l, 5, 2, &got, &len), 0);
	assert_int_equal(len, 33000);
	assert_memory_equal(got, rec, 33000);
	free(got);
	assert_int_equal(lfs_disk_put_crcs(l, 5, 100, crcs), 0);
	assert_int_equal(lfs_disk_get_crcs(l, 5, 100, back), 0);
	assert_memory_equal(back, crcs, sizeof(crcs));
	assert_int_equal(lfs_disk_get_crcs(l, 5, 99, back), -ENOENT); /* another member size */
	free(rec);
	lfs_disk_close(d);
	assert_int_equal(lfs_disk_clear(dirfd_), 0);
}

/* Damage a record in place, then read it: a miss, the record gone, one
 * note.  kind: 0 truncate, 1 flip a payload byte, 2 flip a header byte,
 * 3 empty, 4 the record of another block moved to this name. */
static void damage_case(int kind)
{
	const uint32_t B = 16384;
	struct lfs_disk *d = open_disk(0, kind == 1 ? 0 : 1);
	struct lfs_disk_layer *l = lfs_disk_layer(d, digest_a, B);
	unsigned char *data = test_bytes(B, 3), *got = malloc(B);
	char *path = record_path(B, 1, 0), *other = record_path(B, 1, 1);
	int before = notes[LFS_DISK_BAD_RECORD], fd;
	uint32_t cum;
	struct stat st;

	assert_int_equal(lfs_disk_put(l, 1, 0, data, B, 9), 0);
	assert_int_equal(lfs_disk_put(l, 1, 1, data, B, 9), 0);
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	switch (kind) {
	case 0:
		assert_int_equal(ftruncate(fd, st.st_size - 5), 0);
		break;
	case 1:
	case 2: {
		off_t at = kind == 1 ? st.st_size - 100 : 50;
		unsigned char c;

		assert_int_equal(pread(fd, &c, 1, at), 1);
		c ^= 0x10;
		assert_int_equal(pwrite(fd, &c, 1, at), 1);
		break;
	}
	case 3:
		assert_int_equal(ftruncate(fd, 0), 0);
		break;
	case 4:
		assert_int_equal(rename(other, path), 0);
		break;
	}
	close(fd);
	assert_int_equal(lfs_disk_get(l, 1, 0, got, B, &cum), -ENOENT);
	assert_int_equal(notes[LFS_DISK_BAD_RECORD], before + 1);
	assert_int_equal(access(path, F_OK), -1); /* dropped */
	/* and made again, it is found */
	assert_int_equal(lfs_disk_put(l, 1, 0, data, B, 9), 0);
	assert_int_equal(lfs_disk_get(l, 1, 0, got, B, &cum), 0);
	assert_memory_equal(got, data, B);
	free(path);
	free(other);
	free(data);
	free(got);
	lfs_disk_close(d);
	assert_int_equal(lfs_disk_clear(dirfd_), 0);
}

static void test_damage_is_a_miss(void **state)
{
	(void)state;
	for (int kind = 0; kind < 5; kind++)
		damage_case(kind);
}

/* verify finds every bad record without being told what it should hold. */
static void test_verify(void **state)
{
	const uint32_t B = 16384;
	struct lfs_disk *d = open_disk(0, 1);
	struct lfs_disk_layer *l = lfs_disk_layer(d, digest_a, B);
	unsigned char *data = test_bytes(B, 4);
	char *p0 = record_path(B, 2, 0), *p1 = record_path(B, 2, 1), *p2 = record_path(B, 2, 2);
	uint64_t checked, bad;
	struct lfs_disk_census c;
	int fd;

	(void)state;
	for (int i = 0; i < 5; i++)
		assert_int_equal(lfs_disk_put(l, 2, (uint64_t)i, data, B, 1), 0);
	lfs_disk_close(d);
	fd = open(p0, O_WRONLY);
	assert_int_equal(pwrite(fd, "xx", 2, 90), 2);
	close(fd);
	assert_int_equal(truncate(p1, 10), 0);
	assert_int_equal(rename(p2, p0), 0); /* block 2's record under block 0's name */
	assert_int_equal(lfs_disk_verify(dirfd_, &checked, &bad), 0);
	assert_int_equal(checked, 4);
	assert_int_equal(bad, 2);
	assert_int_equal(lfs_disk_census(dirfd_, &c), 0);
	assert_int_equal(c.blocks, 2);
	assert_int_equal(lfs_disk_verify(dirfd_, &checked, &bad), 0);
	assert_int_equal(bad, 0);
	free(data);
	free(p0);
	free(p1);
	free(p2);
	assert_int_equal(lfs_disk_clear(dirfd_), 0);
}

/* Over the quota, the least recently used records go, down to 90 %. */
static void test_prune_least_recently_used(void **state)
{
	const uint32_t B = 65536;
	struct lfs_disk *d = open_disk(20 * (B + 4096), 0);
	struct lfs_disk_layer *l = lfs_disk_layer(d, digest_a, B);
	unsigned char *data = test_bytes(B, 5), *got = malloc(B);
	struct lfs_disk_stats st;
	uint32_t cum;

	(void)state;
	for (uint64_t i = 0; i < 40; i++) {
		char *p;
		struct timespec ts[2] = { { (time_t)(1000000 + i), 0 }, { (time_t)(1000000 + i), 0 } };

		assert_int_equal(lfs_disk_put(l, 3, i, data, B, 1), 0);
		p = record_path(B, 3, i);
		assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0); /* used in index order */
		free(p);
	}
	assert_true(lfs_disk_prune(d) > 0);
	lfs_disk_get_stats(d, &st);
	assert_true(st.usage <= 20 * (B + 4096) / 10 * 9);
	assert_true(st.evictions >= 20);
	assert_int_equal(lfs_disk_get(l, 3, 0, got, B, &cum), -ENOENT); /* oldest: gone */
	assert_int_equal(lfs_disk_get(l, 3, 39, got, B, &cum), 0);	/* newest: kept */
	free(data);
	free(got);
	lfs_disk_close(d);
	assert_int_equal(lfs_disk_clear(dirfd_), 0);
}

struct racer {
	struct lfs_disk_layer *l;
	int bad;
	uint32_t seed;
	int hits;	/* reads that found a record */
};

/* Writers and readers of the same few keys: a read is a miss or exactly
 * the bytes of its key, never a mix; and reads do find records (a tier
 * that never finds one would pass the first condition alone). */
static void *race_thread(void *arg)
{
	struct racer *a = arg;
	const uint32_t B = 32768;
	unsigned char *buf = malloc(B);
	uint64_t s = a->seed;

	for (int i = 0; i < 300; i++) {
		uint64_t k;
		uint32_t cum;
		unsigned char *want;

		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		k = s % 4;
		want = test_bytes(B, (uint32_t)k + 100);
		if (s & 8)
			(void)lfs_disk_put(a->l, 4, k, want, B, (uint32_t)k);
		else if (lfs_disk_get(a->l, 4, k, buf, B, &cum) == 0) {
			a->hits++;
			if (memcmp(buf, want, B) || cum != k)
				a->bad++;
		}
		free(want);
	}
	free(buf);
	return NULL;
}

static void test_concurrent_readers_and_writers(void **state)
{
	struct lfs_disk *d = open_disk(0, 1);
	struct racer a[8];
	pthread_t th[8];
	int hits = 0;

	(void)state;
	for (int i = 0; i < 8; i++) {
		a[i] = (struct racer){ lfs_disk_layer(d, digest_a, 32768), 0, (uint32_t)i * 77 + 1, 0 };
		pthread_create(&th[i], NULL, race_thread, &a[i]);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(a[i].bad, 0);
		hits += a[i].hits;
	}
	/* about half of the 2400 calls are reads, of 4 keys written from the
	 * start: nearly all of them hit */
	print_message("    %d of the reads found a record\n", hits);
	assert_true(hits >= 600);
	lfs_disk_close(d);
	assert_int_equal(lfs_disk_clear(dirfd_), 0);
}

/* A directory that others can write, or a link, is refused. */
static void test_unsafe_directory_refused(void **state)
{
	char *open_dir = path_in(dir, "open"), *link = path_in(dir, "link"), err[256];
	int fd;

	(void)state;
	assert_int_equal(mkdir(open_dir, 0700), 0);
	assert_int_equal(chmod(open_dir, 0777), 0);
	assert_int_equal(lfs_hostdir_open(open_dir, &fd, err, sizeof(err)), -EPERM);
	assert_non_null(strstr(err, "others can write"));
	assert_int_equal(symlink(dir, link), 0);
	assert_true(lfs_hostdir_open(link, &fd, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "symbolic link"));
	free(open_dir);
	free(link);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_points_and_crcs),
		cmocka_unit_test(test_damage_is_a_miss),
		cmocka_unit_test(test_verify),
		cmocka_unit_test(test_prune_least_recently_used),
		cmocka_unit_test(test_concurrent_readers_and_writers),
		cmocka_unit_test(test_unsafe_directory_refused),
	};

	return cmocka_run_group_tests_name("disk", tests, setup, teardown);
}
