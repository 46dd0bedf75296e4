/* The zip index against libzip's reading of archives libzip wrote, plus
 * the refusals for archives that are not (or no longer) zips. */
#include "helpers.h"

#include <errno.h>
#include <sys/stat.h>
#include <zip.h>

#include "../../fs/zipindex.h"

struct fixture {
	char *dir;
	char *zip;
};

static const char *const contents[] = { "", "hello\n", "0123456789abcdef0123456789abcdef" };

static void add_file(zip_t *za, const char *name, const void *data, size_t len,
		     int32_t method, uint8_t opsys, uint32_t attr)
{
	zip_source_t *src = zip_source_buffer(za, data, len, 0);
	zip_int64_t i;

	assert_non_null(src);
	i = zip_file_add(za, name, src, ZIP_FL_ENC_UTF_8);
	assert_true(i >= 0);
	assert_int_equal(zip_set_file_compression(za, (zip_uint64_t)i, method, 0), 0);
	assert_int_equal(zip_file_set_external_attributes(za, (zip_uint64_t)i, 0, opsys, attr), 0);
	assert_int_equal(zip_file_set_mtime(za, (zip_uint64_t)i, 1700000000, 0), 0);
}

static unsigned char *big;

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	zip_t *za;
	int err;
	zip_int64_t d;

	f->dir = tmpdir_new();
	f->zip = path_in(f->dir, "layer.zip");
	big = test_bytes(300000, 7);
	za = zip_open(f->zip, ZIP_CREATE | ZIP_TRUNCATE, &err);
	assert_non_null(za);
	d = zip_dir_add(za, "d", ZIP_FL_ENC_UTF_8);
	assert_true(d >= 0);
	zip_file_set_external_attributes(za, (zip_uint64_t)d, 0, ZIP_OPSYS_UNIX,
					 (uint32_t)(040750) << 16);
	add_file(za, "d/a.txt", contents[1], 6, ZIP_CM_DEFLATE, ZIP_OPSYS_UNIX, 0100640u << 16);
	add_file(za, "s.bin", contents[2], 32, ZIP_CM_STORE, ZIP_OPSYS_UNIX, 0100755u << 16);
	add_file(za, "link", "d/a.txt", 7, ZIP_CM_STORE, ZIP_OPSYS_UNIX, 0120777u << 16);
	add_file(za, "suid", contents[1], 6, ZIP_CM_DEFLATE, ZIP_OPSYS_UNIX, 0104755u << 16);
	add_file(za, "dos-ro.txt", contents[1], 6, ZIP_CM_DEFLATE, ZIP_OPSYS_DOS, 0x01);
	add_file(za, "dos.txt", contents[1], 6, ZIP_CM_DEFLATE, ZIP_OPSYS_DOS, 0x20);
	add_file(za, "empty", contents[0], 0, ZIP_CM_DEFLATE, ZIP_OPSYS_UNIX, 0100644u << 16);
	add_file(za, "big.bin", big, 300000, ZIP_CM_DEFLATE, ZIP_OPSYS_UNIX, 0100644u << 16);
	add_file(za, "fifo", contents[1], 6, ZIP_CM_STORE, ZIP_OPSYS_UNIX, 0010644u << 16);
	assert_int_equal(zip_close(za), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	tmpdir_free(f->dir);
	free(f->zip);
	free(f);
	free(big);
	return 0;
}

static const struct lfs_zip_entry *find(const struct lfs_zip_index *zi, const char *name)
{
	for (uint64_t i = 0; i < zi->count; i++)
		if (zi->entries[i].name_len == strlen(name) &&
		    !memcmp(lfs_zip_name(zi, &zi->entries[i]), name, strlen(name)))
			return &zi->entries[i];
	fail_msg("no entry %s", name);
	return NULL;
}

/* Every entry's metadata and raw data in `path` equal libzip's view of
 * `ref` (the same archive; libzip 1.7 refuses junk-prefixed ones). */
