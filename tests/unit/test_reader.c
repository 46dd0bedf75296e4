/* The read path: any offset of stored and deflated members gives the
 * reference bytes, resume points bound the work, damage gives EIO. */
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>

#include "../../cache/reader.h"

#define PREFIX 777 /* member data does not start at offset 0 */

struct member_file {
	char *path;
	struct lfs_source *src;
	unsigned char *data;	/* the reference bytes */
	size_t size;
	uint32_t flags;
	uint64_t reach;
	struct lfs_member m;
};

static char *dir;

static int setup(void **state)
{
	(void)state;
	dir = tmpdir_new();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tmpdir_free(dir);
	return 0;
}

/* Writes `size` test bytes as a stored or deflated member. */
static struct member_file *member_new(size_t size, int deflated, uint32_t seed)
{
	static int n;
	struct member_file *f = calloc(1, sizeof(*f));
	unsigned char *payload, *file;
	size_t plen;
	char name[64];

	f->data = test_bytes(size, seed);
	f->size = size;
	payload = deflated ? raw_deflate(f->data, size, 6, &plen) : f->data;
	if (!deflated)
		plen = size;
	file = malloc(PREFIX + plen + 100);
	memset(file, 0xee, PREFIX + plen + 100);
	memcpy(file + PREFIX, payload, plen);
	snprintf(name, sizeof(name), "m%d", n++);
	f->path = path_in(dir, name);
	write_file(f->path, file, PREFIX + plen + 100);
	free(file);
	if (deflated)
		free(payload);
	{
		char err[256];

		assert_int_equal(lfs_source_file_open(f->path, &f->src, err, sizeof(err)), 0);
	}
	f->m = (struct lfs_member){
		.src = f->src, .data_off = PREFIX, .comp_size = plen, .size = size,
		.crc = (uint32_t)crc32(0, f->data, (uInt)size), .method = deflated ? 8 : 0,
		.layer_id = 0x1234, .key = (uint64_t)n, .flags = &f->flags, .reach = &f->reach,
		.layer_name = "test.zip", .entry_name = name, .entry_name_len = 0,
	};
	return f;
}

static void member_free(struct member_file *f)
{
	lfs_source_close(f->src);
	free(f->path);
	free(f->data);
	free(f);
}

static struct lfs_reader *reader(uint32_t block, uint32_t spacing, uint64_t budget)
{
	struct lfs_reader_config cfg = { budget, block, spacing, 4 * (uint64_t)block };
	char err[128];

	assert_int_equal(lfs_reader_config_check(&cfg, err, sizeof(err)), 0);
	return lfs_reader_new(&cfg);
}

static void read_check(struct lfs_reader *r, struct member_file *f, uint64_t off, size_t len)
{
	unsigned char *buf = malloc(len + 1);
	ssize_t n = lfs_reader_read(r, &f->m, buf, len, off);
	size_t want = off >= f->size ? 0 : (len < f->size - off ? len : f->size - off);

	if (n < 0)
		fail_msg("read %zu at %llu of %zu: %s", len, (unsigned long long)off, f->size,
			 strerror((int)-n));
	assert_int_equal((size_t)n, want);
	if (want && memcmp(buf, f->data + off, want))
		fail_msg("wrong bytes: read %zu at %llu of %zu", len, (unsigned long long)off,
			 f->size);
	free(buf);
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void check_member(uint32_t block, uint32_t spacing, size_t size, int deflated)
{
	struct lfs_reader *r = reader(block, spacing, 64 << 20);
	struct member_file *f = member_new(size, deflated, (uint32_t)size);
	uint64_t s = size * 31 + 7;

	/* random offsets first (a read far in before any pass), then
	 * sequential in odd chunks, then random again */
	for (int i = 0; i < 40; i++)
		read_check(r, f, size ? rnd(&s) % (size + 10) : 0, 1 + rnd(&s) % (3 * block));
	for (uint64_t off = 0; off < size; off += 4096 + 123)
		read_check(r, f, off, 4096 + 123);
	lfs_reader_drop_blocks(r);
	for (int i = 0; i < 40; i++)
		read_check(r, f, size ? rnd(&s) % size : 0, 1 + rnd(&s) % (2 * block));
	/* edges */
	read_check(r, f, size, 100);
	read_check(r, f, size + 5000, 100);
	if (size)
		read_check(r, f, size - 1, 100);
	if (deflated && size)
		assert_true(f->flags & LFS_MEMBER_VERIFIED);
	assert_false(f->flags & LFS_MEMBER_FAILED);
	member_free(f);
	lfs_reader_free(r);
}

static void test_sizes_and_offsets(void **state)
{
	const uint32_t B = 16384, S = 65536;
	const size_t sizes[] = { 0, 1, 4095, B - 1, B, B + 1, 3 * B + 17, S - 1, S, S + 1,
				 5 * S + B, (2u << 20) + 3 };

	(void)state;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		check_member(B, S, sizes[i], 1);
		check_member(B, S, sizes[i], 0);
	}
	check_member(4096, 4096, 100000, 1);		/* spacing == block */
	check_member(128 << 10, 1 << 20, 3u << 20, 1);	/* the defaults */
}

