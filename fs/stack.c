#include "stack.h"

#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void lfs_stack_free(struct lfs_stack *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->nlayers; i++) {
		lfs_zip_close(s->layers[i].zi);
		free(s->layers[i].label);
		free(s->layers[i].member_flags);
		free(s->layers[i].member_reach);
	}
	free(s->layers);
	lfs_tree_free(s->tree);
	lfs_reader_free(s->reader);
	free(s);
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
		l->label = strdup(lfs_layer_spec_label(&list.layers[i], label, sizeof(label)));
		l->member_flags = calloc(l->zi->count ? l->zi->count : 1, sizeof(uint32_t));
		l->member_reach = calloc(l->zi->count ? l->zi->count : 1, sizeof(uint64_t));
		if (!l->label || !l->member_flags || !l->member_reach) {
			rc = -ENOMEM;
			goto fail;
		}
		s->zip_bytes += l->zi->file_size;
		for (uint64_t j = 0; j < l->zi->count; j++)
			l->unzipped_bytes += l->zi->entries[j].size;
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
	s->tree = lfs_tree_freeze(b);
	b = NULL;
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

/* The member behind a file or symlink node. */
static int member_of(struct lfs_stack *s, uint64_t ino, struct lfs_member *m)
{
	const struct lfs_node *n = lfs_tree_node(s->tree, ino);
	struct lfs_layer *l;
	const struct lfs_zip_entry *e;
	int rc;

	if (!n)
		return -ENOENT;
	if (S_ISDIR(n->mode))
		return -EISDIR;
	l = &s->layers[n->layer];
	e = &l->zi->entries[n->entry];
	rc = lfs_zip_data_offset(l->zi, n->entry, &m->data_off);
	if (rc)
		return rc;
	m->src = l->zi->src;
	m->comp_size = e->comp_size;
	m->size = e->size;
	m->crc = e->crc;
	m->method = e->method;
	m->layer_id = l->zi->layer_id;
	m->key = lfs_member_key(e->lho, e->comp_size, e->size, e->crc, e->method);
	m->flags = &l->member_flags[n->entry];
	m->reach = &l->member_reach[n->entry];
	m->layer_name = l->zi->path;
	m->entry_name = lfs_zip_name(l->zi, e);
	m->entry_name_len = e->name_len;
	m->counters = &l->counters;
	return 0;
}

ssize_t lfs_stack_read(struct lfs_stack *s, uint64_t ino, void *buf, size_t len,
		       uint64_t off)
{
	struct lfs_member m;
	int rc = member_of(s, ino, &m);

	if (rc)
		return rc;
	return lfs_reader_read(s->reader, &m, buf, len, off);
}

ssize_t lfs_stack_pin(struct lfs_stack *s, uint64_t ino, uint64_t off, size_t len,
		      struct lfs_pin *p)
{
	struct lfs_member m;
	int rc = member_of(s, ino, &m);

	if (rc) {
		memset(p, 0, sizeof(*p));
		return rc;
	}
	return lfs_reader_pin(s->reader, &m, off, len, p);
}

void lfs_stack_unpin(struct lfs_stack *s, struct lfs_pin *p)
{
	lfs_reader_unpin(s->reader, p);
}

void lfs_stack_readahead(struct lfs_stack *s, uint64_t ino, uint64_t end, enum lfs_seq seq)
{
	struct lfs_member m;

	if (member_of(s, ino, &m) == 0)
		lfs_reader_readahead(s->reader, &m, end, seq);
}

int lfs_stack_readlink(struct lfs_stack *s, uint64_t ino, char *buf, size_t size)
{
	const struct lfs_node *n = lfs_tree_node(s->tree, ino);
	ssize_t got;

	if (!n)
		return -ENOENT;
	if (!S_ISLNK(n->mode))
		return -EINVAL;
	if (n->size >= size)
		return -ENAMETOOLONG;
	got = lfs_stack_read(s, ino, buf, (size_t)n->size, 0);
	if (got < 0)
		return (int)got;
	if ((uint64_t)got != n->size || memchr(buf, '\0', (size_t)got)) {
		struct lfs_member m;

		if (member_of(s, ino, &m) == 0)
			lfs_reader_fail(s->reader, &m, "symlink target holds a NUL byte");
		return -EIO;
	}
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
		    "layers_uncompressed %llu\nmount_seconds %.6f\n"
		    "cache_budget %llu\ncache_bytes %llu\ncache_entries %llu\n"
		    "hits %llu\nmisses %llu\nevictions %llu\n"
		    "bytes_read %llu\nbytes_inflated %llu\n"
		    "resume_points %llu\nresume_points_made %llu\nmembers_failed %llu\n",
		    (long)getpid(), s->nlayers, (unsigned long long)entries,
		    lfs_tree_count(s->tree), (unsigned long long)s->zip_bytes,
		    (unsigned long long)uncompressed, s->open_seconds,
		    (unsigned long long)st.cache.budget, (unsigned long long)st.cache.bytes,
		    (unsigned long long)st.cache.entries, (unsigned long long)st.cache.hits,
		    (unsigned long long)st.cache.misses, (unsigned long long)st.cache.evictions,
		    (unsigned long long)st.bytes_read, (unsigned long long)st.bytes_inflated,
		    (unsigned long long)st.cache.resume_points,
		    (unsigned long long)st.resume_points_made,
		    (unsigned long long)st.members_failed);
	for (size_t i = 0; i < s->nlayers && !rc; i++) {
		const struct lfs_layer_counters *c = &s->layers[i].counters;

		rc = append(buf, size, &len,
			    "layer.%zu.name %s\nlayer.%zu.bytes_read %llu\n"
			    "layer.%zu.bytes_inflated %llu\nlayer.%zu.bytes_served %llu\n",
			    i, s->layers[i].label, i,
			    (unsigned long long)__atomic_load_n(&c->bytes_read, __ATOMIC_RELAXED),
			    i,
			    (unsigned long long)__atomic_load_n(&c->bytes_inflated, __ATOMIC_RELAXED),
			    i,
			    (unsigned long long)__atomic_load_n(&c->bytes_served, __ATOMIC_RELAXED));
	}
	return rc ? rc : (int)len;
}
