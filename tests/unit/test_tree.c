/* Merge rules of the tree, on hand-made indexes (no zips needed). */
#include "helpers.h"

#include <errno.h>
#include <sys/stat.h>

#include "../../fs/tree.h"

struct fake {
	const char *name;
	enum lfs_zip_kind kind;
	uint16_t mode;
	uint64_t size;
};

/* An index holding just names and attributes. */
static struct lfs_zip_index *fake_index(const struct fake *f, size_t n, const char *path)
{
	struct lfs_zip_index *zi = calloc(1, sizeof(*zi));
	size_t total = 0, off = 0;

	for (size_t i = 0; i < n; i++)
		total += strlen(f[i].name);
	zi->cd = malloc(total + 1);
	zi->entries = calloc(n + 1, sizeof(*zi->entries));
	zi->count = n;
	zi->path = strdup(path);
	zi->src = NULL;
	zi->file_mtime = 42;
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(f[i].name);

		memcpy(zi->cd + off, f[i].name, len);
		zi->entries[i].name_off = (uint32_t)off;
		zi->entries[i].name_len = (uint16_t)len;
		zi->entries[i].kind = (uint8_t)f[i].kind;
		zi->entries[i].mode = f[i].mode;
		zi->entries[i].size = f[i].size;
		zi->entries[i].mtime = 1000 + (int64_t)i;
		off += len;
	}
	return zi;
}

static void fake_free(struct lfs_zip_index *zi)
{
	free(zi->cd);
	free(zi->entries);
	free(zi->path);
	free(zi);
}

#define F(n, m, s) { n, LFS_ZIP_FILE, m, s }
#define D(n, m) { n, LFS_ZIP_DIR, m, 0 }
#define L(n, s) { n, LFS_ZIP_SYMLINK, 0777, s }

static struct lfs_tree *build(const struct fake *const *layers, const size_t *counts,
			      size_t nlayers)
{
	struct lfs_tree_builder *b = lfs_tree_builder_new(7);

	for (size_t i = 0; i < nlayers; i++) {
		struct lfs_zip_index *zi = fake_index(layers[i], counts[i], "fake.zip");

		assert_int_equal(lfs_tree_add_layer(b, (unsigned)i, zi, 0), 0);
		fake_free(zi);
	}
	return lfs_tree_freeze(b);
}

static const struct lfs_node *node(const struct lfs_tree *t, const char *path)
{
	uint32_t ino = lfs_tree_resolve(t, path);

	return ino ? lfs_tree_node(t, ino) : NULL;
}

static void test_normalize(void **state)
{
	static const struct {
		const char *in, *out;
		int dir;
	} cases[] = {
		{ "a/b/c", "a/b/c", 0 },
		{ "/abs/x", "abs/x", 0 },
		{ "../../etc/passwd", "etc/passwd", 0 },
		{ "a/../b", "a/b", 0 },
		{ "a\\b\\c.txt", "a/b/c.txt", 0 },
		{ "./a//b/./", "a/b", 1 },
		{ "dir/", "dir", 1 },
		{ "..", "", 0 },
		{ "/", "", 1 },
		{ "...", "...", 0 },
	};
	char out[LFS_TREE_MAX_PATH + 1], longc[300];
	int dir;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int n = lfs_tree_normalize(cases[i].in, strlen(cases[i].in), out, sizeof(out), &dir);

		assert_int_equal(n, strlen(cases[i].out));
		assert_string_equal(out, cases[i].out);
		assert_int_equal(dir, cases[i].dir);
	}
	memset(longc, 'x', sizeof(longc));
	assert_int_equal(lfs_tree_normalize(longc, 256, out, sizeof(out), &dir),
			 LFS_TREE_SKIP_COMPONENT);
	assert_int_equal(lfs_tree_normalize(longc, 255, out, sizeof(out), &dir), 255);
	assert_int_equal(lfs_tree_normalize("a\0b", 3, out, sizeof(out), &dir), LFS_TREE_SKIP_NUL);
	/* paths: 4095 bytes once normalised, and not one more */
	{
		char *p = malloc(8192);
		size_t n = 0;

		memcpy(p, "./", 2); /* dropped: does not count */
		n = 2;
		while (n < 2 + 4095) {
			size_t k = 2 + 4095 - n < 200 ? 2 + 4095 - n : 200;

			memset(p + n, 'p', k);
			n += k;
			if (n < 2 + 4095 - 1)
				p[n++] = '/';
		}
		assert_int_equal(lfs_tree_normalize(p, n, out, sizeof(out), &dir), 4095);
		p[n++] = 'q';
		assert_int_equal(lfs_tree_normalize(p, n, out, sizeof(out), &dir),
				 LFS_TREE_SKIP_PATH);
		free(p);
	}
}