/* After a first pass, a read anywhere inflates at most one spacing. */
static void test_resume_points_bound_work(void **state)
{
	const uint32_t B = 16384, S = 131072;
	struct lfs_reader *r = reader(B, S, 256 << 20);
	struct member_file *f = member_new(8u << 20, 1, 99);
	struct lfs_reader_stats st;
	uint64_t s = 1, before;

	(void)state;
	/* a first read far in inflates up to it, once */
	read_check(r, f, 6u << 20, 100);
	lfs_reader_get_stats(r, &st);
	assert_true(st.bytes_inflated <= (6u << 20) + B);
	assert_int_equal(st.resume_points_made, (6u << 20) / S);
	read_check(r, f, 0, f->size); /* first full pass */
	lfs_reader_get_stats(r, &st);
	assert_int_equal(st.resume_points_made, (f->size - 1) / S);
	assert_true(st.bytes_inflated <= f->size + (6u << 20) / S * 0 + B + (6u << 20));
	for (int i = 0; i < 200; i++) {
		uint64_t off = rnd(&s) % f->size;

		lfs_reader_drop_blocks(r);
		lfs_reader_get_stats(r, &st);
		before = st.bytes_inflated;
		read_check(r, f, off, 4096);
		lfs_reader_get_stats(r, &st);
		/* up to one spacing before the block, plus a block when the
		 * read crosses into the next one */
		assert_true(st.bytes_inflated - before <= S + B);
	}
	member_free(f);
	lfs_reader_free(r);
}

/* The kernel asks for a sequential reader's next blocks at once: a read a
 * few blocks past the parked stream goes on from it, and nothing between
 * is inflated twice (it used to start again from the resume point). */
static void test_read_past_parked_stream(void **state)
{
	const uint32_t B = 16384, S = 8 * B;
	struct lfs_reader *r = reader(B, S, 64 << 20);
	struct member_file *f = member_new(4 * S, 1, 55);
	struct lfs_reader_stats st;

	(void)state;
	read_check(r, f, 0, B);		/* parks a stream at block 1 */
	read_check(r, f, 5 * B, 100);	/* block 5: from that stream */
	read_check(r, f, 3 * B, 100);	/* made on the way */
	lfs_reader_get_stats(r, &st);
	assert_int_equal(st.bytes_inflated, 6 * B);
	read_check(r, f, S + 2 * B, 100); /* past a resume point: from the stream */
	lfs_reader_get_stats(r, &st);
	assert_int_equal(st.bytes_inflated, S + 3 * B);
	lfs_reader_drop_blocks(r);	/* resume point only: from it */
	read_check(r, f, S + 3 * B, 100);
	lfs_reader_get_stats(r, &st);
	assert_int_equal(st.bytes_inflated, S + 3 * B + 4 * B);
	member_free(f);
	lfs_reader_free(r);
}

/* A sequential reader followed by read-ahead: the blocks are ready before
 * they are asked for, and nothing is inflated twice. */
