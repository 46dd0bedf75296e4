#include "prefetch.h"

#include "log.h"
#include "trace.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uthash.h>

struct touched {
	uint64_t key;		/* ino << 32 | block */
	UT_hash_handle hh;
};

/* A range of blocks of file ino; or (trace version 2) directory ino
 * listed, or name looked up in directory ino and not found. */
struct run {
	uint64_t ino, first, last;
	enum lfs_trace_kind kind;
	char *name;		/* absent: the name (owned) */
};

struct lfs_recorder {
	struct lfs_stack *s;
	int dirfd;		/* the trace's folder (owned) */
	char *name;		/* the trace's name in it, or NULL: the stack's key */
	char *label;		/* the trace's path (keyed: its folder's), for messages */
	int keyed;		/* named by the stack's key */
	double seconds;
	pthread_t timer;	/* writes the trace when `seconds` are up */
	pthread_mutex_t lock;	/* the fields below */
	pthread_cond_t wake;	/* the first read; freeing */
	double started;		/* at the first read (0: none yet) */
	int stopped, written, quit;
	struct touched *set;
	struct touched *names;	/* absent and list records made (hashes) */
	struct run *runs;
	size_t nruns, cap;
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* With rec->lock held: room for one more run, or NULL. */
static struct run *more_runs(struct lfs_recorder *rec)
{
	if (rec->nruns == rec->cap) {
		size_t cap = rec->cap ? 2 * rec->cap : 1024;
		struct run *n = realloc(rec->runs, cap * sizeof(*n));

		if (!n)
			return NULL;
		rec->runs = n;
		rec->cap = cap;
	}
	return &rec->runs[rec->nruns];
}

/* With rec->lock held: stops the recording once `seconds` have passed
 * since the first read; 1 when it is stopped. */
static int expired(struct lfs_recorder *rec)
{
	if (rec->started && now() - rec->started > rec->seconds)
		__atomic_store_n(&rec->stopped, 1, __ATOMIC_RELAXED);
	return rec->stopped;
}

/* A negative lookup (name) or a listing (name NULL) in directory dir, the
 * first time each, in order with the reads.  Noted before the first read
 * too: a start looks names up before it reads anything. */
static void note_name(void *ctx, uint32_t dir, const char *name, size_t len)
{
	struct lfs_recorder *rec = ctx;
	uint64_t key = 1469598103934665603ull ^ dir;
	struct touched *t;
	struct run *r;

	if (__atomic_load_n(&rec->stopped, __ATOMIC_RELAXED))
		return;
	/* the set keeps hashes: a collision only loses a hint */
	key = (key ^ (name ? 1 : 2)) * 1099511628211ull;
	for (size_t i = 0; name && i < len; i++)
		key = (key ^ (unsigned char)name[i]) * 1099511628211ull;
	pthread_mutex_lock(&rec->lock);
	HASH_FIND(hh, rec->names, &key, sizeof(key), t);
	if (!t && !expired(rec) && (r = more_runs(rec)) && (t = malloc(sizeof(*t)))) {
		*r = (struct run){ .ino = dir, .kind = name ? LFS_TRACE_ABSENT : LFS_TRACE_LIST };
		if (!name || (r->name = strndup(name, len))) {
			t->key = key;
			HASH_ADD(hh, rec->names, key, sizeof(t->key), t);
			rec->nruns++;
		} else {
			free(t);
		}
	}
	pthread_mutex_unlock(&rec->lock);
}

/* The first touch of each block, in order; consecutive blocks of one file
 * make one run. */
static void note(void *ctx, uint64_t ino, uint64_t off, size_t len)
{
	struct lfs_recorder *rec = ctx;
	uint32_t B = lfs_stack_block_size(rec->s);
	uint64_t first = off / B, last = (off + len - 1) / B;

	if (!len || __atomic_load_n(&rec->stopped, __ATOMIC_RELAXED))
		return;
	pthread_mutex_lock(&rec->lock);
	if (!rec->started) {
		rec->started = now();
		pthread_cond_signal(&rec->wake);
	}
	expired(rec);
	for (uint64_t b = first; !rec->stopped && b <= last; b++) {
		uint64_t key = ino << 32 | (b & 0xffffffffu);
		struct touched *t;
		struct run *r;

		HASH_FIND(hh, rec->set, &key, sizeof(key), t);
		if (t)
			continue;
		t = malloc(sizeof(*t));
		if (!t)
			break;
		t->key = key;
		HASH_ADD(hh, rec->set, key, sizeof(t->key), t);
		r = rec->nruns ? &rec->runs[rec->nruns - 1] : NULL;
		if (r && r->kind == LFS_TRACE_RANGE && r->ino == ino && r->last + 1 == b) {
			r->last = b;
			continue;
		}
		r = more_runs(rec);
		if (!r)
			break;
		*r = (struct run){ .ino = ino, .first = b, .last = b, .kind = LFS_TRACE_RANGE };
		rec->nruns++;
	}
	pthread_mutex_unlock(&rec->lock);
}

/* A warm environment stays mounted for hours: the trace is written when
 * the recording ends, so that the next environment on the host finds it,
 * not only at unmount. */
static void *timer_main(void *arg)
{
	struct lfs_recorder *rec = arg;
	int expired = 0;

	pthread_mutex_lock(&rec->lock);
	while (!rec->quit && !rec->stopped && !expired) {
		if (!rec->started) {
			pthread_cond_wait(&rec->wake, &rec->lock);
		} else {
			double end = rec->started + rec->seconds;
			struct timespec ts = { (time_t)end, (long)((end - (double)(time_t)end) * 1e9) };

			expired = pthread_cond_timedwait(&rec->wake, &rec->lock, &ts) == ETIMEDOUT;
		}
	}
	pthread_mutex_unlock(&rec->lock);
	if (expired)
		(void)lfs_recorder_stop(rec);
	return NULL;
}

struct lfs_recorder *lfs_recorder_start(struct lfs_stack *s, int dirfd, const char *name,
				       const char *label, double seconds)
{
	struct lfs_recorder *rec = calloc(1, sizeof(*rec));
	pthread_condattr_t ca;

	if (!rec || (name && !(rec->name = strdup(name))) || !(rec->label = strdup(label))) {
		if (rec)
			free(rec->name);
		free(rec);
		close(dirfd);
		return NULL;
	}
	rec->dirfd = dirfd;
	rec->keyed = !name;
	rec->s = s;
	rec->seconds = seconds;
	pthread_mutex_init(&rec->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&rec->wake, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&rec->timer, NULL, timer_main, rec)) {
		pthread_cond_destroy(&rec->wake);
		pthread_mutex_destroy(&rec->lock);
		close(rec->dirfd);
		free(rec->name);
		free(rec->label);
		free(rec);
		return NULL;
	}
	lfs_stack_set_observer(s, note, note_name, rec);
	return rec;
}

