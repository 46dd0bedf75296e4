#include "stack.h"

#include "../cache/digest.h"
#include "../cache/hostdir.h"
#include "layerlist.h"
#include "log.h"
#include "zipindex.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
		free(l->name_label);
	}
	free(s->layers);
}

void lfs_stack_free(struct lfs_stack *s)
{
	if (!s)
		return;
	lfs_reader_free(s->reader); /* first: its pool may still use members */
	free_layers(s);
	lfs_tree_free(s->tree);
	if (s->digests_fd >= 0)
		close(s->digests_fd);
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
		__atomic_add_fetch(&l->data_faults, 1, __ATOMIC_RELAXED);
		lfs_err("%s: entry '%s': %s; reads fail with EIO", l->zi->path, name, why);
		break;
	case LFS_FAULT_CHANGED:
		__atomic_add_fetch(&l->changed_reads, 1, __ATOMIC_RELAXED);
		if (!__atomic_exchange_n(&l->changed_logged, 1, __ATOMIC_ACQ_REL))
			lfs_err("%s: %s (first seen reading '%s'); reads that need it fail with EIO",
				l->zi->path, why, name);
		break;
	case LFS_FAULT_SOURCE:
		n = __atomic_add_fetch(&l->source_errors, 1, __ATOMIC_RELAXED);
		if (n <= SOURCE_ERRORS_LOGGED || !(n & (n - 1)))
			lfs_err("%s: entry '%s': %s; EIO for this read, the next one tries again (error %llu of this layer)",
				l->zi->path, name, why, (unsigned long long)n);
		break;
	}
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

/* Refuses a layer listed twice under different spellings (a symlink, a
 * hard link, `sub/../x.zip`): the same object behind two lines. */
static int check_duplicate(const struct lfs_stack *s, const struct lfs_layer_list *list,
			   const char *listname, size_t i, char *err, size_t errlen)
{
	const struct lfs_source *src = s->layers[i].zi->src;

	for (size_t j = 0; j < i; j++)
		if (!strcmp(s->layers[j].zi->src->object, src->object))
			return lfs_errf(err, errlen, -EINVAL,
					"%s:%u: the same layer as line %u is listed twice (%s is %s)",
					listname, list->layers[i].line, list->layers[j].line,
					list->layers[i].path, list->layers[j].path);
	return 0;
}

/* Which member of its layer an entry is, for the memory cache: where its
 * data is *and* what the central directory says about it, so that two
 * entries sharing one local header with different sizes or CRCs never
 * share blocks. */
static uint64_t member_key(const struct lfs_zip_entry *e)
{
	uint64_t h = e->lho * 0x9e3779b97f4a7c15ull;

	h ^= (e->comp_size + 0x632be59bd9b4e019ull) * 0xbf58476d1ce4e5b9ull;
	h ^= (e->size + 0x85ebca77c2b2ae63ull) * 0x94d049bb133111ebull;
	h ^= ((uint64_t)e->crc << 16 | e->method) * 0xff51afd7ed558ccdull;
	return h ^ (h >> 31);
}

/* The layer's digest as far as it can be known at mount: the memo's, or,
 * when the list gives one, checked against the bytes. */
static int identify(struct lfs_stack *s, struct lfs_layer *l, const struct lfs_layer_spec *spec,
		    const char *listname, char *err, size_t errlen)
{
	unsigned char given[LFS_DIGEST_LEN], seen[LFS_DIGEST_LEN];
	char hex[LFS_DIGEST_HEX];
	const char *version = l->zi->src->version;
	int have = s->digests_fd >= 0 && lfs_digest_memo_get(s->digests_fd, version, seen) == 0;
	int rc;

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
		rc = lfs_digest_source(l->zi->src, seen);
		if (rc)
			return lfs_errf(err, errlen, rc, "%s: cannot read it to check its SHA-256: %s",
					l->zi->path, strerror(-rc));
		if (s->digests_fd >= 0 && !memcmp(seen, given, LFS_DIGEST_LEN))
			(void)lfs_digest_memo_put(s->digests_fd, version, seen);
	}
	if (memcmp(seen, given, LFS_DIGEST_LEN)) {
		lfs_digest_hex(seen, hex);
		return lfs_errf(err, errlen, -EINVAL,
				"%s:%u: %s: its SHA-256 is %s, the list says sha256=%s", listname,
				spec->line, l->zi->path, hex, spec->sha256);
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
	for (size_t i = 0; i < s->nlayers; i++)
		for (size_t j = 0; j < i; j++)
			if (s->layers[i].digest_known && s->layers[j].digest_known &&
			    !memcmp(s->layers[i].digest, s->layers[j].digest, LFS_DIGEST_LEN))
				return lfs_errf(err, errlen, -EINVAL,
						"%s:%u: the same layer as line %u is listed twice (%s and %s have the same SHA-256)",
						listname, list->layers[i].line, list->layers[j].line,
						list->layers[j].path, list->layers[i].path);
	return 0;
}