static void test_readahead(void **state)
{
	const uint32_t B = 16384;
	struct lfs_reader *r = reader(B, 65536, 64 << 20); /* read-ahead: 4 blocks */
	struct member_file *f = member_new((1u << 20) + 999, 1, 21);
	struct lfs_reader_stats st;
	uint64_t misses_before;

	(void)state;
	read_check(r, f, 0, B);
	lfs_reader_readahead(r, &f->m, B, LFS_SEQ_CONTINUED);
	lfs_reader_get_stats(r, &st);
	assert_true(st.bytes_inflated >= 5 * B); /* block 0 and four ahead */
	misses_before = st.cache.misses;
	read_check(r, f, B, 4 * B);
	lfs_reader_get_stats(r, &st);
	assert_int_equal(st.cache.misses, misses_before); /* all ready */
	for (uint64_t off = 5 * B; off < f->size; off += B) {
		read_check(r, f, off, B);
		lfs_reader_readahead(r, &f->m, off + B, LFS_SEQ_CONTINUED);
	}
	lfs_reader_get_stats(r, &st);
	assert_int_equal(st.bytes_inflated, f->size);
	assert_true(f->flags & LFS_MEMBER_VERIFIED);
	/* a reader with no parked stream where it stopped gets no read-ahead */
	lfs_reader_drop_blocks(r);
	read_check(r, f, 3 * B, 10);
	lfs_reader_readahead(r, &f->m, 40 * B, LFS_SEQ_CONTINUED);
	lfs_reader_get_stats(r, &st);
	assert_true(st.bytes_inflated <= f->size + 4 * B);
	member_free(f);
	lfs_reader_free(r);
}

static void expect_eio(struct lfs_reader *r, struct member_file *f, const char *what)
{
	unsigned char *buf = malloc(f->size + 1);
	ssize_t n = 0;

	/* read everything: the damage shows at the latest at the end */
	for (uint64_t off = 0; off < f->size && n >= 0; off += 65536)
		n = lfs_reader_read(r, &f->m, buf, 65536, off);
	if (n != -EIO)
		fail_msg("%s: expected EIO, got %zd", what, n);
	assert_true(f->flags & LFS_MEMBER_FAILED);
	/* and from then on, anywhere */
	assert_int_equal(lfs_reader_read(r, &f->m, buf, 10, 0), -EIO);
	free(buf);
}

static void test_damage_gives_eio(void **state)
{
	(void)state;
	for (int big = 0; big < 2; big++) {
		size_t size = big ? (3u << 20) + 5 : 10000;
		struct lfs_reader *r = reader(16384, 65536, 64 << 20);
		struct member_file *f;

		f = member_new(size, 1, 1);
		f->m.crc ^= 1;
		expect_eio(r, f, "CRC mismatch");
		member_free(f);

		f = member_new(size, 1, 2);
		f->m.size += 1; /* stream ends before the declared size */
		f->size += 1;
		expect_eio(r, f, "ends early");
		member_free(f);

		f = member_new(size, 1, 3);
		f->m.size -= 1; /* stream runs past the declared size */
		f->size -= 1;
		expect_eio(r, f, "runs long");
		member_free(f);

		f = member_new(size, 1, 4);
		f->m.comp_size /= 2; /* compressed data cut short */
		expect_eio(r, f, "truncated");
		member_free(f);

		f = member_new(size, 1, 5);
		f->m.data_off = 0; /* garbage where the stream should be */
		expect_eio(r, f, "garbage");
		member_free(f);

		f = member_new(size, 0, 6);
		f->m.crc ^= 1;
		expect_eio(r, f, "stored CRC"); /* large ones once read through */
		member_free(f);

		f = member_new(size, 1, 7);
		f->m.method = 12;
		expect_eio(r, f, "bzip2");
		member_free(f);
		lfs_reader_free(r);
	}
}

struct shared {
	struct lfs_reader *r;
	struct member_file *f[3];
	int bad;
	uint64_t seed;
};

static void *reader_thread(void *arg)
{
	struct shared *sh = arg;
	uint64_t s = __atomic_add_fetch(&sh->seed, 0x9e3779b9, __ATOMIC_RELAXED);
	unsigned char *buf = malloc(200000);

	for (int i = 0; i < 400; i++) {
		struct member_file *f = sh->f[rnd(&s) % 3];
		uint64_t off = rnd(&s) % f->size;
		size_t len = 1 + rnd(&s) % 150000;
		ssize_t n = lfs_reader_read(sh->r, &f->m, buf, len, off);
		size_t want = len < f->size - off ? len : f->size - off;

		if (n != (ssize_t)want || memcmp(buf, f->data + off, want))
			__atomic_add_fetch(&sh->bad, 1, __ATOMIC_RELAXED);
	}
	free(buf);
	return NULL;
}

