/* The stack: the opened layers, their merged tree and the read path,
 * everything a mount serves, with no FUSE in it (tests use it directly).
 *
 * lfs_stack_open() does all the checking a mount needs before anything is
 * mounted: the list, every zip's end records and central directory, the
 * limits, duplicates.  After it returns the stack is shared by all FUSE
 * threads: the tree and indexes are immutable, member handles are made
 * once, on first use, and published atomically, and the reader does its
 * own locking.  The structure is private; callers go through these calls. */
#ifndef LFS_STACK_H
#define LFS_STACK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "../cache/reader.h"
#include "../cache/source_http.h"
#include "tree.h"

struct lfs_stack_config {
	const char *list_path;
	size_t max_layers;		/* 0: LFS_TREE_MAX_LAYERS */
	uint64_t max_entries;		/* per layer; 0: no limit */
	uint64_t max_total_entries;	/* merged tree; 0: no limit */
	size_t max_name;		/* bytes of one zip entry name; 0: no limit */
	struct lfs_reader_config reader; /* its fault callback is the stack's */
	const char *cache_dir;		/* the host's cache (digests, disk tier); NULL: none */
	uint64_t cache_dir_size;	/* the disk tier's quota; 0: the default */
	int cache_level;		/* zstd level of blocks on disk; 0: raw */
	/* Remote layers (URLs in the list); the stack sets its disk. */
	struct lfs_http_config http;
	uid_t uid;
	gid_t gid;
};

struct lfs_stack;

/* What `layerfs check` and the status line show of layer i. */
struct lfs_stack_layer_info {
	const char *label;		/* provenance: name:version, name or path */
	const char *path;		/* as the list gave it, resolved */
	uint64_t entries;
	uint64_t zip_bytes;
	uint64_t unzipped_bytes;	/* sum of the entries' declared sizes */
};

/* Layers are identified by the SHA-256 of their bytes.  A list line's
 * sha256= is checked before the stack is accepted (hashing the zip unless
 * the cache directory remembers this version of it); a mismatch refuses
 * the stack.  Without sha256=, a digest the cache directory remembers is
 * taken, and one it does not is made in the background once the daemon
 * runs (lfs_stack_start), so mounting never waits for it.
 *
 * A remote layer (an http://, https:// or s3:// line) is never hashed:
 * that would fetch all of it.  Its sha256= is taken as the list says (it
 * names what the host cache shares), and without one the layer is keyed
 * by its version (URL without query, ETag and size), which nothing else
 * can have.  All remote layers are opened at once, in one round trip. */
int lfs_stack_open(const struct lfs_stack_config *cfg, struct lfs_stack **out, char *err,
		   size_t errlen);

/* Starts the stack's background work; call once, in the process (after
 * any fork) that serves it. */
void lfs_stack_start(struct lfs_stack *s);

/* Layer i's SHA-256 as hex into hex[65]: 1 when known, 0 while pending. */
int lfs_stack_layer_digest(const struct lfs_stack *s, size_t i, char hex[65]);
void lfs_stack_free(struct lfs_stack *s);

const struct lfs_tree *lfs_stack_tree(const struct lfs_stack *s);
size_t lfs_stack_layer_count(const struct lfs_stack *s);
void lfs_stack_layer_info(const struct lfs_stack *s, size_t i, struct lfs_stack_layer_info *out);
/* Seconds lfs_stack_open took. */
double lfs_stack_open_seconds(const struct lfs_stack *s);

/* Fills st for ino; -ENOENT when out of range. */
int lfs_stack_stat(const struct lfs_stack *s, uint64_t ino, struct stat *st);

/* Reads file data; see lfs_reader_read. */
ssize_t lfs_stack_read(struct lfs_stack *s, uint64_t ino, void *buf, size_t len,
		       uint64_t off);

/* Zero-copy form of lfs_stack_read for replies; see lfs_reader_pin.  Then
 * lfs_stack_readahead() once the reply is sent. */
ssize_t lfs_stack_pin(struct lfs_stack *s, uint64_t ino, uint64_t off, size_t len,
		      struct lfs_pin *p);
void lfs_stack_unpin(struct lfs_stack *s, struct lfs_pin *p);
void lfs_stack_readahead(struct lfs_stack *s, uint64_t ino, uint64_t end, enum lfs_seq seq);

/* The symlink target, NUL-terminated, in buf of `size` bytes (at least
 * LFS_TREE_MAX_PATH + 1).  0 or negative errno. */
int lfs_stack_readlink(struct lfs_stack *s, uint64_t ino, char *buf, size_t size);

/* Which layers provide ino, as text; returns the length or -ERANGE. */
int lfs_stack_provenance(const struct lfs_stack *s, uint64_t ino, char *buf, size_t size);

/* What user.layerfs.layer names a layer by: the operator's label (as
 * lfs_stack_layer_info's), the list's name (name:version or name; the
 * zip's file name, never its folder, for a layer the list names not), or
 * the zip's path. */
enum lfs_label { LFS_LABEL_OPERATOR, LFS_LABEL_NAME, LFS_LABEL_PATH };
int lfs_stack_provenance_as(const struct lfs_stack *s, uint64_t ino, enum lfs_label how,
			    char *buf, size_t size);

/* Counters as "key value" lines; returns the length or -ERANGE. */
int lfs_stack_stats_text(struct lfs_stack *s, char *buf, size_t size);

/* Entries a layer has that are not served as the zip declares them, by
 * why, counted at mount (the log names only the first few). */