static void check_against_libzip(const char *path, const char *ref, uint64_t junk)
{
	struct lfs_zip_index *zi;
	char err[256];
	zip_t *za;
	int zerr;

	assert_int_equal(lfs_zip_open(path, NULL, &zi, err, sizeof(err)), 0);
	assert_int_equal(zi->junk_prefix, junk);
	za = zip_open(ref, ZIP_RDONLY, &zerr);
	assert_non_null(za);
	assert_int_equal(zi->count, (uint64_t)zip_get_num_entries(za, 0));
	for (uint64_t i = 0; i < zi->count; i++) {
		const struct lfs_zip_entry *e = &zi->entries[i];
		zip_stat_t st;
		uint64_t off;
		unsigned char *mine, *theirs;
		zip_file_t *zf;

		assert_int_equal(zip_stat_index(za, i, 0, &st), 0);
		assert_int_equal(e->name_len, strlen(st.name));
		assert_memory_equal(lfs_zip_name(zi, e), st.name, e->name_len);
		assert_int_equal(e->size, st.size);
		assert_int_equal(e->comp_size, st.comp_size);
		assert_int_equal(e->crc, st.crc);
		assert_int_equal(e->method, st.comp_method);
		if (e->kind == LFS_ZIP_DIR)
			continue;
		assert_int_equal(lfs_zip_data_offset(zi, i, &off), 0);
		mine = malloc(e->comp_size + 1);
		theirs = malloc(e->comp_size + 1);
		assert_int_equal(lfs_source_read(zi->src, mine, e->comp_size, off), 0);
		zf = zip_fopen_index(za, i, ZIP_FL_COMPRESSED);
		assert_non_null(zf);
		assert_int_equal(zip_fread(zf, theirs, e->comp_size), (zip_int64_t)e->comp_size);
		zip_fclose(zf);
		assert_memory_equal(mine, theirs, e->comp_size);
		free(mine);
		free(theirs);
	}
	zip_close(za);
	lfs_zip_close(zi);
}

static void test_matches_libzip(void **state)
{
	struct fixture *f = *state;

	check_against_libzip(f->zip, f->zip, 0);
}

static void test_types_and_modes(void **state)
{
	struct fixture *f = *state;
	struct lfs_zip_index *zi;
	char err[256];

	assert_int_equal(lfs_zip_open(f->zip, NULL, &zi, err, sizeof(err)), 0);
	assert_int_equal(find(zi, "d/")->kind, LFS_ZIP_DIR);
	assert_int_equal(find(zi, "d/")->mode, 0750);
	assert_int_equal(find(zi, "d/a.txt")->kind, LFS_ZIP_FILE);
	assert_int_equal(find(zi, "d/a.txt")->mode, 0640);
	assert_int_equal(find(zi, "d/a.txt")->mtime, 1700000000);
	assert_int_equal(find(zi, "s.bin")->mode, 0755);
	assert_int_equal(find(zi, "link")->kind, LFS_ZIP_SYMLINK);
	assert_int_equal(find(zi, "suid")->mode, 0755); /* setuid dropped */
	assert_int_equal(find(zi, "dos-ro.txt")->mode, 0444);
	assert_int_equal(find(zi, "dos.txt")->mode, 0644);
	assert_int_equal(find(zi, "fifo")->kind, LFS_ZIP_FILE); /* never a fifo */
	assert_int_equal(find(zi, "fifo")->mode, 0644);
	assert_int_equal(find(zi, "big.bin")->bad, LFS_ZIP_OK);
	lfs_zip_close(zi);
}

static unsigned char *slurp(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	unsigned char *buf;

	assert_non_null(fp);
	fseek(fp, 0, SEEK_END);
	*len = (size_t)ftell(fp);
	rewind(fp);
	buf = malloc(*len);
	assert_int_equal(fread(buf, 1, *len, fp), *len);
	fclose(fp);
	return buf;
}

static void test_junk_prefix(void **state)
{
	struct fixture *f = *state;
	size_t len;
	unsigned char *zip = slurp(f->zip, &len), *sfx = malloc(len + 1000);
	char *p = path_in(f->dir, "sfx.zip");

	memset(sfx, 'J', 1000);
	memcpy(sfx + 1000, zip, len);
	write_file(p, sfx, len + 1000);
	check_against_libzip(p, f->zip, 1000);
	free(p);
	free(zip);
	free(sfx);
}

static void expect_refused(const char *dir, const char *name, const void *data, size_t len,
			   const char *needle)
{
	char *p = path_in(dir, name), err[512] = "";
	struct lfs_zip_index *zi = NULL;

	write_file(p, data, len);
	assert_true(lfs_zip_open(p, NULL, &zi, err, sizeof(err)) < 0);
	assert_null(zi);
	if (!strstr(err, p) || !strstr(err, needle))
		fail_msg("error '%s' should name %s and say '%s'", err, p, needle);
	free(p);
}

static void put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

/* A zip written byte by byte, every field at hand: for the archives that
 * no writer makes on purpose. */
struct zb {
	unsigned char *p;
	size_t len, cap;
};

static void zb_put(struct zb *b, const void *d, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 256;
		b->p = realloc(b->p, b->cap);
		assert_non_null(b->p);
	}
	memcpy(b->p + b->len, d, n);
	b->len += n;
}

static void zb_fill(struct zb *b, int c, size_t n)
{
	unsigned char *tmp = malloc(n ? n : 1);

	memset(tmp, c, n);
	zb_put(b, tmp, n);
	free(tmp);
}

static void zb_u16(struct zb *b, uint16_t v)
{
	unsigned char x[2] = { (unsigned char)v, (unsigned char)(v >> 8) };

	zb_put(b, x, 2);
}

