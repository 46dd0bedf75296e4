/* A mount's metrics: the front end's own counters (reads and how long
 * they took) next to the stack's, as the "key value" text of
 * user.layerfs.stats and as Prometheus's text exposition format (version
 * 0.0.4) for user.layerfs.metrics and -o metrics_file.
 *
 * Read latency is a histogram with fixed buckets, counted with atomic
 * adds and no lock: one clock read and a few adds per request.  Everything
 * else is read from the stack when the text is made. */
#ifndef LFS_METRICS_H
#define LFS_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "stack.h"

struct lfs_metrics;

/* version, commit: of this build; mountpoint: the mount's label. */
struct lfs_metrics *lfs_metrics_new(const char *version, const char *commit,
				    const char *mountpoint);
void lfs_metrics_free(struct lfs_metrics *m);

/* Monotonic nanoseconds, for lfs_metrics_read's start. */
uint64_t lfs_metrics_clock(void);
/* A read request begun at `start` was answered (failed: with an error);
 * counted as an LFS_OP_READ request too.  m may be NULL. */
void lfs_metrics_read(struct lfs_metrics *m, uint64_t start, int failed);

/* The requests the kernel sends, as counted per kind: how many, and how
 * long the daemon took to answer them (from the handler's start to its
 * reply; the time a request waited for a worker is not in it). */
enum lfs_op {
	LFS_OP_LOOKUP,
	LFS_OP_GETATTR,
	LFS_OP_READLINK,
	LFS_OP_OPEN,
	LFS_OP_READ,
	LFS_OP_OPENDIR,
	LFS_OP_READDIR,
	LFS_OP_READDIRPLUS,
	LFS_OP_STATFS,
	LFS_OP_GETXATTR,
	LFS_OP_LISTXATTR,
	LFS_OP_IOCTL,
	LFS_OP_OTHER,	/* the calls a read-only mount refuses */
	LFS_OP_COUNT
};
const char *lfs_op_name(enum lfs_op op);
/* A request of kind op begun at `start` was answered (reads: see
 * lfs_metrics_read).  m may be NULL. */
void lfs_metrics_op(struct lfs_metrics *m, enum lfs_op op, uint64_t start);

/* The stack's "key value" lines and the daemon's (version, uptime, reads);
 * the length, or -ERANGE when size is too small. */
int lfs_metrics_stats_text(struct lfs_metrics *m, struct lfs_stack *s, char *buf, size_t size);
/* The exposition; the length or -ERANGE. */
int lfs_metrics_prometheus(struct lfs_metrics *m, struct lfs_stack *s, char *buf, size_t size);

/* Writes the exposition to `name` in directory dirfd the way the textfile
 * collector wants it: a temporary file renamed over the old one, mode
 * 0644.  0 or negative errno. */
int lfs_metrics_write_file(struct lfs_metrics *m, struct lfs_stack *s, int dirfd,
			   const char *name);

#endif
