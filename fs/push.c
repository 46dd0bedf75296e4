#include "push.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <uthash.h>

/* One store at most this long: the kernel copies a store into the page
 * cache page by page, and a pin holds its blocks until it is sent. */
#define PIECE (1u << 20)

struct range {
	uint64_t off, len;
};

struct wanted {
	uint32_t ino;
	char *path;			/* in the mount, as the trace names it */
	struct range *ranges;
	size_t n, cap;
	UT_hash_handle hh;
};

/* One step of the walk: a wanted file (ino, its path in `set`), or a
 * name to look up that is not there, or a directory to list (path). */
struct step {
	uint32_t ino;
	enum lfs_trace_kind kind;
	char *path;			/* absent, list: owned */
};

struct lfs_push {
	struct fuse_session *se;
	struct lfs_stack *s;
	uint32_t ninodes;
	uint64_t *bits;			/* atomic: inode has wanted ranges */
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct wanted *set;		/* lock: inodes with wanted ranges */
	uint32_t *queue;		/* lock: inodes known, to push, FIFO */
	size_t qhead, qlen, qcap;
	char *mnt;			/* the mount point, NULL: no walk */
	struct step *walk;		/* lock: what to look up, in the replay's order */
	size_t walked, nwalk, walkcap;
	int stopping;			/* written under lock; atomic reads */
	int tid;			/* atomic: the thread's kernel id, once it runs */
	pthread_t thread;
};

