/* The read path: any offset of stored and deflated members gives the
 * reference bytes, resume points bound the work, damage gives EIO. */
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>

#include "../../cache/reader.h"

#include <sys/stat.h>

#define PREFIX 777 /* member data does not start at offset 0 */

struct member_file {
	char *path;
	struct lfs_source *src;
	unsigned char *data;	/* the reference bytes */
	size_t size;
	struct lfs_member_desc d;
	struct lfs_layer_counters *counters;
	struct lfs_reader *r;	/* of the handle */
	struct lfs_member *m;	/* made on first use, by M() */
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
	char name[64], err[256];

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
	assert_int_equal(lfs_source_file_open(f->path, &f->src, err, sizeof(err)), 0);
	f->d = (struct lfs_member_desc){
		.layer = 0x1234, .key = (uint64_t)n, .data_off = PREFIX, .comp_size = plen,
		.size = size, .crc = (uint32_t)crc32(0, f->data, (uInt)size),
		.method = deflated ? 8 : 0,
	};
	return f;
}

/* The member's handle for reader r: made at first use, after any change
 * a test makes to f->d. */
static struct lfs_member *M(struct lfs_reader *r, struct member_file *f)
{
	if (!f->m) {
		f->r = r;
		f->m = lfs_member_new(r, f->src, &f->d, f->counters, f);
		assert_non_null(f->m);
	}
	assert_ptr_equal(f->r, r);
	return f->m;
}

/* Read-ahead, and wait for it: the single-threaded tests check what it
 * made. */
static void readahead_now(struct lfs_reader *r, struct member_file *f, uint64_t end,
			  enum lfs_seq seq)
{
	lfs_reader_readahead(r, M(r, f), end, seq);
	lfs_reader_wait_idle(r);
}

static uint32_t flags_of(struct member_file *f) { return f->m ? lfs_member_flags(f->m) : 0; }

/* The member's handle goes (before its reader), so another reader can
 * take the same file. */
static void member_detach(struct member_file *f)
{
	if (f->r)
		lfs_reader_wait_idle(f->r); /* no read-ahead job may still use it */
	lfs_member_free(f->m);
	f->m = NULL;
	f->r = NULL;
}

static struct lfs_reader_stats stats_of(struct lfs_reader *r)
{
	struct lfs_reader_stats st;

	lfs_reader_get_stats(r, &st);
	return st;
}

static void member_free(struct member_file *f)
{
	member_detach(f);
	lfs_source_close(f->src);
	free(f->path);
	free(f->data);
	free(f);
}

static struct lfs_reader *reader(uint32_t block, uint32_t spacing, uint64_t budget)
{
	struct lfs_reader_config cfg = { .cache_size = budget, .block_size = block, .spacing = spacing,
					  .readahead = 4 * (uint64_t)block };
	char err[128];

	assert_int_equal(lfs_reader_config_check(&cfg, err, sizeof(err)), 0);
	return lfs_reader_new(&cfg);
}

/* A reader of the configuration given (checked, and completed, first). */
static struct lfs_reader *reader_of(struct lfs_reader_config *cfg)
{
	char err[128];

	assert_int_equal(lfs_reader_config_check(cfg, err, sizeof(err)), 0);
	return lfs_reader_new(cfg);
}