static void test_override_across_layers(void **state)
{
	static const struct fake l0[] = { F("python/a.py", 0644, 1), F("python/b.py", 0644, 2),
					  F("bin/tool", 0755, 3) };
	static const struct fake l1[] = { F("python/a.py", 0600, 10), D("python/", 0700) };
	static const struct fake l2[] = { F("python/b.py", 0444, 20), F("python/new/c.py", 0644, 5) };
	const struct fake *layers[] = { l0, l1, l2 };
	size_t counts[] = { 3, 2, 2 };
	struct lfs_tree *t = build(layers, counts, 3);
	const struct lfs_node *n;

	(void)state;
	n = node(t, "python/a.py");
	assert_int_equal(n->layer, 1);
	assert_int_equal(n->size, 10);
	assert_int_equal(n->mode, S_IFREG | 0600);
	n = node(t, "python/b.py");
	assert_int_equal(n->layer, 2);
	assert_int_equal(n->mode, S_IFREG | 0444);
	assert_int_equal(node(t, "bin/tool")->layer, 0);
	n = node(t, "python");
	assert_int_equal(n->mode, S_IFDIR | 0755); /* implied by layer 0; layer 1's record changes nothing */
	assert_int_equal(n->layers, 7);		/* all three contribute */
	n = node(t, "python/new");
	assert_int_equal(n->mode, S_IFDIR | 0755); /* implicit */
	assert_int_equal(n->entry, LFS_TREE_NO_ENTRY);
	assert_int_equal(node(t, "")->layers, 7);
	assert_int_equal(lfs_tree_count(t), 8);
	lfs_tree_free(t);
}

static void test_file_dir_conflicts(void **state)
{
	static const struct fake l0[] = { F("x/inner.txt", 0644, 1), F("y", 0644, 2),
					  F("z/deep/f", 0644, 3) };
	static const struct fake l1[] = { F("x", 0644, 4), F("y/sub.txt", 0644, 5), D("z/", 0711) };
	const struct fake *layers[] = { l0, l1 };
	size_t counts[] = { 3, 3 };
	struct lfs_tree *t = build(layers, counts, 2);

	(void)state;
	/* a later file replaces an earlier directory and hides its subtree */
	assert_int_equal(node(t, "x")->mode, S_IFREG | 0644);
	assert_null(node(t, "x/inner.txt"));
	/* a later directory (implied) replaces an earlier file */
	assert_int_equal(node(t, "y")->mode, S_IFDIR | 0755);
	assert_int_equal(node(t, "y/sub.txt")->size, 5);
	/* a directory record over a directory merges, mode unchanged */
	assert_int_equal(node(t, "z")->mode, S_IFDIR | 0755);
	assert_int_equal(node(t, "z/deep/f")->size, 3);
	/* hidden nodes get no inode: /, x, y, z, y/sub.txt, z/deep, z/deep/f */
	assert_int_equal(lfs_tree_count(t), 7);
	lfs_tree_free(t);
}

static void test_within_one_zip(void **state)
{
	static const struct fake l0[] = { F("dup", 0644, 1), F("dup", 0600, 2),
					  F("/abs", 0644, 3), F("../up", 0644, 4),
					  F("w\\in\\dows.txt", 0644, 5), L("ln", 6),
					  D("./", 0700), F("dup/x", 0644, 7), F("dup", 0640, 8),
					  D("fresh/", 0700), D("fresh/", 0750) };
	const struct fake *layers[] = { l0 };
	size_t counts[] = { 11 };
	struct lfs_tree *t = build(layers, counts, 1);

	(void)state;
	/* last one wins, whatever came between */
	assert_int_equal(node(t, "dup")->size, 8);
	assert_int_equal(node(t, "dup")->mode, S_IFREG | 0640);
	assert_non_null(node(t, "abs"));
	assert_non_null(node(t, "up"));
	assert_int_equal(node(t, "w/in/dows.txt")->size, 5);
	assert_int_equal(node(t, "ln")->mode, S_IFLNK | 0777);
	assert_int_equal(node(t, "")->mode, S_IFDIR | 0755); /* "./" does not touch the root */
	assert_int_equal(node(t, "fresh")->mode, S_IFDIR | 0700); /* the creating record */
	lfs_tree_free(t);
}

