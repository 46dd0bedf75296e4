#include "stack.h"

#include "../cache/digest.h"
#include "../cache/disk.h"
#include "../cache/hostdir.h"
#include "layerlist.h"
#include "log.h"
#include "treecache.h"
#include "zipindex.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* Source errors of one layer logged in full; after that one in every
 * power of two, so a layer on a failing disk cannot flood the log. */
#define SOURCE_ERRORS_LOGGED 10

struct lfs_layer {
	struct lfs_zip_index *zi;
	uint64_t key;			/* names it in the memory cache */
	char *label;			/* provenance: name:version, name or path */
	char *name_label;		/* name:version, name or the zip's file name */
	struct lfs_layer_counters counters;
	/* Member handles by entry, made on first read (atomic pointers).
	 * A handle's owner, in fault reports, is its slot here. */
	struct lfs_member **members;
	uint64_t unzipped_bytes;	/* sum of the entries' declared sizes */
	uint64_t source_errors;		/* atomic */
	uint64_t data_faults;		/* atomic */
	uint64_t changed_reads;		/* atomic */
	int changed_logged;		/* atomic */
	uint64_t problems[LFS_PROBLEM_COUNT]; /* found at mount */
	unsigned char digest[LFS_DIGEST_LEN]; /* the zip's SHA-256, once digest_known */
	int digest_known;		/* atomic; digest is written before it is set */
	struct lfs_pool_job digest_job;
	struct lfs_stack *stack;
	struct lfs_disk_layer *disk;	/* atomic; set once the digest is known */
	int remote;			/* an http(s):// or s3:// object */
	struct lfs_disk_later *later;	/* blocks made before the digest was known */
	int digest_derived;		/* remote, no sha256=: digest is a key made
					 * from its version, not its bytes' SHA-256 */
	int untrusted;			/* atomic; 1 once a remote layer's bytes proved
					 * not to have its listed sha256= */
	int conflict;			/* remote: its tail differs from the one the
					 * host holds under its sha256=, so one of the
					 * lists naming it is wrong: it shares nothing
					 * keyed by that digest (blocks, trees) */
	uint64_t digest_refused;	/* atomic: reads refused for that */
};

struct lfs_stack {
	struct lfs_layer *layers;
	size_t nlayers;
	struct lfs_tree *tree;
	struct lfs_reader *reader;
	uid_t uid;
	gid_t gid;
	uint64_t zip_bytes;		/* total size of the layer files */
	double open_seconds;		/* time to open the stack */
	int digests_fd;			/* cache_dir/digests, or -1 */
	int trees_fd;			/* cache_dir/trees, or -1 */
	struct lfs_treecache *treecache; /* the mapped tree, when it came from there */
	int tree_cached;		/* 1: the tree came from cache_dir */
	int tree_saved;			/* atomic; 1: it went there */
	uint64_t max_entries, max_total, max_name; /* what the tree was checked against */
	struct lfs_disk *disk;		/* the disk tier, or NULL */
	uint32_t block_size;
	uint64_t metadata_bytes;	/* tree and indexes, reserved in the budget */
	void (*observer)(void *ctx, uint64_t ino, uint64_t off, size_t len);
	void (*name_observer)(void *ctx, uint32_t dir, const char *name, size_t len);
	void *observer_ctx;		/* both observers' */
	uint64_t replay_ranges, replay_skipped, replay_bytes; /* atomic */
	uint64_t push_wanted, push_files, push_bytes, push_errors; /* atomic */
	uint64_t push_names;		/* atomic: absent/list records walked */
	pthread_mutex_t slab_lock;	/* the handle slabs */
	struct slab *slabs;
	/* Told the inodes of a layer found untrusted (the front end drops
	 * the kernel's pages of them); under hook_lock, which also makes a
	 * tree's save and the removal of trees with an untrusted layer come
	 * one after the other. */
	pthread_mutex_t hook_lock;
	void (*on_untrusted)(void *ctx, uint64_t ino);
	void *untrusted_ctx;
};

/* Member handles are made in slabs: see lfs_member_init. */
#define SLAB_HANDLES 512

struct slab {
	struct slab *next;
	size_t used;
	size_t size;			/* of one handle */
	_Alignas(max_align_t) unsigned char mem[];
};

/* Memory-cache keys name layers by a number no other layer of this process
 * has. */
static uint64_t next_layer_key = 1;

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void free_layers(struct lfs_stack *s)
{
	for (size_t i = 0; i < s->nlayers; i++) {
		struct lfs_layer *l = &s->layers[i];

		free(l->members);
		lfs_zip_close(l->zi);
		free(l->label);
		free(l->name_label);
	}
	free(s->layers);
}

void lfs_stack_free(struct lfs_stack *s)
{
	if (!s)
		return;
	/* The pool's jobs end first (what is queued for the disk is written),
	 * then the remote sources' threads (their writers use the disk tier,
	 * their hashers the layers, the disk and the trees), then the
	 * handles, which the reader counts, then the reader. */
	if (s->reader)
		lfs_reader_wait_idle(s->reader);
	for (size_t i = 0; i < s->nlayers; i++)
		if (s->layers[i].remote)
			lfs_source_http_stop(s->layers[i].zi->src);
	for (size_t i = 0; i < s->nlayers; i++)
		for (uint64_t j = 0; s->layers[i].members && j < s->layers[i].zi->count; j++)
			lfs_member_destroy(s->layers[i].members[j]);
	lfs_reader_free(s->reader);
	for (size_t i = 0; i < s->nlayers; i++)
		lfs_disk_later_free(s->layers[i].later);
	lfs_disk_close(s->disk);
	free_layers(s);
	lfs_tree_free(s->tree);
	lfs_treecache_free(s->treecache); /* after what points into it */
	for (struct slab *sl = s->slabs, *next; sl; sl = next) {
		next = sl->next;
		free(sl);
	}
	pthread_mutex_destroy(&s->slab_lock);
	pthread_mutex_destroy(&s->hook_lock);
	if (s->digests_fd >= 0)
		close(s->digests_fd);
	if (s->trees_fd >= 0)
		close(s->trees_fd);
	free(s);
}

/* The layer and entry a member handle belongs to (its owner is its slot). */
static struct lfs_layer *owner_of(struct lfs_stack *s, void *owner, uint64_t *entry)
{
	for (size_t i = 0; i < s->nlayers; i++) {
		struct lfs_layer *l = &s->layers[i];
		struct lfs_member **slot = owner;

		if (slot >= l->members && slot < l->members + l->zi->count) {
			*entry = (uint64_t)(slot - l->members);
			return l;
		}
	}
	return NULL;
}

/* A remote layer whose bytes proved not to be its listed sha256=: its
 * source knows first (and fails its reads), the layer once on_remote_digest
 * ran.  Either way nothing of it is served, and nothing more logged about
 * its reads than that one line. */
static int untrusted(const struct lfs_layer *l)
{
	return l->remote && (__atomic_load_n(&l->untrusted, __ATOMIC_ACQUIRE) ||
			     lfs_source_http_untrusted(l->zi->src));
}

/* A layer whose bytes changed under the mount: each read counted, one line
 * for the layer. */
static void changed(struct lfs_layer *l, const char *why, const char *name)
{
	__atomic_add_fetch(&l->changed_reads, 1, __ATOMIC_RELAXED);
	if (!__atomic_exchange_n(&l->changed_logged, 1, __ATOMIC_ACQ_REL))
		lfs_err("%s: %s (first seen reading '%s'); reads that need it fail with EIO",
			l->zi->path, why, name);
}

/* The reader's fault reports, as log lines naming layer and entry. */
static void on_fault(void *ctx, void *owner, enum lfs_fault kind, const char *why)
{
	struct lfs_stack *s = ctx;
	uint64_t i, n;
	struct lfs_layer *l = owner_of(s, owner, &i);
	const struct lfs_zip_entry *e;
	char name[256];

	if (!l || untrusted(l))
		return;	/* logged once, when its digest proved wrong */
	e = &l->zi->entries[i];
	lfs_log_name(name, sizeof(name), lfs_zip_name(l->zi, e), e->name_len);
	switch (kind) {
	case LFS_FAULT_DATA:
		__atomic_add_fetch(&l->data_faults, 1, __ATOMIC_RELAXED);
		lfs_err("%s: entry '%s': %s; reads fail with EIO", l->zi->path, name, why);
		break;
	case LFS_FAULT_CHANGED:
		changed(l, why, name);
		break;
	case LFS_FAULT_SOURCE:
		n = __atomic_add_fetch(&l->source_errors, 1, __ATOMIC_RELAXED);
		if (n <= SOURCE_ERRORS_LOGGED || !(n & (n - 1))) {
			char last[512] = "";

			if (l->remote)
				lfs_source_http_last_error(l->zi->src, last, sizeof(last));
			lfs_err("%s: entry '%s': %s%s%s%s; EIO for this read, the next one tries again (error %llu of this layer)",
				l->zi->path, name, why, last[0] ? " (" : "", last,
				last[0] ? ")" : "", (unsigned long long)n);
		}
		break;
	}
}

