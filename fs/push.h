/* Pushing a replayed trace's file data into the kernel's page cache.
 *
 * A replay (prefetch.h) has what a start will read made in the daemon's
 * memory, but every read of it still costs the function a round trip to
 * the daemon.  fuse_lowlevel_notify_store() writes file data into the
 * kernel's page cache, so that those reads never leave the kernel.  The
 * kernel takes it only for an inode it has, that is once the inode was
 * looked up; so the replay names the ranges it wants pushed (lfs_push_want)
 * and the lookup handlers say when an inode became known (lfs_push_known:
 * a LOOKUP, or an entry of READDIRPLUS).  One thread of the pusher's own
 * then pins each range (making what the replay has not made yet) and
 * stores it: never a FUSE worker, which must stay free for the function's
 * own requests.
 *
 * Waiting for the function's lookups is too late: it reads a file right
 * after looking it up.  So while nothing known waits to be pushed, the
 * thread looks the next wanted file up itself, through the mount point
 * `mnt` (NULL: never), in the trace's order: the
 * kernel then has its dentries and inode before the function asks, and the
 * function's lookups and reads of it never reach the daemon.  That needs
 * the daemon's user to be let into its own mount (allow_other, or a daemon
 * that stays root); without, one log line, and pushes follow the
 * function's lookups.  Paths are resolved beneath the mount's root and
 * never through a symbolic link.
 *
 * A range the function reads before it was pushed is served by the daemon
 * as usual; the push then stores the same bytes again (wasted work, never
 * wrong bytes: both come from the same verified blocks).  Best effort: an
 * inode the kernel has forgotten again, or a failed store, is counted and
 * skipped.  What it did is counted in the stack's stats (prefetch_push_*,
 * prefetch_pushed_*).  All calls are thread-safe. */
#ifndef LFS_PUSH_H
#define LFS_PUSH_H

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 312
#endif
#include <fuse_lowlevel.h>
#include <stdint.h>

#include "stack.h"
#include "trace.h"

struct lfs_push;

/* Starts the pusher for the stack served by se; NULL when it cannot (then
 * nothing is pushed). */
struct lfs_push *lfs_push_start(struct fuse_session *se, struct lfs_stack *s, const char *mnt);
/* The replay wants bytes [off, off + len) of regular file ino (at path in
 * the mount) pushed once the kernel knows ino. */
void lfs_push_want(struct lfs_push *p, uint32_t ino, const char *path, uint64_t off,
		   uint64_t len);
/* The same with p as a void pointer: lfs_replay_start's callback. */
void lfs_push_want_cb(void *p, uint32_t ino, const char *path, uint64_t off, uint64_t len);
/* The replay's next name (trace version 2): kind LFS_TRACE_ABSENT, a path
 * the function will look up and not find, or LFS_TRACE_LIST, a directory
 * it will list.  The thread looks the path up (or lists the directory to
 * its end) through the mount, in order with the wanted files' lookups, so
 * that the kernel answers the function from its negative dentries and
 * directory cache.  Nothing when the thread may not walk the mount. */
void lfs_push_name(struct lfs_push *p, enum lfs_trace_kind kind, const char *path);
/* The same with p as a void pointer: lfs_replay_start's callback. */
void lfs_push_name_cb(void *p, enum lfs_trace_kind kind, const char *path);
/* The kernel has just been told of ino (a LOOKUP reply).  Cheap when ino
 * is not wanted: one atomic load.  Never blocks on the kernel. */
void lfs_push_known(struct lfs_push *p, uint64_t ino);
/* Whether tid (a request's fuse_ctx pid: the kernel names the thread) is
 * the thread that walks the mount.  Its listings are what the function
 * will find in the directory cache, so they must carry the entries'
 * attributes (-o readdirplus=auto).  NULL p: no. */
int lfs_push_is_walker(const struct lfs_push *p, int tid);
/* Stops the thread (what is queued is dropped) and frees p.  NULL is
 * ignored. */
void lfs_push_stop(struct lfs_push *p);

#endif
