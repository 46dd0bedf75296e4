/* Start-up traces: what a function read while it started, in the order it
 * first touched it, so that the next start can have it ready before it
 * asks (`-o trace=FILE` records, `-o prefetch=FILE` replays).
 *
 * A trace is a text file, versioned, independent of inode numbers:
 *
 *   layerfs-trace 2
 *   block_size 262144
 *   layer 0 sha256:<hex> name:version
 *   layer 1 version:<the source's version identity> /srv/layers/x.zip
 *   list python/numpy
 *   range 0 0 3 python/numpy/__init__.py
 *   absent python/numpy/__init__.abi3.so
 *   ...
 *   end 1234
 *
 * `layer` lines name the stack's layers by identity: their SHA-256 when
 * known, else the file's version (device, inode, size, mtime, ctime).  A
 * `range LAYER FIRST LAST PATH` line says that the function's reads first
 * touched blocks FIRST..LAST of PATH, which layer LAYER provided; ranges
 * are in first-touch order.  Version 2 adds, in the same order, what the
 * function asked of the tree that a read does not show: `absent PATH`, a
 * name it looked up that the stack does not have (a negative lookup), and
 * `list PATH`, a directory it listed ("." for the root); replaying them
 * looks the name up or lists the directory through the mount ahead of
 * the function, so that the kernel answers it from its own caches.  Both
 * are only hints about the tree, answered from the tree mounted at replay
 * time, so they need no layer identity.  Paths are percent-encoded where a
 * byte is not a printable, non-space ASCII character or is '%'.  `end N`
 * closes the trace with its number of records (range, absent and list
 * lines): a trace without it, with anything after it, or with any line
 * that does not parse is refused whole.  Version 1 traces (ranges only)
 * are read as before.  Replaying applies a range only where the path still
 * names a file of a layer with the same identity. */
#ifndef LFS_TRACE_H
#define LFS_TRACE_H

#include <stddef.h>
#include <stdint.h>

#define LFS_TRACE_VERSION 2
#define LFS_TRACE_MAX_LAYERS 64

enum lfs_trace_kind {
	LFS_TRACE_RANGE,	/* blocks first..last of path were read */
	LFS_TRACE_ABSENT,	/* path was looked up and is not there */
	LFS_TRACE_LIST,		/* directory path was listed */
};

/* One record; first, last and layer only for a range. */
struct lfs_trace_range {
	enum lfs_trace_kind kind;
	uint32_t layer;		/* index into the trace's layers */
	uint64_t first, last;	/* blocks */
	char *path;		/* decoded, NUL-terminated */
};

struct lfs_trace {
	uint32_t block_size;
	size_t nlayers;
	char *layer_id[LFS_TRACE_MAX_LAYERS];	/* "sha256:HEX" or "version:..." */
	char *layer_label[LFS_TRACE_MAX_LAYERS];
	struct lfs_trace_range *ranges;
	size_t nranges, cap;
};

/* Empty trace of a stack with nlayers layers. */
int lfs_trace_init(struct lfs_trace *t, uint32_t block_size, size_t nlayers);
void lfs_trace_free(struct lfs_trace *t);
int lfs_trace_set_layer(struct lfs_trace *t, size_t i, const char *id, const char *label);
/* Appends a range (the path is copied); 0 or -ENOMEM. */
int lfs_trace_add(struct lfs_trace *t, uint32_t layer, uint64_t first, uint64_t last,
		  const char *path, size_t path_len);
/* Appends an absent or list record (the path is copied); 0 or -ENOMEM. */
int lfs_trace_add_name(struct lfs_trace *t, enum lfs_trace_kind kind, const char *path,
		       size_t path_len);

/* Writes t as `name` in directory dirfd, atomically (a temporary name,
 * synced, renamed).  0 or a negative errno. */
int lfs_trace_write(const struct lfs_trace *t, int dirfd, const char *name);
/* Reads a trace.  0, or a negative errno with a one-line reason in err
 * (-ENOENT: no such file; -EINVAL: not a trace of this version, or a line
 * that does not parse: the whole file is refused). */
int lfs_trace_read(const char *path, struct lfs_trace *t, char *err, size_t errlen);

#endif
