/* The layer list parser: syntax, resolution, and every refusal. */
#include "helpers.h"

#include <errno.h>

#include "../../fs/layerlist.h"

static int parse(const char *text, size_t max, struct lfs_layer_list *out, char *err)
{
	return lfs_layerlist_parse(text, strlen(text), "/base", "L", max, out, err, 256);
}

static void test_basic_syntax(void **state)
{
	struct lfs_layer_list l;
	char err[256];
	const char *text = "# comment\n\n  base.zip  \r\n"
			   "/abs/numpy.zip name=numpy version=7 # trailing comment\r\n"
			   "\"with space/x.zip\" name=x\n"
			   "\"q\\\"uote.zip\"\n";

	(void)state;
	assert_int_equal(parse(text, 0, &l, err), 0);
	assert_int_equal(l.count, 4);
	assert_string_equal(l.layers[0].path, "/base/base.zip");
	assert_null(l.layers[0].name);
	assert_int_equal(l.layers[0].line, 3);
	assert_string_equal(l.layers[1].path, "/abs/numpy.zip");
	assert_string_equal(l.layers[1].name, "numpy");
	assert_string_equal(l.layers[1].version, "7");
	assert_string_equal(l.layers[2].path, "/base/with space/x.zip");
	assert_string_equal(l.layers[2].name, "x");
	assert_null(l.layers[2].version);
	assert_string_equal(l.layers[3].path, "/base/q\"uote.zip");
	lfs_layerlist_free(&l);
}

static void test_labels(void **state)
{
	char pa[] = "/p/a.zip", pb[] = "/p/b.zip", pc[] = "/p/c.zip", n[] = "n", v[] = "3";
	struct lfs_layer_spec a = { .path = pa, .name = n, .version = v };
	struct lfs_layer_spec b = { .path = pb, .name = n };
	struct lfs_layer_spec c = { .path = pc };
	char buf[64];

	(void)state;
	assert_string_equal(lfs_layer_spec_label(&a, buf, sizeof(buf)), "n:3");
	assert_string_equal(lfs_layer_spec_label(&b, buf, sizeof(buf)), "n");
	assert_string_equal(lfs_layer_spec_label(&c, buf, sizeof(buf)), "/p/c.zip");
}

static void expect_error(const char *text, size_t max, int rc, const char *needle)
{
	struct lfs_layer_list l = { 0 };
	char err[256] = "";

	assert_int_equal(parse(text, max, &l, err), rc);
	if (!strstr(err, needle))
		fail_msg("error '%s' lacks '%s'", err, needle);
	assert_int_equal(l.count, 0);
}

static void test_refusals(void **state)
{
	char long_line[LFS_LIST_MAX_LINE + 10];

	(void)state;
	expect_error("", 0, -EINVAL, "no layers");
	expect_error("# only comments\n\n", 0, -EINVAL, "no layers");
	expect_error("a.zip colour=red\n", 0, -EINVAL, "L:1: unknown key 'colour'");
	expect_error("a.zip name\n", 0, -EINVAL, "expected key=value");
	expect_error("a.zip name=a name=b\n", 0, -EINVAL, "repeated key");
	expect_error("a.zip version=1\n", 0, -EINVAL, "version= needs name=");
	expect_error("a.zip name=\n", 0, -EINVAL, "bad value");
	expect_error("\"open.zip\n", 0, -EINVAL, "L:1: unterminated");
	expect_error("a.zip\nb.zip\na.zip\n", 0, -EINVAL, "L:3: the same layer as line 1");
	expect_error("a.zip name=x version=1\nb.zip name=x version=1\n", 0, -EINVAL,
		     "listed twice");
	expect_error("a.zip\nb.zip\nc.zip\n", 2, -E2BIG, "L:3: more than 2 layers");
	memset(long_line, 'a', sizeof(long_line) - 1);
	long_line[sizeof(long_line) - 1] = '\0';
	expect_error(long_line, 0, -EINVAL, "longer than");
	{
		struct lfs_layer_list l;
		char err[256];
		const char nul[] = "a.zip\0b.zip\n";

		assert_int_equal(lfs_layerlist_parse(nul, sizeof(nul) - 1, "/", "L", 0, &l, err,
						     sizeof(err)),
				 -EINVAL);
		assert_non_null(strstr(err, "NUL"));
	}
}

static void test_load_files(void **state)
{
	char *dir = tmpdir_new(), *list = path_in(dir, "layers.list"), err[512];
	struct lfs_layer_list l;

	(void)state;
	write_file(list, "x.zip\nsub/y.zip name=y\n", 22);
	assert_int_equal(lfs_layerlist_load(list, 5, &l, err, sizeof(err)), 0);
	assert_int_equal(l.count, 2);
	assert_string_equal(l.layers[0].path + strlen(l.layers[0].path) - 6, "/x.zip");
	assert_true(l.layers[0].path[0] == '/');
	lfs_layerlist_free(&l);

	assert_int_equal(lfs_layerlist_load(dir, 5, &l, err, sizeof(err)), -EISDIR);
	assert_non_null(strstr(err, dir));
	free(list);
	list = path_in(dir, "missing.list");
	assert_int_equal(lfs_layerlist_load(list, 5, &l, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "missing.list"));
	free(list);
	tmpdir_free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic_syntax),
		cmocka_unit_test(test_labels),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_load_files),
	};

	return cmocka_run_group_tests_name("layerlist", tests, NULL, NULL);
}
