#include "tree.h"

#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uthash.h>

#define NAME_MAX_BYTES 255
#define POOL_CHUNK 4096
#define ARENA_CHUNK (1u << 20)

/* A node while building: children live in a hash keyed by name. */
struct bnode {
	const char *name;
	uint32_t name_len;
	uint32_t mode;
	uint16_t layer;
	uint32_t entry;
	uint64_t size;
	int64_t mtime;
	uint64_t layers;
	uint32_t ino;
	struct bnode *children;
	UT_hash_handle hh;
};

struct pool_chunk {
	struct pool_chunk *next;
	size_t used;
	struct bnode nodes[POOL_CHUNK];
};

struct arena_chunk {
	struct arena_chunk *next;
	size_t used, cap;
	char data[];
};

struct lfs_tree_builder {
	struct pool_chunk *pool;
	struct arena_chunk *arena;
	struct bnode *root;
	uint64_t allocated;
	uint64_t names_len;	/* of every node made, hidden ones too */
};

struct lfs_tree {
	struct lfs_node *nodes;	/* nodes[0] unused; nodes[ino] */
	uint32_t count;
	uint64_t total_bytes;
	const char *names;	/* every node's name, one after another */
	uint64_t names_len;
	int borrowed;		/* nodes and names belong to the caller (from_flat) */
};

/* The flat form: this head, then nodes[count + 1], then the names. */
struct flat_head {
	uint64_t magic;
	uint64_t count;
	uint64_t total_bytes;
	uint64_t names_len;
	uint64_t node_size;	/* sizeof(struct lfs_node) when it was written */
};

#define FLAT_MAGIC 0x31656572747366ull /* "fstree1" */

static char *arena_copy(struct lfs_tree_builder *b, const char *s, size_t len)
{
	struct arena_chunk *a = b->arena;
	char *out;

	if (!a || a->cap - a->used < len) {
		size_t cap = len > ARENA_CHUNK ? len : ARENA_CHUNK;

		a = malloc(sizeof(*a) + cap);
		if (!a)
			return NULL;
		a->used = 0;
		a->cap = cap;
		a->next = b->arena;
		b->arena = a;
	}
	out = a->data + a->used;
	memcpy(out, s, len);
	a->used += len;
	return out;
}

static struct bnode *node_new(struct lfs_tree_builder *b)
{
	struct pool_chunk *p = b->pool;

	if (!p || p->used == POOL_CHUNK) {
		p = malloc(sizeof(*p));
		if (!p)
			return NULL;
		p->used = 0;
		p->next = b->pool;
		b->pool = p;
	}
	b->allocated++;
	return memset(&p->nodes[p->used++], 0, sizeof(struct bnode));
}

struct lfs_tree_builder *lfs_tree_builder_new(int64_t root_mtime)
{
	struct lfs_tree_builder *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->root = node_new(b);
	if (!b->root) {
		free(b);
		return NULL;
	}
	b->root->name = "";
	b->root->mode = S_IFDIR | 0755;
	b->root->mtime = root_mtime;
	b->root->entry = LFS_TREE_NO_ENTRY;
	return b;
}

static void free_hashes_and_pool(struct lfs_tree_builder *b)
{
	/* Two passes: a node's child hash is reached through its first child,
	 * which may sit in a newer chunk, and the list runs newest first. */
	for (struct pool_chunk *p = b->pool; p; p = p->next)
		for (size_t i = 0; i < p->used; i++)
			if (p->nodes[i].children)
				HASH_CLEAR(hh, p->nodes[i].children);
	for (struct pool_chunk *p = b->pool, *next; p; p = next) {
		next = p->next;
		free(p);
	}
	b->pool = NULL;
}

static void arena_free(struct arena_chunk *a)
{
	for (struct arena_chunk *next; a; a = next) {
		next = a->next;
		free(a);
	}
}

void lfs_tree_builder_free(struct lfs_tree_builder *b)
{
	if (!b)
		return;
	free_hashes_and_pool(b);
	arena_free(b->arena);
	free(b);
}