/* The path of ino in the tree, "a/b/c". */
static int path_of(const struct lfs_tree *t, uint64_t ino, char *buf, size_t size)
{
	uint32_t chain[LFS_TREE_MAX_PATH / 2 + 1];
	size_t n = 0, len = 0;

	for (uint64_t i = ino; i != LFS_TREE_ROOT && n < sizeof(chain) / sizeof(chain[0]);) {
		const struct lfs_node *node = lfs_tree_node(t, i);

		if (!node)
			return -ENOENT;
		chain[n++] = (uint32_t)i;
		i = node->parent;
	}
	while (n--) {
		const struct lfs_node *node = lfs_tree_node(t, chain[n]);

		if (len + node->name_len + 2 > size)
			return -ENAMETOOLONG;
		if (len)
			buf[len++] = '/';
		memcpy(buf + len, lfs_tree_name(t, node), node->name_len);
		len += node->name_len;
	}
	buf[len] = '\0';
	return (int)len;
}

int lfs_recorder_stop(struct lfs_recorder *rec)
{
	const struct lfs_tree *t = lfs_stack_tree(rec->s);
	struct lfs_trace tr;
	char path[LFS_TREE_MAX_PATH + 1], id[512];
	int rc;

	pthread_mutex_lock(&rec->lock);
	__atomic_store_n(&rec->stopped, 1, __ATOMIC_RELAXED);
	pthread_cond_signal(&rec->wake);
	if (rec->written) {
		pthread_mutex_unlock(&rec->lock);
		return 0;
	}
	rec->written = 1;
	rc = lfs_trace_init(&tr, lfs_stack_block_size(rec->s), lfs_stack_layer_count(rec->s));
	for (size_t i = 0; !rc && i < lfs_stack_layer_count(rec->s); i++) {
		struct lfs_stack_layer_info li;

		lfs_stack_layer_info(rec->s, i, &li);
		lfs_stack_layer_id(rec->s, i, id, sizeof(id));
		rc = lfs_trace_set_layer(&tr, i, id, li.label);
	}
	for (size_t i = 0; !rc && i < rec->nruns; i++) {
		const struct run *r = &rec->runs[i];
		int len = path_of(t, r->ino, path, sizeof(path));

		if (len < 0)
			continue;
		if (r->kind == LFS_TRACE_RANGE) {
			if (len > 0)
				rc = lfs_trace_add(&tr, lfs_tree_node(t, r->ino)->layer, r->first,
						   r->last, path, (size_t)len);
		} else if (r->kind == LFS_TRACE_LIST) {
			rc = len ? lfs_trace_add_name(&tr, LFS_TRACE_LIST, path, (size_t)len)
				 : lfs_trace_add_name(&tr, LFS_TRACE_LIST, ".", 1);
		} else {
			size_t nlen = strlen(r->name);

			if ((size_t)len + nlen + 2 > sizeof(path))
				continue;
			if (len)
				path[len++] = '/';
			memcpy(path + len, r->name, nlen + 1);
			rc = lfs_trace_add_name(&tr, LFS_TRACE_ABSENT, path, (size_t)len + nlen);
		}
	}
	pthread_mutex_unlock(&rec->lock);
	if (!rc && !rec->name) {
		/* The stack's key needs every layer's digest; hashing a layer
		 * takes well under a second per 100 MB, a recording a minute. */
		char hex[65];

		if (lfs_stack_key_hex(rec->s, hex)) {
			lfs_warn("trace %s: not written: the layers' digests are not all known yet",
				 rec->label);
			lfs_trace_free(&tr);
			return -EAGAIN;
		}
		rec->name = strdup(hex);
		if (!rec->name)
			rc = -ENOMEM;
	}
	if (!rc)
		rc = lfs_trace_write(&tr, rec->dirfd, rec->name);
	if (rc)
		lfs_err("trace %s%s%s: cannot write it: %s", rec->label, rec->keyed ? "/" : "",
			rec->keyed && rec->name ? rec->name : "", strerror(-rc));
	else
		lfs_info("trace %s%s%s: %zu records written", rec->label, rec->keyed ? "/" : "",
			 rec->keyed ? rec->name : "", tr.nranges);
	lfs_trace_free(&tr);
	return rc;
}

