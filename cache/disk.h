/* The disk tier: decompressed blocks of layer versions on local disk,
 * shared by every mount on the host and kept across restarts.
 *
 * Layout, under the host's cache directory (hostdir.h):
 *
 *   v1/<layer SHA-256>/<block size>/<member>.<block>   a block
 *   v1/<layer SHA-256>/<block size>/<member>.p<mark>   a resume point (resume.h)
 *   v1/<layer SHA-256>/<block size>/<member>.crc       the member's block CRCs
 *   v1/objects/<where>/<chunk size>/<index>            chunk `index` of a remote object
 *   v1/objects/<where>/<chunk size>/head               what its source pinned, and its tail
 *   v1/stats                                           hits and misses of all daemons
 *
 * Keys are content: the layer's SHA-256, the member (local header offset
 * and variant), the block index and the block size, under the format's
 * version.  Every mount of a layer version finds the same entries whatever
 * path or list it came from, and a layer whose bytes changed has another
 * digest: it is never served from old entries.
 *
 * Every record carries its key and checksums and is checked whole when it
 * is read: a torn, truncated, flipped or misplaced record is dropped (one
 * report through the note callback) and the caller makes the block again.
 * Records are written to a temporary name and renamed, so readers see the
 * old record or the new one, never a torn one; several daemons may read and
 * write one directory at once (the last rename of a record wins, and both
 * are right).  Nothing is fsync'ed: a record lost or torn by a power cut
 * fails its checks and is made again.  No lock is held across I/O.
 *
 * The quota is kept by a pruning pass (lfs_disk_prune) that drops the
 * records used least recently (a hit refreshes a record's mtime, at most
 * once a minute).  A write that fails on a full, failing or read-only disk
 * turns the writes of the tier off for the daemon's life, with one note;
 * a read that fails counts as a miss.  Nothing here makes a read fail.
 *
 * Thread-safe. */
#ifndef LFS_DISK_H
#define LFS_DISK_H

#include <stddef.h>
#include <stdint.h>

#include "digest.h"

#define LFS_DISK_FORMAT "v1"

enum lfs_disk_note {
	LFS_DISK_BAD_RECORD,	/* a record failed its checks and was dropped */
	LFS_DISK_WRITES_OFF,	/* writing failed; the tier writes no more */
	LFS_DISK_PRUNED,	/* the quota made records go */
};

struct lfs_disk_config {
	uint64_t quota;		/* bytes the directory may hold (0: the default) */
	int level;		/* zstd level for blocks; 0: stored raw */
	/* One line's worth about an event (what names the record).  NULL:
	 * none.  Called with no lock of the tier held. */
	void (*note)(void *ctx, enum lfs_disk_note what, const char *detail);
	void *note_ctx;
};

struct lfs_disk_stats {
	uint64_t hits, misses;		/* block lookups */
	uint64_t bytes_read;		/* record bytes read from disk */
	uint64_t bytes_written;		/* record bytes written */
	uint64_t plain_written;		/* block bytes those records hold */
	uint64_t records_written, write_errors, bad_records, evictions;
	uint64_t usage;			/* bytes the directory holds, as last counted */
	uint64_t quota;
	int writing;			/* 0 once writes were turned off */
};

struct lfs_disk;
struct lfs_disk_layer;

/* The tier over the host's cache directory dirfd (kept open by the tier;
 * the caller closes its own).  0 or a negative errno with a reason in err. */
int lfs_disk_open(int dirfd, const struct lfs_disk_config *cfg, struct lfs_disk **out,
		  char *err, size_t errlen);
/* Adds this daemon's hits and misses to the directory's stats.  NULL is
 * ignored. */
void lfs_disk_close(struct lfs_disk *d);

/* The entries of one layer version at one block size (made on first use;
 * owned by d).  NULL when the directory cannot be made (then the layer has
 * no disk tier). */
struct lfs_disk_layer *lfs_disk_layer(struct lfs_disk *d, const unsigned char digest[LFS_DIGEST_LEN],
				      uint32_t block_size);

/* Block `index` of `member`: len bytes into buf, and the member's running
 * CRC-32 at the block's end into *cum_crc.  0: a hit; -ENOENT: a miss; a
 * record that fails its checks is dropped and is a miss. */
int lfs_disk_get(struct lfs_disk_layer *l, uint64_t member, uint64_t index, void *buf,
		 size_t len, uint32_t *cum_crc);
/* Blocks [first, last] of member will be read soon: the kernel starts
 * reading their records now. */
void lfs_disk_will_need(struct lfs_disk_layer *l, uint64_t member, uint64_t first, uint64_t last);
/* Stores it (blocking I/O: for background threads).  0 or a negative
 * errno (ignored by callers: the tier is a cache). */
int lfs_disk_put(struct lfs_disk_layer *l, uint64_t member, uint64_t index, const void *buf,
		 size_t len, uint32_t cum_crc);

/* Resume point `mark` of member (resume.h's record, checked by the
 * caller): a malloc'd copy in *rec.  0 or -ENOENT. */
int lfs_disk_get_point(struct lfs_disk_layer *l, uint64_t member, uint64_t mark, void **rec,
		       size_t *len);
