/* Start-up prefetch: record what a function reads while it starts (a
 * trace, trace.h) and replay it at the next mount, so what it will read is
 * made ahead, in the inflate pool's idle class, before it asks.
 *
 * Recording notes every read the stack serves (lfs_stack_set_observer)
 * until `seconds` have passed since the first one or it is stopped: the
 * first touch of each block of each file, in order, coalesced into ranges,
 * and, in the same order, each name looked up and not found and each
 * directory listed (once each).
 * The trace is written (atomically) when recording is stopped or the
 * recorder is freed, whichever comes first.
 *
 * Replaying runs in a thread of its own: it reads the trace, resolves each
 * range's path in the mounted tree and checks that the same layer (by
 * identity) provides it, and asks the stack to prefetch it, in the trace's
 * order, up to half the cache budget.  Ranges of paths that are gone or of
 * layers that changed are skipped, counted in one log line; a trace that
 * does not parse is refused with one line and nothing is done.  Nothing
 * waits for a replay: the function's own reads go first (prefetch runs on
 * idle CPU), and a replay not finished at unmount is abandoned. */
#ifndef LFS_PREFETCH_H
#define LFS_PREFETCH_H

#include "stack.h"
#include "trace.h"

struct lfs_recorder;
struct lfs_replay;

/* Starts recording s's reads into a trace to be written as `name` in
 * directory dirfd (taken: closed with the recorder), or, when name is
 * NULL, as the stack's key (prefetch=auto: taken when the trace is
 * written, once the layers' digests are known).  `label` names the trace
 * (or its folder) in log lines.  NULL when memory ran out. */
struct lfs_recorder *lfs_recorder_start(struct lfs_stack *s, int dirfd, const char *name,
				       const char *label, double seconds);
/* Stops recording and writes the trace (once).  0 or a negative errno. */
int lfs_recorder_stop(struct lfs_recorder *rec);
/* Stops (writing the trace if it was not), detaches, frees.  NULL is
 * ignored. */
void lfs_recorder_free(struct lfs_recorder *rec);

/* Starts replaying trace tr (read at mount, as whoever started the daemon;
 * taken: *tr is emptied) against s.  Each range it asks to have made is
 * also handed to made(made_ctx, ino, path, off, len) when made is not NULL
 * (the front end pushes it into the kernel's page cache: push.h), and each
 * absent or list record, in the same order, to named(made_ctx, kind, path)
 * when named is not NULL (the front end looks it up or lists it through
 * the mount).  NULL when it cannot start. */
struct lfs_replay *lfs_replay_start(struct lfs_stack *s, struct lfs_trace *tr,
				    void (*made)(void *ctx, uint32_t ino, const char *path,
						 uint64_t off, uint64_t len),
				    void (*named)(void *ctx, enum lfs_trace_kind kind,
						  const char *path),
				    void *made_ctx);
/* Abandons what is left of it, and frees.  NULL is ignored. */
void lfs_replay_free(struct lfs_replay *rp);

#endif
