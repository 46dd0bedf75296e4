/* The zip index: one layer's central directory, parsed once at mount.
 *
 * Only the end records and the central directory are read here (one pread
 * each); no file data is touched.  Each entry keeps what the read path needs
 * (sizes, CRC, method, local header offset) and what the tree needs (name,
 * type, mode, mtime).  The data offset needs the local header, which is read
 * lazily by lfs_zip_data_offset() on first open of that entry.
 *
 * After lfs_zip_open() returns, the index is immutable except for the
 * per-entry data offset cache, which is written atomically; so it may be
 * shared by any number of threads without locks. */
#ifndef LFS_ZIPINDEX_H
#define LFS_ZIPINDEX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../cache/source.h"

enum lfs_zip_kind { LFS_ZIP_FILE, LFS_ZIP_DIR, LFS_ZIP_SYMLINK };

/* Why an entry cannot be read (it still appears in the tree, reads fail
 * with EIO, unless LFS_ZIP_TOO_LARGE; the reason is logged once at mount). */
enum lfs_zip_bad {
	LFS_ZIP_OK = 0,
	LFS_ZIP_ENCRYPTED,
	LFS_ZIP_UNSUPPORTED_METHOD,
	LFS_ZIP_BAD_SIZES,
	LFS_ZIP_TOO_LARGE,	/* >= 2^63 bytes: no stat can carry it; not in the tree */
	LFS_ZIP_TOO_MANY_VARIANTS, /* its local header is declared more than
				    * LFS_ZIP_MAX_VARIANTS different ways */
};

/* Different declarations of one local header offset told apart by
 * struct lfs_zip_entry.variant (uint8_t). */
#define LFS_ZIP_MAX_VARIANTS 256

/* Per-entry problems logged at mount for one layer (the index's, then the
 * tree's); the rest are counted and summed up in one line.  A layer of
 * 20,000 entries in an unsupported method would otherwise write 20,000
 * lines at every mount. */
#define LFS_ZIP_MAX_LOGGED 10

#define LFS_ZIP_STORED 0
#define LFS_ZIP_DEFLATED 8

struct lfs_zip_entry {
	uint64_t lho;		/* local header offset, junk prefix already added */
	uint64_t comp_size;
	uint64_t size;		/* uncompressed */
	int64_t mtime;		/* seconds since the epoch */
	uint32_t crc;
	uint32_t name_off;	/* into the names (zi->cd): lfs_zip_name() */
	uint16_t name_len;
	uint16_t method;
	uint16_t mode;		/* permission bits only (0777) */
	uint8_t kind;		/* enum lfs_zip_kind */
	uint8_t bad;		/* enum lfs_zip_bad */
	/* Entries may share a local header (lho) and so one stream, each
	 * declaring its own method, sizes and CRC.  Cached data is keyed by
	 * (layer, lho, variant): 0 for the first declaration of an lho in
	 * central directory order, k for its k-th different (method,
	 * comp_size, size, crc); identical declarations share a variant, and
	 * so their blocks.  Only readable entries (bad == LFS_ZIP_OK, not
	 * directories) count; the others keep 0. */
	uint8_t variant;
};

struct lfs_zip_limits {
	uint64_t max_entries;	/* refuse layers with more entries */
	size_t max_name;	/* refuse names longer than this */
};

struct lfs_zip_index {
	struct lfs_source *src;	/* the zip's bytes; owned */
	char *path;		/* for messages */
	uint64_t file_size;
	uint64_t junk_prefix;	/* bytes before the archive (self-extractor) */
	uint64_t count;
	uint64_t bad_entries;	/* entries with a problem found at mount (logged:
				 * the first LFS_ZIP_MAX_LOGGED) */
	struct lfs_zip_entry *entries;
	uint64_t *data_off;	/* 0 = not resolved yet; accessed atomically */
	unsigned char *cd;	/* the entries' names, one after another (lfs_zip_name) */
	uint64_t cd_size;	/* bytes of them */
	uint64_t cd_off;	/* where the directory starts: member data ends before it */
	int64_t file_mtime;
	int borrowed;		/* entries and cd belong to the caller (lfs_zip_from_flat) */
};

/* Indexes the zip whose bytes src holds; `name` names it in messages.  On
 * success the index owns src; on failure src is still the caller's, and a
 * negative errno comes back with a one-line reason naming the layer in err.
 * `limits` may be NULL for no limits. */
int lfs_zip_open_source(struct lfs_source *src, const char *name,
			const struct lfs_zip_limits *limits, struct lfs_zip_index **out,
			char *err, size_t errlen);

/* Tells src its central directory will be read soon (lfs_source_will_need)
 * so that its bytes come in while other work goes on; reads only the end
 * record.  Does nothing for what is not a zip, and never fails: opening the
 * index says what is wrong with it. */
void lfs_zip_will_need(struct lfs_source *src);

/* The same for the bytes that hold the end record (the file's tail),
 * without reading anything: to be asked before lfs_zip_will_need(). */
void lfs_zip_will_need_end(struct lfs_source *src);

/* The same for the local file at `path`. */
int lfs_zip_open(const char *path, const struct lfs_zip_limits *limits,
		 struct lfs_zip_index **out, char *err, size_t errlen);

void lfs_zip_close(struct lfs_zip_index *zi);

static inline const char *lfs_zip_name(const struct lfs_zip_index *zi,
				       const struct lfs_zip_entry *e)
{
	return (const char *)zi->cd + e->name_off;
}

/* Resolves where entry i's data starts by reading its local header, and
 * checks that header against the central directory and that the data ends
 * before the central directory starts.  Thread-safe; the result is cached.  Returns 0 or -EIO (with a
 * log line naming layer, entry and reason), or -ESTALE (no log line) when
 * the layer's bytes changed under it. */
int lfs_zip_data_offset(struct lfs_zip_index *zi, uint64_t i, uint64_t *off);

const char *lfs_zip_bad_reason(enum lfs_zip_bad bad);

/* The index as bytes (its entries, and their names instead of the whole
 * central directory), for the host's tree cache: lfs_zip_from_flat() takes
 * them back without parsing anything. */
size_t lfs_zip_flat_size(const struct lfs_zip_index *zi);
void lfs_zip_flatten(const struct lfs_zip_index *zi, void *buf);
/* An index of src over buf[0..len) as lfs_zip_flatten wrote it (buf is
 * borrowed: it must outlive the index; on success the index owns src).
 * -EINVAL when buf is not a well-formed index of a file of src's size. */
int lfs_zip_from_flat(struct lfs_source *src, const char *name, const void *buf, size_t len,
		      struct lfs_zip_index **out);

#endif