/* The disk tier's events, as log lines. */
static void on_disk_note(void *ctx, enum lfs_disk_note what, const char *detail)
{
	(void)ctx;
	switch (what) {
	case LFS_DISK_BAD_RECORD:
		lfs_warn("cache_dir: dropped a record that failed its checks (%s); it is made again",
			 detail);
		break;
	case LFS_DISK_WRITES_OFF:
		lfs_err("cache_dir: cannot write (%s); the disk tier writes no more, reads go on from memory",
			detail);
		break;
	case LFS_DISK_PRUNED:
		lfs_info("cache_dir: dropped the least recently used %s", detail);
		break;
	}
}

/* Gives layer l its disk tier once its digest is known. */
static void attach_disk(struct lfs_stack *s, struct lfs_layer *l)
{
	if (s->disk && __atomic_load_n(&l->digest_known, __ATOMIC_ACQUIRE))
		__atomic_store_n(&l->disk, lfs_disk_layer(s->disk, l->digest, s->block_size),
				 __ATOMIC_RELEASE);
	/* what was made while the digest was being made goes there too */
	if (l->later && s->reader)
		lfs_disk_later_attach(s->reader, l->later,
				      __atomic_load_n(&l->disk, __ATOMIC_ACQUIRE));
}

/* What the index and the tree (lfs_tree_add_layer) leave out of what an
 * entry declares, counted here because the log names only the first. */
static void count_problem(struct lfs_layer *l, const struct lfs_zip_entry *e)
{
	static const int by_bad[] = {
		[LFS_ZIP_ENCRYPTED] = LFS_PROBLEM_ENCRYPTED,
		[LFS_ZIP_UNSUPPORTED_METHOD] = LFS_PROBLEM_METHOD,
		[LFS_ZIP_BAD_SIZES] = LFS_PROBLEM_SIZES,
		[LFS_ZIP_TOO_LARGE] = LFS_PROBLEM_TOO_LARGE,
	};
	const char *name = lfs_zip_name(l->zi, e);
	char path[LFS_TREE_MAX_PATH + 1];
	int is_dir;

	/* names of at most 255 bytes without NUL always normalize */
	if ((e->name_len > 255 || memchr(name, '\0', e->name_len)) &&
	    lfs_tree_normalize(name, e->name_len, path, sizeof(path), &is_dir) < 0)
		l->problems[LFS_PROBLEM_NAME]++;
	else if (e->bad && e->kind != LFS_ZIP_DIR && e->bad < sizeof(by_bad) / sizeof(by_bad[0]))
		l->problems[by_bad[e->bad]]++;
	else if (e->kind == LFS_ZIP_SYMLINK && (e->size == 0 || e->size > LFS_TREE_MAX_PATH))
		l->problems[LFS_PROBLEM_SYMLINK]++;
}

/* libcrypto is loaded on first use (digest.h): now, before any system-call
 * filter, when the stack will hash (a host cache, a listed sha256=, a
 * remote layer); a stack that cannot is refused. */
static int load_crypto(const struct lfs_stack_config *cfg, const struct lfs_layer_list *list,
		       char *const *urls, char *err, size_t errlen)
{
	int need = cfg->cache_dir != NULL;
	const char *why;

	for (size_t i = 0; i < list->count && !need; i++)
		need = urls[i] || list->layers[i].sha256;
	if (need && lfs_crypto_load(&why))
		return lfs_errf(err, errlen, -ENOSYS, "%s: SHA-256 (for cache_dir, sha256= or a remote layer) is not available: %s",
				cfg->list_path, why);
	return 0;
}

/* Refuses a layer listed twice under different spellings (a symlink, a
 * hard link, `sub/../x.zip`): the same object behind two lines. */
static int check_duplicate(struct lfs_source *const *srcs, const struct lfs_layer_list *list,
			   const char *listname, size_t i, char *err, size_t errlen)
{
	for (size_t j = 0; j < i; j++)
		if (!strcmp(srcs[j]->object, srcs[i]->object))
			return lfs_errf(err, errlen, -EINVAL,
					"%s:%u: the same layer as line %u is listed twice (%s is %s)",
					listname, list->layers[i].line, list->layers[j].line,
					list->layers[i].path, list->layers[j].path);
	return 0;
}

/* Which member of its layer an entry is, in the memory cache and on disk:
 * its local header offset and, for entries that share one local header
 * but declare other sizes or CRCs, the variant the index gave it (so they
 * never share blocks).  Offsets lie inside the file, below 2^56. */
static uint64_t member_key(const struct lfs_zip_entry *e)
{
	return e->lho << 8 | e->variant;
}

/* A remote layer is not hashed at mount (that would fetch all of it): the
 * listed digest names it from the start, and its source checks it once
 * every byte has been fetched (on_remote_digest).  What this host learnt
 * that way of this version of the object is remembered (the digest memo,
 * by its version: URL without query, ETag and size): a digest it found
 * before is trusted without hashing again, one it found wrong refuses the
 * stack, as a local layer's would.  Without sha256= the layer is keyed by
 * its version, under a prefix no zip's SHA-256 can be made to equal. */
static int identify_remote(struct lfs_stack *s, struct lfs_layer *l, struct lfs_source *src,
			   const struct lfs_layer_spec *spec, const char *listname, char *err,
			   size_t errlen)
{
	if (spec->sha256) {
		unsigned char seen[LFS_DIGEST_LEN];
		char hex[LFS_DIGEST_HEX];

		if (lfs_digest_parse(spec->sha256, l->digest))
			return lfs_errf(err, errlen, -EINVAL, "%s:%u: bad sha256=", listname,
					spec->line);
		if (s->digests_fd >= 0 && lfs_digest_memo_get(s->digests_fd, src->version, seen) == 0) {
			if (memcmp(seen, l->digest, LFS_DIGEST_LEN)) {
				lfs_digest_hex(seen, hex);
				return lfs_errf(err, errlen, -EINVAL,
						"%s:%u: %s: its SHA-256 is %s, the list says sha256=%s (this host read all of it before)",
						listname, spec->line, spec->path, hex, spec->sha256);
			}
			lfs_source_http_digest_known(src);
		}
	} else {
		char key[LFS_SOURCE_ID_MAX + 32];
		int rc;

		snprintf(key, sizeof(key), "layerfs remote version %s", src->version);
		rc = lfs_digest_bytes(key, strlen(key), l->digest);
		if (rc)
			return lfs_errf(err, errlen, rc, "%s: cannot key it: %s", spec->path,
					strerror(-rc));
		l->digest_derived = 1;
	}
	l->digest_known = 1;
	return 0;
}

/* The layer's digest as far as it can be known at mount: the memo's, or,
 * when the list gives one, checked against the bytes. */
static int identify(struct lfs_stack *s, struct lfs_layer *l, struct lfs_source *src,
		    const struct lfs_layer_spec *spec, const char *listname, char *err,
		    size_t errlen)
{
	unsigned char given[LFS_DIGEST_LEN], seen[LFS_DIGEST_LEN];
	char hex[LFS_DIGEST_HEX];
	const char *version = src->version;
	int have, rc;

	if (l->remote)
		return identify_remote(s, l, src, spec, listname, err, errlen);
	have = s->digests_fd >= 0 && lfs_digest_memo_get(s->digests_fd, version, seen) == 0;

	if (!spec->sha256) {
		if (have) {
			memcpy(l->digest, seen, LFS_DIGEST_LEN);
			l->digest_known = 1;
		}
		return 0;
	}
	if (lfs_digest_parse(spec->sha256, given))
		return lfs_errf(err, errlen, -EINVAL, "%s:%u: bad sha256=", listname, spec->line);
	if (!have) {
		rc = lfs_digest_source(src, seen);
		if (rc)
			return lfs_errf(err, errlen, rc, "%s: cannot read it to check its SHA-256: %s",
					spec->path, strerror(-rc));
		if (s->digests_fd >= 0 && !memcmp(seen, given, LFS_DIGEST_LEN))
			(void)lfs_digest_memo_put(s->digests_fd, version, seen);
	}
	if (memcmp(seen, given, LFS_DIGEST_LEN)) {
		lfs_digest_hex(seen, hex);
		return lfs_errf(err, errlen, -EINVAL,
				"%s:%u: %s: its SHA-256 is %s, the list says sha256=%s", listname,
				spec->line, spec->path, hex, spec->sha256);
	}
	memcpy(l->digest, given, LFS_DIGEST_LEN);
	l->digest_known = 1;
	return 0;
}

/* The same bytes behind two lines (two copies of one zip) are one layer
 * listed twice, as far as digests are known at mount. */
