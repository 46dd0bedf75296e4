/* Drops the kernel's page cache of files whose member failed.
 *
 * Once a member fails (EIO from then on), pages the kernel cached from it
 * before the failure would still be served without asking the daemon; the
 * point of failing the member is that nothing more of it is read.  So a
 * failing read queues its inode here, and one thread sends the kernel the
 * invalidations.  Not the worker that failed: the kernel waits for pages
 * that other reads of the file have locked, and with every worker doing the
 * same, nobody would be left to answer those reads.  Best effort: a full
 * queue drops requests. */
#ifndef LFS_INVAL_H
#define LFS_INVAL_H

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 312
#endif
#include <fuse_lowlevel.h>

struct lfs_inval;

/* Starts the thread; NULL if it cannot (then nothing is invalidated). */
struct lfs_inval *lfs_inval_start(struct fuse_session *se);
/* Queues ino (once, while it is queued).  Never blocks on the kernel. */
void lfs_inval_push(struct lfs_inval *iv, fuse_ino_t ino);
/* The same, waiting for room instead of dropping it: for a background
 * thread with many inodes to drop (a layer found untrusted), never for a
 * worker. */
void lfs_inval_push_wait(struct lfs_inval *iv, fuse_ino_t ino);
/* Stops the thread after the queued invalidations; frees iv. */
void lfs_inval_stop(struct lfs_inval *iv);

#endif