static void zb_u32(struct zb *b, uint32_t v)
{
	zb_u16(b, (uint16_t)v);
	zb_u16(b, (uint16_t)(v >> 16));
}

static void zb_u64(struct zb *b, uint64_t v)
{
	zb_u32(b, (uint32_t)v);
	zb_u32(b, (uint32_t)(v >> 32));
}

/* A stored member's local record; the header says `xlen` bytes of extra
 * field, none are written.  Returns its offset. */
static size_t zb_local(struct zb *b, const char *name, const void *data, uint32_t len,
		       uint16_t xlen)
{
	size_t at = b->len;

	zb_u32(b, 0x04034b50);
	zb_u16(b, 20);
	zb_u16(b, 0);
	zb_u16(b, 0); /* stored */
	zb_u16(b, 0);
	zb_u16(b, 0x21);
	zb_u32(b, (uint32_t)crc32(0, data, len));
	zb_u32(b, len);
	zb_u32(b, len);
	zb_u16(b, (uint16_t)strlen(name));
	zb_u16(b, xlen);
	zb_put(b, name, strlen(name));
	zb_put(b, data, len);
	return at;
}

/* A central record of a stored member (sizes `len`) at `lho`; `lho64`
 * saturates the offset and puts it in a ZIP64 extra field. */
static void zb_central(struct zb *b, const char *name, uint32_t crc, uint32_t len,
		       uint32_t lho, int lho64, uint64_t lho_value)
{
	zb_u32(b, 0x02014b50);
	zb_u16(b, 3 << 8 | 45);
	zb_u16(b, 45);
	zb_u16(b, 0);
	zb_u16(b, 0);
	zb_u16(b, 0);
	zb_u16(b, 0x21);
	zb_u32(b, crc);
	zb_u32(b, len);
	zb_u32(b, len);
	zb_u16(b, (uint16_t)strlen(name));
	zb_u16(b, lho64 ? 12 : 0);
	zb_u16(b, 0);
	zb_u16(b, 0);
	zb_u16(b, 0);
	zb_u32(b, 0100644u << 16);
	zb_u32(b, lho64 ? 0xffffffffu : lho);
	zb_put(b, name, strlen(name));
	if (lho64) {
		zb_u16(b, 1);
		zb_u16(b, 8);
		zb_u64(b, lho_value);
	}
}

static void zb_eocd(struct zb *b, uint16_t count, uint32_t cd_size, uint32_t cd_off,
		    uint16_t comment_len)
{
	zb_u32(b, 0x06054b50);
	zb_u16(b, 0);
	zb_u16(b, 0);
	zb_u16(b, count);
	zb_u16(b, count);
	zb_u32(b, cd_size);
	zb_u32(b, cd_off);
	zb_u16(b, comment_len);
}

static int open_zb(const struct zb *b, const struct lfs_zip_limits *lim,
		   struct lfs_zip_index **zi, char *err, size_t errlen)
{
	struct lfs_source *src = lfs_source_mem_new(b->p, b->len, 1);
	int rc;

	assert_non_null(src);
	rc = lfs_zip_open_source(src, "mem.zip", lim, zi, err, errlen);
	if (rc)
		lfs_source_close(src);
	return rc;
}

/* A ZIP64 local header offset of 2^64 - 10 behind 64 bytes of junk: shifted
 * by the junk in wrapping arithmetic it lands on offset 54, where a forged
 * local header waits in the junk.  The offset is past the central
 * directory: the entry must fail. */
static void test_lho_wraps(void **state)
{
	struct zb b = { 0 };
	struct lfs_zip_index *zi;
	char err[256];
	uint64_t off, cd_off;
	size_t fine;

	(void)state;
	zb_fill(&b, 'J', 54);
	zb_local(&b, "evil.txt", "served from the junk", 20, 0);
	zb_fill(&b, 'J', 100 - b.len % 100); /* more junk: the archive starts at 64 */
	fine = zb_local(&b, "fine.txt", "fine", 4, 0);
	cd_off = b.len;
	zb_central(&b, "fine.txt", (uint32_t)crc32(0, (const Bytef *)"fine", 4), 4,
		   (uint32_t)(fine - 64), 0, 0);
	zb_central(&b, "evil.txt", (uint32_t)crc32(0, (const Bytef *)"served from the junk", 20),
		   20, 0, 1, UINT64_MAX - 9);
	zb_eocd(&b, 2, (uint32_t)(b.len - cd_off), (uint32_t)(cd_off - 64), 0);
	assert_int_equal(open_zb(&b, NULL, &zi, err, sizeof(err)), 0);
	assert_int_equal(zi->junk_prefix, 64);
	assert_int_equal(zi->count, 2);
	assert_int_equal(lfs_zip_data_offset(zi, 0, &off), 0);
	assert_int_equal(off, fine + 30 + 8);
	assert_int_not_equal(zi->entries[1].bad, LFS_ZIP_OK);
	assert_int_equal(lfs_zip_data_offset(zi, 1, &off), -EIO);
	lfs_zip_close(zi);
	free(b.p);
}