static int check_same_digest(const struct lfs_stack *s, const struct lfs_layer_list *list,
			     const char *listname, char *err, size_t errlen)
{
	for (size_t i = 0; i < list->count; i++)
		for (size_t j = 0; j < i; j++)
			if (s->layers[i].digest_known && s->layers[j].digest_known &&
			    !s->layers[i].digest_derived && !s->layers[j].digest_derived &&
			    !memcmp(s->layers[i].digest, s->layers[j].digest, LFS_DIGEST_LEN))
				return lfs_errf(err, errlen, -EINVAL,
						"%s:%u: the same layer as line %u is listed twice (%s and %s have the same SHA-256)",
						listname, list->layers[i].line, list->layers[j].line,
						list->layers[j].path, list->layers[i].path);
	return 0;
}

/* The layers' indexes and the tree from the mapped tree cache file; the
 * indexes take the sources over.  -EINVAL when a part does not check out
 * (then nothing is taken, and the stack is built). */
static int from_treecache(struct lfs_stack *s, const struct lfs_layer_list *list,
			  struct lfs_source **srcs)
{
	struct lfs_zip_index **zis = calloc(list->count, sizeof(*zis));
	const void *part;
	size_t len, i;
	int rc = 0;

	if (!zis)
		return -ENOMEM;
	for (i = 0; i < list->count && !rc; i++) {
		part = lfs_treecache_zip(s->treecache, i, &len);
		rc = lfs_zip_from_flat(srcs[i], list->layers[i].path, part, len, &zis[i]);
	}
	if (!rc) {
		part = lfs_treecache_tree(s->treecache, &len);
		s->tree = lfs_tree_from_flat(part, len);
		rc = s->tree ? 0 : -EINVAL;
	}
	for (size_t j = 0; j < i; j++) {
		if (rc) {
			zis[j]->src = NULL; /* still srcs[j] */
			lfs_zip_close(zis[j]);
			continue;
		}
		s->layers[j].zi = zis[j];
		srcs[j] = NULL;
	}
	if (rc) {
		lfs_treecache_free(s->treecache);
		s->treecache = NULL;
	} else {
		s->nlayers = list->count;
		for (size_t j = 0; j < s->nlayers; j++)
			if (zis[j]->bad_entries)
				lfs_warn("%s: %llu entries with problems (named when this stack was first mounted on this host)",
					 zis[j]->path, (unsigned long long)zis[j]->bad_entries);
	}
	free(zis);
	return rc;
}

/* The tree cache's key of s: its layers' digests (all known) and the
 * mtimes of their files (srcs[i], or the index's source). */
static int stack_key(const struct lfs_stack *s, struct lfs_source *const *srcs, size_t n,
		     struct lfs_treecache_key *key)
{
	unsigned char (*digests)[LFS_DIGEST_LEN] = calloc(n, sizeof(*digests));
	int64_t *mtimes = calloc(n, sizeof(*mtimes));
	int rc;

	if (!digests || !mtimes) {
		free(digests);
		free(mtimes);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		memcpy(digests[i], s->layers[i].digest, LFS_DIGEST_LEN);
		mtimes[i] = srcs ? srcs[i]->mtime : s->layers[i].zi->src->mtime;
	}
	rc = lfs_treecache_key((const unsigned char (*)[LFS_DIGEST_LEN])digests, mtimes, n,
			       s->max_entries, s->max_total, s->max_name, key);
	free(digests);
	free(mtimes);
	return rc;
}

/* Keeps the stack's tree for its next mount on this host. */
static void save_tree(struct lfs_stack *s, const struct lfs_treecache_key *key)
{
	struct lfs_zip_index *zis[LFS_TREE_MAX_LAYERS];

	for (size_t i = 0; i < s->nlayers; i++)
		zis[i] = s->layers[i].zi;
	if (lfs_treecache_save(s->trees_fd, key, zis, s->nlayers, s->tree) == 0)
		__atomic_store_n(&s->tree_saved, 1, __ATOMIC_RELEASE);
}

/* Once the background hashing has made every layer's digest known, the
 * tree is kept as if it had been known at mount.  Called from the pool. */
static void digests_complete(struct lfs_stack *s)
{
	struct lfs_treecache_key key;
	int untrusted = 0;

	if (s->trees_fd < 0)
		return;
	for (size_t i = 0; i < s->nlayers; i++)
		if (!__atomic_load_n(&s->layers[i].digest_known, __ATOMIC_ACQUIRE))
			return;
	/* the last two layers' jobs may both get here; and a layer found
	 * untrusted meanwhile has its trees removed under the same lock */
	pthread_mutex_lock(&s->hook_lock);
	for (size_t i = 0; i < s->nlayers; i++)
		untrusted |= __atomic_load_n(&s->layers[i].untrusted, __ATOMIC_ACQUIRE) ||
			     s->layers[i].conflict;
	if (!untrusted && !s->tree_cached && !__atomic_load_n(&s->tree_saved, __ATOMIC_ACQUIRE) &&
	    stack_key(s, NULL, s->nlayers, &key) == 0)
		save_tree(s, &key);
	pthread_mutex_unlock(&s->hook_lock);
}

/* A remote layer's listed digest, checked by its source once every byte
 * was fetched (from the source's hasher thread, after lfs_stack_start).
 * A match is remembered for the next mount.  A mismatch: the layer's bytes
 * cannot be trusted, so every read of it fails with EIO from now on, one
 * line says so, what the host keyed by that digest goes (the source has
 * removed its chunks; here the blocks, resume points, CRC tables and the
 * trees with it), the kernel's pages of its files are dropped, and the
 * memo remembers the digest the bytes have, so that a later mount of the
 * same list is refused at once. */
static void on_remote_digest(void *ctx, struct lfs_source *src, int match,
			     const unsigned char actual[LFS_DIGEST_LEN])
{
	struct lfs_layer *l = ctx;
	struct lfs_stack *s = l->stack;
	char hex[LFS_DIGEST_HEX], listed[LFS_DIGEST_HEX];
	size_t i = (size_t)(l - s->layers);

	if (s->digests_fd >= 0)
		(void)lfs_digest_memo_put(s->digests_fd, src->version, actual);
	if (match) {
		lfs_debug("%s: every byte fetched; its SHA-256 is the listed one", l->zi->path);
		return;
	}
	__atomic_store_n(&l->untrusted, 1, __ATOMIC_RELEASE);
	lfs_digest_hex(actual, hex);
	lfs_digest_hex(l->digest, listed);
	lfs_err("%s: its SHA-256 is %s, the list says sha256=%s; its bytes cannot be trusted: reads of it fail with EIO, and cache_dir keeps nothing of it",
		l->zi->path, hex, listed);
	/* nothing more of it goes to the disk, then what is there goes (a
	 * layer in conflict put nothing there: what is there is another
	 * object's, which may well have the digest) */
	__atomic_store_n(&l->disk, NULL, __ATOMIC_RELEASE);
	lfs_disk_later_attach(s->reader, l->later, NULL);
	if (s->disk && !l->conflict)
		(void)lfs_disk_forget_layer(s->disk, l->digest);
	pthread_mutex_lock(&s->hook_lock);
	if (s->trees_fd >= 0 && !l->conflict)
		(void)lfs_treecache_forget(s->trees_fd, l->digest);
	if (s->on_untrusted)
		for (uint64_t ino = 1; ino <= lfs_tree_count(s->tree); ino++) {
			const struct lfs_node *n = lfs_tree_node(s->tree, ino);

			if (!S_ISDIR(n->mode) && n->layer == i)
				s->on_untrusted(s->untrusted_ctx, ino);
		}
	pthread_mutex_unlock(&s->hook_lock);
}

/* Opens every layer's bytes: local files one by one, then every remote
 * object at once (their tails in one round trip).  urls[i] is a remote
 * layer's URL as listed (its spec's path is then its name for messages).
 * A local layer's refusal is reported before any request is made; else the
 * first remote refusal in the list's order. */
static int open_sources(struct lfs_stack *s, const struct lfs_stack_config *cfg,
			const struct lfs_layer_list *list, char *const *urls,
			struct lfs_source **srcs, char *err, size_t errlen)
{
	struct lfs_http_config http = cfg->http;
	struct lfs_http_open *objs;
	size_t nremote = 0, k = 0;
	int rc = 0, https = 0;

