#include "fuse_ops.h"

#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

static struct lfs_fuse_ctx *ctx_of(fuse_req_t req) { return fuse_req_userdata(req); }

/* -o sched=auto, after each request, for the next one: a worker that has
 * just answered a read deep into a member read in order (a stream: a large
 * file copied or scanned) sleeps as SCHED_BATCH, so that the kernel's next
 * request, or the block it then waits for, wakes it without preempting the
 * thread inflating ahead or the reader copying out (each such preemption
 * cost a sequential reader its throughput, docs/performance.md); after any
 * other request it sleeps as SCHED_OTHER, so that on a busy host a start's
 * small requests are answered at once instead of waiting for a free core.
 * A system call only when it changes. */
#define STREAM_RUN (4u << 20)

static void settle_policy(const struct lfs_fuse_ctx *ctx, int streaming)
{
	static _Thread_local int batch;
	static int refused;	/* atomic: a filter forbids the call */
	struct sched_param sp = { 0 };
	int rc;

	if (!ctx->sched_auto || streaming == batch || __atomic_load_n(&refused, __ATOMIC_RELAXED) ||
	    lfs_uring_owns_policy())
		return;
	rc = pthread_setschedparam(pthread_self(), streaming ? SCHED_BATCH : SCHED_OTHER, &sp);
	if (!rc)
		batch = streaming;
	else if (!__atomic_exchange_n(&refused, 1, __ATOMIC_RELAXED))
		lfs_warn("sched=auto: cannot change the workers' scheduling policy (%s); "
			 "they stay as they are", strerror(rc));
}

static void lfs_init(void *userdata, struct fuse_conn_info *conn)
{
	struct lfs_fuse_ctx *ctx = userdata;

	/* Large reads: the kernel sizes read requests from max_write's page
	 * count (max_pages), so raise both. */
	conn->max_write = ctx->max_read;
	conn->max_readahead = ctx->max_read;
	if (conn->capable & FUSE_CAP_ASYNC_READ)
		conn->want |= FUSE_CAP_ASYNC_READ;
	if ((conn->capable & FUSE_CAP_READDIRPLUS) && ctx->dirplus != LFS_DIRPLUS_NEVER)
		conn->want |= FUSE_CAP_READDIRPLUS;
	else
		conn->want &= ~(unsigned)(FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO);
	/* symlink targets never change either */
	if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
		conn->want |= FUSE_CAP_CACHE_SYMLINKS;
	/* Nothing changes under us; no need to revalidate on open. */
	conn->want &= ~(unsigned)FUSE_CAP_AUTO_INVAL_DATA;
}

static int fill_entry(struct lfs_fuse_ctx *ctx, uint32_t ino, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->attr_timeout = ctx->attr_timeout;
	e->entry_timeout = ctx->entry_timeout;
	if (!ino)
		return 0; /* negative entry, cached for timeout too */
	e->ino = ino;
	e->generation = 1;
	return lfs_stack_stat(ctx->stack, ino, &e->attr);
}

/* Which listings carry attributes.  An entry of READDIRPLUS with its
 * attributes makes the kernel an inode and a dentry for it: a program that
 * then stats the entries (Python's imports, ls -l, tar) is spared a LOOKUP
 * for each, one that only lists (find) pays for inodes it never uses.  So
 * under readdirplus=auto the entries of subdirectories always carry them
 * (a walk descends into them), the others only for a thread that has
 * looked up a file before, by name: the first listing such a thread makes
 * costs it a LOOKUP per entry it then stats (docs/performance.md).  The
 * thread walking the mount ahead of a replay lists for the function, so it
 * is always given them. */
static void note_statter(struct lfs_fuse_ctx *ctx, int tid)
{
	if (ctx->dirplus == LFS_DIRPLUS_AUTO && tid > 0 &&
	    __atomic_load_n(&ctx->statters[tid % LFS_STATTERS], __ATOMIC_RELAXED) != tid)
		__atomic_store_n(&ctx->statters[tid % LFS_STATTERS], tid, __ATOMIC_RELAXED);
}

static int wants_attrs(const struct lfs_fuse_ctx *ctx, int tid)
{
	if (ctx->dirplus != LFS_DIRPLUS_AUTO)
		return 1;
	return tid > 0 && (__atomic_load_n(&ctx->statters[tid % LFS_STATTERS],
					   __ATOMIC_RELAXED) == tid ||
			   lfs_push_is_walker(ctx->push, tid));
}