/* Stores bytes [off, off + len) of ino, piece by piece. */
static void push_range(struct lfs_push *p, uint32_t ino, uint64_t off, uint64_t len)
{
	while (len && !__atomic_load_n(&p->stopping, __ATOMIC_RELAXED)) {
		size_t want = len > PIECE ? PIECE : (size_t)len;
		struct lfs_pin pin;
		ssize_t n = lfs_stack_pin(p->s, ino, off, want, &pin);
		int rc = (int)n;

		if (n > 0) {
			struct fuse_bufvec *bv =
				calloc(1, sizeof(*bv) + pin.niov * sizeof(struct fuse_buf));

			rc = -ENOMEM;
			if (bv) {
				bv->count = pin.niov;
				for (size_t i = 0; i < pin.niov; i++) {
					bv->buf[i].mem = pin.iov[i].iov_base;
					bv->buf[i].size = pin.iov[i].iov_len;
				}
				rc = fuse_lowlevel_notify_store(p->se, ino, (off_t)off, bv, 0);
				free(bv);
			}
		}
		lfs_stack_unpin(p->s, &pin);
		if (n <= 0 || rc) {
			/* ENOENT: the kernel forgot the inode again; nothing to do */
			if (rc != -ENOENT)
				lfs_stack_note_push(p->s, 0, 0, 0, 1);
			return;
		}
		lfs_stack_note_push(p->s, 0, 0, (uint64_t)n, 0);
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
}

/* Looks path up through the mount, so that the kernel has its inode (and
 * the dentries on the way, which the function's own lookups then find):
 * 0, or a negative errno.  Never through a symbolic link or out of the
 * mount: the path comes from a trace file. */
static int walk_one(const char *mnt, const char *path, enum lfs_trace_kind kind)
{
	struct open_how how = {
		.flags = (kind == LFS_TRACE_LIST ? O_RDONLY | O_DIRECTORY : O_PATH) | O_NOFOLLOW |
			 O_CLOEXEC,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
			   RESOLVE_NO_XDEV,
	};
	/* the root is opened for each walk, not held: a descriptor in the
	 * mount would make an unmount fail as busy */
	int root = open(mnt, O_PATH | O_DIRECTORY | O_CLOEXEC), rc = 0;
	long fd;

	if (root < 0)
		return -errno;
	fd = syscall(SYS_openat2, root, path, &how, sizeof(how));
	if (fd < 0) {
		rc = -errno;
	} else {
		/* listed to its end: the kernel keeps the listing whole */
		char buf[16384];

		while (kind == LFS_TRACE_LIST && syscall(SYS_getdents64, (int)fd, buf, sizeof(buf)) > 0)
			;
		close((int)fd);
	}
	close(root);
	/* the lookup that found nothing is what was wanted: the kernel now
	 * answers it from a negative dentry */
	if (kind == LFS_TRACE_ABSENT && rc == -ENOENT)
		rc = 0;
	return rc;
}

/* With p->lock held: the next step, the path taken by the caller (a
 * wanted file the kernel does not know yet, or a name), or 0. */
static int next_walk(struct lfs_push *p, struct step *out)
{
	while (p->mnt && p->walked < p->nwalk) {
		struct step *st = &p->walk[p->walked++];
		uint32_t ino = st->ino;
		struct wanted *w = NULL;

		if (st->kind != LFS_TRACE_RANGE) {
			*out = *st;
			st->path = NULL;
			return 1;
		}
		if (!(__atomic_load_n(&p->bits[ino / 64], __ATOMIC_ACQUIRE) & (1ull << (ino % 64))))
			continue; /* looked up already */
		HASH_FIND(hh, p->set, &ino, sizeof(ino), w);
		if (w && w->path && (out->path = strdup(w->path))) {
			out->ino = ino;
			out->kind = LFS_TRACE_RANGE;
			return 1;
		}
	}
	return 0;
}

/* With p->lock held: appends a step to the walk (the path taken). */
static void add_step(struct lfs_push *p, uint32_t ino, enum lfs_trace_kind kind, char *path)
{
	if (p->nwalk == p->walkcap) {
		size_t cap = p->walkcap ? 2 * p->walkcap : 256;
		struct step *walk = realloc(p->walk, cap * sizeof(*walk));

		if (walk) {
			p->walk = walk;
			p->walkcap = cap;
		}
	}
	if (p->nwalk < p->walkcap) {
		p->walk[p->nwalk++] = (struct step){ ino, kind, path };
		pthread_cond_signal(&p->wake);
	} else {
		free(path);
	}
}

static void *push_main(void *arg)
{
	struct lfs_push *p = arg;
	struct sched_param sp = { 0 };

	/* The pins may inflate what the replay has not made yet: on idle CPU
	 * only, as the replay's own jobs, never in the function's way. */
	(void)pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
	__atomic_store_n(&p->tid, (int)gettid(), __ATOMIC_RELAXED);

	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct wanted *w = NULL;
		char *path = NULL;
		uint32_t ino;

		while (!p->qlen && !p->stopping &&
		       !(p->mnt && p->walked < p->nwalk))
			pthread_cond_wait(&p->wake, &p->lock);
		if (p->stopping)
			break;
		if (!p->qlen) {
			/* nothing known to push: have the kernel learn the next
			 * file, ahead of the function (or the next name it will
			 * miss, or the next directory it will list) */
			struct step st = { 0 };
			int rc;

			if (!next_walk(p, &st))
				continue;
			path = st.path;
			ino = st.ino;
			pthread_mutex_unlock(&p->lock);
			rc = path ? walk_one(p->mnt, path, st.kind) : -ENOMEM;
			if (!rc && st.kind != LFS_TRACE_RANGE) {
				lfs_stack_note_walked(p->s);
			} else if (!rc) {
				lfs_push_known(p, ino);
			} else if (st.kind == LFS_TRACE_RANGE &&
				   (rc == -EACCES || rc == -EPERM || rc == -ENOSYS)) {
				/* (a name's failure, a directory the daemon's
				 * user may not list say, is only skipped)
				 * the daemon may not enter its own mount
				 * (no allow_other): pushes follow the
				 * function's own lookups only */
				lfs_info("prefetch: cannot look traced files up ahead (%s); pushing them as the function looks them up",
					 strerror(-rc));
				pthread_mutex_lock(&p->lock);
				free(p->mnt);
				p->mnt = NULL;
				pthread_mutex_unlock(&p->lock);
			}
			free(path);
			pthread_mutex_lock(&p->lock);
			continue;
		}
		ino = p->queue[p->qhead];
		p->qhead = (p->qhead + 1) % p->qcap;
		p->qlen--;
		HASH_FIND(hh, p->set, &ino, sizeof(ino), w);
		if (w)
			HASH_DEL(p->set, w);
		pthread_mutex_unlock(&p->lock);
		if (w) {
			lfs_stack_note_push(p->s, 0, 1, 0, 0);
			for (size_t i = 0; i < w->n; i++)
				push_range(p, ino, w->ranges[i].off, w->ranges[i].len);
			free(w->path);
			free(w->ranges);
			free(w);
		}
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

struct lfs_push *lfs_push_start(struct fuse_session *se, struct lfs_stack *s, const char *mnt)
{
	struct lfs_push *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->se = se;
	p->mnt = mnt ? strdup(mnt) : NULL;
	p->s = s;
	p->ninodes = lfs_tree_count(lfs_stack_tree(s)) + 1;
	p->bits = calloc((p->ninodes + 63) / 64, sizeof(*p->bits));
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->wake, NULL);
	if (!p->bits || pthread_create(&p->thread, NULL, push_main, p)) {
		free(p->mnt);
		pthread_mutex_destroy(&p->lock);
		pthread_cond_destroy(&p->wake);
		free(p->bits);
		free(p);
		return NULL;
	}
	return p;
}

void lfs_push_want(struct lfs_push *p, uint32_t ino, const char *path, uint64_t off,
		   uint64_t len)
{
	struct wanted *w = NULL;

	if (!p || !ino || ino >= p->ninodes || !len)
		return;
	pthread_mutex_lock(&p->lock);
	HASH_FIND(hh, p->set, &ino, sizeof(ino), w);
	if (!w && (w = calloc(1, sizeof(*w)))) {
		w->ino = ino;
		w->path = path ? strdup(path) : NULL;
		HASH_ADD(hh, p->set, ino, sizeof(w->ino), w);
		add_step(p, ino, LFS_TRACE_RANGE, NULL);
	}
	if (w && w->n == w->cap) {
		size_t cap = w->cap ? 2 * w->cap : 4;
		struct range *r = realloc(w->ranges, cap * sizeof(*r));

		if (r) {
			w->ranges = r;
			w->cap = cap;
		}
	}
	if (w && w->n < w->cap) {
		w->ranges[w->n++] = (struct range){ off, len };
		lfs_stack_note_push(p->s, len, 0, 0, 0);
		__atomic_fetch_or(&p->bits[ino / 64], 1ull << (ino % 64), __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&p->lock);
}

void lfs_push_want_cb(void *p, uint32_t ino, const char *path, uint64_t off, uint64_t len)
{
	lfs_push_want(p, ino, path, off, len);
}

void lfs_push_name(struct lfs_push *p, enum lfs_trace_kind kind, const char *path)
{
	char *copy;

	if (!p || kind == LFS_TRACE_RANGE || !(copy = strdup(path)))
		return;
	pthread_mutex_lock(&p->lock);
	if (p->mnt)
		add_step(p, 0, kind, copy);
	else
		free(copy);
	pthread_mutex_unlock(&p->lock);
}

void lfs_push_name_cb(void *p, enum lfs_trace_kind kind, const char *path)
{
	lfs_push_name(p, kind, path);
}

int lfs_push_is_walker(const struct lfs_push *p, int tid)
{
	return p && tid && __atomic_load_n(&p->tid, __ATOMIC_RELAXED) == tid;
}

void lfs_push_known(struct lfs_push *p, uint64_t ino)
{
	uint64_t bit = 1ull << (ino % 64), was;

	if (!p || ino >= p->ninodes ||
	    !(__atomic_load_n(&p->bits[ino / 64], __ATOMIC_ACQUIRE) & bit))
		return;
	was = __atomic_fetch_and(&p->bits[ino / 64], ~bit, __ATOMIC_ACQ_REL);
	if (!(was & bit))
		return; /* another lookup of it queued it */
	pthread_mutex_lock(&p->lock);
	if (p->qlen == p->qcap) {
		size_t cap = p->qcap ? 2 * p->qcap : 64;
		uint32_t *q = malloc(cap * sizeof(*q));

		if (!q) {
			pthread_mutex_unlock(&p->lock);
			return;
		}
		for (size_t i = 0; i < p->qlen; i++)
			q[i] = p->queue[(p->qhead + i) % p->qcap];
		free(p->queue);
		p->queue = q;
		p->qhead = 0;
		p->qcap = cap;
	}
	p->queue[(p->qhead + p->qlen++) % p->qcap] = (uint32_t)ino;
	pthread_cond_signal(&p->wake);
	pthread_mutex_unlock(&p->lock);
}

void lfs_push_stop(struct lfs_push *p)
{
	struct wanted *w, *tmp;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	__atomic_store_n(&p->stopping, 1, __ATOMIC_RELAXED);
	pthread_cond_signal(&p->wake);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->thread, NULL);
	HASH_ITER(hh, p->set, w, tmp) {
		HASH_DEL(p->set, w);
		free(w->path);
		free(w->ranges);
		free(w);
	}
	free(p->mnt);
	for (size_t i = 0; i < p->nwalk; i++)
		free(p->walk[i].path);
	free(p->walk);
	free(p->queue);
	free(p->bits);
	pthread_cond_destroy(&p->wake);
	pthread_mutex_destroy(&p->lock);
	free(p);
}