static void read_check(struct lfs_reader *r, struct member_file *f, uint64_t off, size_t len)
{
	unsigned char *buf = malloc(len + 1);
	ssize_t n = lfs_reader_read(r, M(r, f), buf, len, off);
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
		assert_true(flags_of(f) & LFS_MEMBER_VERIFIED);
	assert_false(flags_of(f) & LFS_MEMBER_FAILED);
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

/* Where the member's deflate blocks end (its last one aside), as zlib
 * finds them on its own: the only places a resume point can be. */
static size_t block_ends(const struct member_file *f, uint64_t *ends, size_t max)
{
	size_t clen, n = 0;
	unsigned char *comp = raw_deflate(f->data, f->size, 6, &clen);
	unsigned char *out = malloc(f->size + 1);
	z_stream zs;
	int rc;

	memset(&zs, 0, sizeof(zs));
	assert_int_equal(inflateInit2(&zs, -15), Z_OK);
	zs.next_in = comp;
	zs.avail_in = (uInt)clen;
	zs.next_out = out;
	zs.avail_out = (uInt)f->size + 1;
	while ((rc = inflate(&zs, Z_BLOCK)) == Z_OK) {
		if ((zs.data_type & 128) && !(zs.data_type & 64) && zs.total_out &&
		    (!n || ends[n - 1] != zs.total_out) && zs.total_out < f->size) {
			assert_true(n < max);
			ends[n++] = zs.total_out;
		}
	}
	assert_int_equal(rc, Z_STREAM_END);
	inflateEnd(&zs);
	free(comp);
	free(out);
	return n;
}

/* The resume points a stream from the start makes before it has produced
 * `upto` bytes: the first block end at or after each multiple of S. */
static size_t points_before(const uint64_t *ends, size_t n, uint64_t S, uint64_t upto,
			    uint64_t *points)
{
	size_t np = 0;
	uint64_t mark = S;

	for (size_t i = 0; i < n && ends[i] < upto; i++) {
		if (ends[i] >= mark) {
			points[np++] = ends[i];
			mark = (ends[i] / S + 1) * S;
		}
	}
	return np;
}

/* The bytes a read of [off, off + len) inflates once every block is gone:
 * from the nearest resume point before its first block through its last
 * block. */
static uint64_t cost_of_read(const uint64_t *points, size_t np, uint64_t B, uint64_t size,
			     uint64_t off, uint64_t len)
{
	uint64_t first = off / B * B, last = (off + len - 1) / B * B + B, from = 0;

	for (size_t i = 0; i < np && points[i] <= first; i++)
		from = points[i];
	return (last < size ? last : size) - from;
}

/* After a first pass, a read anywhere inflates from the resume point
 * before it: exactly the bytes from that point (found with zlib, not with
 * the reader) through the blocks read. */
static void test_resume_points_bound_work(void **state)
{
	const uint32_t B = 16384, S = 131072;
	struct lfs_reader *r = reader(B, S, 256 << 20);
	struct member_file *f = member_new(8u << 20, 1, 99);
	struct lfs_reader_stats st;
	static uint64_t ends[4096], points[4096];
	size_t nends = block_ends(f, ends, 4096), np;
	uint64_t s = 1, before, far = 6u << 20;

	(void)state;
	/* a first read far in inflates up to it, once */
	read_check(r, f, far, 100);
	lfs_reader_get_stats(r, &st);
	assert_int_equal(st.bytes_inflated, far + B);
	assert_int_equal(st.resume_points_made, points_before(ends, nends, S, far + B, points));
	read_check(r, f, 0, f->size); /* the rest of the first pass */
	lfs_reader_get_stats(r, &st);
	np = points_before(ends, nends, S, f->size, points);
	assert_true(np > f->size / S / 2);
	assert_int_equal(st.resume_points_made, np);
	assert_int_equal(st.bytes_inflated, f->size);
	for (int i = 0; i < 200; i++) {
		uint64_t off = rnd(&s) % f->size;

		lfs_reader_drop_blocks(r);
		lfs_reader_get_stats(r, &st);
		before = st.bytes_inflated;
		read_check(r, f, off, 4096);
		lfs_reader_get_stats(r, &st);
		assert_int_equal(st.bytes_inflated - before,
				 cost_of_read(points, np, B, f->size, off, 4096));
	}
	lfs_reader_get_stats(r, &st);
	assert_int_equal(st.resume_points_made, np); /* none made twice */
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
	static uint64_t ends[1024], points[1024];
	size_t nends = block_ends(f, ends, 1024), np;

	(void)state;
	read_check(r, f, 0, B);		/* parks a stream at block 1 */
	read_check(r, f, 5 * B, 100);	/* block 5: from that stream */
	read_check(r, f, 3 * B, 100);	/* made on the way */
	lfs_reader_get_stats(r, &st);
	assert_int_equal(st.bytes_inflated, 6 * B);
	read_check(r, f, S + 2 * B, 100); /* past a resume point: from the stream */
	lfs_reader_get_stats(r, &st);
	assert_int_equal(st.bytes_inflated, S + 3 * B);
	np = points_before(ends, nends, S, S + 3 * B, points);
	assert_int_equal(st.resume_points_made, np);
	lfs_reader_drop_blocks(r);	/* resume point only: from it */
	read_check(r, f, S + 3 * B, 100);
	lfs_reader_get_stats(r, &st);
	assert_int_equal(st.bytes_inflated,
			 S + 3 * B + cost_of_read(points, np, B, f->size, S + 3 * B, 100));
	member_free(f);
	lfs_reader_free(r);
}

static struct lfs_reader *reader_ra(uint32_t block, uint32_t spacing, uint64_t window)
{
	struct lfs_reader_config cfg = { .cache_size = 64u << 20, .block_size = block,
					 .spacing = spacing, .readahead = window * block };
	char err[128];

	assert_int_equal(lfs_reader_config_check(&cfg, err, sizeof(err)), 0);
	return lfs_reader_new(&cfg);
}

/* A sequential reader followed by read-ahead: the blocks are ready before
 * they are asked for, and nothing is inflated twice. */
static void test_readahead(void **state)
{
	const uint32_t B = 16384, S = 65536, W = 6; /* W: read-ahead in blocks */
	struct lfs_reader *r = reader_ra(B, S, W);
	struct member_file *f = member_new((1u << 20) + 999, 1, 21);
	struct lfs_reader_stats st;
	static uint64_t ends[1024], points[1024];
	size_t np;
	uint64_t misses_before;

	(void)state;
	read_check(r, f, 0, B);
	readahead_now(r, f, B, LFS_SEQ_CONTINUED);
	lfs_reader_get_stats(r, &st);
	assert_int_equal(st.bytes_inflated, (1 + W) * B); /* block 0 and a window */
	misses_before = st.cache.misses;
	read_check(r, f, B, W * B);
	lfs_reader_get_stats(r, &st);
	assert_int_equal(st.cache.misses, misses_before); /* all ready */
	for (uint64_t off = (1 + W) * B; off < f->size; off += B) {
		read_check(r, f, off, B);
		readahead_now(r, f, off + B, LFS_SEQ_CONTINUED);
	}
	lfs_reader_get_stats(r, &st);
	assert_int_equal(st.bytes_inflated, f->size);
	assert_true(flags_of(f) & LFS_MEMBER_VERIFIED);
	/* a reader with no parked stream where it stopped gets no read-ahead:
	 * only its own read inflates */
	np = points_before(ends, block_ends(f, ends, 1024), S, f->size, points);
	lfs_reader_drop_blocks(r);
	read_check(r, f, 3 * B, 10);
	readahead_now(r, f, 40 * B, LFS_SEQ_CONTINUED);
	lfs_reader_get_stats(r, &st);
	assert_int_equal(st.bytes_inflated, f->size + cost_of_read(points, np, B, f->size, 3 * B, 10));
	member_free(f);
	lfs_reader_free(r);
}

/* Members smaller than disk_min skip the disk tier both ways: nothing of
 * theirs is written, and a record planted for one is not read (a second
 * reader inflates it again); larger members' blocks are written. */
static void test_disk_min(void **state)
{
	static const unsigned char digest[LFS_DIGEST_LEN] = { 0x5f, 1, 2, 3 };
	const uint32_t B = 65536;
	struct lfs_disk_config dcfg = { 1ull << 30, 1, NULL, NULL };
	struct lfs_reader_config cfg = { .cache_size = 64 << 20, .block_size = B,
					  .spacing = 4 * B, .readahead = 0, .disk_min = 2 * (uint64_t)B };
	struct member_file *small = member_new(B, 1, 43), *large = member_new(2 * (size_t)B, 1, 44);
	char err[256], *cdir = path_in(dir, "hostcache-min");
	unsigned char *buf = malloc(B);
	struct lfs_disk_layer *dl;
	struct lfs_disk *disk;
	struct lfs_reader *r;
	uint64_t before;
	uint32_t cum;
	int dirfd;

	(void)state;
	assert_int_equal(mkdir(cdir, 0700), 0);
	dirfd = open(cdir, O_RDONLY | O_DIRECTORY);
	assert_true(dirfd >= 0);
	assert_int_equal(lfs_disk_open(dirfd, &dcfg, &disk, err, sizeof(err)), 0);
	dl = lfs_disk_layer(disk, digest, B);
	assert_non_null(dl);
	small->d.disk = large->d.disk = &dl;
	cfg.disk = disk;
	r = reader_of(&cfg);
	read_check(r, small, 0, small->size);
	read_check(r, large, 0, large->size);
	lfs_reader_wait_idle(r);
	assert_int_equal(lfs_disk_get(dl, small->d.key, 0, buf, B, &cum), -ENOENT);
	for (uint64_t b = 0; b < 2; b++)
		assert_int_equal(lfs_disk_get(dl, large->d.key, b, buf, B, &cum), 0);
	member_detach(small);
	member_detach(large);
	lfs_reader_free(r);

	/* a record of the small one, as a daemon with disk_min=0 left it */
	assert_int_equal(lfs_disk_put(dl, small->d.key, 0, small->data, B, small->d.crc), 0);
	r = reader_of(&cfg);
	before = stats_of(r).bytes_inflated;
	read_check(r, small, 0, small->size);
	assert_int_equal(stats_of(r).bytes_inflated - before, B);
	read_check(r, large, 0, large->size);
	assert_int_equal(stats_of(r).bytes_inflated - before, B);
	assert_int_equal(stats_of(r).disk_hits, 2);
	member_free(small);
	member_free(large);
	lfs_reader_free(r);
	lfs_disk_close(disk);
	close(dirfd);
	free(buf);
	free(cdir);
}

/* Blocks made while the layer's digest is not known (its disk slot still
 * NULL) are noted, and written to the disk tier once the slot is set and
 * lfs_disk_later_attach is called; nothing is written before. */
static void test_disk_later(void **state)
{
	static const unsigned char digest[LFS_DIGEST_LEN] = { 0x5e, 1, 2, 3 };
	const uint32_t B = 65536;
	struct lfs_disk_config dcfg = { 1ull << 30, 1, NULL, NULL };
	struct lfs_reader_config cfg = { .cache_size = 64 << 20, .block_size = B,
					  .spacing = 4 * B, .readahead = 0 };
	struct member_file *f = member_new(5 * (size_t)B + 100, 1, 41);
	struct lfs_disk_layer *slot = NULL, *dl;
	struct lfs_disk_later *later = lfs_disk_later_new();
	char err[256], *cdir = path_in(dir, "hostcache");
	unsigned char *buf = malloc(B);
	struct lfs_disk *disk;
	struct lfs_reader *r;
	uint32_t cum;
	int dirfd;

	(void)state;
	assert_non_null(later);
	assert_int_equal(mkdir(cdir, 0700), 0);
	dirfd = open(cdir, O_RDONLY | O_DIRECTORY);
	assert_true(dirfd >= 0);
	assert_int_equal(lfs_disk_open(dirfd, &dcfg, &disk, err, sizeof(err)), 0);
	cfg.disk = disk;
	r = reader_of(&cfg);
	f->d.disk = &slot;
	f->d.later = later;
	read_check(r, f, 0, f->size);
	lfs_reader_wait_idle(r);
	dl = lfs_disk_layer(disk, digest, B);
	assert_non_null(dl);
	assert_int_equal(lfs_disk_get(dl, f->d.key, 0, buf, B, &cum), -ENOENT);

	__atomic_store_n(&slot, dl, __ATOMIC_RELEASE);
	lfs_disk_later_attach(r, later, dl);
	lfs_reader_wait_idle(r);
	for (uint64_t b = 0; b < 6; b++) {
		size_t len = b < 5 ? B : 100;

		assert_int_equal(lfs_disk_get(dl, f->d.key, b, buf, len, &cum), 0);
		assert_memory_equal(buf, f->data + b * B, len);
		assert_int_equal(cum, (uint32_t)crc32(0, f->data, (uInt)(b * B + len)));
	}
	member_free(f);
	lfs_reader_free(r);
	lfs_disk_later_free(later);
	lfs_disk_close(disk);
	close(dirfd);
	free(buf);
	free(cdir);
}

/* prefetch_jumps: a read far into a member no stream is near has the
 * whole member made in the pool, once; reads anywhere in it then find
 * their blocks made (no miss), and those bytes count as prefetch used. */
static void test_prefetch_jumps(void **state)
{
	const uint32_t B = 16384, S = 65536;
	struct lfs_reader_config cfg = { .cache_size = 64 << 20, .block_size = B, .spacing = S,
					  .prefetch_jumps = 1 };
	struct member_file *f = member_new((1u << 20) + 999, 1, 22);
	struct member_file *g = member_new((1u << 20) + 999, 1, 23);
	struct lfs_reader_stats st;
	struct lfs_reader *r;
	uint64_t misses, s = 5;
	char err[128];

	(void)state;
	assert_int_equal(lfs_reader_config_check(&cfg, err, sizeof(err)), 0);
	r = lfs_reader_new(&cfg);
	read_check(r, f, 40 * B + 5, 100); /* a jump: no stream near */
	lfs_reader_wait_idle(r);
	lfs_reader_get_stats(r, &st);
	assert_int_equal(st.jump_prefetches, 1);
	assert_int_equal(st.bytes_inflated, f->size); /* the rest, once */
	misses = st.cache.misses;
	for (int i = 0; i < 50; i++)
		read_check(r, f, rnd(&s) % f->size, 1 + rnd(&s) % (2 * B));
	lfs_reader_wait_idle(r);
	lfs_reader_get_stats(r, &st);
	assert_int_equal(st.cache.misses, misses);
	assert_int_equal(st.jump_prefetches, 1);
	assert_true(st.prefetch_used > 0);
	/* a member read from its start is no jump: nothing made ahead */
	read_check(r, g, 0, 100);
	read_check(r, g, 100, B);
	lfs_reader_wait_idle(r);
	lfs_reader_get_stats(r, &st);
	assert_int_equal(st.jump_prefetches, 1);
	member_free(f);
	member_free(g);
	lfs_reader_free(r);
	/* and without the option a jump makes only what it reads */
	cfg.prefetch_jumps = 0;
	r = lfs_reader_new(&cfg);
	f = member_new((1u << 20) + 999, 1, 22);
	read_check(r, f, 40 * B + 5, 100);
	lfs_reader_wait_idle(r);
	lfs_reader_get_stats(r, &st);
	assert_int_equal(st.jump_prefetches, 0);
	assert_true(st.bytes_inflated <= 41 * B);
	member_free(f);
	lfs_reader_free(r);
}

static void expect_eio(struct lfs_reader *r, struct member_file *f, const char *what)
{
	unsigned char *buf = malloc(f->size + 1);
	ssize_t n = 0;

	/* read everything: the damage shows at the latest at the end */
	for (uint64_t off = 0; off < f->size && n >= 0; off += 65536)
		n = lfs_reader_read(r, M(r, f), buf, 65536, off);
	if (n != -EIO)
		fail_msg("%s: expected EIO, got %zd", what, n);
	assert_true(flags_of(f) & LFS_MEMBER_FAILED);
	/* and from then on, anywhere */
	assert_int_equal(lfs_reader_read(r, M(r, f), buf, 10, 0), -EIO);
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
		f->d.crc ^= 1;
		expect_eio(r, f, "CRC mismatch");
		member_free(f);

		f = member_new(size, 1, 2);
		f->d.size += 1; /* stream ends before the declared size */
		f->size += 1;
		expect_eio(r, f, "ends early");
		member_free(f);

		f = member_new(size, 1, 3);
		f->d.size -= 1; /* stream runs past the declared size */
		f->size -= 1;
		expect_eio(r, f, "runs long");
		member_free(f);

		f = member_new(size, 1, 4);
		f->d.comp_size /= 2; /* compressed data cut short */
		expect_eio(r, f, "truncated");
		member_free(f);

		f = member_new(size, 1, 5);
		f->d.data_off = 0; /* garbage where the stream should be */
		expect_eio(r, f, "garbage");
		member_free(f);

		f = member_new(size, 0, 6);
		f->d.crc ^= 1;
		expect_eio(r, f, "stored CRC"); /* large ones once read through */
		member_free(f);

		f = member_new(size, 1, 7);
		f->d.method = 12;
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
		ssize_t n = lfs_reader_read(sh->r, f->m, buf, len, off);
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
	for (int i = 0; i < 3; i++)
		M(sh.r, sh.f[i]); /* handles before the threads share them */
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
	unsigned pause;	/* microseconds between reads: a reader slower than inflation */
};

/* Reads f in order, asking for read-ahead after every read, as the FUSE
 * read handler does. */
static void *seq_thread(void *arg)
{
	struct seq_arg *a = arg;
	unsigned char *buf = malloc(a->step);

	for (uint64_t off = 0; off < a->f->size; off += a->step) {
		ssize_t n = lfs_reader_read(a->r, a->f->m, buf, a->step, off);
		size_t want = a->step < a->f->size - off ? a->step : a->f->size - off;

		if (n != (ssize_t)want || memcmp(buf, a->f->data + off, want))
			a->bad++;
		if (n > 0)
			lfs_reader_readahead(a->r, a->f->m, off + (uint64_t)n, LFS_SEQ_CONTINUED);
		if (a->pause)
			usleep(a->pause);
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
		f[i]->counters = &counters[i];
		M(r, f[i]);
	}
	for (int i = 0; i < 4; i++) {
		a[i] = (struct seq_arg){ r, f[i % 3], i == 3 ? 3 * B : B, 0, 0 };
		pthread_create(&th[i], NULL, seq_thread, &a[i]);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < 4; i++)
		assert_int_equal(a[i].bad, 0);
	assert_int_equal(counters[1].bytes_inflated, f[1]->size);
	assert_int_equal(counters[2].bytes_inflated, f[2]->size);
	for (int i = 0; i < 3; i++) {
		assert_true(flags_of(f[i]) & LFS_MEMBER_VERIFIED);
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
			ssize_t n = lfs_reader_read(a->r, a->f->m, buf, B, offs[k]);

			if (n != (ssize_t)B || memcmp(buf, a->f->data + offs[k], B))
				a->bad++;
			else if (k == 1)
				lfs_reader_readahead(a->r, a->f->m, offs[k] + B, LFS_SEQ_CONTINUED);
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
	const uint32_t B = 16384, W = 6; /* W: read-ahead in blocks */
	struct lfs_reader *r = reader_ra(B, 65536, W);
	struct member_file *f = member_new((1u << 20) + 999, 1, 23);
	struct lfs_reader_stats st;
	uint64_t made;

	(void)state;
	read_check(r, f, 0, 10 * B); /* blocks 0-9; a stream parked at 10 */
	read_check(r, f, 7 * B, B); /* ready, and the parked stream in reach */
	readahead_now(r, f, 8 * B, LFS_SEQ_READY);
	lfs_reader_get_stats(r, &st);
	assert_int_equal(st.bytes_inflated, 10 * B);
	read_check(r, f, 10 * B, B); /* continues the parked stream */
	readahead_now(r, f, 11 * B, LFS_SEQ_CONTINUED);
	lfs_reader_get_stats(r, &st);
	made = 11 + W; /* blocks 11 .. 10 + W, then the job ends */
	assert_int_equal(st.bytes_inflated, made * B);
	/* ready, and where the job stopped is less than a window ahead: it
	 * goes on to a window past this read */
	read_check(r, f, (made - 2) * B, B);
	readahead_now(r, f, (made - 1) * B, LFS_SEQ_READY);
	lfs_reader_get_stats(r, &st);
	made = made - 1 + W;
	assert_int_equal(st.bytes_inflated, made * B);
	read_check(r, f, 3 * B, B); /* ready, far behind: nothing */
	readahead_now(r, f, 4 * B, LFS_SEQ_READY);
	lfs_reader_get_stats(r, &st);
	assert_int_equal(st.bytes_inflated, made * B);
	member_free(f);
	lfs_reader_free(r);
}

/* Readers of several members share the read-ahead: with a window each,
 * blocks inflated ahead were evicted before they were read and inflated
 * again (here 1.6-3.4 times the bytes read; shared, 1.0-1.12).  Readers as
 * fast as inflation, and readers slower than it (whose windows are made,
 * then wait to be read: while read-ahead was shared only among the streams
 * running, each such reader had a whole window, and four inflated 11 to 16
 * times what they read; shared, 1.19). */
static void test_readahead_is_shared(void **state)
{
	const uint32_t B = 16384;
	const unsigned pauses[] = { 0, 400 }; /* microseconds between a reader's reads */

	(void)state;
	for (size_t p = 0; p < sizeof(pauses) / sizeof(pauses[0]); p++) {
		struct lfs_reader_config cfg = { .cache_size = 32u << 20, .block_size = B,
						  .spacing = 1u << 20, .readahead = 8u << 20 };
		struct lfs_reader *r = reader_of(&cfg);
		struct member_file *f[4];
		struct seq_arg a[4];
		struct lfs_reader_stats st;
		pthread_t th[4];
		uint64_t total = 0;

		for (int i = 0; i < 4; i++) {
			f[i] = member_new(16u << 20, 1, 80 + (uint32_t)i);
			M(r, f[i]);
			total += f[i]->size;
			a[i] = (struct seq_arg){ r, f[i], B, 0, pauses[p] };
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
			fail_msg("readers %u us apart: inflated %llu bytes to read %llu", pauses[p],
				 (unsigned long long)st.bytes_inflated, (unsigned long long)total);
		lfs_reader_free(r);
	}
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
	const uint32_t B = 16384, S = 65536;
	struct lfs_reader_config cfg = { .cache_size = 256u << 20, .block_size = B, .spacing = S,
					  .readahead = 4u * B };
	struct lfs_reader *r = reader_of(&cfg);
	struct member_file *f = member_new(1024u * B, 1, 61);
	struct seq_arg a;
	struct seq_arg j = { r, f, B, 0, 0 };
	struct lfs_reader_stats st;
	static uint64_t ends[4096], points[4096];
	size_t np = points_before(ends, block_ends(f, ends, 4096), S, f->size, points);
	uint64_t before, bound, seed = 77;
	pthread_t th[2];

	(void)state;
	read_check(r, f, 0, f->size); /* resume points everywhere (and the handle) */
	lfs_reader_drop_blocks(r);
	lfs_reader_get_stats(r, &st);
	before = st.bytes_inflated;
	/* What the readers may cost: the sequential one its quarter and one
	 * window beyond; each of the jumper's pairs a read from the resume
	 * point before it and one window of read-ahead (as jumper_thread
	 * draws them); a window is what the configuration says.  A
	 * read-ahead dragged from the first quarter to the far half would add
	 * megabytes. */
	bound = 256u * B + cfg.readahead;
	for (int i = 0; i < 30; i++) {
		uint64_t jb = 600 + rnd(&seed) % 400;

		bound += cost_of_read(points, np, B, f->size, jb * B + 5000, B) + cfg.readahead;
	}
	/* the sequential reader covers the first quarter only */
	f->size = 256u * B;
	a = (struct seq_arg){ r, f, B, 0, 0 };
	pthread_create(&th[0], NULL, seq_thread, &a);
	pthread_create(&th[1], NULL, jumper_thread, &j);
	pthread_join(th[0], NULL);
	pthread_join(th[1], NULL);
	lfs_reader_wait_idle(r);
	f->size = 1024u * B;
	assert_int_equal(a.bad, 0);
	assert_int_equal(j.bad, 0);
	lfs_reader_get_stats(r, &st);
	if (st.bytes_inflated - before > bound)
		fail_msg("inflated %llu bytes, more than %llu", (unsigned long long)(st.bytes_inflated - before),
			 (unsigned long long)bound);
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
	for (int i = 0; i < 40 && !(flags_of(f) & LFS_MEMBER_UNCHECKED); i++)
		read_check(r, f, rnd(&s) % (f->size - 4096), 4096);
	assert_true(flags_of(f) & LFS_MEMBER_UNCHECKED);
	read_check(r, f, 0, f->size);
	assert_false(flags_of(f) & (LFS_MEMBER_VERIFIED | LFS_MEMBER_FAILED));
	member_free(f);

	f = member_new(100u * B, 0, 82);
	for (uint64_t off = 0; off < f->size; off += 3 * B)
		read_check(r, f, off, 3 * B);
	assert_true(flags_of(f) & LFS_MEMBER_VERIFIED);
	member_free(f);
	lfs_reader_free(r);
}

/* A block larger than a cache shard's share of the budget stayed only
 * while it was referenced: with block_size=16M, a 256 MiB budget in 16
 * shards gave each 16 MiB, and reading a 32 MiB member twice inflated
 * 1 GiB.  Shards are sized from the largest entry too. */
static void test_large_blocks_stay(void **state)
{
	const uint32_t B = 16u << 20;
	struct lfs_reader *r = reader(B, B, 256u << 20);
	struct member_file *f = member_new(32u << 20, 1, 17);
	struct lfs_reader_stats st;

	(void)state;
	for (int pass = 0; pass < 2; pass++)
		for (uint64_t off = 0; off < f->size; off += 1u << 20)
			read_check(r, f, off, 1u << 20);
	lfs_reader_get_stats(r, &st);
	assert_int_equal(st.bytes_inflated, f->size);
	member_free(f);
	lfs_reader_free(r);
}

/* A source that fails when told to: the member's bytes in memory. */
struct flaky {
	struct lfs_source src;
	struct lfs_source *inner;
	int fail_next;		/* reads to fail with EIO */
	int changed;		/* check() and read() answer -ESTALE */
};

static int flaky_read(struct lfs_source *src, void *buf, size_t len, uint64_t off)
{
	struct flaky *f = (struct flaky *)src;

	if (f->changed)
		return -ESTALE;
	if (f->fail_next > 0) {
		f->fail_next--;
		return -EIO;
	}
	return lfs_source_read(f->inner, buf, len, off);
}

static int flaky_check(struct lfs_source *src)
{
	return ((struct flaky *)src)->changed ? -ESTALE : 0;
}

static void flaky_close(struct lfs_source *src)
{
	lfs_source_close(((struct flaky *)src)->inner);
	free(src);
}

static const struct lfs_source_ops flaky_ops = { flaky_read, NULL, flaky_check, flaky_close };

/* Replaces f's file source by a flaky one over the same bytes, in memory
 * (which a test may change behind the reader's back). */
static struct flaky *make_flaky(struct member_file *f, unsigned char **bytes)
{
	struct flaky *fl = calloc(1, sizeof(*fl));
	size_t len = f->src->size;

	*bytes = malloc(len);
	assert_int_equal(lfs_source_read(f->src, *bytes, len, 0), 0);
	lfs_source_close(f->src);
	fl->inner = lfs_source_mem_new(*bytes, len, 0);
	fl->src.ops = &flaky_ops;
	fl->src.size = len;
	f->src = &fl->src;
	return fl;
}

struct faults {
	int data, source, changed;
};

static void count_fault(void *ctx, void *owner, enum lfs_fault kind, const char *why)
{
	struct faults *n = ctx;

	(void)owner;
	(void)why;
	if (kind == LFS_FAULT_DATA)
		n->data++;
	else if (kind == LFS_FAULT_SOURCE)
		n->source++;
	else
		n->changed++;
}

static struct lfs_reader *reader_counting(uint32_t B, struct faults *n)
{
	struct lfs_reader_config cfg = { .cache_size = 64u << 20, .block_size = B,
					 .spacing = 4 * B, .readahead = 0,
					 .fault = count_fault, .fault_ctx = n };
	char err[128];

	assert_int_equal(lfs_reader_config_check(&cfg, err, sizeof(err)), 0);
	return lfs_reader_new(&cfg);
}

/* A failed read of the source fails that read only: the member is not
 * marked failed and the next read gets the bytes (today's EIO on a network
 * file system, a dropped connection tomorrow).  Small, streamed and stored
 * members alike, and a failure in the middle of a stream. */
static void test_source_errors_are_transient(void **state)
{
	const uint32_t B = 16384;
	const size_t sizes[] = { 5000, 40u * B + 7 };

	(void)state;
	for (int stored = 0; stored < 2; stored++) {
		for (size_t i = 0; i < 2; i++) {
			struct faults n = { 0 };
			struct lfs_reader *r = reader_counting(B, &n);
			struct member_file *f = member_new(sizes[i], !stored, 30 + (uint32_t)i);
			unsigned char *bytes, *buf = malloc(f->size);
			struct flaky *fl = make_flaky(f, &bytes);

			fl->fail_next = 1;
			assert_int_equal(lfs_reader_read(r, M(r, f), buf, f->size, 0), -EIO);
			assert_false(flags_of(f) & LFS_MEMBER_FAILED);
			read_check(r, f, 0, f->size);
			if (f->size > B) {
				/* in the middle of a stream: a stream parked early on,
				 * then a read far beyond what it has buffered */
				lfs_reader_drop_blocks(r);
				read_check(r, f, 0, 3 * B);
				fl->fail_next = 1;
				assert_int_equal(lfs_reader_read(r, M(r, f), buf, 4 * B, f->size - 4 * B),
						 -EIO);
				read_check(r, f, f->size - 4 * B, 4 * B);
				read_check(r, f, 3 * B, 4 * B);
			}
			assert_false(flags_of(f) & LFS_MEMBER_FAILED);
			assert_int_equal(n.data, 0);
			/* each failed read of the source reported once */
			assert_int_equal(n.source, f->size > B ? 2 : 1);
			member_free(f);
			free(bytes);
			free(buf);
			lfs_reader_free(r);
		}
	}
}

/* A layer changed in place after its member was read and checked: EIO,
 * reported, whether the source notices (a file's size, mtime, ctime) or
 * not (then the blocks made again differ from those made first). */
static void test_layer_changed_in_place(void **state)
{
	const uint32_t B = 16384;
	(void)state;
	for (int noticed = 0; noticed < 2; noticed++) {
		struct faults n = { 0 };
		struct lfs_reader *r = reader_counting(B, &n);
		/* level 0: stored deflate blocks, so a changed byte still
		 * inflates, to other bytes */
		struct member_file *f = member_new(0, 1, 0);
		unsigned char *bytes, *plain = test_bytes(20u * B, 44), *comp, *file;
		size_t clen;
		char err[256];
		struct flaky *fl;

		comp = raw_deflate(plain, 20u * B, 0, &clen);
		file = calloc(1, PREFIX + clen);
		memcpy(file + PREFIX, comp, clen);
		write_file(f->path, file, PREFIX + clen);
		lfs_source_close(f->src);
		assert_int_equal(lfs_source_file_open(f->path, &f->src, err, sizeof(err)), 0);
		free(f->data);
		f->data = plain;
		f->size = 20u * B;
		f->d.comp_size = clen;
		f->d.size = f->size;
		f->d.crc = (uint32_t)crc32(0, plain, (uInt)f->size);
		fl = make_flaky(f, &bytes);
		read_check(r, f, 0, f->size);
		assert_true(flags_of(f) & LFS_MEMBER_VERIFIED);
		lfs_reader_drop_blocks(r);
		bytes[PREFIX + clen / 2] ^= 0x55;
		if (noticed)
			fl->changed = 1;
		{
			unsigned char *buf = malloc(f->size);
			ssize_t got = 0;

			for (uint64_t off = 0; off < f->size && got >= 0; off += B)
				got = lfs_reader_read(r, M(r, f), buf, B, off);
			assert_int_equal(got, -EIO);
			free(buf);
		}
		if (noticed)
			assert_int_equal(n.changed, 1);
		else
			assert_int_equal(n.data, 1);
		member_free(f);
		free(bytes);
		free(comp);
		free(file);
		lfs_reader_free(r);
	}
}

static void test_config(void **state)
{
	struct lfs_reader_config cfg = { 0 };
	char err[128];

	(void)state;
	assert_int_equal(lfs_reader_config_check(&cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.block_size, 256 << 10);
	cfg = (struct lfs_reader_config){ .cache_size = 1 << 20, .block_size = 3000 };
	assert_int_equal(lfs_reader_config_check(&cfg, err, sizeof(err)), -EINVAL);
	cfg = (struct lfs_reader_config){ .cache_size = 1 << 20, .block_size = 4096, .spacing = 6000 };
	assert_int_equal(lfs_reader_config_check(&cfg, err, sizeof(err)), -EINVAL);
	cfg = (struct lfs_reader_config){ .cache_size = 4096, .block_size = 4096, .spacing = 4096 };
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
		cmocka_unit_test(test_large_blocks_stay),
		cmocka_unit_test(test_source_errors_are_transient),
		cmocka_unit_test(test_layer_changed_in_place),
		cmocka_unit_test(test_prefetch_jumps),
		cmocka_unit_test(test_disk_later),
		cmocka_unit_test(test_disk_min),
	};

	return cmocka_run_group_tests_name("reader", tests, setup, teardown);
}