static void lfs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct lfs_fuse_ctx *ctx = ctx_of(req);
	struct fuse_entry_param e;
	const struct lfs_node *p = lfs_tree_node(lfs_stack_tree(ctx->stack), parent);
	uint64_t t0 = lfs_metrics_clock();
	int tid = (int)fuse_req_ctx(req)->pid; /* req is gone once answered */
	uint32_t ino;
	int rc;

	if (!p) {
		rc = -ENOENT;
	} else if (!S_ISDIR(p->mode)) {
		rc = -ENOTDIR;
	} else {
		ino = lfs_tree_lookup(lfs_stack_tree(ctx->stack), (uint32_t)parent, name,
				      strlen(name));
		rc = fill_entry(ctx, ino, &e);
		if (!ino) /* for a trace: the next start can look it up ahead */
			lfs_stack_note_name(ctx->stack, (uint32_t)parent, name, strlen(name));
	}
	if (rc) {
		fuse_reply_err(req, -rc);
	} else {
		fuse_reply_entry(req, &e);
		/* the kernel has the inode now: it can take its pages */
		if (e.ino)
			lfs_push_known(ctx->push, e.ino);
		if (e.ino && !S_ISDIR(e.attr.st_mode))
			note_statter(ctx, tid);
	}
	lfs_metrics_op(ctx->metrics, LFS_OP_LOOKUP, t0);
	settle_policy(ctx, 0);
}

static void lfs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct lfs_fuse_ctx *ctx = ctx_of(req);
	uint64_t t0 = lfs_metrics_clock();
	struct stat st;
	int rc = lfs_stack_stat(ctx->stack, ino, &st);

	(void)fi;
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, ctx->attr_timeout);
	lfs_metrics_op(ctx->metrics, LFS_OP_GETATTR, t0);
	settle_policy(ctx, 0);
}

static void lfs_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct lfs_fuse_ctx *ctx = ctx_of(req);
	uint64_t t0 = lfs_metrics_clock();
	char buf[LFS_TREE_MAX_PATH + 1];
	int rc = lfs_stack_readlink(ctx->stack, ino, buf, sizeof(buf));

	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_readlink(req, buf);
	lfs_metrics_op(ctx->metrics, LFS_OP_READLINK, t0);
	settle_policy(ctx, 0);
}

/* No open or opendir at all: answering ENOSYS once makes the kernel stop
 * sending OPEN/RELEASE and OPENDIR/RELEASEDIR (two round trips per file a
 * program opens, the largest share of a warm start's requests) and keep
 * the page cache and directory cache as with keep_cache/cache_readdir.
 * Writes are refused by the read-only mount before they reach us; a bad
 * entry fails at its first read instead of at open. */
static void lfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct lfs_fuse_ctx *ctx = ctx_of(req);
	uint64_t t0 = lfs_metrics_clock();

	(void)ino;
	(void)fi;
	fuse_reply_err(req, ENOSYS);
	lfs_metrics_op(ctx->metrics, LFS_OP_OPEN, t0);
}

static void lfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct lfs_fuse_ctx *ctx = ctx_of(req); /* req is gone once answered */
	struct lfs_stack *s = ctx->stack;
	struct lfs_pin pin;
	ssize_t n;
	enum lfs_seq sequential;
	uint64_t in_order, t0 = lfs_metrics_clock();

	(void)fi;
	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	/* The reply is gathered straight from the cached blocks. */
	n = lfs_stack_pin(s, ino, (uint64_t)off, size, &pin);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_iov(req, pin.iov, (int)pin.niov);
	lfs_metrics_read(ctx->metrics, t0, n < 0);
	sequential = pin.sequential;
	in_order = pin.in_order;
	lfs_stack_unpin(s, &pin);
	/* the member failed: what the kernel cached of it before must go too */
	if (n == -EIO)
		lfs_inval_push(ctx->inval, ino);
	if (n > 0 && sequential != LFS_SEQ_NO)
		lfs_stack_readahead(s, ino, (uint64_t)off + (uint64_t)n, sequential);
	settle_policy(ctx, n > 0 && in_order >= STREAM_RUN);
}

static void lfs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct lfs_fuse_ctx *ctx = ctx_of(req);
	uint64_t t0 = lfs_metrics_clock();

	(void)ino;
	(void)fi;
	fuse_reply_err(req, ENOSYS);
	lfs_metrics_op(ctx->metrics, LFS_OP_OPENDIR, t0);
}