/* Entries of one directory in a row are placed from the directory the last
 * one went into, not walked from the root: that shortcut must forget a
 * directory replaced meanwhile (by a file, or with an ancestor). */
static void test_replaced_directory_within_one_zip(void **state)
{
	static const struct fake l0[] = { F("a/b/x", 0644, 1), F("a/b/y", 0644, 2),
					  F("a/b", 0600, 3), F("a/b/z", 0644, 4),
					  F("a/b/w", 0644, 5), F("p/q/r/s", 0644, 6),
					  F("p/q/r/t", 0644, 7), F("p", 0644, 8), F("p/q/r/u", 0644, 9),
					  F("p/q/v", 0644, 10), F("a/c/k", 0644, 11), F("a/b/m", 0644, 12) };
	const struct fake *layers[] = { l0 };
	size_t counts[] = { 12 };
	struct lfs_tree *t = build(layers, counts, 1);

	(void)state;
	/* a/b: a directory, a file (hiding x and y), a directory again */
	assert_int_equal(node(t, "a/b")->mode, S_IFDIR | 0755);
	assert_null(node(t, "a/b/x"));
	assert_null(node(t, "a/b/y"));
	assert_int_equal(node(t, "a/b/z")->size, 4);
	assert_int_equal(node(t, "a/b/w")->size, 5);
	assert_int_equal(node(t, "a/b/m")->size, 12);
	assert_int_equal(node(t, "a/b")->nchildren, 3);
	/* p replaced by a file above the remembered p/q/r, then made again */
	assert_null(node(t, "p/q/r/s"));
	assert_null(node(t, "p/q/r/t"));
	assert_int_equal(node(t, "p/q/r/u")->size, 9);
	assert_int_equal(node(t, "p/q/v")->size, 10);
	assert_int_equal(node(t, "p/q/r")->nchildren, 1);
	assert_int_equal(node(t, "a/c/k")->size, 11);
	/* /, a, a/b, a/b/{z,w,m}, a/c, a/c/k, p, p/q, p/q/r, p/q/r/u, p/q/v */
	assert_int_equal(lfs_tree_count(t), 13);
	lfs_tree_free(t);
}

/* Lines of stderr containing `needle` while the tree takes a layer. */
static unsigned logged_lines(struct lfs_tree_builder *b, const struct lfs_zip_index *zi,
			     const char *needle)
{
	FILE *tmp = tmpfile();
	int saved = dup(2);
	char line[4096];
	unsigned n = 0;

	assert_non_null(tmp);
	fflush(stderr);
	assert_int_equal(dup2(fileno(tmp), 2), 2);
	assert_int_equal(lfs_tree_add_layer(b, 0, zi, 0), 0);
	fflush(stderr);
	assert_int_equal(dup2(saved, 2), 2);
	close(saved);
	rewind(tmp);
	while (fgets(line, sizeof(line), tmp))
		n += strstr(line, needle) != NULL;
	fclose(tmp);
	return n;
}

/* 25 names no lookup can reach, in a layer whose index logged 4 problems
 * already: 6 more lines name entries, one sums up the other 19. */
static void test_warning_cap(void **state)
{
	struct fake f[26];
	char names[25][300];
	struct lfs_zip_index *zi;
	struct lfs_tree_builder *b = lfs_tree_builder_new(7);
	struct lfs_tree *t;

	(void)state;
	for (int i = 0; i < 25; i++) {
		memset(names[i], 'a' + i, 299);
		names[i][299] = '\0';
		f[i] = (struct fake)F(names[i], 0644, 1);
	}
	f[25] = (struct fake)F("kept.txt", 0644, 2);
	zi = fake_index(f, 26, "cap.zip");
	zi->bad_entries = 4;
	assert_int_equal(logged_lines(b, zi, "entry '"), LFS_ZIP_MAX_LOGGED - 4);
	t = lfs_tree_freeze(b);
	assert_non_null(node(t, "kept.txt"));
	lfs_tree_free(t);
	b = lfs_tree_builder_new(7);
	assert_int_equal(logged_lines(b, zi, "cap.zip: 19 more entries skipped"), 1);
	lfs_tree_builder_free(b);
	fake_free(zi);
}