void lfs_recorder_free(struct lfs_recorder *rec)
{
	struct touched *t, *tmp;

	if (!rec)
		return;
	lfs_stack_set_observer(rec->s, NULL, NULL, NULL);
	pthread_mutex_lock(&rec->lock);
	rec->quit = 1;
	pthread_cond_signal(&rec->wake);
	pthread_mutex_unlock(&rec->lock);
	pthread_join(rec->timer, NULL);
	(void)lfs_recorder_stop(rec);
	HASH_ITER(hh, rec->set, t, tmp) {
		HASH_DEL(rec->set, t);
		free(t);
	}
	HASH_ITER(hh, rec->names, t, tmp) {
		HASH_DEL(rec->names, t);
		free(t);
	}
	for (size_t i = 0; i < rec->nruns; i++)
		free(rec->runs[i].name);
	free(rec->runs);
	close(rec->dirfd);
	free(rec->name);
	free(rec->label);
	pthread_cond_destroy(&rec->wake);
	pthread_mutex_destroy(&rec->lock);
	free(rec);
}

/* ---- replay ---- */

/* every layer of a stack has its slot in a trace */
_Static_assert(LFS_TRACE_MAX_LAYERS >= LFS_TREE_MAX_LAYERS, "trace layers");

struct lfs_replay {
	struct lfs_stack *s;
	struct lfs_trace tr;
	void (*made)(void *ctx, uint32_t ino, const char *path, uint64_t off, uint64_t len);
	void (*named)(void *ctx, enum lfs_trace_kind kind, const char *path);
	void *made_ctx;
	pthread_t thread;
	int stop;		/* atomic: abandon */
};