static void test_many_threads_small_budget(void **state)
{
	struct shared sh = { .r = reader(16384, 65536, 1 << 20), .seed = 5 };
	struct lfs_reader_stats st;
	pthread_t th[8];

	(void)state;
	sh.f[0] = member_new(3u << 20, 1, 11);
	sh.f[1] = member_new(1u << 20, 0, 12);
	sh.f[2] = member_new(40000, 1, 13);
	for (int i = 0; i < 8; i++)
		pthread_create(&th[i], NULL, reader_thread, &sh);
	for (int i = 0; i < 8; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(sh.bad, 0);
	lfs_reader_get_stats(sh.r, &st);
	assert_true(st.cache.evictions > 0);
	/* at rest nothing is referenced, so the budget holds exactly */
	assert_true(st.cache.bytes <= st.cache.budget);
	for (int i = 0; i < 3; i++)
		member_free(sh.f[i]);
	lfs_reader_free(sh.r);
}

struct seq_arg {
	struct lfs_reader *r;
	struct member_file *f;
	uint32_t step;
	int bad;
};

/* Reads f in order, asking for read-ahead after every read, as the FUSE
 * read handler does. */
static void *seq_thread(void *arg)
{
	struct seq_arg *a = arg;
	unsigned char *buf = malloc(a->step);

	for (uint64_t off = 0; off < a->f->size; off += a->step) {
		ssize_t n = lfs_reader_read(a->r, &a->f->m, buf, a->step, off);
		size_t want = a->step < a->f->size - off ? a->step : a->f->size - off;

		if (n != (ssize_t)want || memcmp(buf, a->f->data + off, want))
			a->bad++;
		if (n > 0)
			lfs_reader_readahead(a->r, &a->f->m, off + (uint64_t)n, LFS_SEQ_CONTINUED);
	}
	free(buf);
	return NULL;
}

/* Sequential readers in parallel, two of them on one member: every byte is
 * right, and a member with one reader has no block inflated twice (two
 * readers of one member may race to a block beyond the parked stream). */
static void test_parallel_readahead(void **state)
{
	const uint32_t B = 16384;
	struct lfs_reader *r = reader(B, 65536, 64 << 20);
	struct member_file *f[3];
	struct seq_arg a[4];
	struct lfs_layer_counters counters[3] = { { 0 } };
	pthread_t th[4];

	(void)state;
	for (int i = 0; i < 3; i++) {
		f[i] = member_new((2u << 20) + 1000u * (unsigned)i, 1, 40 + (uint32_t)i);
		f[i]->m.counters = &counters[i];
	}
	for (int i = 0; i < 4; i++) {
		a[i] = (struct seq_arg){ r, f[i % 3], i == 3 ? 3 * B : B, 0 };
		pthread_create(&th[i], NULL, seq_thread, &a[i]);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < 4; i++)
		assert_int_equal(a[i].bad, 0);
	assert_int_equal(counters[1].bytes_inflated, f[1]->size);
	assert_int_equal(counters[2].bytes_inflated, f[2]->size);
	for (int i = 0; i < 3; i++) {
		assert_true(f[i]->flags & LFS_MEMBER_VERIFIED);
		member_free(f[i]);
	}
	lfs_reader_free(r);
}

/* Reads in pairs far into the member: a random read, then one starting
 * where it stopped, which continues the parked stream and asks for
 * read-ahead there. */
static void *jumper_thread(void *arg)
{
	struct seq_arg *a = arg; /* step: the block size */
	uint64_t s = 77, B = a->step;
	unsigned char *buf = malloc(B);

	for (int i = 0; i < 30; i++) {
		uint64_t j = 600 + rnd(&s) % 400, offs[2] = { j * B + 5000, (j + 1) * B };

		for (int k = 0; k < 2; k++) {
			ssize_t n = lfs_reader_read(a->r, &a->f->m, buf, B, offs[k]);

			if (n != (ssize_t)B || memcmp(buf, a->f->data + offs[k], B))
				a->bad++;
			else if (k == 1)
				lfs_reader_readahead(a->r, &a->f->m, offs[k] + B, LFS_SEQ_CONTINUED);
		}
	}
	free(buf);
	return NULL;
}

/* Read-ahead starts after a read that continued the parked stream, or one
 * that catches up with where a job stopped at its target; a read that only
 * found ready blocks elsewhere starts nothing. */
static void test_readahead_starts(void **state)
{
	const uint32_t B = 16384;
	struct lfs_reader *r = reader(B, 65536, 64 << 20); /* read-ahead: 4 blocks */
	struct member_file *f = member_new((1u << 20) + 999, 1, 23);
	struct lfs_reader_stats st;

	(void)state;
	read_check(r, f, 0, 10 * B); /* blocks 0-9; a stream parked at 10 */
	read_check(r, f, 7 * B, B); /* ready, and the parked stream in reach */
	lfs_reader_readahead(r, &f->m, 8 * B, LFS_SEQ_READY);
	lfs_reader_get_stats(r, &st);
	assert_int_equal(st.bytes_inflated, 10 * B);
	read_check(r, f, 10 * B, B); /* continues the parked stream */
	lfs_reader_readahead(r, &f->m, 11 * B, LFS_SEQ_CONTINUED);
	lfs_reader_get_stats(r, &st);
	assert_int_equal(st.bytes_inflated, 15 * B); /* 11-14, then the job ends */
	read_check(r, f, 12 * B, B); /* ready; two blocks short of the end */
	lfs_reader_readahead(r, &f->m, 13 * B, LFS_SEQ_READY);
	lfs_reader_get_stats(r, &st);
	assert_int_equal(st.bytes_inflated, 17 * B); /* 15 and 16 */
	read_check(r, f, 3 * B, B); /* ready, far behind: nothing */
	lfs_reader_readahead(r, &f->m, 4 * B, LFS_SEQ_READY);
	lfs_reader_get_stats(r, &st);
	assert_int_equal(st.bytes_inflated, 17 * B);
	member_free(f);
	lfs_reader_free(r);
}

/* Readers of several members share the read-ahead: with a window each,
 * blocks inflated ahead were evicted before they were read and inflated
 * again (here 1.6-3.4 times the bytes read; shared, 1.0-1.12). */
static void test_readahead_is_shared(void **state)
{
	const uint32_t B = 16384;
	struct lfs_reader_config cfg = { 32u << 20, B, 1u << 20, 8u << 20 };
	struct lfs_reader *r;
	struct member_file *f[4];
	struct seq_arg a[4];
	struct lfs_reader_stats st;
	pthread_t th[4];
	char err[128];
	uint64_t total = 0;

	(void)state;
	assert_int_equal(lfs_reader_config_check(&cfg, err, sizeof(err)), 0);
	r = lfs_reader_new(&cfg);
	for (int i = 0; i < 4; i++) {
		f[i] = member_new(16u << 20, 1, 80 + (uint32_t)i);
		total += f[i]->size;
		a[i] = (struct seq_arg){ r, f[i], B, 0 };
	}
	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, seq_thread, &a[i]);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	lfs_reader_get_stats(r, &st);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(a[i].bad, 0);
		member_free(f[i]);
	}
	if (st.bytes_inflated > total + total / 2)
		fail_msg("inflated %llu bytes to read %llu", (unsigned long long)st.bytes_inflated,
			 (unsigned long long)total);
	lfs_reader_free(r);
}