/* The builder keeps nodes in chunks of 4096, newest first.  A directory
 * that is the last node of one chunk and whose first child is the first of
 * the next: freeing the chunks one by one while clearing each node's child
 * hash (reached through its first child) read the newer chunk after it
 * was freed. */
static void test_builder_free_across_chunks(void **state)
{
	static char names[4094][8];
	struct fake f[4095];
	struct lfs_zip_index *zi;
	struct lfs_tree_builder *b = lfs_tree_builder_new(7);
	struct lfs_tree *t;

	(void)state;
	/* the root and 4094 files fill nodes 0..4094 of the first chunk */
	for (int i = 0; i < 4094; i++) {
		snprintf(names[i], sizeof(names[i]), "f%d", i);
		f[i] = (struct fake)F(names[i], 0644, 1);
	}
	f[4094] = (struct fake)F("d/x", 0644, 2); /* d: node 4095; x: the next chunk */
	zi = fake_index(f, 4095, "chunks.zip");
	assert_int_equal(lfs_tree_add_layer(b, 0, zi, 0), 0);
	t = lfs_tree_freeze(b);
	assert_non_null(t);
	assert_int_equal(node(t, "d/x")->size, 2);
	lfs_tree_free(t);
	b = lfs_tree_builder_new(7); /* the same, freed without freezing */
	assert_int_equal(lfs_tree_add_layer(b, 0, zi, 0), 0);
	lfs_tree_builder_free(b);
	fake_free(zi);
}

static void test_lookup_and_readdir_order(void **state)
{
	static const struct fake l0[] = { F("d/b", 0644, 1), F("d/a", 0644, 1), F("d/ab", 0644, 1),
					  F("d/B", 0644, 1), F("d/a.", 0644, 1) };
	const struct fake *layers[] = { l0 };
	size_t counts[] = { 5 };
	struct lfs_tree *t = build(layers, counts, 1);
	uint32_t d = lfs_tree_resolve(t, "d");
	const char *want[] = { "B", "a", "a.", "ab", "b" };

	(void)state;
	for (uint32_t i = 0; i < 5; i++) {
		const struct lfs_node *n = lfs_tree_node(t, lfs_tree_child(t, d, i));

		assert_int_equal(n->name_len, strlen(want[i]));
		assert_memory_equal(lfs_tree_name(t, n), want[i], n->name_len);
		assert_int_equal(lfs_tree_lookup(t, d, want[i], strlen(want[i])),
				 lfs_tree_child(t, d, i));
		assert_int_equal(n->parent, d);
	}
	assert_int_equal(lfs_tree_child(t, d, 5), 0);
	assert_int_equal(lfs_tree_lookup(t, d, "c", 1), 0);
	assert_int_equal(lfs_tree_lookup(t, lfs_tree_resolve(t, "d/a"), "x", 1), 0);
	assert_null(lfs_tree_node(t, 0));
	assert_null(lfs_tree_node(t, 999));
	lfs_tree_free(t);
}

static void test_limits_and_skips(void **state)
{
	static const struct fake l0[] = { F("a", 0644, 1), F("b", 0644, 1), F("c", 0644, 1) };
	char longname[300];
	struct fake l1[2] = { F("ok", 0644, 1), F("", 0644, 1) };
	struct lfs_tree_builder *b = lfs_tree_builder_new(0);
	struct lfs_zip_index *zi = fake_index(l0, 3, "limit.zip");
	struct lfs_tree *t;

	(void)state;
	assert_int_equal(lfs_tree_add_layer(b, 0, zi, 3), -E2BIG);
	lfs_tree_builder_free(b);
	fake_free(zi);

	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	l1[1].name = longname;
	b = lfs_tree_builder_new(0);
	zi = fake_index(l1, 2, "skip.zip");
	assert_int_equal(lfs_tree_add_layer(b, 0, zi, 0), 0); /* skipped with a warning */
	fake_free(zi);
	t = lfs_tree_freeze(b);
	assert_int_equal(lfs_tree_count(t), 2);
	lfs_tree_free(t);
}