static void *replay_main(void *arg)
{
	struct lfs_replay *rp = arg;
	struct lfs_stack *s = rp->s;
	const struct lfs_tree *t = lfs_stack_tree(s);
	uint64_t budget = lfs_stack_cache_budget(s) / 2, asked = 0, done = 0, skipped = 0;
	char id[512];
	int match[LFS_TRACE_MAX_LAYERS] = { 0 }, known[LFS_TRACE_MAX_LAYERS] = { 0 };

	for (size_t i = 0; i < rp->tr.nranges && !__atomic_load_n(&rp->stop, __ATOMIC_RELAXED);
	     i++) {
		const struct lfs_trace_range *r = &rp->tr.ranges[i];
		uint32_t ino = r->kind == LFS_TRACE_RANGE ? lfs_tree_resolve(t, r->path) : 0;
		const struct lfs_node *n = ino ? lfs_tree_node(t, ino) : NULL;
		uint64_t off = r->first * rp->tr.block_size, end = (r->last + 1) * rp->tr.block_size;

		if (r->kind != LFS_TRACE_RANGE) {
			/* a hint about the tree, answered from today's tree */
			if (rp->named)
				rp->named(rp->made_ctx, r->kind, r->path);
			continue;
		}
		if (n && !known[n->layer]) {
			/* does the layer that provides it now have the identity of
			 * the one that did when the trace was made? */
			lfs_stack_layer_id(s, n->layer, id, sizeof(id));
			known[n->layer] = 1;
			for (size_t j = 0; j < rp->tr.nlayers; j++)
				if (rp->tr.layer_id[j] && !strcmp(rp->tr.layer_id[j], id))
					match[n->layer] = (int)j + 1;
		}
		if (!n || !S_ISREG(n->mode) || match[n->layer] != (int)r->layer + 1 ||
		    off >= n->size) {
			skipped++;
			continue;
		}
		if (end > n->size)
			end = n->size; /* off < size: the range is not empty */
		if (asked + (end - off) > budget)
			break; /* what is beyond would evict what was made */
		if (lfs_stack_prefetch(s, ino, off, end - off) == 0) {
			if (rp->made)
				rp->made(rp->made_ctx, ino, r->path, off, end - off);
			asked += end - off;
			done++;
		}
	}
	lfs_stack_note_replay(s, done, skipped, asked);
	if (skipped)
		lfs_warn("prefetch: %llu of %zu ranges of the trace skipped (paths gone, or layers changed since it was made)",
			 (unsigned long long)skipped, rp->tr.nranges);
	return NULL;
}

struct lfs_replay *lfs_replay_start(struct lfs_stack *s, struct lfs_trace *tr,
				    void (*made)(void *ctx, uint32_t ino, const char *path,
						 uint64_t off, uint64_t len),
				    void (*named)(void *ctx, enum lfs_trace_kind kind,
						  const char *path),
				    void *made_ctx)
{
	struct lfs_replay *rp = calloc(1, sizeof(*rp));

	if (!rp) {
		lfs_trace_free(tr);
		return NULL;
	}
	rp->s = s;
	rp->made = made;
	rp->named = named;
	rp->made_ctx = made_ctx;
	rp->tr = *tr;
	memset(tr, 0, sizeof(*tr));
	if (pthread_create(&rp->thread, NULL, replay_main, rp)) {
		lfs_trace_free(&rp->tr);
		free(rp);
		return NULL;
	}
	return rp;
}

void lfs_replay_free(struct lfs_replay *rp)
{
	if (!rp)
		return;
	__atomic_store_n(&rp->stop, 1, __ATOMIC_RELAXED);
	pthread_join(rp->thread, NULL);
	lfs_trace_free(&rp->tr);
	free(rp);
}