/* A source of `size` bytes, zeros but for `tail` at its end, that keeps
 * the longest read asked of it. */
struct big_source {
	struct lfs_source src;
	const unsigned char *tail;
	size_t tail_len;
	size_t longest;
};

static int big_read(struct lfs_source *src, void *buf, size_t len, uint64_t off)
{
	struct big_source *s = (struct big_source *)src;
	uint64_t tail_off = s->src.size - s->tail_len;

	if (len > s->longest)
		s->longest = len;
	memset(buf, 0, len);
	for (size_t i = 0; i < len; i++)
		if (off + i >= tail_off)
			((unsigned char *)buf)[i] = s->tail[off + i - tail_off];
	return 0;
}

static void big_close(struct lfs_source *src) { (void)src; }

static const struct lfs_source_ops big_ops = { .read = big_read, .close = big_close };

/* An end record declaring one entry in a central directory of 2 GiB - 1
 * (the file is that large: sparse zeros).  One entry needs at most
 * 46 + 3 * 65535 bytes; the index must not allocate and read 2 GiB to find
 * that out. */
static void test_cd_size_bounded_by_count(void **state)
{
	struct zb tail = { 0 };
	struct big_source s = { 0 };
	struct lfs_zip_index *zi = NULL;
	char err[512] = "";
	const uint64_t cd_size = (1ull << 31) - 1;

	(void)state;
	s.src.ops = &big_ops;
	s.src.size = cd_size + 1000;
	zb_eocd(&tail, 1, (uint32_t)cd_size, 0, 0);
	s.tail = tail.p;
	s.tail_len = tail.len;
	assert_int_equal(lfs_zip_open_source(&s.src, "big.zip", NULL, &zi, err, sizeof(err)),
			 -EINVAL);
	assert_null(zi);
	if (!strstr(err, "big.zip") || !strstr(err, "corrupt"))
		fail_msg("error '%s' should name big.zip and say corrupt", err);
	if (s.longest > (2u << 20))
		fail_msg("read %zu bytes at once for a directory of 1 entry", s.longest);

	/* The same in a ZIP64 end record, whose count is never wrapped: refused
	 * before the directory is read at all. */
	free(tail.p);
	memset(&tail, 0, sizeof(tail));
	s.longest = 0;
	zb_u32(&tail, 0x06064b50);
	zb_u64(&tail, 44);
	zb_u16(&tail, 45);
	zb_u16(&tail, 45);
	zb_u32(&tail, 0);
	zb_u32(&tail, 0);
	zb_u64(&tail, 1);
	zb_u64(&tail, 1);
	zb_u64(&tail, cd_size);
	zb_u64(&tail, 0);
	zb_u32(&tail, 0x07064b50);
	zb_u32(&tail, 0);
	zb_u64(&tail, s.src.size - 22 - 20 - 56);
	zb_u32(&tail, 1);
	zb_eocd(&tail, 0xffff, 0xffffffffu, 0xffffffffu, 0);
	s.tail = tail.p;
	s.tail_len = tail.len;
	assert_int_equal(lfs_zip_open_source(&s.src, "big64.zip", NULL, &zi, err, sizeof(err)),
			 -EINVAL);
	if (!strstr(err, "big64.zip") || !strstr(err, "corrupt"))
		fail_msg("error '%s' should name big64.zip and say corrupt", err);
	if (s.longest > 0xffff + 22)
		fail_msg("read %zu bytes at once for a directory of 1 entry", s.longest);
	free(tail.p);
}

/* A local header whose extra length (20 bytes, none written) moves the
 * member's data past its 10 bytes, into the central directory: the data
 * still fits in the file, but it is the directory's bytes.  Data must end
 * before the directory starts. */
static void test_data_inside_cd(void **state)
{
	struct zb b = { 0 };
	struct lfs_zip_index *zi;
	char err[256];
	uint64_t off;
	size_t fine, bad, cd_off;

	(void)state;
	fine = zb_local(&b, "fine.txt", "fine", 4, 0);
	bad = zb_local(&b, "a.txt", "0123456789", 10, 20);
	cd_off = b.len;
	zb_central(&b, "fine.txt", (uint32_t)crc32(0, (const Bytef *)"fine", 4), 4,
		   (uint32_t)fine, 0, 0);
	zb_central(&b, "a.txt", (uint32_t)crc32(0, (const Bytef *)"0123456789", 10), 10,
		   (uint32_t)bad, 0, 0);
	zb_eocd(&b, 2, (uint32_t)(b.len - cd_off), (uint32_t)cd_off, 0);
	assert_true(bad + 30 + 5 + 20 + 10 <= b.len); /* inside the file */
	assert_int_equal(open_zb(&b, NULL, &zi, err, sizeof(err)), 0);
	assert_int_equal(zi->entries[1].bad, LFS_ZIP_OK); /* the central record is fine */
	assert_int_equal(lfs_zip_data_offset(zi, 0, &off), 0);
	assert_int_equal(lfs_zip_data_offset(zi, 1, &off), -EIO);
	assert_int_equal(lfs_zip_data_offset(zi, 1, &off), -EIO);
	lfs_zip_close(zi);
	free(b.p);
}

