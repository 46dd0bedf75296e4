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

static void test_content_id(void **state)
{
	struct fixture *f = *state;
	size_t len;
	unsigned char *zip = slurp(f->zip, &len);
	char *copy = path_in(f->dir, "copy.zip"), err[256];
	struct lfs_zip_index *a, *b;

	write_file(copy, zip, len);
	assert_int_equal(lfs_zip_open(f->zip, NULL, &a, err, sizeof(err)), 0);
	assert_int_equal(lfs_zip_open(copy, NULL, &b, err, sizeof(err)), 0);
	assert_true(a->layer_id == b->layer_id); /* content, not path */
	lfs_zip_close(b);
	/* flip one CRC byte in the central directory */
	zip[len - 22 - 40] ^= 1;
	write_file(copy, zip, len);
	if (lfs_zip_open(copy, NULL, &b, err, sizeof(err)) == 0) {
		assert_true(a->layer_id != b->layer_id);
		lfs_zip_close(b);
	}
	lfs_zip_close(a);
	free(copy);
	free(zip);
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
		cmocka_unit_test(test_content_id),
		cmocka_unit_test(test_refusals),
	};

	return cmocka_run_group_tests_name("zipindex", tests, setup, teardown);
}