static void test_big_tree(void **state)
{
	enum { N = 100000 };
	struct fake *f = calloc(N, sizeof(*f));
	char (*names)[32] = calloc(N, 32);
	struct lfs_zip_index *zi;
	struct lfs_tree_builder *b = lfs_tree_builder_new(0);
	struct lfs_tree *t;

	(void)state;
	for (int i = 0; i < N; i++) {
		snprintf(names[i], 32, "d%03d/sub%02d/f%d.py", i % 397, i % 13, i);
		f[i] = (struct fake)F(names[i], 0644, (uint64_t)i);
	}
	zi = fake_index(f, N, "big.zip");
	assert_int_equal(lfs_tree_add_layer(b, 0, zi, 0), 0);
	t = lfs_tree_freeze(b);
	assert_non_null(t);
	for (int i = 0; i < N; i += 997)
		assert_int_equal(node(t, names[i])->size, (uint64_t)i);
	lfs_tree_free(t);
	fake_free(zi);
	free(f);
	free(names);
}

/* A tree written flat and mapped back is the same tree: every node and
 * name, lookups; a flat tree with an index or name out of bounds, or cut
 * short, is refused. */
static void test_flat_round_trip(void **state)
{
	static const struct fake l0[] = { F("a/b/c.txt", 0644, 3), F("a/d", 0755, 0),
					  F("e.so", 0755, 5000), F("a/b/z", 0600, 1) };
	static const struct fake l1[] = { F("a/b/c.txt", 0600, 9), F("f/g/h", 0644, 2) };
	const struct fake *layers[] = { l0, l1 };
	size_t counts[] = { 4, 2 };
	struct lfs_tree *t = build(layers, counts, 2), *u;
	size_t len = lfs_tree_flat_size(t);
	uint64_t *buf = malloc(len + 8); /* 8-aligned */
	struct lfs_node *nodes;

	(void)state;
	lfs_tree_flatten(t, buf);
	u = lfs_tree_from_flat(buf, len);
	assert_non_null(u);
	assert_int_equal(lfs_tree_count(u), lfs_tree_count(t));
	assert_int_equal(lfs_tree_total_bytes(u), lfs_tree_total_bytes(t));
	for (uint32_t i = 1; i <= lfs_tree_count(t); i++) {
		const struct lfs_node *a = lfs_tree_node(t, i), *b = lfs_tree_node(u, i);

		assert_int_equal(a->name_len, b->name_len);
		assert_memory_equal(lfs_tree_name(t, a), lfs_tree_name(u, b), a->name_len);
		assert_int_equal(a->mode, b->mode);
		assert_int_equal(a->parent, b->parent);
		assert_int_equal(a->size, b->size);
		assert_int_equal(a->entry, b->entry);
		assert_int_equal(a->layer, b->layer);
	}
	assert_int_equal(lfs_tree_resolve(u, "a/b/c.txt"), lfs_tree_resolve(t, "a/b/c.txt"));
	assert_int_equal(lfs_tree_node(u, lfs_tree_resolve(u, "a/b/c.txt"))->layer, 1);
	lfs_tree_free(u);
	/* damage */
	assert_null(lfs_tree_from_flat(buf, len - 1));
	nodes = (struct lfs_node *)(void *)((unsigned char *)buf + 40);
	nodes[2].name_off += 1000;
	assert_null(lfs_tree_from_flat(buf, len));
	nodes[2].name_off -= 1000;
	nodes[3].first_child = 999;
	assert_null(lfs_tree_from_flat(buf, len));
	free(buf);
	lfs_tree_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_flat_round_trip),
		cmocka_unit_test(test_normalize),
		cmocka_unit_test(test_override_across_layers),
		cmocka_unit_test(test_file_dir_conflicts),
		cmocka_unit_test(test_within_one_zip),
		cmocka_unit_test(test_replaced_directory_within_one_zip),
		cmocka_unit_test(test_lookup_and_readdir_order),
		cmocka_unit_test(test_limits_and_skips),
		cmocka_unit_test(test_warning_cap),
		cmocka_unit_test(test_builder_free_across_chunks),
		cmocka_unit_test(test_big_tree),
	};

	return cmocka_run_group_tests_name("tree", tests, NULL, NULL);
}