/* One record, then 300 KB that are no record, in a directory declared to
 * hold one entry: the record is used and the rest ignored (as when the
 * directory is small enough to read at once), without holding the rest. */
static void test_cd_trailing_bytes(void **state)
{
	struct zb b = { 0 };
	struct lfs_zip_index *zi;
	char err[256];
	size_t lho, cd_off;

	(void)state;
	lho = zb_local(&b, "a.txt", "aaaa", 4, 0);
	cd_off = b.len;
	zb_central(&b, "a.txt", (uint32_t)crc32(0, (const Bytef *)"aaaa", 4), 4, (uint32_t)lho,
		   0, 0);
	zb_fill(&b, 'x', 300000);
	zb_eocd(&b, 1, (uint32_t)(b.len - cd_off), (uint32_t)cd_off, 0);
	assert_int_equal(open_zb(&b, NULL, &zi, err, sizeof(err)), 0);
	assert_int_equal(zi->count, 1);
	assert_int_equal(zi->cd_size, 5); /* only the name is kept */
	lfs_zip_close(zi);
	free(b.p);
}

/* A second directory and end record inside the real end record's comment,
 * the forged record's comment length running past the end of the file:
 * unzip, zipfile and bsdtar take the last end record in the file (the
 * hostile corpus checks the three tools themselves), so the index must. */
static void test_eocd_forged_in_comment(void **state)
{
	struct zb b = { 0 }, cd_b = { 0 };
	struct lfs_zip_index *zi;
	char err[256];
	size_t la, lb, cd_a_off, cd_a_size, b_off;
	uint32_t ca = (uint32_t)crc32(0, (const Bytef *)"aa", 2);
	uint32_t cb = (uint32_t)crc32(0, (const Bytef *)"bb", 2);

	(void)state;
	la = zb_local(&b, "a.txt", "aa", 2, 0);
	lb = zb_local(&b, "b.txt", "bb", 2, 0);
	cd_a_off = b.len;
	zb_central(&b, "a.txt", ca, 2, (uint32_t)la, 0, 0);
	cd_a_size = b.len - cd_a_off;
	b_off = b.len + 22;
	zb_central(&cd_b, "b.txt", cb, 2, (uint32_t)lb, 0, 0);
	zb_eocd(&cd_b, 1, (uint32_t)cd_b.len, (uint32_t)b_off, 0x1000);
	zb_eocd(&b, 1, (uint32_t)cd_a_size, (uint32_t)cd_a_off, (uint16_t)cd_b.len);
	zb_put(&b, cd_b.p, cd_b.len);
	assert_int_equal(open_zb(&b, NULL, &zi, err, sizeof(err)), 0);
	assert_int_equal(zi->count, 1);
	assert_int_equal(zi->entries[0].name_len, 5);
	assert_memory_equal(lfs_zip_name(zi, &zi->entries[0]), "b.txt", 5);
	lfs_zip_close(zi);
	free(b.p);
	free(cd_b.p);
}

/* A ZIP64 archive of one entry; the fields that may mark more than one
 * disk are the arguments.  `saturated`: the classic end record holds the
 * all-ones placeholders everywhere. */
static void zb_zip64(struct zb *b, uint32_t disk, uint32_t cd_disk, uint64_t n_disk,
		     uint32_t loc_disk, uint32_t loc_total, int saturated)
{
	size_t lho, cd_off, rec_off;

	lho = zb_local(b, "a.txt", "aa", 2, 0);
	cd_off = b->len;
	zb_central(b, "a.txt", (uint32_t)crc32(0, (const Bytef *)"aa", 2), 2, (uint32_t)lho, 0,
		   0);
	rec_off = b->len;
	zb_u32(b, 0x06064b50);
	zb_u64(b, 44);
	zb_u16(b, 45);
	zb_u16(b, 45);
	zb_u32(b, disk);
	zb_u32(b, cd_disk);
	zb_u64(b, n_disk);
	zb_u64(b, 1);
	zb_u64(b, rec_off - cd_off);
	zb_u64(b, cd_off);
	zb_u32(b, 0x07064b50);
	zb_u32(b, loc_disk);
	zb_u64(b, rec_off);
	zb_u32(b, loc_total);
	if (saturated) {
		zb_u32(b, 0x06054b50);
		zb_u16(b, 0xffff);
		zb_u16(b, 0xffff);
		zb_u16(b, 0xffff);
		zb_u16(b, 0xffff);
		zb_u32(b, 0xffffffffu);
		zb_u32(b, 0xffffffffu);
		zb_u16(b, 0);
	} else {
		zb_eocd(b, 1, (uint32_t)(rec_off - cd_off), (uint32_t)cd_off, 0);
	}
}