int lfs_tree_normalize(const char *name, size_t len, char *out, size_t outlen,
		       int *is_dir)
{
	size_t i = 0, o = 0;

	*is_dir = len && (name[len - 1] == '/' || name[len - 1] == '\\');
	if (memchr(name, '\0', len))
		return LFS_TREE_SKIP_NUL;
	while (i < len) {
		size_t start, clen;

		while (i < len && (name[i] == '/' || name[i] == '\\'))
			i++;
		start = i;
		while (i < len && name[i] != '/' && name[i] != '\\')
			i++;
		clen = i - start;
		if (clen == 0 || (clen == 1 && name[start] == '.') ||
		    (clen == 2 && name[start] == '.' && name[start + 1] == '.'))
			continue;
		if (clen > NAME_MAX_BYTES)
			return LFS_TREE_SKIP_COMPONENT;
		if (o + (o ? 1 : 0) + clen > LFS_TREE_MAX_PATH || o + 1 + clen >= outlen)
			return LFS_TREE_SKIP_PATH;
		if (o)
			out[o++] = '/';
		memcpy(out + o, name + start, clen);
		o += clen;
	}
	out[o] = '\0';
	return (int)o;
}

/* A fresh node named name[0..len) for layer/entry. */
static struct bnode *make_node(struct lfs_tree_builder *b, const char *name, size_t len,
			       uint32_t mode, unsigned layer, uint32_t entry, uint64_t size,
			       int64_t mtime)
{
	struct bnode *n = node_new(b);

	if (!n)
		return NULL;
	n->name = arena_copy(b, name, len);
	if (!n->name)
		return NULL;
	b->names_len += len;
	n->name_len = (uint32_t)len;
	n->mode = mode;
	n->layer = (uint16_t)layer;
	n->entry = entry;
	n->size = size;
	n->mtime = mtime;
	n->layers = 1ull << layer;
	return n;
}

/* The directory the last entry of a layer went into: a zip lists a
 * directory's entries one after another, so the next entry's path most
 * often starts with the same one, and is not walked again from the root. */
struct last_dir {
	char path[LFS_TREE_MAX_PATH + 1];
	size_t len;		/* of path; 0: none */
	struct bnode *node;	/* NULL: none */
};

/* Puts `n` in `dir` under its name, whose hash is hashv, replacing (hiding)
 * whatever was there. */
static void place(struct bnode *dir, struct bnode *old, struct bnode *n, unsigned hashv,
		  struct last_dir *memo)
{
	if (old) {
		HASH_DEL(dir->children, old);
		if (S_ISDIR(old->mode)) { /* it may be, or hold, the remembered one */
			memo->len = 0;
			memo->node = NULL;
		}
	}
	HASH_ADD_KEYPTR_BYHASHVALUE(hh, dir->children, n->name, n->name_len, hashv, n);
}

static int add_entry(struct lfs_tree_builder *b, unsigned layer, uint32_t index,
		     const struct lfs_zip_entry *e, const char *path, size_t plen,
		     int is_dir, int64_t implied_mtime, struct last_dir *memo)
{
	struct bnode *dir = b->root, *cur;
	size_t i = 0;

	dir->layers |= 1ull << layer;
	/* every directory on the remembered path has this layer's bit */
	if (memo->len && memo->len < plen && path[memo->len] == '/' &&
	    !memcmp(path, memo->path, memo->len)) {
		dir = memo->node;
		i = memo->len + 1;
	}
	for (;;) {
		size_t start = i;
		unsigned hashv;
		int last;

		while (i < plen && path[i] != '/')
			i++;
		last = i == plen;
		/* hashed once, for the lookup and the insert */
		HASH_VALUE(path + start, i - start, hashv);
		HASH_FIND_BYHASHVALUE(hh, dir->children, path + start, i - start, hashv, cur);
		if (!last) {
			if (!cur || !S_ISDIR(cur->mode)) {
				struct bnode *n = make_node(b, path + start, i - start,
							    S_IFDIR | 0755, layer,
							    LFS_TREE_NO_ENTRY, 0, implied_mtime);
				if (!n)
					return -ENOMEM;
				place(dir, cur, n, hashv, memo);
				cur = n;
			}
			cur->layers |= 1ull << layer;
			dir = cur;
			i++;
			continue;
		}
		if (dir != b->root && dir != memo->node) {
			memcpy(memo->path, path, start - 1);
			memo->len = start - 1;
			memo->node = dir;
		}
		if (is_dir && cur && S_ISDIR(cur->mode)) {
			/* Directories merge.  Like unzip, a record for a directory
			 * that already exists leaves its mode and mtime alone:
			 * they are set once, when the directory is created. */
			cur->layers |= 1ull << layer;
			return 0;
		}
		{
			uint32_t mode = is_dir ? (S_IFDIR | e->mode)
				      : e->kind == LFS_ZIP_SYMLINK ? (S_IFLNK | 0777)
				      : (S_IFREG | e->mode);
			struct bnode *n = make_node(b, path + start, i - start, mode, layer,
						    index, is_dir ? 0 : e->size, e->mtime);

			if (!n)
				return -ENOMEM;
			place(dir, cur, n, hashv, memo);
		}
		return 0;
	}
}

