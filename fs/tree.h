/* The merged tree: every layer's entries laid over each other, frozen.
 *
 * Building follows extraction with `unzip -o`, one layer after another:
 * entries are applied in layer order and, within a layer, in central
 * directory order, and the last writer of a path wins.  The rules where
 * extraction is ill-defined (see README "Merge rules"):
 *   - names are split on '/' and '\'; empty, "." and ".." components and a
 *     leading '/' are dropped, so no name can leave the root;
 *   - a file replaces a directory at its path (the directory's subtree is
 *     hidden), and a directory - explicit or implied by a deeper name -
 *     replaces a file;
 *   - a directory's mode and mtime are set when it is created: from its
 *     record, or 0755 and the zip's mtime when a deeper name implies it;
 *     a later record for an existing directory changes nothing (as with
 *     unzip, which sets modes only on directories it creates);
 *   - names no lookup can reach are skipped with a warning: NUL bytes,
 *     components over 255 bytes, paths over LFS_TREE_MAX_PATH bytes once
 *     normalised (the zip index's max_name only refuses absurd ones).
 *
 * Inode numbers are assigned once at freeze, breadth first, root = 1; they
 * index the node array directly.  A frozen tree is immutable: lookups and
 * readdir take no locks. */
#ifndef LFS_TREE_H
#define LFS_TREE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "zipindex.h"

#define LFS_TREE_ROOT 1
#define LFS_TREE_MAX_LAYERS 64	/* provenance is a 64-bit layer mask */
#define LFS_TREE_MAX_PATH 4095
#define LFS_TREE_NO_ENTRY UINT32_MAX

struct lfs_node {
	uint32_t parent;	/* ino of the parent (root: itself) */
	uint32_t name_len;
	uint32_t name_off;	/* into the tree's names: lfs_tree_name() */
	uint32_t mode;		/* S_IFDIR/S_IFREG/S_IFLNK | perms */
	uint16_t layer;		/* layer providing the node (dirs: last writer) */
	uint32_t entry;		/* entry in that layer's index, or LFS_TREE_NO_ENTRY */
	uint64_t size;		/* files/symlinks: uncompressed size */
	int64_t mtime;
	uint64_t layers;	/* dirs: mask of layers contributing; else 1 << layer */
	uint32_t first_child;	/* dirs: children[first_child ..] */
	uint32_t nchildren;
	uint32_t nsubdirs;	/* dirs: children that are directories (for st_nlink) */
};

struct lfs_tree;
struct lfs_tree_builder;

struct lfs_tree_builder *lfs_tree_builder_new(int64_t root_mtime);

/* Adds layer number `layer` (0 = lowest; layers must be added in order).
 * Returns 0 or a negative errno (-ENOMEM, -E2BIG when more than
 * `max_total` nodes would exist, 0 = no limit). */
int lfs_tree_add_layer(struct lfs_tree_builder *b, unsigned layer,
		       const struct lfs_zip_index *zi, uint64_t max_total);

/* Turns the builder into an immutable tree; the builder is consumed, even
 * on failure (NULL). */
struct lfs_tree *lfs_tree_freeze(struct lfs_tree_builder *b);

void lfs_tree_builder_free(struct lfs_tree_builder *b);
void lfs_tree_free(struct lfs_tree *t);

/* Number of inodes; valid inos are 1 .. count. */
uint32_t lfs_tree_count(const struct lfs_tree *t);

/* NULL when ino is out of range. */
const struct lfs_node *lfs_tree_node(const struct lfs_tree *t, uint64_t ino);

/* n's name (name_len bytes, not NUL-terminated). */
const char *lfs_tree_name(const struct lfs_tree *t, const struct lfs_node *n);

/* The ino of `name` in directory `dir`, or 0. */
uint32_t lfs_tree_lookup(const struct lfs_tree *t, uint32_t dir, const char *name,
			 size_t name_len);

/* The i-th child (in name order) of directory `dir`, or 0 past the end. */
uint32_t lfs_tree_child(const struct lfs_tree *t, uint32_t dir, uint32_t i);

/* Resolves a '/'-separated path from the root; 0 when absent.  For tests
 * and tools. */
uint32_t lfs_tree_resolve(const struct lfs_tree *t, const char *path);

/* The frozen tree as bytes (nodes and names, no pointers), for the host's
 * tree cache: lfs_tree_from_flat() takes them back without building
 * anything. */
size_t lfs_tree_flat_size(const struct lfs_tree *t);
void lfs_tree_flatten(const struct lfs_tree *t, void *buf);
/* A tree over buf[0..len) as lfs_tree_flatten wrote it.  buf is borrowed:
 * it must outlive the tree.  NULL when buf is not a well-formed tree (every
 * index and name is checked against its bounds). */
struct lfs_tree *lfs_tree_from_flat(const void *buf, size_t len);

/* Totals for statfs. */
uint64_t lfs_tree_total_bytes(const struct lfs_tree *t);

/* Why lfs_tree_normalize() skips a name: no lookup could reach it. */
#define LFS_TREE_SKIP_NUL (-1)		/* a NUL byte */
#define LFS_TREE_SKIP_COMPONENT (-2)	/* a component over 255 bytes */
#define LFS_TREE_SKIP_PATH (-3)		/* over LFS_TREE_MAX_PATH bytes, normalised */

/* Splits and normalises a zip name into `out` as "a/b/c" (no leading or
 * trailing '/', components separated by one '/').  Returns the length, 0
 * when nothing is left, or an LFS_TREE_SKIP_* reason when the name must be
 * skipped.  `is_dir` is set when the name ends in a separator.  Exposed for
 * the unit tests. */
int lfs_tree_normalize(const char *name, size_t len, char *out, size_t outlen,
		       int *is_dir);

#endif