/* Directory offsets: 1 is after ".", 2 after "..", 2 + i after child i. */
static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, int plus)
{
	struct lfs_fuse_ctx *ctx = ctx_of(req);
	const struct lfs_tree *t = lfs_stack_tree(ctx->stack);
	const struct lfs_node *dir = lfs_tree_node(t, ino);
	enum lfs_op op = plus ? LFS_OP_READDIRPLUS : LFS_OP_READDIR;
	uint64_t t0 = lfs_metrics_clock();
	int attrs = plus && wants_attrs(ctx, (int)fuse_req_ctx(req)->pid);
	char *buf, name[256];
	size_t used = 0;
	off_t end = off;

	if (!dir || !(buf = malloc(size))) {
		fuse_reply_err(req, dir ? ENOMEM : ENOENT);
		lfs_metrics_op(ctx->metrics, op, t0);
		return;
	}
	if (off == 0) /* for a trace: the next start can list it ahead */
		lfs_stack_note_name(ctx->stack, (uint32_t)ino, NULL, 0);
	for (off_t i = off; i < (off_t)dir->nchildren + 2; i++) {
		struct fuse_entry_param e;
		uint32_t child = i == 0 ? (uint32_t)ino : i == 1 ? dir->parent
			       : lfs_tree_child(t, (uint32_t)ino, (uint32_t)(i - 2));
		const struct lfs_node *c = lfs_tree_node(t, child);
		size_t need;

		if (i < 2) {
			strcpy(name, i == 0 ? "." : "..");
		} else {
			memcpy(name, lfs_tree_name(t, c), c->name_len);
			name[c->name_len] = '\0';
		}
		fill_entry(ctx, child, &e);
		if (plus) {
			/* "." and ".." must not take lookup references; an
			 * entry with no inode number is listed, and the
			 * kernel makes nothing of it */
			if (i < 2 || (!attrs && !S_ISDIR(e.attr.st_mode)))
				e.ino = 0;
			need = fuse_add_direntry_plus(req, buf + used, size - used, name, &e,
						      i + 1);
		} else {
			need = fuse_add_direntry(req, buf + used, size - used, name, &e.attr,
						 i + 1);
		}
		if (need > size - used)
			break;
		used += need;
		end = i + 1;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
	/* READDIRPLUS made the kernel an inode of each entry it sent with
	 * attributes (the pusher wants only files) */
	for (off_t j = off < 2 ? 2 : off; attrs && ctx->push && j < end; j++)
		lfs_push_known(ctx->push, lfs_tree_child(t, (uint32_t)ino, (uint32_t)(j - 2)));
	lfs_metrics_op(ctx->metrics, op, t0);
	settle_policy(ctx, 0);
}

static void lfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			struct fuse_file_info *fi)
{
	(void)fi;
	do_readdir(req, ino, size, off, 0);
}

static void lfs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			    struct fuse_file_info *fi)
{
	(void)fi;
	do_readdir(req, ino, size, off, 1);
}

static void lfs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct lfs_fuse_ctx *ctx = ctx_of(req);
	struct lfs_stack *s = ctx->stack;
	uint64_t t0 = lfs_metrics_clock();
	struct statvfs sv;

	(void)ino;
	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = 4096;
	sv.f_frsize = 4096;
	sv.f_blocks = (fsblkcnt_t)((lfs_tree_total_bytes(lfs_stack_tree(s)) + 4095) / 4096);
	sv.f_files = lfs_tree_count(lfs_stack_tree(s));
	sv.f_namemax = 255;
	sv.f_flag = ST_RDONLY | ST_NOSUID | ST_NODEV;
	fuse_reply_statfs(req, &sv);
	lfs_metrics_op(ctx->metrics, LFS_OP_STATFS, t0);
}

/* Answers a getxattr for a value: its size when size is 0, else the value. */
static void reply_value(fuse_req_t req, const char *val, size_t len, size_t size)
{
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (len > size)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, val, len);
}

/* Root, or a member of the admin group (by its primary group, or by the
 * supplementary groups the kernel lists for the requesting thread). */
static int is_admin(fuse_req_t req, const struct lfs_fuse_ctx *ctx)
{
	const struct fuse_ctx *who = fuse_req_ctx(req);
	gid_t few[64], *groups = few;
	int n, yes = 0;

	if (who->uid == 0)
		return 1;
	if (!ctx->has_admin_gid)
		return 0;
	if (who->gid == ctx->admin_gid)
		return 1;
	n = fuse_req_getgroups(req, 64, few);
	if (n > 64 && (groups = malloc(sizeof(gid_t) * (size_t)n)))
		n = fuse_req_getgroups(req, n, groups);
	for (int i = 0; i < n && (groups != few || i < 64); i++)
		yes |= groups[i] == ctx->admin_gid;
	if (groups != few)
		free(groups);
	return yes;
}

