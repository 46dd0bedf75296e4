/* A deflate stream through one member: inflation in steps, from the
 * member's start or from a resume point, making resume points as it goes.
 *
 * The stream produces the member's bytes in order, as many as asked for at
 * a time.  When io->spacing is set it makes a resume point (resume.h) at
 * the first deflate block boundary at or after every multiple of spacing
 * that io->want_point() asks for, and hands it to io->point().  The
 * inflater (ISA-L) is made to stop there, and the stream then goes on from
 * the very record it made, so every record is used as soon as it exists.
 *
 * A stream is used by one thread at a time; the caller keeps it (parked in
 * the cache between reads) and frees it.  Errors: 0, a negative errno from
 * io->fetch (a source error: the read fails, the stream must be freed, the
 * next read starts again), or -EBADMSG with a reason in *why (the member's
 * data is bad: corrupt, or sizes that do not match). */
#ifndef LFS_STREAM_H
#define LFS_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "resume.h"

struct lfs_stream_io {
	/* Reads len bytes at off of the member's compressed data. */
	int (*fetch)(void *ctx, void *buf, size_t len, uint64_t off);
	/* Whether a resume point for mark `index` (its out_pos is in
	 * [index * spacing, (index + 1) * spacing)) is wanted.  NULL: yes. */
	int (*want_point)(void *ctx, uint64_t index);
	/* A new resume point for mark `index`: rec[0..len), malloc'd,
	 * ownership passes to the callee. */
	void (*point)(void *ctx, unsigned char *rec, size_t len, uint64_t index);
	void *ctx;
	uint64_t comp_size;	/* compressed bytes of the member */
	uint64_t spacing;	/* 0: no resume points */
};

struct lfs_stream;

/* The memory one stream holds, for the cache's budget. */
size_t lfs_stream_footprint(void);

/* A stream at the member's start (NULL when memory ran out). */
struct lfs_stream *lfs_stream_new(const struct lfs_stream_io *io);

/* A stream at resume point rp (reads input there).  0 or a negative errno
 * (source error, -ENOMEM). */
int lfs_stream_resume(const struct lfs_resume *rp, const struct lfs_stream_io *io,
		      struct lfs_stream **out);

void lfs_stream_free(struct lfs_stream *s);

/* The offset of the next byte it produces, and the CRC-32 of the bytes
 * before it. */
uint64_t lfs_stream_pos(const struct lfs_stream *s);
uint32_t lfs_stream_crc(const struct lfs_stream *s);

/* Produces exactly len bytes into out (NULL: produces and drops them). */
int lfs_stream_produce(struct lfs_stream *s, const struct lfs_stream_io *io,
		       unsigned char *out, size_t len, const char **why);

/* At the member's declared end: the stream must end here, and its CRC-32
 * must be crc. */
int lfs_stream_finish(struct lfs_stream *s, const struct lfs_stream_io *io, uint32_t crc,
		      const char **why);

#endif