int lfs_tree_add_layer(struct lfs_tree_builder *b, unsigned layer,
		       const struct lfs_zip_index *zi, uint64_t max_total)
{
	char path[LFS_TREE_MAX_PATH + 1];
	/* The per-entry warnings share the index's cap for the layer: only
	 * what it left of LFS_ZIP_MAX_LOGGED are printed, the rest summed up. */
	uint64_t problems = zi->bad_entries, skipped = 0;
	struct last_dir memo = { .len = 0 };

	if (layer >= LFS_TREE_MAX_LAYERS)
		return -E2BIG;
	for (uint64_t i = 0; i < zi->count; i++) {
		const struct lfs_zip_entry *e = &zi->entries[i];
		const char *name = lfs_zip_name(zi, e);
		int is_dir, len, rc;

		len = lfs_tree_normalize(name, e->name_len, path, sizeof(path), &is_dir);
		if (len < 0) {
			/* no lookup could reach it; unzip skips it too (or, for
			 * a long path, truncates it) and extracts the rest */
			skipped++;
			if (problems++ < LFS_ZIP_MAX_LOGGED)
				lfs_warn("%s: entry '%s': %s; skipped", zi->path,
					 lfs_log_name(path, 200, name, e->name_len),
					 len == LFS_TREE_SKIP_NUL ? "name has a NUL byte"
					 : len == LFS_TREE_SKIP_COMPONENT
						 ? "name has a component over 255 bytes"
						 : "name is over 4095 bytes");
			continue;
		}
		if (e->bad == LFS_ZIP_TOO_LARGE)
			continue; /* logged by the index */
		if (len == 0)
			continue; /* "/", "./", "../": nothing to create */
		is_dir = is_dir || e->kind == LFS_ZIP_DIR;
		if (!is_dir && e->kind == LFS_ZIP_SYMLINK &&
		    (e->size == 0 || e->size > LFS_TREE_MAX_PATH)) {
			skipped++;
			if (problems++ < LFS_ZIP_MAX_LOGGED)
				lfs_warn("%s: entry '%s': symlink target of %llu bytes; skipped",
					 zi->path, lfs_log_name(path, 200, name, e->name_len),
					 (unsigned long long)e->size);
			continue;
		}
		if (max_total && b->allocated >= max_total)
			return -E2BIG;
		rc = add_entry(b, layer, (uint32_t)i, e, path, (size_t)len, is_dir,
			       zi->file_mtime, &memo);
		if (rc)
			return rc;
	}
	if (problems > LFS_ZIP_MAX_LOGGED) {
		uint64_t logged = zi->bad_entries >= LFS_ZIP_MAX_LOGGED
					  ? 0
					  : LFS_ZIP_MAX_LOGGED - zi->bad_entries;

		if (skipped > logged)
			lfs_warn("%s: %llu more %s skipped for their names or symlink targets (the first %d problems are logged)",
				 zi->path, (unsigned long long)(skipped - logged),
				 skipped - logged == 1 ? "entry" : "entries", LFS_ZIP_MAX_LOGGED);
	}
	return 0;
}