/* Multi-disk markers carried only by the ZIP64 end record or its locator
 * refuse the zip, as the classic record's do; the placeholders of a
 * classic record that defers to ZIP64 records do not. */
static void test_zip64_multidisk(void **state)
{
	static const struct {
		uint32_t disk, cd_disk, n_disk, loc_disk, loc_total;
		int saturated, ok;
	} cases[] = {
		{ 0, 0, 1, 0, 1, 0, 1 },
		{ 0, 0, 1, 0, 0, 0, 1 },	/* "total disks" 0: some writers */
		{ 0, 0, 1, 0, 1, 1, 1 },	/* classic fields all-ones */
		{ 1, 0, 1, 0, 1, 0, 0 },	/* this is disk 1 */
		{ 0, 2, 1, 0, 1, 0, 0 },	/* the directory starts on disk 2 */
		{ 0, 0, 0, 0, 1, 0, 0 },	/* 0 entries on this disk, 1 in all */
		{ 0, 0, 1, 1, 1, 0, 0 },	/* the ZIP64 record is on disk 1 */
		{ 0, 0, 1, 0, 2, 0, 0 },	/* 2 disks */
		{ 1, 0, 1, 0, 1, 1, 0 },	/* disk 1 behind the placeholders */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct zb b = { 0 };
		struct lfs_zip_index *zi = NULL;
		char err[256] = "";
		int rc;

		zb_zip64(&b, cases[i].disk, cases[i].cd_disk, cases[i].n_disk, cases[i].loc_disk,
			 cases[i].loc_total, cases[i].saturated);
		rc = open_zb(&b, NULL, &zi, err, sizeof(err));
		if (cases[i].ok) {
			if (rc)
				fail_msg("case %zu refused: %s", i, err);
			assert_int_equal(zi->count, 1);
			lfs_zip_close(zi);
		} else if (rc != -EINVAL || !strstr(err, "mem.zip") || !strstr(err, "multi-disk")) {
			fail_msg("case %zu: rc %d, '%s' (expected a multi-disk refusal)", i, rc, err);
		}
		free(b.p);
	}
}

/* Central records sharing local headers, declaring them in several ways:
 * each different (method, comp_size, size, crc) of one offset gets the
 * next variant, identical ones share theirs (and so cached blocks). */
static void test_variants(void **state)
{
	static const struct {
		const char *name;
		uint32_t len, crc;
		int own, bad;	/* own: at the second local header */
		uint8_t variant;
	} decl[] = {
		{ "a", 100, 1, 0, 0, 0 },
		{ "b", 100, 1, 0, 0, 0 },	/* identical: shares 0 */
		{ "c", 50, 1, 0, 0, 1 },	/* sizes differ */
		{ "d", 100, 2, 0, 0, 2 },	/* CRC differs */
		{ "e", 50, 1, 0, 0, 1 },	/* identical to c */
		{ "f", 100, 9, 0, 1, 0 },	/* encrypted: bad, not counted */
		{ "g", 100, 3, 0, 0, 3 },
		{ "h", 100, 1, 1, 0, 0 },	/* another offset: its own numbering */
		{ "i", 60, 1, 1, 0, 1 },
		{ "j", 100, 2, 0, 0, 2 },	/* identical to d */
	};
	const size_t n = sizeof(decl) / sizeof(decl[0]);
	struct zb b = { 0 };
	struct lfs_zip_index *zi;
	unsigned char data[100];
	char err[256];
	size_t l0, l1, cd_off;

	(void)state;
	memset(data, 'v', sizeof(data));
	l0 = zb_local(&b, "a", data, 100, 0);
	l1 = zb_local(&b, "h", data, 100, 0);
	cd_off = b.len;
	for (size_t i = 0; i < n; i++) {
		size_t at = b.len;

		zb_central(&b, decl[i].name, decl[i].crc, decl[i].len,
			   (uint32_t)(decl[i].own ? l1 : l0), 0, 0);
		if (decl[i].bad)
			b.p[at + 8] |= 1; /* encrypted */
	}
	zb_eocd(&b, (uint16_t)n, (uint32_t)(b.len - cd_off), (uint32_t)cd_off, 0);
	assert_int_equal(open_zb(&b, NULL, &zi, err, sizeof(err)), 0);
	assert_int_equal(zi->count, n);
	for (size_t i = 0; i < n; i++) {
		if (zi->entries[i].variant != decl[i].variant)
			fail_msg("entry %s: variant %u, expected %u", decl[i].name,
				 zi->entries[i].variant, decl[i].variant);
		assert_int_equal(zi->entries[i].bad != LFS_ZIP_OK, decl[i].bad);
	}
	lfs_zip_close(zi);
	free(b.p);
}