int lfs_disk_put_point(struct lfs_disk_layer *l, uint64_t member, uint64_t mark, const void *rec,
		       size_t len);

/* The member's running CRC-32 at every block's end, once its CRC passed:
 * nblocks values.  0 or -ENOENT. */
int lfs_disk_get_crcs(struct lfs_disk_layer *l, uint64_t member, uint64_t nblocks, uint32_t *crcs);
int lfs_disk_put_crcs(struct lfs_disk_layer *l, uint64_t member, uint64_t nblocks,
		      const uint32_t *crcs);

void lfs_disk_get_stats(struct lfs_disk *d, struct lfs_disk_stats *out);

/* 1, once, when the directory may hold more than the quota (or has not
 * been counted yet): time for lfs_disk_prune. */
int lfs_disk_prune_due(struct lfs_disk *d);

/* Recounts what the directory holds and, over the quota, drops the least
 * recently used records down to 90% of it.  Blocking: for background
 * threads and `layerfs cache prune`.  Returns the bytes dropped. */
uint64_t lfs_disk_prune(struct lfs_disk *d);

/* The default quota for the file system holding dirfd: 4 GiB, or a
 * quarter of the file system when that is less. */
uint64_t lfs_disk_default_quota(int dirfd);

/* ---- source chunks: the bytes of remote objects as fetched ----
 *
 * A remote source (source_http.h) keeps what it fetched here, so that the
 * host fetches each byte of an object once.  `where` (a SHA-256) names the
 * directory: what the object is (its listed SHA-256, or its URL).
 * `version` (32 bytes), carried by every chunk record, says which bytes
 * the chunk holds: one of another version is a miss, dropped without a
 * note (the object changed; the new chunk replaces it).  The head is the
 * source's own record (what it pinned at open, the object's tail), kept
 * whole and checked like every record; the tier does not look inside. */

struct lfs_disk_object;

/* The records of one object at one chunk size (made on first use; owned
 * by d).  NULL when the directory cannot be made. */
struct lfs_disk_object *lfs_disk_object(struct lfs_disk *d, const unsigned char where[LFS_DIGEST_LEN],
					uint32_t chunk_size);
/* Chunk `index` of `version`: exactly len bytes into buf.  0 or -ENOENT. */
int lfs_disk_get_chunk(struct lfs_disk_object *o, const unsigned char version[LFS_DIGEST_LEN],
		       uint64_t index, void *buf, size_t len);
/* Stores it (raw: zip data is compressed already).  0 or a negative errno. */
int lfs_disk_put_chunk(struct lfs_disk_object *o, const unsigned char version[LFS_DIGEST_LEN],
		       uint64_t index, const void *buf, size_t len);
/* The head: a malloc'd copy in *rec.  0 or -ENOENT. */
int lfs_disk_get_head(struct lfs_disk_object *o, void **rec, size_t *len);
int lfs_disk_put_head(struct lfs_disk_object *o, const void *rec, size_t len);

/* ---- forgetting: records that must never be served again ----
 *
 * When a layer's bytes prove not to be what its digest says (a remote
 * layer's listed SHA-256, checked once all of it was fetched), what the
 * host holds under that digest goes: the layer's blocks, resume points and
 * CRC tables (every block size), or an object's chunks and head (every
 * chunk size).  Directories of this tier opened for it answer every get
 * with a miss and refuse every put from then on, and the removal waits
 * for puts under way, so nothing of it is written back afterwards.
 * Blocking: for background threads.  0 or a negative errno. */
int lfs_disk_forget_layer(struct lfs_disk *d, const unsigned char digest[LFS_DIGEST_LEN]);
int lfs_disk_forget_object(struct lfs_disk *d, const unsigned char where[LFS_DIGEST_LEN]);
/* The `where` an object's records were opened under. */
void lfs_disk_object_where(const struct lfs_disk_object *o, unsigned char where[LFS_DIGEST_LEN]);

/* ---- `layerfs cache` (over a directory no daemon needs to be using) ---- */

#define LFS_CENSUS_LAYERS 64	/* layer versions counted one by one */

/* What one layer version holds: its records' bytes on disk, its block
 * records' bytes and the block bytes they hold (the zstd ratio). */
struct lfs_disk_census_layer {
	char digest[LFS_DIGEST_LEN * 2 + 1];
	uint64_t bytes, blocks, block_bytes, block_plain;
};

struct lfs_disk_census {
	uint64_t bytes, records, blocks, points, crc_tables, layers, stray;
	uint64_t block_bytes, block_plain; /* block records' sizes, what they hold */
	uint64_t objects, chunks;	/* remote objects (directories), their chunk records */
	uint64_t hits, misses;		/* all daemons', from v1/stats */
	/* the first LFS_CENSUS_LAYERS of the `layers` layer versions found */
	struct lfs_disk_census_layer per_layer[LFS_CENSUS_LAYERS];
	size_t nper_layer;
};

/* Counts what dirfd's tier holds. */
int lfs_disk_census(int dirfd, struct lfs_disk_census *out);
/* Checks every record whole, dropping bad ones; *bad counts them. */
int lfs_disk_verify(int dirfd, uint64_t *checked, uint64_t *bad);
/* Removes every record (the digest memo stays). */
int lfs_disk_clear(int dirfd);

#endif
