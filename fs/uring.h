/* FUSE over io_uring: requests served on the CPU that made them.
 *
 * On /dev/fuse a request made on one CPU is read by whichever worker the
 * kernel wakes, often on the other CPU: each round trip then costs an
 * inter-processor wake-up of a halted vCPU (docs/performance.md).  Linux
 * 6.14 can instead hand each request to a queue of the requester's own CPU
 * (the fuse module's enable_uring parameter; the daemon offers it at INIT).
 * libfuse supports that from 3.18; this module does it for the libfuse of
 * Debian 12 (3.14) through its custom I/O hooks: it reads and writes the
 * connection for libfuse, turns on FUSE_OVER_IO_URING in libfuse's INIT
 * reply when the kernel offers it, and then serves the kernel's queues with
 * threads pinned to their CPUs, each request passed to libfuse's own
 * dispatch (fuse_session_process_buf) and its reply taken back from the
 * write hook.
 *
 * Forgets, interrupts and notifications still travel on /dev/fuse (the
 * kernel sends and takes them there), so libfuse's own loop keeps running
 * beside the rings.  When the kernel does not offer the ring (module
 * parameter off, older kernel), nothing changes: every request comes
 * through libfuse's loop as before.
 *
 * One per process (the hooks find it through a static). */
#ifndef LFS_URING_H
#define LFS_URING_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <stdint.h>

struct lfs_uring;

/* -o uring_idle=, in the order of its choices: whether the threads run as
 * SCHED_IDLE (a caller woken by a reply then stays on its CPU) until one is
 * seen waiting behind other processes' tasks, always, or never. */
enum lfs_uring_idle { LFS_URING_IDLE_AUTO, LFS_URING_IDLE_ON, LFS_URING_IDLE_OFF };

/* Installs the hooks on se (after fuse_session_mount, before the loop
 * starts) and starts the queue threads, which wait for INIT.  per_cpu:
 * threads (each one request at a time) per CPU queue, 0 for the default; idle: when they run
 * as SCHED_IDLE (auto: a monitor thread decides, from their scheduler
 * statistics; attach raises RLIMIT_NICE so that they can come back, which
 * only root with CAP_SYS_RESOURCE can, before the privileges are dropped);
 * taken_over: the mount point of a connection taken over
 * (else NULL), to which a request is made from each CPU once every slot is
 * registered, since the kernel hands requests it queued meanwhile only to
 * a slot that commits.  Returns 0, or a
 * negative errno with nothing installed. */
int lfs_uring_attach(struct fuse_session *se, unsigned per_cpu, enum lfs_uring_idle idle,
		     const char *taken_over, struct lfs_uring **out);

/* Whether the calling thread is a ring thread whose policy is the ring's
 * (uring_idle on, or auto with its monitor running): nobody else may
 * change it. */
int lfs_uring_owns_policy(void);

/* Whether the threads run as SCHED_IDLE now; *switches (if not NULL): how
 * many times uring_idle=auto changed that.  NULL u: 0. */
int lfs_uring_idle_now(const struct lfs_uring *u, uint64_t *switches);

/* For a connection taken over (its INIT was an earlier daemon's): start
 * registering now, with payload buffers of `payload` bytes (at least the
 * largest request or reply the connection was set up for).  Call once
 * libfuse has been given the INIT it replays; a no-op after INIT. */
void lfs_uring_start(struct lfs_uring *u, size_t payload);

/* Whether the fuse module would offer the ring to a new connection (its
 * enable_uring parameter). */
int lfs_uring_kernel_offers(void);

/* Requests served through the rings so far. */
uint64_t lfs_uring_served(const struct lfs_uring *u);

/* Stops and joins the threads, each finishing the request it serves, and
 * closes the rings (after libfuse's loop has ended; NULL, or a second
 * call, is a no-op).
 * The hooks stay installed and pass everything to /dev/fuse. */
void lfs_uring_stop(struct lfs_uring *u);

/* Frees u, once the session is destroyed: until then its hooks read u.
 * Stops it first if lfs_uring_stop was not called (a daemon that failed
 * before its loop).  NULL is a no-op. */
void lfs_uring_free(struct lfs_uring *u);

#endif
