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
	struct lfs_layer_counters counters;
	/* Member handles by entry, made on first read (atomic pointers).
	 * A handle's owner, in fault reports, is its slot here. */
	struct lfs_member **members;
	uint64_t unzipped_bytes;	/* sum of the entries' declared sizes */
	uint64_t source_errors;		/* atomic */
	int changed_logged;		/* atomic */
	unsigned char digest[LFS_DIGEST_LEN]; /* the zip's SHA-256, once digest_known */
	int digest_known;		/* atomic; digest is written before it is set */
	struct lfs_pool_job digest_job;
	struct lfs_stack *stack;
	struct lfs_disk_layer *disk;	/* atomic; set once the digest is known */
	int remote;			/* an http(s):// or s3:// object */
	int digest_derived;		/* remote, no sha256=: digest is a key made
					 * from its version, not its bytes' SHA-256 */
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

		for (uint64_t j = 0; l->members && j < l->zi->count; j++)
			lfs_member_free(l->members[j]);
		free(l->members);
		lfs_zip_close(l->zi);
		free(l->label);
	}
	free(s->layers);
}

void lfs_stack_free(struct lfs_stack *s)
{
	if (!s)
		return;
	if (s->reader && s->disk)
		lfs_reader_wait_idle(s->reader); /* what is queued for the disk is written */
	lfs_reader_free(s->reader); /* first: its pool may still use members */
	lfs_disk_close(s->disk);
	free_layers(s);
	lfs_tree_free(s->tree);
	lfs_treecache_free(s->treecache); /* after what points into it */
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

/* A layer whose bytes changed under the mount: one line for the layer. */
static void changed(struct lfs_layer *l, const char *why, const char *name)
{
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

	if (!l)
		return;
	e = &l->zi->entries[i];
	lfs_log_name(name, sizeof(name), lfs_zip_name(l->zi, e), e->name_len);
	switch (kind) {
	case LFS_FAULT_DATA:
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

/* A remote layer is never hashed at mount (that would fetch all of it):
 * the listed digest is taken as given, and without one the layer is keyed
 * by its version (URL without query, ETag and size), under a prefix no
 * zip's SHA-256 can be made to equal. */
static int identify_remote(struct lfs_layer *l, const struct lfs_source *src,
			   const struct lfs_layer_spec *spec, const char *listname, char *err,
			   size_t errlen)
{
	if (spec->sha256) {
		if (lfs_digest_parse(spec->sha256, l->digest))
			return lfs_errf(err, errlen, -EINVAL, "%s:%u: bad sha256=", listname,
					spec->line);
	} else {
		char key[LFS_SOURCE_ID_MAX + 32];

		snprintf(key, sizeof(key), "layerfs remote version %s", src->version);
		lfs_digest_bytes(key, strlen(key), l->digest);
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
		return identify_remote(l, src, spec, listname, err, errlen);
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

	if (!digests || !mtimes) {
		free(digests);
		free(mtimes);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		memcpy(digests[i], s->layers[i].digest, LFS_DIGEST_LEN);
		mtimes[i] = srcs ? srcs[i]->mtime : s->layers[i].zi->src->mtime;
	}
	lfs_treecache_key((const unsigned char (*)[LFS_DIGEST_LEN])digests, mtimes, n,
			  s->max_entries, s->max_total, s->max_name, key);
	free(digests);
	free(mtimes);
	return 0;
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
	static pthread_mutex_t once = PTHREAD_MUTEX_INITIALIZER;

	if (s->trees_fd < 0)
		return;
	for (size_t i = 0; i < s->nlayers; i++)
		if (!__atomic_load_n(&s->layers[i].digest_known, __ATOMIC_ACQUIRE))
			return;
	pthread_mutex_lock(&once); /* the last two layers' jobs may both get here */
	if (!s->tree_cached && !__atomic_load_n(&s->tree_saved, __ATOMIC_ACQUIRE) &&
	    stack_key(s, NULL, s->nlayers, &key) == 0)
		save_tree(s, &key);
	pthread_mutex_unlock(&once);
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
			objs[k++].sha256 = list->layers[i].sha256;
		}
	http.disk = s->disk;
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
	int all_known = 1, have_key = 0;
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
	}
	rc = check_same_digest(s, &list, cfg->list_path, err, errlen);
	if (rc)
		goto fail;
	/* A stack this host mounted before: its tree and indexes as they were
	 * written then, no central directory parsed. */
	if (s->trees_fd >= 0 && all_known) {
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
	for (size_t i = 0; !s->tree_cached && i < list.count; i++) {
		struct lfs_layer *l = &s->layers[i];

		rc = lfs_zip_open_source(srcs[i], list.layers[i].path, &limits, &l->zi, err, errlen);
		if (rc)
			goto fail;
		srcs[i] = NULL; /* the index's now */
		s->nlayers++;
		rc = lfs_tree_add_layer(b, (unsigned)i, l->zi, cfg->max_total_entries);
		if (rc == -E2BIG) {
			snprintf(err, errlen,
				 "%s: the merged tree would have more than max_total_entries=%llu entries",
				 l->zi->path, (unsigned long long)cfg->max_total_entries);
			goto fail;
		}
		if (rc)
			goto fail;
	}
	for (size_t i = 0; i < s->nlayers; i++) {
		struct lfs_layer *l = &s->layers[i];
		char label[4096];

		l->label = strdup(lfs_layer_spec_label(&list.layers[i], label, sizeof(label)));
		l->members = calloc(l->zi->count ? l->zi->count : 1, sizeof(*l->members));
		if (!l->label || !l->members) {
			rc = -ENOMEM;
			goto fail;
		}
		s->zip_bytes += l->zi->file_size;
		for (uint64_t j = 0; j < l->zi->count; j++)
			l->unzipped_bytes += l->zi->entries[j].size;
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
		attach_disk(s, &s->layers[i]);
	s->reader = lfs_reader_new(&rcfg);
	if (!s->tree || !s->reader) {
		rc = -ENOMEM;
		goto fail;
	}
	s->open_seconds = now_seconds() - t0;
	if (s->tree_cached)
		lfs_debug("the stack's tree came from cache_dir");
	for (size_t i = 0; i < s->nlayers; i++) {
		struct lfs_http_counters hc;

		if (lfs_source_http_counters(s->layers[i].zi->src, &hc) == 0 && hc.disk_conflict)
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
		lfs_warn("%s: cannot hash it: %s; it shares nothing with other mounts", l->zi->path,
			 strerror(-rc));
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
	if (rc)
		return rc;
	d.layer = l->key;
	d.key = member_key(e);
	d.comp_size = e->comp_size;
	d.size = e->size;
	d.crc = e->crc;
	d.method = e->method;
	d.disk = &l->disk;
	m = lfs_member_new(s->reader, l->zi->src, &d, &l->counters, slot);
	if (!m)
		return -ENOMEM;
	if (!__atomic_compare_exchange_n(slot, &expect, m, 0, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE)) {
		lfs_member_free(m); /* another thread made it first */
		m = expect;
	}
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

	if (rc) {
		memset(p, 0, sizeof(*p));
		return rc;
	}
	return lfs_reader_pin(s->reader, m, off, len, p);
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

int lfs_stack_provenance(const struct lfs_stack *s, uint64_t ino, char *buf, size_t size)
{
	const struct lfs_node *n = lfs_tree_node(s->tree, ino);
	size_t len = 0;
	int rc = 0;

	if (!n)
		return -ENOENT;
	buf[0] = '\0';
	if (!S_ISDIR(n->mode))
		rc = append(buf, size, &len, "%s", s->layers[n->layer].label);
	for (size_t i = 0; S_ISDIR(n->mode) && i < s->nlayers && !rc; i++)
		if (n->layers & (1ull << i))
			rc = append(buf, size, &len, "%s%s", len ? ", " : "",
				    s->layers[i].label);
	return rc ? rc : (int)len;
}

static unsigned long long load(const uint64_t *counter)
{
	return (unsigned long long)__atomic_load_n(counter, __ATOMIC_RELAXED);
}

/* What a remote layer's source did: layer.N.remote_* lines. */
static int remote_stats(const struct lfs_layer *l, size_t i, char *buf, size_t size, size_t *len)
{
	struct lfs_http_counters c;
	uint64_t errors;

	if (lfs_source_http_counters(l->zi->src, &c))
		return 0;
	errors = c.err_timeout + c.err_connect + c.err_transfer + c.err_throttled + c.err_5xx +
		 c.err_4xx + c.err_range + c.err_stale;
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
	struct lfs_reader_stats st;
	uint64_t uncompressed = 0, entries = 0;
	size_t len = 0;
	int rc;

	lfs_reader_get_stats(s->reader, &st);
	for (size_t i = 0; i < s->nlayers; i++) {
		entries += s->layers[i].zi->count;
		uncompressed += s->layers[i].unzipped_bytes;
	}
	buf[0] = '\0';
	rc = append(buf, size, &len,
		    "pid %ld\nlayers %zu\nentries %llu\ninodes %u\nlayers_bytes %llu\n"
		    "layers_uncompressed %llu\nmount_seconds %.6f\ntree_cached %d\ntree_saved %d\n"
		    "cache_budget %llu\ncache_bytes %llu\ncache_entries %llu\n"
		    "hits %llu\nmisses %llu\nevictions %llu\n"
		    "bytes_read %llu\nbytes_inflated %llu\n"
		    "resume_points %llu\nresume_points_made %llu\nmembers_failed %llu\n"
		    "source_errors %llu\nstream_waits %llu\nreadahead_jobs %llu\n"
		    "pool_threads %u\npool_queued %llu\nspare_bytes %llu\n"
		    "disk_hits %llu\ndisk_misses %llu\ndisk_points %llu\ndisk_bytes_read %llu\n"
		    "disk_bytes_written %llu\ndisk_plain_written %llu\ndisk_records_written %llu\n"
		    "disk_writes_skipped %llu\ndisk_writes_pending %llu\ndisk_write_errors %llu\n"
		    "disk_bad_records %llu\n"
		    "disk_evictions %llu\ndisk_usage %llu\ndisk_quota %llu\ndisk_writing %d\n",
		    (long)getpid(), s->nlayers, (unsigned long long)entries,
		    lfs_tree_count(s->tree), (unsigned long long)s->zip_bytes,
		    (unsigned long long)uncompressed, s->open_seconds, s->tree_cached,
		    __atomic_load_n(&s->tree_saved, __ATOMIC_ACQUIRE),
		    (unsigned long long)st.cache.budget, (unsigned long long)st.cache.bytes,
		    (unsigned long long)st.cache.entries, (unsigned long long)st.cache.hits,
		    (unsigned long long)st.cache.misses, (unsigned long long)st.cache.evictions,
		    (unsigned long long)st.bytes_read, (unsigned long long)st.bytes_inflated,
		    (unsigned long long)st.cache.resume_points,
		    (unsigned long long)st.resume_points_made,
		    (unsigned long long)st.members_failed, (unsigned long long)st.source_errors,
		    (unsigned long long)st.stream_waits, (unsigned long long)st.readahead_jobs,
		    st.pool.threads, (unsigned long long)st.pool.queued,
		    (unsigned long long)st.spare_bytes, (unsigned long long)st.disk_hits,
		    (unsigned long long)st.disk.misses, (unsigned long long)st.disk_points,
		    (unsigned long long)st.disk.bytes_read, (unsigned long long)st.disk.bytes_written,
		    (unsigned long long)st.disk.plain_written,
		    (unsigned long long)st.disk.records_written,
		    (unsigned long long)st.disk_writes_skipped,
		    (unsigned long long)st.disk_writes_pending,
		    (unsigned long long)st.disk.write_errors, (unsigned long long)st.disk.bad_records,
		    (unsigned long long)st.disk.evictions, (unsigned long long)st.disk.usage,
		    (unsigned long long)st.disk.quota, s->disk ? st.disk.writing : 0);
	for (size_t i = 0; i < s->nlayers && !rc; i++) {
		const struct lfs_layer *l = &s->layers[i];
		char hex[LFS_DIGEST_HEX];

		rc = append(buf, size, &len, "layer.%zu.sha256 %s\n", i,
			    l->digest_derived ? "unknown"
			    : lfs_stack_layer_digest(s, i, hex) ? hex : "pending");
		if (rc)
			break;
		rc = append(buf, size, &len,
			    "layer.%zu.name %s\nlayer.%zu.bytes_read %llu\n"
			    "layer.%zu.bytes_inflated %llu\nlayer.%zu.bytes_served %llu\n"
			    "layer.%zu.source_errors %llu\nlayer.%zu.source_bytes %llu\n",
			    i, l->label, i, load(&l->counters.bytes_read), i,
			    load(&l->counters.bytes_inflated), i, load(&l->counters.bytes_served), i,
			    load(&l->source_errors), i, load(&l->zi->src->counters.bytes));
		if (!rc && l->remote)
			rc = remote_stats(l, i, buf, size, &len);
	}
	return rc ? rc : (int)len;
}

void lfs_stack_drop_blocks(struct lfs_stack *s) { lfs_reader_drop_blocks(s->reader); }
void lfs_stack_wait_idle(struct lfs_stack *s) { lfs_reader_wait_idle(s->reader); }