static int cmp_bnode(const void *a, const void *b)
{
	const struct bnode *x = *(struct bnode *const *)a, *y = *(struct bnode *const *)b;
	size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
	int c = memcmp(x->name, y->name, n);

	if (c)
		return c;
	return x->name_len < y->name_len ? -1 : x->name_len > y->name_len;
}

struct lfs_tree *lfs_tree_freeze(struct lfs_tree_builder *b)
{
	struct lfs_tree *t = NULL;
	struct bnode **queue = NULL, **kids = NULL;
	size_t kids_cap = 0;
	uint32_t head = 1, tail = 1;
	uint64_t off = 0;
	char *names;

	if (!b)
		return NULL;
	t = calloc(1, sizeof(*t));
	/* queue[ino] is the builder node of ino; BFS gives siblings
	 * consecutive inos, so a directory's children are a range. */
	queue = malloc((b->allocated + 1) * sizeof(*queue));
	if (!t || !queue)
		goto fail;
	queue[tail++] = b->root;
	b->root->ino = LFS_TREE_ROOT;
	t->nodes = calloc(b->allocated + 1, sizeof(*t->nodes));
	/* Names into one blob, so a node names its name by an offset and the
	 * tree can be written out and mapped back as it is.  Copied as each
	 * node is reached (one pass over the nodes, not two); sized for every
	 * node made, then cut to those in the tree. */
	names = malloc(b->names_len ? b->names_len : 1);
	t->names = names;
	if (!t->nodes || !names)
		goto fail;
	t->nodes[LFS_TREE_ROOT].parent = LFS_TREE_ROOT; /* others: set with their parent */
	while (head < tail) {
		struct bnode *d = queue[head], *c, *tmp;
		struct lfs_node *n = &t->nodes[head];
		uint32_t k = 0, nk = HASH_COUNT(d->children);

		n->name_len = d->name_len;
		n->name_off = (uint32_t)off;
		memcpy(names + off, d->name, d->name_len);
		off += d->name_len;
		n->mode = d->mode;
		n->layer = d->layer;
		n->entry = d->entry;
		n->size = d->size;
		n->mtime = d->mtime;
		n->layers = d->layers;
		if (S_ISREG(d->mode)) /* saturating: statfs only */
			t->total_bytes = d->size > UINT64_MAX - t->total_bytes ? UINT64_MAX
										 : t->total_bytes + d->size;
		if (nk > kids_cap) {
			struct bnode **nkids = realloc(kids, nk * sizeof(*kids));

			if (!nkids)
				goto fail;
			kids = nkids;
			kids_cap = nk;
		}
		HASH_ITER(hh, d->children, c, tmp)
			kids[k++] = c;
		if (nk)
			qsort(kids, nk, sizeof(*kids), cmp_bnode);
		n->first_child = tail;
		n->nchildren = nk;
		for (k = 0; k < nk; k++) {
			n->nsubdirs += S_ISDIR(kids[k]->mode) ? 1 : 0;
			kids[k]->ino = tail;
			t->nodes[tail].parent = head;
			queue[tail++] = kids[k];
		}
		head++;
	}
	t->count = tail - 1;
	t->names_len = off;
	if (off < b->names_len) {
		char *cut = realloc(names, off ? off : 1);

		if (cut)
			t->names = cut;
	}
	free(queue);
	free(kids);
	lfs_tree_builder_free(b);
	return t;
fail:
	free(queue);
	free(kids);
	lfs_tree_free(t);
	lfs_tree_builder_free(b);
	return NULL;
}

void lfs_tree_free(struct lfs_tree *t)
{
	if (!t)
		return;
	if (!t->borrowed) {
		free(t->nodes);
		free((void *)(uintptr_t)t->names);
	}
	free(t);
}

const char *lfs_tree_name(const struct lfs_tree *t, const struct lfs_node *n)
{
	return t->names + n->name_off;
}