	for (size_t i = 0; i < list->count; i++) {
		if (urls[i]) {
			nremote++;
			https = https || strncasecmp(urls[i], "http://", 7);
		} else if (!rc) {
			rc = lfs_source_file_open(list->layers[i].path, &srcs[i], err, errlen);
		}
	}
	if (rc || !nremote)
		return rc;
	if (http.insecure && https)
		lfs_warn("insecure: https certificates of remote layers are not verified");
	objs = calloc(nremote, sizeof(*objs));
	if (!objs)
		return -ENOMEM;
	for (size_t i = 0; i < list->count; i++)
		if (urls[i]) {
			objs[k].url = urls[i];
			objs[k].digest_ctx = &s->layers[i];
			objs[k++].sha256 = list->layers[i].sha256;
		}
	http.disk = s->disk;
	http.on_digest = on_remote_digest;
	http.defer_threads = 1; /* until lfs_stack_start, after the daemon's fork */
	(void)lfs_source_http_open_many(objs, nremote, &http);
	k = 0;
	for (size_t i = 0; i < list->count; i++) {
		if (!urls[i])
			continue;
		srcs[i] = objs[k].src;
		if (objs[k].rc && !rc) {
			rc = objs[k].rc;
			snprintf(err, errlen, "%s", objs[k].err);
		}
		k++;
	}
	free(objs);
	return rc;
}

static void free_urls(char **urls, size_t n)
{
	for (size_t i = 0; urls && i < n; i++)
		free(urls[i]);
	free(urls);
}

/* Takes the URLs out of the list: urls[i] is layer i's as listed (it may
 * carry a presigned query, never printed), and its path becomes the name
 * messages, provenance and `check` give it. */
static int take_urls(struct lfs_layer_list *list, char **urls)
{
	for (size_t i = 0; i < list->count; i++) {
		struct lfs_layer_spec *spec = &list->layers[i];
		char name[LFS_LIST_MAX_LINE + 1], *dup;

		if (!lfs_source_http_is_url(spec->path))
			continue;
		lfs_source_http_name(spec->path, name, sizeof(name));
		dup = strdup(name);
		if (!dup)
			return -ENOMEM;
		urls[i] = spec->path;
		spec->path = dup;
	}
	return 0;
}

/* The layers' indexes are opened by a thread of their own while the tree
 * takes them in, one after another: the central directory of the next
 * layer is read and parsed while the last one is put in the tree.  What
 * opening an index logs is kept with it and said when its layer is added,
 * so messages come out as they would one layer at a time. */
struct opened {
	struct lfs_zip_index *zi;	/* owns its source from here */
	struct lfs_log_lines log;
};

struct opener {
	const struct lfs_layer_list *list;
	struct lfs_source **srcs;
	const struct lfs_zip_limits *limits;
	struct opened *ready;		/* [list->count] */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	size_t done;			/* under lock: ready[0..done) are final */
	int stop;			/* under lock: no more are wanted */
	int rc;				/* nonzero: layer done - 1 failed, with err */
	char err[1024];
};

static void *open_indexes(void *arg)
{
	struct opener *op = arg;
	size_t n = op->list->count;

	/* The later layers' bytes asked of the disk ahead: their end
	 * records while the first layer's come in, their directories once
	 * those are there (the first one is read at once). */
	for (size_t i = 1; i < n; i++)
		lfs_zip_will_need_end(op->srcs[i]);
	for (size_t i = 0; i < n; i++) {
		struct opened *o = &op->ready[i];
		int rc, stop;

		if (i == 1)
			for (size_t j = 1; j < n; j++)
				lfs_zip_will_need(op->srcs[j]);
		pthread_mutex_lock(&op->lock);
		stop = op->stop;
		pthread_mutex_unlock(&op->lock);
		if (stop)
			break;
		lfs_log_capture(&o->log);
		rc = lfs_zip_open_source(op->srcs[i], op->list->layers[i].path, op->limits,
					 &o->zi, op->err, sizeof(op->err));
		lfs_log_capture(NULL);
		pthread_mutex_lock(&op->lock);
		op->rc = rc;
		op->done = i + 1;
		pthread_cond_signal(&op->cond);
		pthread_mutex_unlock(&op->lock);
		if (rc)
			break;
	}
	return NULL;
}