static void do_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct lfs_fuse_ctx *ctx = ctx_of(req);
	struct lfs_stack *s = ctx->stack;
	int layer = !strcmp(name, LFS_XATTR_LAYER);
	int stats = ino == FUSE_ROOT_ID && !strcmp(name, LFS_XATTR_STATS);
	int metrics = ino == FUSE_ROOT_ID && ctx->metrics && !strcmp(name, LFS_XATTR_METRICS);
	int admin;
	size_t cap = 64 << 10;
	char *buf;
	int n;

	if ((!layer && !stats && !metrics) || (layer && ctx->provenance == 2)) {
		fuse_reply_err(req, ENODATA);
		return;
	}
	admin = is_admin(req, ctx);
	if (!layer && !admin) {
		fuse_reply_err(req, EACCES);
		return;
	}
	buf = malloc(cap);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (layer)
		n = lfs_stack_provenance_as(s, ino, admin		    ? LFS_LABEL_OPERATOR
						   : ctx->provenance == 1 ? LFS_LABEL_PATH
									  : LFS_LABEL_NAME,
					    buf, cap);
	else if (metrics)
		n = lfs_metrics_prometheus(ctx->metrics, s, buf, cap);
	else
		n = ctx->metrics ? lfs_metrics_stats_text(ctx->metrics, s, buf, cap)
				 : lfs_stack_stats_text(s, buf, cap);
	if (stats && n >= 0 && (size_t)n < cap) {
		uint64_t switches;
		int idle = lfs_uring_idle_now(ctx->uring, &switches);
		int m = snprintf(buf + n, cap - (size_t)n,
				 "uring_requests %llu\nuring_idle %d\nuring_idle_switches %llu\n",
				 (unsigned long long)lfs_uring_served(ctx->uring), idle,
				 (unsigned long long)switches);

		n = m < 0 || (size_t)m >= cap - (size_t)n ? -ERANGE : n + m;
	}
	if (n == -ERANGE && !layer)
		n = -E2BIG; /* past what an attribute may hold, whatever the caller's size */
	if (n < 0)
		fuse_reply_err(req, -n);
	else
		reply_value(req, buf, (size_t)n, size);
	free(buf);
}

static void do_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct lfs_fuse_ctx *ctx = ctx_of(req);
	static const char all[] = LFS_XATTR_LAYER "\0" LFS_XATTR_STATS "\0" LFS_XATTR_METRICS;
	const char *names = all;
	size_t len = sizeof(LFS_XATTR_LAYER);

	if (!lfs_tree_node(lfs_stack_tree(ctx->stack), ino)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	/* only what the caller may read */
	if (ino == FUSE_ROOT_ID && is_admin(req, ctx))
		len = ctx->metrics ? sizeof(all) : sizeof(LFS_XATTR_LAYER) + sizeof(LFS_XATTR_STATS);
	if (ctx->provenance == 2) {
		names += sizeof(LFS_XATTR_LAYER);
		len -= len > sizeof(LFS_XATTR_LAYER) ? sizeof(LFS_XATTR_LAYER) : len;
	}
	reply_value(req, names, len, size);
}

static void lfs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct lfs_fuse_ctx *ctx = ctx_of(req);
	uint64_t t0 = lfs_metrics_clock();

	do_getxattr(req, ino, name, size);
	lfs_metrics_op(ctx->metrics, LFS_OP_GETXATTR, t0);
}

static void lfs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct lfs_fuse_ctx *ctx = ctx_of(req);
	uint64_t t0 = lfs_metrics_clock();

	do_listxattr(req, ino, size);
	lfs_metrics_op(ctx->metrics, LFS_OP_LISTXATTR, t0);
}

/* No file here is a terminal or has flags to give: every ioctl is ENOTTY,
 * answered at once (Python asks TCGETS of every file it opens). */
static void lfs_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg,
		      struct fuse_file_info *fi, unsigned flags, const void *in_buf,
		      size_t in_bufsz, size_t out_bufsz)
{
	struct lfs_fuse_ctx *ctx = ctx_of(req);
	uint64_t t0 = lfs_metrics_clock();

	(void)ino; (void)cmd; (void)arg; (void)fi; (void)flags;
	(void)in_buf; (void)in_bufsz; (void)out_bufsz;
	fuse_reply_err(req, ENOTTY);
	lfs_metrics_op(ctx->metrics, LFS_OP_IOCTL, t0);
	settle_policy(ctx, 0);
}

const struct fuse_lowlevel_ops lfs_fuse_ops = {
	.init = lfs_init,
	.lookup = lfs_lookup,
	.getattr = lfs_getattr,
	.readlink = lfs_readlink,
	.open = lfs_open,
	.read = lfs_read,
	.opendir = lfs_opendir,
	.readdir = lfs_readdir,
	.readdirplus = lfs_readdirplus,
	.statfs = lfs_statfs,
	.getxattr = lfs_getxattr,
	.listxattr = lfs_listxattr,
	.ioctl = lfs_ioctl,
	/* No access handler: the mount has default_permissions, so the kernel
	 * checks the mode bits itself and never asks.  No write-type handler
	 * either: the mount is ro, so the kernel refuses those calls with
	 * EROFS before they reach a daemon. */
};