size_t lfs_tree_flat_size(const struct lfs_tree *t)
{
	return sizeof(struct flat_head) + (t->count + 1) * sizeof(struct lfs_node) + t->names_len;
}

void lfs_tree_flatten(const struct lfs_tree *t, void *buf)
{
	struct flat_head h = { FLAT_MAGIC, t->count, t->total_bytes, t->names_len,
			       sizeof(struct lfs_node) };
	unsigned char *p = buf;

	memcpy(p, &h, sizeof(h));
	memcpy(p + sizeof(h), t->nodes, (t->count + 1) * sizeof(struct lfs_node));
	memcpy(p + sizeof(h) + (t->count + 1) * sizeof(struct lfs_node), t->names, t->names_len);
}

struct lfs_tree *lfs_tree_from_flat(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	struct flat_head h;
	struct lfs_tree *t;
	const struct lfs_node *nodes;
	uint64_t need;

	if (len < sizeof(h) || ((uintptr_t)buf & 7))
		return NULL;
	memcpy(&h, p, sizeof(h));
	if (h.magic != FLAT_MAGIC || h.node_size != sizeof(struct lfs_node) || h.count < 1 ||
	    h.count >= UINT32_MAX)
		return NULL;
	need = sizeof(h) + (h.count + 1) * sizeof(struct lfs_node);
	if (need > len || h.names_len > len - need)
		return NULL;
	nodes = (const struct lfs_node *)(const void *)(p + sizeof(h));
	/* nothing in it may point outside it */
	for (uint64_t i = 1; i <= h.count; i++) {
		const struct lfs_node *n = &nodes[i];

		if ((uint64_t)n->name_off + n->name_len > h.names_len || n->parent < 1 ||
		    n->parent > h.count || n->layer >= LFS_TREE_MAX_LAYERS ||
		    (uint64_t)n->first_child + n->nchildren > h.count + 1 ||
		    (n->nchildren && n->first_child <= i))
			return NULL;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->nodes = (struct lfs_node *)(uintptr_t)nodes;
	t->count = (uint32_t)h.count;
	t->total_bytes = h.total_bytes;
	t->names = (const char *)(p + need);
	t->names_len = h.names_len;
	t->borrowed = 1;
	return t;
}

uint32_t lfs_tree_count(const struct lfs_tree *t) { return t->count; }

uint64_t lfs_tree_total_bytes(const struct lfs_tree *t) { return t->total_bytes; }

const struct lfs_node *lfs_tree_node(const struct lfs_tree *t, uint64_t ino)
{
	if (ino < 1 || ino > t->count)
		return NULL;
	return &t->nodes[ino];
}

uint32_t lfs_tree_lookup(const struct lfs_tree *t, uint32_t dir, const char *name,
			 size_t name_len)
{
	const struct lfs_node *d = lfs_tree_node(t, dir);
	uint32_t lo, hi;

	if (!d || !S_ISDIR(d->mode))
		return 0;
	lo = d->first_child;
	hi = d->first_child + d->nchildren;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		const struct lfs_node *m = &t->nodes[mid];
		size_t n = m->name_len < name_len ? m->name_len : name_len;
		int c = memcmp(t->names + m->name_off, name, n);

		if (!c)
			c = m->name_len < name_len ? -1 : m->name_len > name_len;
		if (!c)
			return mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

uint32_t lfs_tree_child(const struct lfs_tree *t, uint32_t dir, uint32_t i)
{
	const struct lfs_node *d = lfs_tree_node(t, dir);

	if (!d || !S_ISDIR(d->mode) || i >= d->nchildren)
		return 0;
	return d->first_child + i;
}

uint32_t lfs_tree_resolve(const struct lfs_tree *t, const char *path)
{
	uint32_t ino = LFS_TREE_ROOT;

	while (*path) {
		const char *end = strchr(path, '/');
		size_t len = end ? (size_t)(end - path) : strlen(path);

		if (len) {
			ino = lfs_tree_lookup(t, ino, path, len);
			if (!ino)
				return 0;
		}
		path += len + (end ? 1 : 0);
	}
	return ino;
}