/* Opens every layer's index and adds it to the tree b, in order. */
static int build_tree(struct lfs_stack *s, const struct lfs_stack_config *cfg,
		      const struct lfs_layer_list *list, struct lfs_source **srcs,
		      const struct lfs_zip_limits *limits, struct lfs_tree_builder *b,
		      char *err, size_t errlen)
{
	struct opener op = { .list = list, .srcs = srcs, .limits = limits,
			     .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
	pthread_t thread;
	int threaded, rc = 0;

	op.ready = calloc(list->count, sizeof(*op.ready));
	if (!op.ready)
		return -ENOMEM;
	/* one layer has nothing to overlap; no thread: all of it first */
	threaded = list->count > 1 && pthread_create(&thread, NULL, open_indexes, &op) == 0;
	if (!threaded)
		open_indexes(&op);
	for (size_t i = 0; i < list->count; i++) {
		struct lfs_layer *l = &s->layers[i];
		int failed;

		pthread_mutex_lock(&op.lock);
		while (op.done <= i && !(op.done && op.rc))
			pthread_cond_wait(&op.cond, &op.lock);
		failed = op.done == i + 1 && op.rc;
		pthread_mutex_unlock(&op.lock);
		lfs_log_replay(&op.ready[i].log);
		if (failed) {
			rc = op.rc;
			snprintf(err, errlen, "%s", op.err);
			break;
		}
		l->zi = op.ready[i].zi;
		op.ready[i].zi = NULL;
		srcs[i] = NULL; /* the index's now */
		s->nlayers++;
		rc = lfs_tree_add_layer(b, (unsigned)i, l->zi, cfg->max_total_entries);
		if (rc == -E2BIG)
			snprintf(err, errlen,
				 "%s: the merged tree would have more than max_total_entries=%llu entries",
				 l->zi->path, (unsigned long long)cfg->max_total_entries);
		if (rc)
			break;
	}
	pthread_mutex_lock(&op.lock);
	op.stop = 1;
	pthread_mutex_unlock(&op.lock);
	if (threaded)
		pthread_join(thread, NULL);
	/* what was opened ahead of a failure: index and source go together */
	for (size_t i = 0; i < list->count; i++) {
		if (op.ready[i].zi) {
			lfs_zip_close(op.ready[i].zi);
			srcs[i] = NULL;
		}
		lfs_log_lines_free(&op.ready[i].log);
	}
	free(op.ready);
	pthread_mutex_destroy(&op.lock);
	pthread_cond_destroy(&op.cond);
	return rc;
}

int lfs_stack_open(const struct lfs_stack_config *cfg, struct lfs_stack **out, char *err,
		   size_t errlen)
{
	struct lfs_zip_limits limits = { cfg->max_entries, cfg->max_name };
	struct lfs_reader_config rcfg = cfg->reader;
	struct lfs_layer_list list = { 0 };
	struct lfs_tree_builder *b = NULL;
	struct lfs_source **srcs = NULL;
	char **urls = NULL;
	struct lfs_treecache_key tree_key;
	struct lfs_stack *s;
	double t0 = now_seconds();
	int all_known = 1, have_key = 0, shared = 1;
	size_t max_layers = cfg->max_layers ? cfg->max_layers : LFS_TREE_MAX_LAYERS;
	int rc;

	if (max_layers > LFS_TREE_MAX_LAYERS) {
		snprintf(err, errlen, "max_layers is at most %d", LFS_TREE_MAX_LAYERS);
		return -EINVAL;
	}
	rc = lfs_reader_config_check(&rcfg, err, errlen);
	if (rc)
		return rc;
	rc = lfs_layerlist_load(cfg->list_path, max_layers, &list, err, errlen);
	if (rc)
		return rc;
	/* Warnings about entries are shown only if the stack is accepted: a
	 * refusal is one line. */
	lfs_log_hold();
	s = calloc(1, sizeof(*s));
	if (!s || !(s->layers = calloc(list.count, sizeof(*s->layers)))) {
		rc = -ENOMEM;
		goto fail;
	}
	s->uid = cfg->uid;
	s->gid = cfg->gid;
	s->digests_fd = -1;
	s->trees_fd = -1;
	pthread_mutex_init(&s->slab_lock, NULL);
	pthread_mutex_init(&s->hook_lock, NULL);
	s->max_entries = cfg->max_entries;
	s->max_total = cfg->max_total_entries;
	s->max_name = cfg->max_name;
	if (cfg->cache_dir) {
		int dirfd;

		rc = lfs_hostdir_open(cfg->cache_dir, &dirfd, err, errlen);
		if (rc)
			goto fail;
		rc = lfs_hostdir_sub(dirfd, "digests", &s->digests_fd, err, errlen);
		if (!rc)
			rc = lfs_hostdir_sub(dirfd, "trees", &s->trees_fd, err, errlen);
		if (!rc) {
			struct lfs_disk_config dc = { cfg->cache_dir_size, cfg->cache_level,
						      on_disk_note, s };

			rc = lfs_disk_open(dirfd, &dc, &s->disk, err, errlen);
		}
		close(dirfd);
		if (rc)
			goto fail;
	}
	s->block_size = rcfg.block_size;
	/* every layer's bytes, its identity and digest, before any index */
	srcs = calloc(list.count, sizeof(*srcs));
	urls = calloc(list.count, sizeof(*urls));
	if (!srcs || !urls) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = take_urls(&list, urls);
	if (!rc)
		rc = load_crypto(cfg, &list, urls, err, errlen);
	if (!rc)
		rc = open_sources(s, cfg, &list, urls, srcs, err, errlen);
	if (rc)
		goto fail;
	for (size_t i = 0; i < list.count; i++) {
		struct lfs_layer *l = &s->layers[i];

		l->remote = urls[i] != NULL;
		rc = check_duplicate(srcs, &list, cfg->list_path, i, err, errlen);
		if (rc)
			goto fail;
		l->key = __atomic_fetch_add(&next_layer_key, 1, __ATOMIC_RELAXED);
		l->stack = s;
		rc = identify(s, l, srcs[i], &list.layers[i], cfg->list_path, err, errlen);
		if (rc)
			goto fail;
		all_known = all_known && l->digest_known;
		if (l->remote) {
			struct lfs_http_counters hc;

			l->conflict = lfs_source_http_counters(srcs[i], &hc) == 0 && hc.disk_conflict;
			shared = shared && !l->conflict;
		}
	}
	rc = check_same_digest(s, &list, cfg->list_path, err, errlen);
	if (rc)
		goto fail;
	/* A stack this host mounted before: its tree and indexes as they were
	 * written then, no central directory parsed. */
	if (s->trees_fd >= 0 && all_known && shared) {
		rc = stack_key(s, srcs, list.count, &tree_key);
		if (rc)
			goto fail;
		have_key = 1;
		if (lfs_treecache_load(s->trees_fd, &tree_key, list.count, &s->treecache) == 0 &&
		    from_treecache(s, &list, srcs) == 0)
			s->tree_cached = 1;
	}
	if (!s->tree_cached) {
		b = lfs_tree_builder_new((int64_t)time(NULL));
		if (!b) {
			rc = -ENOMEM;
			goto fail;
		}
	}
	if (!s->tree_cached) {
		rc = build_tree(s, cfg, &list, srcs, &limits, b, err, errlen);
		if (rc)
			goto fail;
	}
	for (size_t i = 0; i < s->nlayers; i++) {
		struct lfs_layer *l = &s->layers[i];
		char label[4096];

		l->label = strdup(lfs_layer_spec_label(&list.layers[i], label, sizeof(label)));
		l->name_label = list.layers[i].name ? strdup(l->label)
				: strdup(strrchr(l->zi->path, '/') ? strrchr(l->zi->path, '/') + 1
								   : l->zi->path);
		l->members = calloc(l->zi->count ? l->zi->count : 1, sizeof(*l->members));
		if (!l->label || !l->name_label || !l->members) {
			rc = -ENOMEM;
			goto fail;
		}
		s->zip_bytes += l->zi->file_size;
		for (uint64_t j = 0; j < l->zi->count; j++) {
			l->unzipped_bytes += l->zi->entries[j].size;
			count_problem(l, &l->zi->entries[j]);
		}
	}
	if (!s->tree_cached) {
		s->tree = lfs_tree_freeze(b);
		b = NULL;
		if (s->tree && have_key)
			save_tree(s, &tree_key);
	}
	rcfg.fault = on_fault;
	rcfg.fault_ctx = s;
	rcfg.disk = s->disk;
	for (size_t i = 0; i < s->nlayers; i++)
		if (!s->layers[i].conflict)
			attach_disk(s, &s->layers[i]);
	s->reader = lfs_reader_new(&rcfg);
	if (!s->tree || !s->reader) {
		rc = -ENOMEM;
		goto fail;
	}
	/* The tree and the indexes are memory of the mount's too: counted
	 * against the cache budget (docs/datapath.md, Memory). */
	s->metadata_bytes = lfs_tree_flat_size(s->tree);
	for (size_t i = 0; i < s->nlayers; i++)
		s->metadata_bytes += s->layers[i].zi->count * (sizeof(struct lfs_zip_entry) + 16) +
				     s->layers[i].zi->cd_size;
	lfs_reader_reserve(s->reader, (int64_t)s->metadata_bytes);
	s->open_seconds = now_seconds() - t0;
	if (s->tree_cached)
		lfs_debug("the stack's tree came from cache_dir");
	for (size_t i = 0; i < s->nlayers; i++) {
		if (s->layers[i].conflict)
			lfs_warn("%s: its end differs from what this host holds under sha256=%s: one of the lists naming that digest is wrong; it shares nothing with cache_dir",
				 s->layers[i].zi->path, list.layers[i].sha256);
	}
	free(srcs);
	free_urls(urls, list.count);
	lfs_layerlist_free(&list);
	lfs_log_release(1);
	*out = s;
	return 0;
fail:
	if (rc == -ENOMEM)
		snprintf(err, errlen, "%s: out of memory", cfg->list_path);
	lfs_log_release(0);
	lfs_tree_builder_free(b);
	for (size_t i = 0; srcs && i < list.count; i++)
		lfs_source_close(srcs[i]);
	free(srcs);
	free_urls(urls, list.count);
	lfs_layerlist_free(&list);
	lfs_stack_free(s);
	return rc;
}

/* Hashes a layer the memo did not know, in the pool, at the lowest
 * priority: nothing waits for it. */
static void digest_run(struct lfs_pool_job *job, int cancelled)
{
	struct lfs_layer *l = (struct lfs_layer *)((char *)job - offsetof(struct lfs_layer, digest_job));
	unsigned char d[LFS_DIGEST_LEN];
	int rc;

	if (cancelled)
		return;
	rc = lfs_digest_source(l->zi->src, d);
	if (rc) {
		__atomic_add_fetch(&l->source_errors, 1, __ATOMIC_RELAXED);
		lfs_warn("%s: cannot hash it: %s; it shares nothing with other mounts", l->zi->path,
			 strerror(-rc));
		lfs_disk_later_attach(l->stack->reader, l->later, NULL);
		return;
	}
	memcpy(l->digest, d, LFS_DIGEST_LEN);
	__atomic_store_n(&l->digest_known, 1, __ATOMIC_RELEASE);
	attach_disk(l->stack, l);
	if (l->stack->digests_fd >= 0)
		(void)lfs_digest_memo_put(l->stack->digests_fd, l->zi->src->version, d);
	digests_complete(l->stack);
}

void lfs_stack_start(struct lfs_stack *s)
{
	/* Remote sources start no thread before this (the daemon forks after
	 * opening the stack, and threads do not cross a fork). */
	for (size_t i = 0; i < s->nlayers; i++)
		if (s->layers[i].remote)
			lfs_source_http_start(s->layers[i].zi->src);
	/* Only a host cache needs a digest the list did not give. */
	if (s->digests_fd < 0)
		return;
	for (size_t i = 0; i < s->nlayers; i++) {
		struct lfs_layer *l = &s->layers[i];

		if (!__atomic_load_n(&l->digest_known, __ATOMIC_ACQUIRE)) {
			/* blocks made before the digest is known wait for it */
			if (s->disk)
				__atomic_store_n(&l->later, lfs_disk_later_new(), __ATOMIC_RELEASE);
			l->digest_job.run = digest_run;
			(void)lfs_pool_submit(lfs_reader_pool(s->reader), &l->digest_job,
					      LFS_PRIO_BACKGROUND);
		}
	}
}

int lfs_stack_layer_digest(const struct lfs_stack *s, size_t i, char hex[65])
{
	const struct lfs_layer *l = &s->layers[i];

	if (!__atomic_load_n(&l->digest_known, __ATOMIC_ACQUIRE))
		return 0;
	lfs_digest_hex(l->digest, hex);
	return 1;
}

const struct lfs_tree *lfs_stack_tree(const struct lfs_stack *s) { return s->tree; }
size_t lfs_stack_layer_count(const struct lfs_stack *s) { return s->nlayers; }
double lfs_stack_open_seconds(const struct lfs_stack *s) { return s->open_seconds; }

void lfs_stack_layer_info(const struct lfs_stack *s, size_t i, struct lfs_stack_layer_info *out)
{
	const struct lfs_layer *l = &s->layers[i];

	out->label = l->label;
	out->path = l->zi->path;
	out->entries = l->zi->count;
	out->zip_bytes = l->zi->file_size;
	out->unzipped_bytes = l->unzipped_bytes;
}

int lfs_stack_stat(const struct lfs_stack *s, uint64_t ino, struct stat *st)
{
	const struct lfs_node *n = lfs_tree_node(s->tree, ino);

	if (!n)
		return -ENOENT;
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_mode = n->mode;
	st->st_nlink = S_ISDIR(n->mode) ? 2 + n->nsubdirs : 1;
	st->st_uid = s->uid;
	st->st_gid = s->gid;
	st->st_size = S_ISDIR(n->mode) ? 4096 : (off_t)n->size;
	st->st_blksize = 4096;
	st->st_blocks = (blkcnt_t)((n->size + 511) / 512);
	st->st_mtim.tv_sec = (time_t)n->mtime;
	st->st_ctim = st->st_mtim;
	st->st_atim = st->st_mtim;
	return 0;
}

/* Memory for one more handle, with s->slab_lock held. */
static struct lfs_member *slab_handle(struct lfs_stack *s)
{
	size_t size = (lfs_member_size() + _Alignof(max_align_t) - 1) &
		      ~(_Alignof(max_align_t) - 1);
	struct slab *sl = s->slabs;

	if (!sl || sl->used == SLAB_HANDLES) {
		sl = malloc(sizeof(*sl) + SLAB_HANDLES * size);
		if (!sl)
			return NULL;
		sl->next = s->slabs;
		sl->used = 0;
		sl->size = size;
		s->slabs = sl;
	}
	return (struct lfs_member *)(void *)(sl->mem + sl->used++ * size);
}

/* The member behind a file or symlink node: its handle, made the first
 * time.  Making it reads the local header; a source error there is
 * remembered by nothing, so the next read tries again. */
static int member_of(struct lfs_stack *s, uint64_t ino, struct lfs_member **out)
{
	const struct lfs_node *n = lfs_tree_node(s->tree, ino);
	struct lfs_layer *l;
	const struct lfs_zip_entry *e;
	struct lfs_member_desc d;
	struct lfs_member *m, *expect = NULL, **slot;
	int rc;

	if (!n)
		return -ENOENT;
	if (S_ISDIR(n->mode))
		return -EISDIR;
	l = &s->layers[n->layer];
	if (untrusted(l)) {
		/* its bytes are not the listed ones: not even what is cached */
		__atomic_add_fetch(&l->digest_refused, 1, __ATOMIC_RELAXED);
		return -EIO;
	}
	slot = &l->members[n->entry];
	m = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
	if (m) {
		*out = m;
		return 0;
	}
	e = &l->zi->entries[n->entry];
	rc = lfs_zip_data_offset(l->zi, n->entry, &d.data_off);
	if (rc == -ESTALE) {
		char name[256];

		changed(l, "the layer changed after it was mounted",
			lfs_log_name(name, sizeof(name), lfs_zip_name(l->zi, e), e->name_len));
		return -EIO;
	}
	if (rc) {
		/* A source error leaves the entry unresolved (the next read
		 * tries again); a bad header is remembered and counted by
		 * lfs_stack_get_stats. */
		if (!e->bad && !__atomic_load_n(&l->zi->data_off[n->entry], __ATOMIC_ACQUIRE))
			__atomic_add_fetch(&l->source_errors, 1, __ATOMIC_RELAXED);
		return rc;
	}
	d.layer = l->key;
	d.key = member_key(e);
	d.comp_size = e->comp_size;
	d.size = e->size;
	d.crc = e->crc;
	d.method = e->method;
	d.disk = &l->disk;
	d.later = __atomic_load_n(&l->later, __ATOMIC_ACQUIRE);
	/* under the slab lock, so two threads never make one handle twice */
	pthread_mutex_lock(&s->slab_lock);
	m = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
	if (!m) {
		m = slab_handle(s);
		if (!m || lfs_member_init(m, s->reader, l->zi->src, &d, &l->counters, slot)) {
			pthread_mutex_unlock(&s->slab_lock);
			return -ENOMEM; /* a slab slot lost: no matter */
		}
		__atomic_store_n(slot, m, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&s->slab_lock);
	(void)expect;
	*out = m;
	return 0;
}

ssize_t lfs_stack_read(struct lfs_stack *s, uint64_t ino, void *buf, size_t len,
		       uint64_t off)
{
	struct lfs_member *m;
	int rc = member_of(s, ino, &m);

	if (rc)
		return rc;
	return lfs_reader_read(s->reader, m, buf, len, off);
}

ssize_t lfs_stack_pin(struct lfs_stack *s, uint64_t ino, uint64_t off, size_t len,
		      struct lfs_pin *p)
{
	struct lfs_member *m;
	int rc = member_of(s, ino, &m);
	ssize_t n;

	if (rc) {
		memset(p, 0, sizeof(*p));
		return rc;
	}
	n = lfs_reader_pin(s->reader, m, off, len, p);
	if (n > 0) {
		void (*fn)(void *, uint64_t, uint64_t, size_t) =
			__atomic_load_n(&s->observer, __ATOMIC_ACQUIRE);

		if (fn)
			fn(__atomic_load_n(&s->observer_ctx, __ATOMIC_RELAXED), ino, off, (size_t)n);
	}
	return n;
}

void lfs_stack_unpin(struct lfs_stack *s, struct lfs_pin *p)
{
	lfs_reader_unpin(s->reader, p);
}

void lfs_stack_readahead(struct lfs_stack *s, uint64_t ino, uint64_t end, enum lfs_seq seq)
{
	struct lfs_member *m;

	if (member_of(s, ino, &m) == 0)
		lfs_reader_readahead(s->reader, m, end, seq);
}

int lfs_stack_readlink(struct lfs_stack *s, uint64_t ino, char *buf, size_t size)
{
	const struct lfs_node *n = lfs_tree_node(s->tree, ino);
	struct lfs_member *m;
	ssize_t got;
	int rc;

	if (!n)
		return -ENOENT;
	if (!S_ISLNK(n->mode))
		return -EINVAL;
	if (n->size >= size)
		return -ENAMETOOLONG;
	rc = member_of(s, ino, &m);
	if (rc)
		return rc;
	got = lfs_reader_read(s->reader, m, buf, (size_t)n->size, 0);
	if (got < 0)
		return (int)got;
	if ((uint64_t)got != n->size || memchr(buf, '\0', (size_t)got))
		return lfs_reader_fail(s->reader, m, "symlink target holds a NUL byte");
	buf[got] = '\0';
	return 0;
}

static int append(char *buf, size_t size, size_t *len, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int append(char *buf, size_t size, size_t *len, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf + *len, *len < size ? size - *len : 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	*len += (size_t)n;
	return *len < size ? 0 : -ERANGE;
}

static const char *label_of(const struct lfs_layer *l, enum lfs_label how)
{
	return how == LFS_LABEL_NAME ? l->name_label : how == LFS_LABEL_PATH ? l->zi->path : l->label;
}

int lfs_stack_provenance_as(const struct lfs_stack *s, uint64_t ino, enum lfs_label how,
			    char *buf, size_t size)
{
	const struct lfs_node *n = lfs_tree_node(s->tree, ino);
	size_t len = 0;
	int rc = 0;

	if (!n)
		return -ENOENT;
	buf[0] = '\0';
	if (!S_ISDIR(n->mode))
		rc = append(buf, size, &len, "%s", label_of(&s->layers[n->layer], how));
	for (size_t i = 0; S_ISDIR(n->mode) && i < s->nlayers && !rc; i++)
		if (n->layers & (1ull << i))
			rc = append(buf, size, &len, "%s%s", len ? ", " : "",
				    label_of(&s->layers[i], how));
	return rc ? rc : (int)len;
}

int lfs_stack_provenance(const struct lfs_stack *s, uint64_t ino, char *buf, size_t size)
{
	return lfs_stack_provenance_as(s, ino, LFS_LABEL_OPERATOR, buf, size);
}

static unsigned long long load(const uint64_t *counter)
{
	return (unsigned long long)__atomic_load_n(counter, __ATOMIC_RELAXED);
}

/* Resident memory of the daemon, from /proc. */
static uint64_t rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "re");
	unsigned long long pages = 0, resident = 0;

	if (f) {
		if (fscanf(f, "%llu %llu", &pages, &resident) != 2)
			resident = 0;
		fclose(f);
	}
	return resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

const char *lfs_problem_name(enum lfs_problem p)
{
	static const char *const names[LFS_PROBLEM_COUNT] = {
		"encrypted", "unsupported_method", "bad_sizes", "too_large", "bad_name",
		"bad_symlink",
	};

	return (unsigned)p < LFS_PROBLEM_COUNT ? names[p] : "unknown";
}

void lfs_stack_get_stats(struct lfs_stack *s, struct lfs_stack_stats *out)
{
	memset(out, 0, sizeof(*out));
	lfs_reader_get_stats(s->reader, &out->reader);
	out->nlayers = s->nlayers;
	out->inodes = lfs_tree_count(s->tree);
	out->zip_bytes = s->zip_bytes;
	out->open_seconds = s->open_seconds;
	out->members_failed = out->reader.members_failed;
	for (size_t i = 0; i < s->nlayers; i++) {
		const struct lfs_layer *l = &s->layers[i];
		struct lfs_stack_layer_stats *o = &out->layers[i];

		o->label = l->label;
		if (!lfs_stack_layer_digest(s, i, o->sha256))
			o->sha256[0] = '\0';
		o->entries = l->zi->count;
		o->zip_bytes = l->zi->file_size;
		o->unzipped_bytes = l->unzipped_bytes;
		o->bytes_read = load(&l->counters.bytes_read);
		o->bytes_inflated = load(&l->counters.bytes_inflated);
		o->bytes_served = load(&l->counters.bytes_served);
		o->data_faults = load(&l->data_faults);
		o->source_errors = load(&l->source_errors);
		o->changed_reads = load(&l->changed_reads);
		o->digest_refused = load(&l->digest_refused);
		o->digest_mismatch = (uint64_t)__atomic_load_n(&l->untrusted, __ATOMIC_ACQUIRE);
		out->digest_refused += o->digest_refused;
		out->digest_mismatches += o->digest_mismatch;
		/* An entry whose local header proved bad is remembered with an
		 * offset no data can have (past the end of the file). */
		for (uint64_t j = 0; j < l->zi->count; j++)
			if (__atomic_load_n(&l->zi->data_off[j], __ATOMIC_RELAXED) > l->zi->file_size)
				o->header_faults++;
		memcpy(o->problems, l->problems, sizeof(o->problems));
		for (int p = 0; p < LFS_PROBLEM_COUNT; p++)
			out->problems += l->problems[p];
		out->entries += o->entries;
		out->unzipped_bytes += o->unzipped_bytes;
		out->members_failed += o->header_faults;
	}
}

/* What a remote layer's source did: layer.N.remote_* lines. */
static int remote_stats(const struct lfs_layer *l, size_t i, char *buf, size_t size, size_t *len)
{
	static const char *const states[] = {
		[LFS_HTTP_DIGEST_UNLISTED] = "unlisted", [LFS_HTTP_DIGEST_PENDING] = "pending",
		[LFS_HTTP_DIGEST_VERIFIED] = "verified", [LFS_HTTP_DIGEST_MISMATCH] = "mismatch",
	};
	struct lfs_http_counters c;
	uint64_t errors;
	int rc;

	if (lfs_source_http_counters(l->zi->src, &c))
		return 0;
	errors = c.err_timeout + c.err_connect + c.err_transfer + c.err_throttled + c.err_5xx +
		 c.err_4xx + c.err_range + c.err_stale;
	rc = append(buf, size, len,
		    "layer.%zu.remote_digest %s\nlayer.%zu.remote_digest_chunks %llu\n"
		    "layer.%zu.remote_digest_seen %llu\nlayer.%zu.remote_digest_bytes %llu\n"
		    "layer.%zu.remote_digest_disk %llu\nlayer.%zu.remote_digest_refetched %llu\n"
		    "layer.%zu.digest_refused %llu\n",
		    i, c.digest_state < sizeof(states) / sizeof(states[0]) ? states[c.digest_state] : "?",
		    i, (unsigned long long)c.digest_chunks, i, (unsigned long long)c.digest_seen, i,
		    (unsigned long long)c.digest_bytes, i, (unsigned long long)c.digest_disk, i,
		    (unsigned long long)c.digest_refetched, i, load(&l->digest_refused));
	if (rc)
		return rc;
	return append(buf, size, len,
		      "layer.%zu.remote_requests %llu\nlayer.%zu.remote_bytes_fetched %llu\n"
		      "layer.%zu.remote_retries %llu\nlayer.%zu.remote_errors %llu\n"
		      "layer.%zu.remote_errors_timeout %llu\nlayer.%zu.remote_errors_connect %llu\n"
		      "layer.%zu.remote_errors_transfer %llu\nlayer.%zu.remote_errors_throttled %llu\n"
		      "layer.%zu.remote_errors_5xx %llu\nlayer.%zu.remote_errors_4xx %llu\n"
		      "layer.%zu.remote_errors_range %llu\nlayer.%zu.remote_errors_stale %llu\n"
		      "layer.%zu.remote_chunk_hits %llu\nlayer.%zu.remote_chunk_misses %llu\n"
		      "layer.%zu.remote_readahead_chunks %llu\nlayer.%zu.remote_cached_bytes %llu\n"
		      "layer.%zu.remote_not_modified %llu\nlayer.%zu.remote_disk_hits %llu\n"
		      "layer.%zu.remote_disk_writes %llu\nlayer.%zu.remote_disk_skipped %llu\n"
		      "layer.%zu.remote_disk_pending %llu\n"
		      "layer.%zu.remote_disk_conflict %llu\nlayer.%zu.remote_stale %d\n",
		      i, (unsigned long long)c.requests, i, (unsigned long long)c.bytes_fetched, i,
		      (unsigned long long)c.retries, i, (unsigned long long)errors, i,
		      (unsigned long long)c.err_timeout, i, (unsigned long long)c.err_connect, i,
		      (unsigned long long)c.err_transfer, i, (unsigned long long)c.err_throttled, i,
		      (unsigned long long)c.err_5xx, i, (unsigned long long)c.err_4xx, i,
		      (unsigned long long)c.err_range, i, (unsigned long long)c.err_stale, i,
		      (unsigned long long)c.chunk_hits, i, (unsigned long long)c.chunk_misses, i,
		      (unsigned long long)c.readahead_chunks, i, (unsigned long long)c.cached_bytes,
		      i, (unsigned long long)c.not_modified, i, (unsigned long long)c.disk_hits, i,
		      (unsigned long long)c.disk_writes, i, (unsigned long long)c.disk_skipped, i,
		      (unsigned long long)c.disk_pending, i,
		      (unsigned long long)c.disk_conflict, i, lfs_source_changed(l->zi->src));
}

int lfs_stack_stats_text(struct lfs_stack *s, char *buf, size_t size)
{
	struct lfs_stack_stats *st = malloc(sizeof(*st));
	struct mallinfo2 mi = mallinfo2();
	const struct lfs_reader_stats *r;
	uint64_t header_faults = 0, changed = 0;
	size_t len = 0;
	int rc;

	if (!st)
		return -ENOMEM;
	lfs_stack_get_stats(s, st);
	r = &st->reader;
	for (size_t i = 0; i < st->nlayers; i++) {
		header_faults += st->layers[i].header_faults;
		changed += st->layers[i].changed_reads;
	}
	buf[0] = '\0';
	rc = append(buf, size, &len,
		    "pid %ld\nlayers %zu\nentries %llu\ninodes %u\nlayers_bytes %llu\n"
		    "layers_uncompressed %llu\nmount_seconds %.6f\ntree_cached %d\ntree_saved %d\n"
		    "cache_budget %llu\ncache_reserved %llu\ncache_bytes %llu\ncache_entries %llu\n"
		    "hits %llu\nmisses %llu\nevictions %llu\n"
		    "bytes_read %llu\nbytes_inflated %llu\n"
		    "resume_points %llu\nresume_points_made %llu\nmembers_failed %llu\n"
		    "header_faults %llu\nchanged_reads %llu\ndigest_mismatches %llu\n"
		    "digest_refused %llu\nentry_problems %llu\n"
		    "source_errors %llu\nstream_waits %llu\ndemand_fills %llu\nprefetch_waits %llu\n"
		    "readahead_jobs %llu\n"
		    "pool_threads %u\npool_queued %llu\nspare_bytes %llu\n"
		    "disk_hits %llu\ndisk_misses %llu\ndisk_points %llu\ndisk_bytes_read %llu\n"
		    "disk_bytes_written %llu\ndisk_plain_written %llu\ndisk_records_written %llu\n"
		    "disk_writes_skipped %llu\ndisk_writes_pending %llu\ndisk_write_errors %llu\n"
		    "disk_bad_records %llu\n"
		    "disk_evictions %llu\ndisk_usage %llu\ndisk_quota %llu\ndisk_writing %d\n"
		    "rss_bytes %llu\nheap_in_use %llu\nheap_free %llu\nheap_mapped %llu\n"
		    "memory_held_back %llu\n"
		    "prefetch_ranges %llu\nprefetch_skipped %llu\nprefetch_asked %llu\n"
		    "prefetch_jobs %llu\nprefetch_bytes %llu\nprefetch_used %llu\nprefetch_unused %llu\n"
		    "prefetch_jumps %llu\nprefetch_push_wanted %llu\nprefetch_pushed_files %llu\n"
		    "prefetch_pushed_bytes %llu\nprefetch_push_errors %llu\n"
		    "prefetch_walked_names %llu\n",
		    (long)getpid(), st->nlayers, (unsigned long long)st->entries, st->inodes,
		    (unsigned long long)st->zip_bytes, (unsigned long long)st->unzipped_bytes,
		    st->open_seconds, s->tree_cached, __atomic_load_n(&s->tree_saved, __ATOMIC_ACQUIRE),
		    (unsigned long long)r->cache.budget, (unsigned long long)r->cache.reserved,
		    (unsigned long long)r->cache.bytes, (unsigned long long)r->cache.entries,
		    (unsigned long long)r->cache.hits, (unsigned long long)r->cache.misses,
		    (unsigned long long)r->cache.evictions, (unsigned long long)r->bytes_read,
		    (unsigned long long)r->bytes_inflated, (unsigned long long)r->cache.resume_points,
		    (unsigned long long)r->resume_points_made, (unsigned long long)st->members_failed,
		    (unsigned long long)header_faults, (unsigned long long)changed,
		    (unsigned long long)st->digest_mismatches, (unsigned long long)st->digest_refused,
		    (unsigned long long)st->problems, (unsigned long long)r->source_errors,
		    (unsigned long long)r->stream_waits, (unsigned long long)r->demand_fills,
		    (unsigned long long)r->prefetch_waits, (unsigned long long)r->readahead_jobs,
		    r->pool.threads, (unsigned long long)r->pool.queued,
		    (unsigned long long)r->spare_bytes, (unsigned long long)r->disk_hits,
		    (unsigned long long)r->disk.misses, (unsigned long long)r->disk_points,
		    (unsigned long long)r->disk.bytes_read, (unsigned long long)r->disk.bytes_written,
		    (unsigned long long)r->disk.plain_written,
		    (unsigned long long)r->disk.records_written,
		    (unsigned long long)r->disk_writes_skipped,
		    (unsigned long long)r->disk_writes_pending,
		    (unsigned long long)r->disk.write_errors, (unsigned long long)r->disk.bad_records,
		    (unsigned long long)r->disk.evictions, (unsigned long long)r->disk.usage,
		    (unsigned long long)r->disk.quota, s->disk ? r->disk.writing : 0,
		    (unsigned long long)rss_bytes(), (unsigned long long)mi.uordblks,
		    (unsigned long long)mi.fordblks, (unsigned long long)mi.hblkhd,
		    (unsigned long long)r->held_back, load(&s->replay_ranges), load(&s->replay_skipped),
		    load(&s->replay_bytes), (unsigned long long)r->prefetch_jobs,
		    (unsigned long long)r->prefetch_made, (unsigned long long)r->prefetch_used,
		    (unsigned long long)(r->prefetch_made > r->prefetch_used
					  ? r->prefetch_made - r->prefetch_used : 0),
		    (unsigned long long)r->jump_prefetches, load(&s->push_wanted),
		    load(&s->push_files), load(&s->push_bytes), load(&s->push_errors),
		    load(&s->push_names));
	for (size_t i = 0; i < st->nlayers && !rc; i++) {
		const struct lfs_stack_layer_stats *l = &st->layers[i];
		uint64_t problems = 0;

		for (int p = 0; p < LFS_PROBLEM_COUNT; p++)
			problems += l->problems[p];
		rc = append(buf, size, &len,
			    "layer.%zu.sha256 %s\nlayer.%zu.name %s\nlayer.%zu.bytes_read %llu\n"
			    "layer.%zu.bytes_inflated %llu\nlayer.%zu.bytes_served %llu\n"
			    "layer.%zu.source_errors %llu\nlayer.%zu.source_bytes %llu\n"
			    "layer.%zu.entry_problems %llu\n",
			    i, s->layers[i].digest_derived ? "unknown" : l->sha256[0] ? l->sha256 : "pending",
			    i, l->label, i, (unsigned long long)l->bytes_read, i,
			    (unsigned long long)l->bytes_inflated, i, (unsigned long long)l->bytes_served,
			    i, (unsigned long long)l->source_errors, i,
			    load(&s->layers[i].zi->src->counters.bytes), i, (unsigned long long)problems);
		if (!rc && s->layers[i].remote)
			rc = remote_stats(&s->layers[i], i, buf, size, &len);
	}
	free(st);
	return rc ? rc : (int)len;
}

uint64_t lfs_stack_fingerprint(const struct lfs_stack *s)
{
	/* FNV-1a over what decides the inode numbers and what they hold:
	 * each layer's bytes (the source's version) and the tree's size. */
	uint64_t h = 0xcbf29ce484222325ull;
	char tail[64];

	for (size_t i = 0; i <= s->nlayers; i++) {
		const char *p = i < s->nlayers ? s->layers[i].zi->src->version : tail;

		if (i == s->nlayers)
			snprintf(tail, sizeof(tail), "%zu %u %u %u", s->nlayers,
				 lfs_tree_count(s->tree), (unsigned)s->uid, (unsigned)s->gid);
		for (; *p; p++)
			h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
		h = (h ^ 0xff) * 0x100000001b3ull;
	}
	return h;
}

void lfs_stack_drop_blocks(struct lfs_stack *s) { lfs_reader_drop_blocks(s->reader); }

void lfs_stack_set_observer(struct lfs_stack *s,
			    void (*read)(void *ctx, uint64_t ino, uint64_t off, size_t len),
			    void (*name)(void *ctx, uint32_t dir, const char *name, size_t len),
			    void *ctx)
{
	__atomic_store_n(&s->observer_ctx, ctx, __ATOMIC_RELAXED);
	__atomic_store_n(&s->observer, read, __ATOMIC_RELEASE);
	__atomic_store_n(&s->name_observer, name, __ATOMIC_RELEASE);
}

void lfs_stack_note_name(struct lfs_stack *s, uint32_t dir, const char *name, size_t len)
{
	void (*fn)(void *, uint32_t, const char *, size_t) =
		__atomic_load_n(&s->name_observer, __ATOMIC_ACQUIRE);

	if (fn)
		fn(__atomic_load_n(&s->observer_ctx, __ATOMIC_RELAXED), dir, name, len);
}

void lfs_stack_layer_id(const struct lfs_stack *s, size_t i, char *buf, size_t size)
{
	char hex[LFS_DIGEST_HEX];

	if (lfs_stack_layer_digest(s, i, hex))
		snprintf(buf, size, "sha256:%s", hex);
	else
		snprintf(buf, size, "version:%s", s->layers[i].zi->src->version);
	/* a trace line takes the identity as one word */
	for (char *c = buf; *c; c++)
		if (*c == ' ')
			*c = '_';
}

int lfs_stack_key_hex(const struct lfs_stack *s, char hex[65])
{
	struct lfs_treecache_key key;

	for (size_t i = 0; i < s->nlayers; i++)
		if (!__atomic_load_n(&s->layers[i].digest_known, __ATOMIC_ACQUIRE))
			return -EAGAIN;
	if (stack_key(s, NULL, s->nlayers, &key))
		return -ENOMEM;
	lfs_digest_hex(key.k, hex);
	return 0;
}

int lfs_stack_prefetch(struct lfs_stack *s, uint64_t ino, uint64_t off, uint64_t len)
{
	uint32_t B = lfs_reader_block_size(s->reader);
	struct lfs_member *m;
	int rc = member_of(s, ino, &m);

	if (rc || !len)
		return rc;
	return lfs_reader_prefetch(s->reader, m, off / B, (off + len - 1) / B, LFS_PRIO_PREFETCH);
}

uint64_t lfs_stack_cache_budget(struct lfs_stack *s)
{
	struct lfs_reader_stats st;

	lfs_reader_get_stats(s->reader, &st);
	return st.cache.budget;
}

uint32_t lfs_stack_block_size(const struct lfs_stack *s) { return s->block_size; }

void lfs_stack_note_replay(struct lfs_stack *s, uint64_t ranges, uint64_t skipped,
			   uint64_t bytes)
{
	__atomic_add_fetch(&s->replay_ranges, ranges, __ATOMIC_RELAXED);
	__atomic_add_fetch(&s->replay_skipped, skipped, __ATOMIC_RELAXED);
	__atomic_add_fetch(&s->replay_bytes, bytes, __ATOMIC_RELAXED);
}

void lfs_stack_note_push(struct lfs_stack *s, uint64_t wanted, uint64_t files, uint64_t bytes,
			 uint64_t errors)
{
	__atomic_add_fetch(&s->push_wanted, wanted, __ATOMIC_RELAXED);
	__atomic_add_fetch(&s->push_files, files, __ATOMIC_RELAXED);
	__atomic_add_fetch(&s->push_bytes, bytes, __ATOMIC_RELAXED);
	__atomic_add_fetch(&s->push_errors, errors, __ATOMIC_RELAXED);
}

void lfs_stack_note_walked(struct lfs_stack *s)
{
	__atomic_add_fetch(&s->push_names, 1, __ATOMIC_RELAXED);
}

void lfs_stack_wait_idle(struct lfs_stack *s) { lfs_reader_wait_idle(s->reader); }

void lfs_stack_set_on_untrusted(struct lfs_stack *s, void (*fn)(void *ctx, uint64_t ino), void *ctx)
{
	pthread_mutex_lock(&s->hook_lock);
	s->on_untrusted = fn;
	s->untrusted_ctx = ctx;
	pthread_mutex_unlock(&s->hook_lock);
}