/* A small budget still keeps a sequential reader's parked stream: split in
 * 16 shards, 2 MiB gave each 128 KiB, less than one parked stream, which
 * was then evicted as soon as it was parked, and every read inflated again
 * from the member's start. */
static void test_small_budget_keeps_stream(void **state)
{
	const uint32_t B = 16384;
	struct lfs_reader *r = reader(B, 1u << 20, 2u << 20);
	struct member_file *f = member_new((2u << 20) + 100, 1, 91);
	struct lfs_reader_stats st;

	(void)state;
	for (uint64_t off = 0; off < f->size; off += B)
		read_check(r, f, off, B);
	lfs_reader_get_stats(r, &st);
	assert_int_equal(st.bytes_inflated, f->size);
	member_free(f);
	lfs_reader_free(r);
}

/* Read-ahead stays with the reader that asked for it: a read far away in
 * the member must not extend the window of another reader's read-ahead
 * (that once had it inflate everything in between, tens of milliseconds
 * while other reads of the member waited). */
static void test_readahead_stays_near_its_reader(void **state)
{
	const uint32_t B = 16384;
	struct lfs_reader *r = reader(B, 65536, 256u << 20); /* read-ahead: 4 blocks */
	struct member_file *f = member_new(1024u * B, 1, 61);
	struct seq_arg a;
	struct seq_arg j = { r, f, B, 0 };
	struct lfs_reader_stats st;
	uint64_t before;
	pthread_t th[2];
	(void)state;
	read_check(r, f, 0, f->size); /* resume points everywhere */
	lfs_reader_drop_blocks(r);
	lfs_reader_get_stats(r, &st);
	before = st.bytes_inflated;
	/* the sequential reader covers the first quarter only */
	f->size = 256u * B;
	a = (struct seq_arg){ r, f, B, 0 };
	pthread_create(&th[0], NULL, seq_thread, &a);
	pthread_create(&th[1], NULL, jumper_thread, &j);
	pthread_join(th[0], NULL);
	pthread_join(th[1], NULL);
	f->size = 1024u * B;
	assert_int_equal(a.bad, 0);
	assert_int_equal(j.bad, 0);
	lfs_reader_get_stats(r, &st);
	/* 4 MiB in order and 30 pairs of at most 10 blocks; a read-ahead
	 * dragged from the first quarter to the far half would add 6 MiB */
	if (st.bytes_inflated - before > 13u << 20)
		fail_msg("inflated %llu bytes", (unsigned long long)(st.bytes_inflated - before));
	member_free(f);
	lfs_reader_free(r);
}

