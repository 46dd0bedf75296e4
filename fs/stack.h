/* The stack: the opened layers, their merged tree and the read path,
 * everything a mount serves, with no FUSE in it (tests use it directly).
 *
 * lfs_stack_open() does all the checking a mount needs before anything is
 * mounted: the list, every zip's end records and central directory, the
 * limits.  After it returns the stack is shared by all FUSE threads; the
 * tree and indexes are immutable and the reader does its own locking. */
#ifndef LFS_STACK_H
#define LFS_STACK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "../cache/reader.h"
#include "layerlist.h"
#include "tree.h"
#include "zipindex.h"

struct lfs_stack_config {
	const char *list_path;
	size_t max_layers;		/* 0: LFS_TREE_MAX_LAYERS */
	uint64_t max_entries;		/* per layer; 0: no limit */
	uint64_t max_total_entries;	/* merged tree; 0: no limit */
	size_t max_name;		/* bytes of one zip entry name; 0: no limit */
	struct lfs_reader_config reader;
	uid_t uid;
	gid_t gid;
};

struct lfs_layer {
	struct lfs_zip_index *zi;
	char *label;			/* provenance: name:version, name or path */
	struct lfs_layer_counters counters;
	uint32_t *member_flags;		/* LFS_MEMBER_* per entry */
	uint64_t *member_reach;		/* per entry, see lfs_member.reach */
	uint64_t unzipped_bytes;	/* sum of the entries' declared sizes */
};

struct lfs_stack {
	struct lfs_layer *layers;
	size_t nlayers;
	struct lfs_tree *tree;
	struct lfs_reader *reader;
	uid_t uid;
	gid_t gid;
	uint64_t zip_bytes;		/* total size of the layer files */
	double open_seconds;		/* time to open the stack */
};

int lfs_stack_open(const struct lfs_stack_config *cfg, struct lfs_stack **out, char *err,
		   size_t errlen);
void lfs_stack_free(struct lfs_stack *s);

/* Fills st for ino; -ENOENT when out of range. */
int lfs_stack_stat(const struct lfs_stack *s, uint64_t ino, struct stat *st);

/* Reads file data; see lfs_reader_read. */
ssize_t lfs_stack_read(struct lfs_stack *s, uint64_t ino, void *buf, size_t len,
		       uint64_t off);

/* Zero-copy form of lfs_stack_read for replies; see lfs_reader_pin.  Then
 * lfs_stack_readahead() once the reply is sent. */
ssize_t lfs_stack_pin(struct lfs_stack *s, uint64_t ino, uint64_t off, size_t len,
		      struct lfs_pin *p);
void lfs_stack_unpin(struct lfs_stack *s, struct lfs_pin *p);
void lfs_stack_readahead(struct lfs_stack *s, uint64_t ino, uint64_t end, enum lfs_seq seq);

/* The symlink target, NUL-terminated, in buf of `size` bytes (at least
 * LFS_TREE_MAX_PATH + 1).  0 or negative errno. */
int lfs_stack_readlink(struct lfs_stack *s, uint64_t ino, char *buf, size_t size);

/* Which layers provide ino, as text; returns the length or -ERANGE. */
int lfs_stack_provenance(const struct lfs_stack *s, uint64_t ino, char *buf, size_t size);

/* Counters as "key value" lines; returns the length or -ERANGE. */
int lfs_stack_stats_text(struct lfs_stack *s, char *buf, size_t size);

#endif
