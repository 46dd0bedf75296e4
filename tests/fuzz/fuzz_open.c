/* Fuzz target: arbitrary bytes as a layer, through the zip index and the
 * merged tree, then every node looked up and listed as the FUSE layer
 * would.  Nothing is read from members. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../fs/tree.h"
#include "../../fs/zipindex.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { C_OPENED, C_TREES, C_NODES };
struct fuzz_count fuzz_counts[] = {
	{ "opened", 0 }, /* inputs the index opened */
	{ "trees", 0 },	 /* ... whose tree was built, checked, flattened and mapped back */
	{ "nodes", 0 },	 /* tree nodes looked up and listed */
	{ NULL, 0 },
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct lfs_zip_limits lim = { 100000, 4096 };
	struct lfs_zip_index *zi = NULL;
	struct lfs_tree_builder *b;
	struct lfs_tree *t;
	char path[64], err[512];
	int fd = fuzz_file(data, size, path, sizeof(path));

	if (fd < 0)
		return 0;
	if (lfs_zip_open(path, &lim, &zi, err, sizeof(err)) == 0) {
		fuzz_count(C_OPENED);
		b = lfs_tree_builder_new(0);
		/* the same layer twice: overrides of every kind */
		if (lfs_tree_add_layer(b, 0, zi, 200000) == 0 &&
		    lfs_tree_add_layer(b, 1, zi, 200000) == 0) {
			t = lfs_tree_freeze(b);
			for (uint32_t ino = 1; t && ino <= lfs_tree_count(t); ino++) {
				const struct lfs_node *n = lfs_tree_node(t, ino);

				fuzz_count(C_NODES);

				if (lfs_tree_lookup(t, n->parent, lfs_tree_name(t, n), n->name_len) != ino &&
				    ino != LFS_TREE_ROOT)
					__builtin_trap(); /* every node is found by name */
				for (uint32_t i = 0; S_ISDIR(n->mode) && i < n->nchildren; i++)
					if (lfs_tree_node(t, lfs_tree_child(t, ino, i))->parent != ino)
						__builtin_trap();
				if (!S_ISDIR(n->mode) && n->entry >= zi->count)
					__builtin_trap();
			}
			/* written flat and mapped back, the same tree */
			if (t) {
				size_t len = lfs_tree_flat_size(t);
				uint64_t *flat = malloc(len + 8);
				struct lfs_tree *u = flat ? (lfs_tree_flatten(t, flat),
							    lfs_tree_from_flat(flat, len))
							  : NULL;

				if (flat && (!u || lfs_tree_count(u) != lfs_tree_count(t)))
					__builtin_trap();
				if (flat)
					fuzz_count(C_TREES);
				lfs_tree_free(u);
				free(flat);
			}
			lfs_tree_free(t);
		} else {
			lfs_tree_builder_free(b);
		}
		for (uint64_t i = 0; i < zi->count; i++) {
			uint64_t off;

			if (zi->entries[i].kind != LFS_ZIP_DIR && lfs_zip_data_offset(zi, i, &off) == 0 &&
			    off + zi->entries[i].comp_size > zi->cd_off)
				__builtin_trap(); /* data must lie before the central directory */
		}
		lfs_zip_close(zi);
	}
	close(fd);
	return 0;
}
