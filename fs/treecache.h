/* The host's cache of merged trees: a stack mounted before on this host
 * mounts without parsing central directories or building its tree.
 *
 * A stack's tree and its layers' indexes are written flat (tree.h's and
 * zipindex.h's flat forms) into one file, cache_dir/trees/<key>, keyed by
 * everything the tree depends on: each layer's SHA-256 and file mtime (the
 * mtime of directories no record names), in order, the limits a layer or
 * the tree was checked against, and the layout of the flat forms.  A
 * mount maps the file and serves from it as it is.  The file carries a
 * CRC-32 of its bytes, checked when it is mapped; a file that fails any
 * check is removed and the stack is built as if there were none.  Files
 * are written to a temporary name and renamed. */
#ifndef LFS_TREECACHE_H
#define LFS_TREECACHE_H

#include <stddef.h>
#include <stdint.h>

#include "../cache/digest.h"
#include "tree.h"
#include "zipindex.h"

struct lfs_treecache;

struct lfs_treecache_key {
	unsigned char k[LFS_DIGEST_LEN];
	/* what it was made of, written into the file for lfs_treecache_forget */
	unsigned char digests[LFS_TREE_MAX_LAYERS][LFS_DIGEST_LEN];
	size_t n;
};

/* The key of a stack of n layers: 0, or a negative errno (lfs_digest_bytes). */
int lfs_treecache_key(const unsigned char (*digests)[LFS_DIGEST_LEN], const int64_t *mtimes,
		       size_t n, uint64_t max_entries, uint64_t max_total, uint64_t max_name,
		       struct lfs_treecache_key *key);

/* Maps the tree of `key` from directory dirfd (cache_dir/trees): 0, or
 * -ENOENT (none, or one that failed its checks). */
int lfs_treecache_load(int dirfd, const struct lfs_treecache_key *key, size_t nlayers,
		       struct lfs_treecache **out);
/* Layer i's flat index and the flat tree, inside the mapping. */
const void *lfs_treecache_zip(const struct lfs_treecache *tc, size_t i, size_t *len);
const void *lfs_treecache_tree(const struct lfs_treecache *tc, size_t *len);
/* Unmaps it: after the indexes and the tree made from it are freed. */
void lfs_treecache_free(struct lfs_treecache *tc);

/* Writes the tree of `key`.  0 or a negative errno (a cache: callers may
 * ignore it). */
int lfs_treecache_save(int dirfd, const struct lfs_treecache_key *key,
		       struct lfs_zip_index *const *zips, size_t n, const struct lfs_tree *tree);

/* Removes every tree of directory dirfd with a layer of this digest (a
 * layer whose bytes proved not to have it: nothing built from it may be
 * served again).  The number removed, or a negative errno. */
int lfs_treecache_forget(int dirfd, const unsigned char digest[LFS_DIGEST_LEN]);

#endif