/* 258 different declarations of one local header: the first 256 get
 * variants 0..255, the two more are bad (reads fail); a later record
 * identical to one of the 256 still shares its variant. */
static void test_variants_overflow(void **state)
{
	struct zb b = { 0 };
	struct lfs_zip_index *zi;
	unsigned char data[16];
	char err[256], name[16];
	size_t l0, cd_off;

	(void)state;
	memset(data, 'w', sizeof(data));
	l0 = zb_local(&b, "x0", data, 16, 0);
	cd_off = b.len;
	for (uint32_t i = 0; i < 258; i++) {
		snprintf(name, sizeof(name), "x%u", i);
		zb_central(&b, name, 1000 + i, 16, (uint32_t)l0, 0, 0);
	}
	zb_central(&b, "again", 1000 + 7, 16, (uint32_t)l0, 0, 0);
	zb_eocd(&b, 259, (uint32_t)(b.len - cd_off), (uint32_t)cd_off, 0);
	assert_int_equal(open_zb(&b, NULL, &zi, err, sizeof(err)), 0);
	assert_int_equal(zi->count, 259);
	for (uint32_t i = 0; i < 256; i++) {
		assert_int_equal(zi->entries[i].bad, LFS_ZIP_OK);
		assert_int_equal(zi->entries[i].variant, i);
	}
	for (uint32_t i = 256; i < 258; i++) {
		uint64_t off;

		assert_int_equal(zi->entries[i].bad, LFS_ZIP_TOO_MANY_VARIANTS);
		assert_int_equal(lfs_zip_data_offset(zi, i, &off), -EIO);
	}
	assert_int_equal(zi->entries[258].bad, LFS_ZIP_OK);
	assert_int_equal(zi->entries[258].variant, 7);
	lfs_zip_close(zi);
	free(b.p);
}

/* stderr into a temporary file while a test runs code that logs. */
struct captured {
	FILE *tmp;
	int saved;
};

static void capture_start(struct captured *c)
{
	fflush(stderr);
	c->tmp = tmpfile();
	assert_non_null(c->tmp);
	c->saved = dup(2);
	assert_true(c->saved >= 0);
	assert_int_equal(dup2(fileno(c->tmp), 2), 2);
}

/* Stops capturing; returns how many captured lines contain `needle`. */
static unsigned capture_count(struct captured *c, const char *needle, int stop)
{
	char line[4096];
	unsigned n = 0;

	fflush(stderr);
	if (stop) {
		assert_int_equal(dup2(c->saved, 2), 2);
		close(c->saved);
	}
	rewind(c->tmp);
	while (fgets(line, sizeof(line), c->tmp))
		n += strstr(line, needle) != NULL;
	if (stop)
		fclose(c->tmp);
	return n;
}

/* 20,000 entries in an unsupported method: the first 10 are logged, one
 * line sums up the rest, the index counts them all. */
static void test_warning_cap(void **state)
{
	struct zb b = { 0 };
	struct lfs_zip_index *zi;
	struct captured cap;
	char err[256], name[16];
	size_t l0, cd_off;
	const unsigned n = 20000;

	(void)state;
	l0 = zb_local(&b, "m/00000", "x", 1, 0);
	cd_off = b.len;
	for (unsigned i = 0; i < n; i++) {
		size_t at = b.len;

		snprintf(name, sizeof(name), "m/%05u", i);
		zb_central(&b, name, (uint32_t)crc32(0, (const Bytef *)"x", 1), 1, (uint32_t)l0, 0,
			   0);
		b.p[at + 10] = 12; /* bzip2 */
	}
	zb_eocd(&b, (uint16_t)n, (uint32_t)(b.len - cd_off), (uint32_t)cd_off, 0);
	capture_start(&cap);
	assert_int_equal(open_zb(&b, NULL, &zi, err, sizeof(err)), 0);
	assert_int_equal(capture_count(&cap, "entry '", 0), LFS_ZIP_MAX_LOGGED);
	assert_int_equal(capture_count(&cap, "mem.zip: 19990 more entries", 0), 1);
	assert_int_equal(capture_count(&cap, "mem.zip", 1), LFS_ZIP_MAX_LOGGED + 1);
	assert_int_equal(zi->bad_entries, n);
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(zi->entries[i].bad, LFS_ZIP_UNSUPPORTED_METHOD);
	lfs_zip_close(zi);
	free(b.p);
}

