/* A source: the bytes of one layer zip, wherever they live.
 *
 * The zip index and the reader read a layer only through this interface,
 * never through a file descriptor, so that a layer may be a local file, an
 * object behind HTTP range requests or a byte array in a test, each behind
 * the same calls.  It is defined here, by the reader that consumes it, so
 * that cache/ needs nothing from fs/.
 *
 * Errors are 0 or a negative errno.  Every error of read() is taken as
 * transient: the read that got it fails (EIO for that request) and the next
 * read tries again (an EIO or EINTR from a network file system, a timeout,
 * a dropped connection, a 5xx).  Only -ESTALE is final: the bytes behind
 * the source are no longer those it opened (the file was replaced or
 * changed in place, the object's ETag moved), so nothing more read from it
 * may be trusted.  A source that has answered -ESTALE once answers it from
 * then on (lfs_source_changed()).
 *
 * Thread safety: every call may be made from any number of threads at once.
 * Ownership: whoever opens a source closes it, once nothing reads it. */
#ifndef LFS_SOURCE_H
#define LFS_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#define LFS_SOURCE_ID_MAX 256

struct lfs_source;

struct lfs_source_ops {
	/* Reads exactly len bytes at off (off + len <= size).  0, or a
	 * negative errno (see above). */
	int (*read)(struct lfs_source *src, void *buf, size_t len, uint64_t off);
	/* A hint: [off, off + len) will be read soon, in order (sequential
	 * read-ahead).  May be NULL; never fails. */
	void (*will_need)(struct lfs_source *src, uint64_t off, uint64_t len);
	/* 0 while the bytes are still those opened, -ESTALE once they are not,
	 * another negative errno when that cannot be told now.  Cheap enough
	 * to call for every block filled (a local file: one fstat).  May be
	 * NULL (the bytes cannot change). */
	int (*check)(struct lfs_source *src);
	/* Frees the source. */
	void (*close)(struct lfs_source *src);
};

/* Counters of one source, updated atomically by its implementation. */
struct lfs_source_counters {
	uint64_t reads;		/* read() calls that succeeded */
	uint64_t bytes;		/* bytes they returned */
	uint64_t errors;	/* read() calls that failed */
};

struct lfs_source {
	const struct lfs_source_ops *ops;
	uint64_t size;				/* bytes */
	int64_t mtime;				/* last modified, seconds since the epoch (0: unknown) */
	/* Which object this is, the same for every path or URL that leads
	 * to it ("file DEV INO"): two layers with the same object are one. */
	char object[LFS_SOURCE_ID_MAX];
	/* Which version of the object's bytes: the object and what changes
	 * with its content (size, mtime, ctime; an ETag).  Digests are
	 * remembered under it. */
	char version[LFS_SOURCE_ID_MAX];
	int changed;				/* set once read or check saw -ESTALE */
	struct lfs_source_counters counters;
};

int lfs_source_read(struct lfs_source *src, void *buf, size_t len, uint64_t off);
void lfs_source_will_need(struct lfs_source *src, uint64_t off, uint64_t len);
int lfs_source_check(struct lfs_source *src);
/* 1 once the source has answered -ESTALE. */
int lfs_source_changed(const struct lfs_source *src);
/* NULL is ignored. */
void lfs_source_close(struct lfs_source *src);

/* A local file (cache/source_file.c).  Refuses what is not a readable,
 * non-empty regular file, with a one-line reason naming `path` in err.
 * Opened without following a FIFO's open (O_NONBLOCK), so naming one as a
 * layer cannot hang. */
int lfs_source_file_open(const char *path, struct lfs_source **out, char *err,
			 size_t errlen);

/* Bytes in memory (cache/source_mem.c), for tests and fuzzers.  With copy,
 * the source keeps its own copy; without, data must outlive the source. */
struct lfs_source *lfs_source_mem_new(const void *data, size_t len, int copy);

#endif