int lfs_stack_open(const struct lfs_stack_config *cfg, struct lfs_stack **out, char *err,
		   size_t errlen)
{
	struct lfs_zip_limits limits = { cfg->max_entries, cfg->max_name };
	struct lfs_reader_config rcfg = cfg->reader;
	struct lfs_layer_list list = { 0 };
	struct lfs_tree_builder *b = NULL;
	struct lfs_stack *s;
	double t0 = now_seconds();
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
	if (cfg->cache_dir) {
		int dirfd;

		rc = lfs_hostdir_open(cfg->cache_dir, &dirfd, err, errlen);
		if (rc)
			goto fail;
		rc = lfs_hostdir_sub(dirfd, "digests", &s->digests_fd, err, errlen);
		close(dirfd);
		if (rc)
			goto fail;
	}
	b = lfs_tree_builder_new((int64_t)time(NULL));
	if (!b) {
		rc = -ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < list.count; i++) {
		struct lfs_layer *l = &s->layers[i];
		char label[4096];

		rc = lfs_zip_open(list.layers[i].path, &limits, &l->zi, err, errlen);
		if (rc)
			goto fail;
		s->nlayers++;
		rc = check_duplicate(s, &list, cfg->list_path, i, err, errlen);
		l->key = __atomic_fetch_add(&next_layer_key, 1, __ATOMIC_RELAXED);
		if (rc)
			goto fail;
		l->stack = s;
		rc = identify(s, l, &list.layers[i], cfg->list_path, err, errlen);
		if (rc)
			goto fail;
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
	rc = check_same_digest(s, &list, cfg->list_path, err, errlen);
	if (rc)
		goto fail;
	s->tree = lfs_tree_freeze(b);
	b = NULL;
	rcfg.fault = on_fault;
	rcfg.fault_ctx = s;
	s->reader = lfs_reader_new(&rcfg);
	if (!s->tree || !s->reader) {
		rc = -ENOMEM;
		goto fail;
	}
	s->open_seconds = now_seconds() - t0;
	lfs_layerlist_free(&list);
	lfs_log_release(1);
	*out = s;
	return 0;
fail:
	if (rc == -ENOMEM)
		snprintf(err, errlen, "%s: out of memory", cfg->list_path);
	lfs_log_release(0);
	lfs_tree_builder_free(b);
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
		return;
	}
	memcpy(l->digest, d, LFS_DIGEST_LEN);
	__atomic_store_n(&l->digest_known, 1, __ATOMIC_RELEASE);
	if (l->stack->digests_fd >= 0)
		(void)lfs_digest_memo_put(l->stack->digests_fd, l->zi->src->version, d);
}

void lfs_stack_start(struct lfs_stack *s)
{
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

int lfs_stack_stats_text(struct lfs_stack *s, char *buf, size_t size)
{
	struct lfs_stack_stats *st = malloc(sizeof(*st));
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
		    "layers_uncompressed %llu\nmount_seconds %.6f\n"
		    "cache_budget %llu\ncache_bytes %llu\ncache_entries %llu\n"
		    "hits %llu\nmisses %llu\nevictions %llu\n"
		    "bytes_read %llu\nbytes_inflated %llu\n"
		    "resume_points %llu\nresume_points_made %llu\nmembers_failed %llu\n"
		    "header_faults %llu\nchanged_reads %llu\nentry_problems %llu\n"
		    "source_errors %llu\nstream_waits %llu\nreadahead_jobs %llu\n"
		    "pool_threads %u\npool_queued %llu\nspare_bytes %llu\n",
		    (long)getpid(), st->nlayers, (unsigned long long)st->entries, st->inodes,
		    (unsigned long long)st->zip_bytes, (unsigned long long)st->unzipped_bytes,
		    st->open_seconds, (unsigned long long)r->cache.budget,
		    (unsigned long long)r->cache.bytes, (unsigned long long)r->cache.entries,
		    (unsigned long long)r->cache.hits, (unsigned long long)r->cache.misses,
		    (unsigned long long)r->cache.evictions, (unsigned long long)r->bytes_read,
		    (unsigned long long)r->bytes_inflated, (unsigned long long)r->cache.resume_points,
		    (unsigned long long)r->resume_points_made, (unsigned long long)st->members_failed,
		    (unsigned long long)header_faults, (unsigned long long)changed,
		    (unsigned long long)st->problems, (unsigned long long)r->source_errors,
		    (unsigned long long)r->stream_waits, (unsigned long long)r->readahead_jobs,
		    r->pool.threads, (unsigned long long)r->pool.queued,
		    (unsigned long long)r->spare_bytes);
	for (size_t i = 0; i < st->nlayers && !rc; i++) {
		const struct lfs_stack_layer_stats *l = &st->layers[i];
		uint64_t problems = 0;

		for (int p = 0; p < LFS_PROBLEM_COUNT; p++)
			problems += l->problems[p];
		rc = append(buf, size, &len,
			    "layer.%zu.sha256 %s\nlayer.%zu.name %s\nlayer.%zu.bytes_read %llu\n"
			    "layer.%zu.bytes_inflated %llu\nlayer.%zu.bytes_served %llu\n"
			    "layer.%zu.source_errors %llu\nlayer.%zu.entry_problems %llu\n",
			    i, l->sha256[0] ? l->sha256 : "pending", i, l->label, i,
			    (unsigned long long)l->bytes_read, i, (unsigned long long)l->bytes_inflated,
			    i, (unsigned long long)l->bytes_served, i,
			    (unsigned long long)l->source_errors, i, (unsigned long long)problems);
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
void lfs_stack_wait_idle(struct lfs_stack *s) { lfs_reader_wait_idle(s->reader); }