enum lfs_problem {
	LFS_PROBLEM_ENCRYPTED,	/* listed; reads fail with EIO */
	LFS_PROBLEM_METHOD,	/* neither stored nor deflated: EIO */
	LFS_PROBLEM_SIZES,	/* sizes that cannot be: EIO */
	LFS_PROBLEM_TOO_LARGE,	/* 2^63 bytes or more: skipped */
	LFS_PROBLEM_NAME,	/* a name no lookup can reach: skipped */
	LFS_PROBLEM_SYMLINK,	/* an empty or too long target: skipped */
	LFS_PROBLEM_COUNT
};
const char *lfs_problem_name(enum lfs_problem p); /* "encrypted", ... */

/* The same numbers as lfs_stack_stats_text, as numbers. */
struct lfs_stack_layer_stats {
	const char *label;		/* operator's label: name:version, name or path */
	char sha256[65];		/* "" while pending */
	uint64_t entries, zip_bytes, unzipped_bytes;
	uint64_t bytes_read, bytes_inflated, bytes_served;
	/* failures the log reports, each counted */
	uint64_t data_faults;		/* members whose data proved bad (EIO from then on) */
	uint64_t header_faults;		/* entries whose local header is bad (EIO) */
	uint64_t source_errors;		/* reads of the zip that failed */
	uint64_t changed_reads;		/* reads failed because the zip changed */
	uint64_t digest_refused;	/* reads failed because its bytes are not its sha256= */
	uint64_t digest_mismatch;	/* 1 once a remote layer's bytes proved not to be
					 * its sha256= (every read fails from then on) */
	uint64_t problems[LFS_PROBLEM_COUNT];
};

struct lfs_stack_stats {
	struct lfs_reader_stats reader;
	size_t nlayers;
	unsigned inodes;
	uint64_t entries, zip_bytes, unzipped_bytes;
	uint64_t members_failed;	/* data and header faults of every layer */
	uint64_t problems;		/* entry problems of every layer */
	uint64_t digest_mismatches;	/* layers whose bytes are not their sha256= */
	uint64_t digest_refused;	/* reads failed for that, of every layer */
	double open_seconds;
	struct lfs_stack_layer_stats layers[LFS_TREE_MAX_LAYERS];
};
void lfs_stack_get_stats(struct lfs_stack *s, struct lfs_stack_stats *out);

/* Identifies what the stack serves under which inode numbers: the same
 * for a stack opened again from the same list over the same zips (inode
 * numbers are assigned by the tree alone), different when a zip or the
 * list changed.  A daemon taking over a live mount checks it. */
uint64_t lfs_stack_fingerprint(const struct lfs_stack *s);

/* Drops cached blocks (keeps resume points); see lfs_reader_drop_blocks. */
void lfs_stack_drop_blocks(struct lfs_stack *s);

/* Observers for the start-up trace (fs/prefetch.c), sharing ctx: `read`
 * is called after every read the stack served (ino, bytes [off, off +
 * len)), from the thread that served it; `name` by lfs_stack_note_name,
 * which the front end calls for a name looked up in directory dir that is
 * not there, and with name NULL when directory dir is listed from its
 * start (what the tree was asked that a read does not show: trace version
 * 2).  NULLs stop them.  Set them before the mount serves, or once it no
 * longer does: they are read without a lock, so changing them from one
 * observer to another while requests are served could pair them wrongly. */
void lfs_stack_set_observer(struct lfs_stack *s,
			    void (*read)(void *ctx, uint64_t ino, uint64_t off, size_t len),
			    void (*name)(void *ctx, uint32_t dir, const char *name, size_t len),
			    void *ctx);
void lfs_stack_note_name(struct lfs_stack *s, uint32_t dir, const char *name, size_t len);

/* Called, from a background thread, for every file and symlink of a
 * layer once its bytes proved not to be its listed sha256= (every read
 * of it fails with EIO from then on): for dropping what the kernel caches
 * of them.  NULL stops it; a call under way is over once this returns. */
void lfs_stack_set_on_untrusted(struct lfs_stack *s, void (*fn)(void *ctx, uint64_t ino),
				void *ctx);

/* Layer i's identity in a trace: "sha256:HEX" when its digest is known,
 * else "version:" and its source's version. */
void lfs_stack_layer_id(const struct lfs_stack *s, size_t i, char *buf, size_t size);

/* The stack's identity (its tree cache key) as hex: 0, or -EAGAIN while a
 * layer's digest is not known. */
int lfs_stack_key_hex(const struct lfs_stack *s, char hex[65]);

/* Has bytes [off, off + len) of ino made ahead (the inflate pool's
 * prefetch class).  0, or a negative errno. */
int lfs_stack_prefetch(struct lfs_stack *s, uint64_t ino, uint64_t off, uint64_t len);
uint64_t lfs_stack_cache_budget(struct lfs_stack *s);
uint32_t lfs_stack_block_size(const struct lfs_stack *s);
/* What a replay did, for the stats. */
void lfs_stack_note_replay(struct lfs_stack *s, uint64_t ranges, uint64_t skipped,
			   uint64_t bytes);
/* What a push into the kernel's page cache did (push.h), for the stats:
 * bytes wanted, files pushed, bytes stored, failed stores. */
void lfs_stack_note_push(struct lfs_stack *s, uint64_t wanted, uint64_t files, uint64_t bytes,
			 uint64_t errors);
/* A name of a trace (absent, list) looked up or listed ahead, for the
 * stats (prefetch_walked_names). */
void lfs_stack_note_walked(struct lfs_stack *s);

/* Waits until no read-ahead or prefetch is queued or running (tests). */
void lfs_stack_wait_idle(struct lfs_stack *s);

#endif
