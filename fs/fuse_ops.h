/* The FUSE front end: libfuse low-level operations over a stack.
 *
 * Each operation does its work in a helper that returns 0 or a negative
 * errno and then sends exactly one reply.  The tree never changes, so
 * entries, attributes and negative lookups are cached by the kernel for
 * `timeout` seconds, opened files keep their page cache, and forget is a
 * no-op (inodes live as long as the mount). */
#ifndef LFS_FUSE_OPS_H
#define LFS_FUSE_OPS_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include "inval.h"
#include "metrics.h"
#include "options.h"
#include "push.h"
#include "stack.h"
#include "uring.h"

#define LFS_XATTR_LAYER "user.layerfs.layer"
#define LFS_STATTERS 64	/* slots of lfs_fuse_ctx.statters */
#define LFS_XATTR_STATS "user.layerfs.stats"
#define LFS_XATTR_METRICS "user.layerfs.metrics"	/* Prometheus text */

struct lfs_fuse_ctx {
	struct lfs_stack *stack;
	double entry_timeout;	/* seconds the kernel may cache names */
	double attr_timeout;	/* ... and attributes */
	unsigned max_read;	/* largest read request to ask the kernel for */
	struct lfs_inval *inval; /* page caches to drop after a member fails
				  * (NULL: none) */
	struct lfs_push *push;	/* a replay's pushes into the page cache (NULL: none) */
	struct lfs_uring *uring; /* the io_uring queues (NULL: none) */
	/* Stats and metrics are the operator's: they answer root and, when
	 * has_admin_gid, the members of admin_gid.  Everyone else sees
	 * user.layerfs.layer as `provenance` says. */
	struct lfs_metrics *metrics; /* read timing; NULL: none */
	int provenance;		/* 0 names, 1 paths, 2 off (-o provenance=) */
	int sched_auto;		/* workers batch only while read-ahead streams */
	enum lfs_dirplus dirplus; /* -o readdirplus= */
	/* Threads that have looked up a file (readdirplus=auto): a direct-
	 * mapped table of the kernel's thread ids, by tid % LFS_STATTERS.  A
	 * collision forgets a thread (it is asked a lookup per entry again),
	 * a reused id is remembered for a new thread (it is given the
	 * attributes): either costs time, never a wrong answer. */
	int statters[LFS_STATTERS]; /* atomic */
	int has_admin_gid;
	gid_t admin_gid;
};

extern const struct fuse_lowlevel_ops lfs_fuse_ops;

#endif