/* Writers without ZIP64 store the entry count modulo 65536: 65,536 and
 * 65,540 entries declared as 0 and 4.  The directory is larger than 0 or 4
 * entries can need, so its records are walked first; they fill it. */
static void test_wrapped_count(void **state)
{
	static const uint64_t counts[] = { 65536, 65540 };

	(void)state;
	for (size_t k = 0; k < 2; k++) {
		struct zb b = { 0 };
		struct lfs_zip_index *zi;
		size_t *lho = malloc(counts[k] * sizeof(*lho)), cd_off;
		char name[16], err[256];
		uint64_t off;

		for (uint64_t i = 0; i < counts[k]; i++) {
			snprintf(name, sizeof(name), "d/%05u", (unsigned)i);
			lho[i] = zb_local(&b, name, name, 7, 0);
		}
		cd_off = b.len;
		for (uint64_t i = 0; i < counts[k]; i++) {
			snprintf(name, sizeof(name), "d/%05u", (unsigned)i);
			zb_central(&b, name, (uint32_t)crc32(0, (const Bytef *)name, 7), 7,
				   (uint32_t)lho[i], 0, 0);
		}
		zb_eocd(&b, (uint16_t)counts[k], (uint32_t)(b.len - cd_off), (uint32_t)cd_off, 0);
		assert_int_equal(open_zb(&b, NULL, &zi, err, sizeof(err)), 0);
		assert_int_equal(zi->count, counts[k]);
		assert_int_equal(lfs_zip_data_offset(zi, counts[k] - 1, &off), 0);
		assert_int_equal(off, lho[counts[k] - 1] + 30 + 7);
		lfs_zip_close(zi);
		/* the directory declared to start a byte early: no record there
		 * (where the count is 0 that reads as an empty zip, as it did
		 * before the walk) */
		b.len -= 22;
		zb_eocd(&b, (uint16_t)counts[k], (uint32_t)(b.len - cd_off + 1),
			(uint32_t)cd_off - 1, 0);
		if (counts[k] & 0xffff) {
			assert_int_equal(open_zb(&b, NULL, &zi, err, sizeof(err)), -EINVAL);
			assert_non_null(strstr(err, "declares 4 entries"));
		}
		free(lho);
		free(b.p);
	}
}

static void test_refusals(void **state)
{
	struct fixture *f = *state;
	size_t len;
	unsigned char *zip = slurp(f->zip, &len), *bad = malloc(len);
	unsigned char *eocd = bad + len - 22;
	char err[256];
	struct lfs_zip_index *zi = NULL;
	struct lfs_zip_limits lim = { 3, 0 };

	expect_refused(f->dir, "empty.zip", "", 0, "empty");
	expect_refused(f->dir, "text.zip", "this is not a zip file at all, no sir\n", 38,
		       "not a zip");
	expect_refused(f->dir, "trunc.zip", zip, len - 10, "not a zip");
	expect_refused(f->dir, "half.zip", zip + len / 2, len - len / 2, "corrupt");

	memcpy(bad, zip, len);
	put32(eocd + 16, (uint32_t)len * 2); /* directory offset past the end */
	expect_refused(f->dir, "cdoff.zip", bad, len, "past");

	memcpy(bad, zip, len);
	put32(eocd + 12, (uint32_t)len * 2); /* directory size past the start */
	expect_refused(f->dir, "cdsize.zip", bad, len, "past");

	memcpy(bad, zip, len);
	eocd[8] = eocd[10] = (unsigned char)(eocd[10] + 1); /* one entry more */
	expect_refused(f->dir, "count.zip", bad, len, "declares");

	assert_int_equal(lfs_zip_open(f->zip, &lim, &zi, err, sizeof(err)), -E2BIG);
	assert_non_null(strstr(err, "max_entries=3"));
	assert_int_equal(lfs_zip_open(f->dir, NULL, &zi, err, sizeof(err)), -EISDIR);
	free(zip);
	free(bad);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_matches_libzip),
		cmocka_unit_test(test_types_and_modes),
		cmocka_unit_test(test_junk_prefix),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_lho_wraps),
		cmocka_unit_test(test_cd_size_bounded_by_count),
		cmocka_unit_test(test_wrapped_count),
		cmocka_unit_test(test_cd_trailing_bytes),
		cmocka_unit_test(test_data_inside_cd),
		cmocka_unit_test(test_eocd_forged_in_comment),
		cmocka_unit_test(test_zip64_multidisk),
		cmocka_unit_test(test_variants),
		cmocka_unit_test(test_variants_overflow),
		cmocka_unit_test(test_warning_cap),
	};

	return cmocka_run_group_tests_name("zipindex", tests, setup, teardown);
}