/* A large stored member read here and there (as a mapped library is) stops
 * being tracked for its CRC after a few pieces; one read in order is
 * checked. */
static void test_stored_crc_tracking(void **state)
{
	const uint32_t B = 16384;
	struct lfs_reader *r = reader(B, 65536, 64 << 20);
	struct member_file *f = member_new(100u * B, 0, 81);
	uint64_t s = 5;

	(void)state;
	for (int i = 0; i < 40 && !(f->flags & LFS_MEMBER_UNCHECKED); i++)
		read_check(r, f, rnd(&s) % (f->size - 4096), 4096);
	assert_true(f->flags & LFS_MEMBER_UNCHECKED);
	read_check(r, f, 0, f->size);
	assert_false(f->flags & (LFS_MEMBER_VERIFIED | LFS_MEMBER_FAILED));
	member_free(f);

	f = member_new(100u * B, 0, 82);
	for (uint64_t off = 0; off < f->size; off += 3 * B)
		read_check(r, f, off, 3 * B);
	assert_true(f->flags & LFS_MEMBER_VERIFIED);
	member_free(f);
	lfs_reader_free(r);
}

static void test_config(void **state)
{
	struct lfs_reader_config cfg = { 0 };
	char err[128];

	(void)state;
	assert_int_equal(lfs_reader_config_check(&cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.block_size, 256 << 10);
	cfg = (struct lfs_reader_config){ 1 << 20, 3000, 0, 0 };
	assert_int_equal(lfs_reader_config_check(&cfg, err, sizeof(err)), -EINVAL);
	cfg = (struct lfs_reader_config){ 1 << 20, 4096, 6000, 0 };
	assert_int_equal(lfs_reader_config_check(&cfg, err, sizeof(err)), -EINVAL);
	cfg = (struct lfs_reader_config){ 4096, 4096, 4096, 0 };
	assert_int_equal(lfs_reader_config_check(&cfg, err, sizeof(err)), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config),
		cmocka_unit_test(test_sizes_and_offsets),
		cmocka_unit_test(test_resume_points_bound_work),
		cmocka_unit_test(test_readahead),
		cmocka_unit_test(test_read_past_parked_stream),
		cmocka_unit_test(test_parallel_readahead),
		cmocka_unit_test(test_readahead_stays_near_its_reader),
		cmocka_unit_test(test_readahead_starts),
		cmocka_unit_test(test_readahead_is_shared),
		cmocka_unit_test(test_small_budget_keeps_stream),
		cmocka_unit_test(test_stored_crc_tracking),
		cmocka_unit_test(test_damage_gives_eio),
		cmocka_unit_test(test_many_threads_small_budget),
	};

	return cmocka_run_group_tests_name("reader", tests, setup, teardown);
}
