#include "daemon.h"

#include "fuse_ops.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "prefetch.h"
#include "privs.h"
#include "uring.h"

#include "../cache/hostdir.h"

#include "version.h" /* made by the Makefile */

#include <grp.h>
#include <linux/fuse.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Restarts.  Under systemd the daemon keeps the /dev/fuse descriptor of a
 * mount it made in the service's file descriptor store, named after the
 * mount point and the stack (lfs_stack_fingerprint).  A daemon stopped or
 * crashed leaves the mount in place: requests wait in the kernel.  The
 * next start finds the descriptor among those systemd passes
 * ($LISTEN_FDS) and, when the name matches, serves the same connection:
 * the kernel keeps its inodes (and their lookup counts, which forget
 * ignores: inodes live as long as the mount) under numbers the tree
 * assigns the same way from the same list.  The kernel had its INIT from
 * the first daemon, so the new session is given one of its own making.
 * The daemon serves through a clone of the stored connection (a /dev/fuse
 * file of its own, FUSE_DEV_IOC_CLONE): requests a crashed daemon had read
 * but not answered then fail with ECONNABORTED when its clone closes,
 * instead of waiting forever on the store's copy. */
struct daemon_state {
	struct fuse_session *se;
	struct lfs_uring *uring;	/* NULL: libfuse's loop serves everything */
	struct lfs_fuse_ctx *ctx;
	struct lfs_stack *stack;
	struct lfs_options *o;
	struct lfs_privs privs;
	char *mountpoint;
	int ready_fd;		/* parent waiting for readiness, or -1 */
	int sched_batch;	/* run the workers as SCHED_BATCH throughout */
	sigset_t signals;	/* handled by signal_thread */
	int stored;		/* the connection is in systemd's store */
	int took_over;		/* ... and came from there */
	char fdname[64];
	int unmounter;		/* the unmount helper's socket, or -1 */
	int spare_fd;		/* an unattached /dev/fuse file, or -1 (release_mount) */
	int metrics_dir;	/* metrics_file's folder, or -1 */
	const char *metrics_name;
	pthread_t metrics_thread;
	int metrics_running;
	/* lock: init_done (set once the session had its INIT) and stopping */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int init_done, stopping;
	int ready_busy;		/* ready_thread still reads the stack */
	pthread_mutex_t trace_lock;	/* recorder, between its owner and signal_thread */
	struct lfs_recorder *recorder;	/* -o trace, or prefetch=auto's first mount */
	struct lfs_replay *replay;	/* -o prefetch */
	/* prepare_traces, for start_traces */
	int trace_dirfd;		/* where the trace goes, or -1 */
	const char *trace_name;		/* its name there (-o trace) */
	struct lfs_trace replay_trace;	/* the trace to replay, when have_replay */
	int have_replay;
};

/* The one daemon of this process, for the INIT hook. */
static struct daemon_state *daemon_of_process;

/* FUSE splits -o values at commas; "\\," keeps one in a value. */
static char *escape_commas(const char *s)
{
	char *out = malloc(2 * strlen(s) + 1), *o = out;

	for (; out && *s; s++) {
		if (*s == ',' || *s == '\\')
			*o++ = '\\';
		*o++ = *s;
	}
	if (out)
		*o = '\0';
	return out;
}

/* 1 when layerfs already serves mount point mnt (a resolved path): a
 * second mount would stack on it and take two umounts to clear. */
static int served_by_layerfs(const char *mnt)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[8192];
	int found = 0;

	if (!f)
		return 0;
	while (!found && fgets(line, sizeof(line), f)) {
		char point[PATH_MAX], fstype[64];
		const char *sep = strstr(line, " - ");

		/* ID PARENT MAJ:MIN ROOT POINT ... - FSTYPE SOURCE OPTIONS */
		if (!sep || sscanf(line, "%*s %*s %*s %*s %4095s", point) != 1 ||
		    sscanf(sep + 3, "%63s", fstype) != 1)
			continue;
		/* mountinfo escapes spaces as \040: compare escaped forms */
		{
			char esc[PATH_MAX * 4], *o = esc;

			for (const char *p = mnt; *p && o < esc + sizeof(esc) - 5; p++) {
				if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\\')
					o += sprintf(o, "\\%03o", (unsigned char)*p);
				else
					*o++ = *p;
			}
			*o = '\0';
			found = !strcmp(point, esc) && !strcmp(fstype, "fuse.layerfs");
		}
	}
	fclose(f);
	return found;
}

/* A mount point whose daemon died answers ENOTCONN: detach it first.
 * statfs, not stat: the kernel answers stat from its attribute cache (valid
 * for the attribute timeout, a day by default) even after the daemon died;
 * statfs is always a request. */
static int prepare_mountpoint(const char *mnt)
{
	struct stat st;
	struct statfs sfs;

	if (statfs(mnt, &sfs) < 0 && errno == ENOTCONN) {
		if (umount2(mnt, MNT_DETACH) == 0)
			lfs_warn("%s: recovered a stale mount (its daemon had died)", mnt);
		else
			lfs_warn("%s: stale mount, cannot detach it: %s", mnt, strerror(errno));
	}
	if (stat(mnt, &st) < 0) {
		lfs_err("%s: %s", mnt, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		lfs_err("%s: mount point is not a directory", mnt);
		return -1;
	}
	return 0;
}

/* The session's INIT callback, then the readiness it means: INIT is the
 * first request of a mount, answered before any other is sent. */
static void daemon_init(void *userdata, struct fuse_conn_info *conn)
{
	struct daemon_state *d = daemon_of_process;

	lfs_fuse_ops.init(userdata, conn);
	pthread_mutex_lock(&d->lock);
	d->init_done = 1;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
}

/* A taken-over connection had its INIT long ago: the kernel sends none and
 * libfuse answers nothing before one.  This one, made here, offers what
 * lfs_init asks for (what the kernel agreed to with the first daemon stays
 * as it was; the session only sizes its buffers by it) and sets the session
 * up; its reply goes to a request id the kernel never used (refused with
 * ENOENT, which libfuse does not report). */
static void replay_init(struct daemon_state *d)
{
	struct {
		struct fuse_in_header h;
		struct fuse_init_in in;
	} msg;
	struct fuse_buf buf = { .size = sizeof(msg), .mem = &msg };

	memset(&msg, 0, sizeof(msg));
	msg.h.len = sizeof(msg);
	msg.h.opcode = FUSE_INIT;
	msg.h.unique = UINT64_MAX - 1; /* the kernel's ids are even and count up from 0 */
	msg.in.major = FUSE_KERNEL_VERSION;
	msg.in.minor = FUSE_KERNEL_MINOR_VERSION;
	msg.in.max_readahead = d->ctx->max_read;
	msg.in.flags = FUSE_ASYNC_READ | FUSE_BIG_WRITES | FUSE_DO_READDIRPLUS |
		       FUSE_READDIRPLUS_AUTO | FUSE_PARALLEL_DIROPS | FUSE_CACHE_SYMLINKS |
		       FUSE_MAX_PAGES;
	fuse_session_process_buf(d->se, &buf);
}

/* Waits for the session's INIT (or its end); 1 once it came. */
static int wait_init(struct daemon_state *d)
{
	int ok;

	pthread_mutex_lock(&d->lock);
	while (!d->init_done && !d->stopping && !fuse_session_exited(d->se)) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100 * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&d->cond, &d->lock, &ts);
	}
	ok = d->init_done;
	pthread_mutex_unlock(&d->lock);
	return ok;
}

/* Confirms the mount answers, then tells whoever waits (the parent of a
 * background daemon, systemd) and keeps the systemd watchdog fed. */
/* ready_thread is done with the stack: the end of the mount may free it. */
static void ready_done(struct daemon_state *d)
{
	pthread_mutex_lock(&d->lock);
	d->ready_busy = 0;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
}

static void *ready_thread(void *arg)
{
	struct daemon_state *d = arg;
	const struct lfs_tree *t = lfs_stack_tree(d->stack);
	char status[512];
	uint64_t wd;
	struct statfs sfs;

	if (!wait_init(d)) {
		ready_done(d);
		return NULL;
	}
	/* statfs, not stat: the kernel answers stat from its attribute cache
	 * (valid for the attribute timeout, a day by default) even after the
	 * daemon died; statfs is always a request.  A daemon that may not
	 * reach its own mount (no allow_other, not the mount's owner, or a
	 * folder on the way closed to it) cannot look: INIT has shown the
	 * loop serves. */
	if (statfs(d->mountpoint, &sfs) < 0 && errno != EACCES) {
		lfs_err("%s: the mount does not answer: %s", d->mountpoint, strerror(errno));
		fuse_session_exit(d->se);
		ready_done(d);
		return NULL;
	}
	if (d->ready_fd >= 0) {
		if (write(d->ready_fd, "1", 1) != 1)
			lfs_warn("cannot signal readiness to the parent: %s", strerror(errno));
		close(d->ready_fd);
		d->ready_fd = -1;
	}
	snprintf(status, sizeof(status), "READY=1\nSTATUS=serving %zu layers, %u inodes at %s%s",
		 lfs_stack_layer_count(d->stack), lfs_tree_count(t), d->mountpoint,
		 d->took_over ? " (taken over)" : "");
	lfs_notify(status);
	lfs_info("%s: serving %zu layers, %u inodes as user %s (opened in %.1f ms%s)",
		 d->mountpoint, lfs_stack_layer_count(d->stack), lfs_tree_count(t), d->privs.name,
		 lfs_stack_open_seconds(d->stack) * 1e3,
		 d->took_over ? "; took over the mount a previous daemon left" : "");
	ready_done(d);
	wd = lfs_notify_watchdog_usec();
	if (wd && statfs(d->mountpoint, &sfs) < 0 && errno == EACCES)
		lfs_warn("%s: user %s cannot reach the mount: the watchdog shows only that the daemon runs, not that it answers",
			 d->mountpoint, d->privs.name);
	while (wd && !fuse_session_exited(d->se)) {
		struct timespec ts;
		int stop;

		/* answered only while the FUSE loop is: a hung loop stops the
		 * pings and systemd restarts us */
		if (statfs(d->mountpoint, &sfs) == 0 || errno == EACCES)
			lfs_notify("WATCHDOG=1");
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += (time_t)(wd / 2000000);
		ts.tv_nsec += (long)(wd / 2 % 1000000) * 1000;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_mutex_lock(&d->lock);
		if (!d->stopping)
			pthread_cond_timedwait(&d->cond, &d->lock, &ts);
		stop = d->stopping;
		pthread_mutex_unlock(&d->lock);
		if (stop)
			break;
	}
	return NULL;
}

/* SIGUSR1 drops cached blocks; SIGUSR2 ends the trace's recording
 * (`layerfs trace stop`); SIGHUP is ignored (nothing can be reloaded in
 * place: the tree and its inode numbers are fixed for the mount's life).
 * Taken synchronously so they can take locks. */
/* A layer found untrusted: the kernel's pages of its files go, so that
 * every later read of them reaches the daemon and fails (fs/stack.c,
 * on_remote_digest).  From the source's hasher thread, never a worker. */
static void drop_pages(void *ctx, uint64_t ino)
{
	lfs_inval_push_wait(ctx, (fuse_ino_t)ino);
}

static void *signal_thread(void *arg)
{
	struct daemon_state *d = arg;
	int sig;

	while (sigwait(&d->signals, &sig) == 0) {
		if (sig == SIGUSR1) {
			lfs_stack_drop_blocks(d->stack);
			lfs_info("dropped cached blocks on request");
		} else if (sig == SIGUSR2) {
			pthread_mutex_lock(&d->trace_lock);
			if (d->recorder)
				(void)lfs_recorder_stop(d->recorder);
			else
				lfs_info("trace stop: this mount is not recording a trace");
			pthread_mutex_unlock(&d->trace_lock);
		} else if (sig == SIGHUP) {
			lfs_info("SIGHUP ignored: nothing is reloaded in place (a restart takes the mount over)");
		}
	}
	return NULL;
}

/* What the trace options name is opened at mount, with the rights of
 * whoever started the daemon, as the zips are: the trace to replay is read
 * now, the folder a trace will be written to is held open.  -o
 * prefetch=auto keeps a stack's trace in cache_dir/traces under the
 * stack's key: a mount that finds one replays it, else it records one.
 * -1 (logged) when the mount must be refused: trace='s folder cannot be
 * opened.  A trace to replay that is missing or damaged is logged, and the
 * mount goes on without it. */
static int prepare_traces(struct daemon_state *d)
{
	const struct lfs_options *o = d->o;
	char err[4300], hex[65], *path = NULL;
	int rc;

	if (o->trace) {
		const char *slash = strrchr(o->trace, '/');
		char *dir = slash ? strndup(o->trace, slash == o->trace ? 1
								  : (size_t)(slash - o->trace))
				  : strdup(".");

		d->trace_name = slash ? slash + 1 : o->trace;
		if (dir)
			d->trace_dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (!dir || d->trace_dirfd < 0 || !d->trace_name[0]) {
			lfs_err("trace %s: %s", o->trace,
				!d->trace_name[0] ? "names a folder, not a file" : strerror(errno));
			free(dir);
			return -1;
		}
		free(dir);
	} else if (o->prefetch && !strcmp(o->prefetch, "auto")) {
		int fd;

		rc = lfs_hostdir_open(o->cache_dir, &fd, err, sizeof(err));
		if (!rc) {
			rc = lfs_hostdir_sub(fd, "traces", &d->trace_dirfd, err, sizeof(err));
			close(fd);
		}
		if (rc) {
			lfs_warn("prefetch=auto: %s; no trace recorded or replayed", err);
			return 0;
		}
		if (lfs_stack_key_hex(d->stack, hex) ||
		    asprintf(&path, "%s/traces/%s", o->cache_dir, hex) < 0) {
			path = NULL;
		} else if (faccessat(d->trace_dirfd, hex, F_OK, AT_SYMLINK_NOFOLLOW) != 0) {
			free(path);
			path = NULL; /* this stack's first mount here: it records */
		}
	}
	if (o->prefetch && strcmp(o->prefetch, "auto"))
		path = strdup(o->prefetch);
	if (!path)
		return 0;
	rc = lfs_trace_read(path, &d->replay_trace, err, sizeof(err));
	if (rc == -ENOENT)
		lfs_warn("prefetch: no trace %s (yet?); nothing is prefetched", path);
	else if (rc)
		lfs_warn("prefetch: trace refused: %s", err);
	d->have_replay = !rc;
	free(path);
	return 0;
}

/* After the drop: the daemon's user must be able to write the trace. */
static int trace_writable(struct daemon_state *d, char *err, size_t errlen)
{
	char probe[64];
	int fd;

	if (!d->o->trace)
		return 0;
	snprintf(probe, sizeof(probe), ".layerfs-probe.%ld", (long)getpid());
	fd = openat(d->trace_dirfd, probe, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "trace %s: cannot be written as user %s: %s", d->o->trace,
			 d->privs.name, strerror(errno));
		return -1;
	}
	close(fd);
	unlinkat(d->trace_dirfd, probe, 0);
	return 0;
}

/* Started once the stack is: recording needs the served tree, replaying
 * the inflate pool.  The recorder takes the folder's descriptor. */
static void start_traces(struct daemon_state *d)
{
	const struct lfs_options *o = d->o;
	char label[4200];

	pthread_mutex_lock(&d->trace_lock);
	if (d->have_replay) {
		if (o->prefetch_push)
			d->ctx->push = lfs_push_start(d->se, d->stack, d->mountpoint);
		d->replay = lfs_replay_start(d->stack, &d->replay_trace,
					     d->ctx->push ? lfs_push_want_cb : NULL,
					     d->ctx->push ? lfs_push_name_cb : NULL, d->ctx->push);
		d->have_replay = 0;
	}
	if (d->trace_dirfd >= 0 && (o->trace || !d->replay)) {
		snprintf(label, sizeof(label), "%s%s", o->trace ? o->trace : o->cache_dir,
			 o->trace ? "" : "/traces");
		d->recorder = lfs_recorder_start(d->stack, d->trace_dirfd,
						 o->trace ? d->trace_name : NULL, label,
						 o->trace_seconds);
	} else if (d->trace_dirfd >= 0) {
		close(d->trace_dirfd);
	}
	d->trace_dirfd = -1;
	pthread_mutex_unlock(&d->trace_lock);
}

static void stop_traces(struct daemon_state *d)
{
	lfs_replay_free(d->replay);
	d->replay = NULL;
	if (d->ctx) {
		/* after the workers: nobody calls lfs_push_known any more */
		lfs_push_stop(d->ctx->push);
		d->ctx->push = NULL;
	}
	if (d->have_replay)
		lfs_trace_free(&d->replay_trace);
	d->have_replay = 0;
	if (d->trace_dirfd >= 0)
		close(d->trace_dirfd);
	d->trace_dirfd = -1;
	pthread_mutex_lock(&d->trace_lock);
	lfs_recorder_free(d->recorder);
	d->recorder = NULL;
	pthread_mutex_unlock(&d->trace_lock);
}

static void *metrics_thread(void *arg)
{
	struct daemon_state *d = arg;
	int failed = 0;

	pthread_mutex_lock(&d->lock);
	while (!d->stopping) {
		struct timespec ts;
		double next;
		int rc;

		pthread_mutex_unlock(&d->lock);
		rc = lfs_metrics_write_file(d->ctx->metrics, d->stack, d->metrics_dir, d->metrics_name);
		if (rc && !failed)
			lfs_warn("metrics_file %s: cannot write it: %s (retrying quietly)",
				 d->o->metrics_file, strerror(-rc));
		else if (!rc && failed)
			lfs_info("metrics_file %s: written again", d->o->metrics_file);
		failed = rc != 0;
		pthread_mutex_lock(&d->lock);
		clock_gettime(CLOCK_REALTIME, &ts);
		next = (double)ts.tv_nsec / 1e9 + d->o->metrics_interval;
		ts.tv_sec += (time_t)next;
		ts.tv_nsec = (long)((next - (double)(time_t)next) * 1e9);
		while (!d->stopping && pthread_cond_timedwait(&d->cond, &d->lock, &ts) == 0)
			;
	}
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

/* An error before serving: logged, and for a background daemon given to
 * the parent waiting for readiness, which prints it (the one line a
 * refused mount shows). */
static void daemon_fail(struct daemon_state *d, const char *msg)
{
	lfs_err("%s", msg);
	if (d->ready_fd >= 0) {
		if (write(d->ready_fd, "E", 1) == 1 && write(d->ready_fd, msg, strlen(msg)) < 0) {
			/* the parent says the daemon exited */
		}
		close(d->ready_fd);
		d->ready_fd = -1;
	}
}

/* 1 when the connection is gone (unmounted, aborted). */
static int connection_gone(struct fuse_session *se)
{
	struct pollfd p = { .fd = fuse_session_fd(se), .events = 0 };

	return poll(&p, 1, 0) == 1 && (p.revents & POLLERR);
}

/* At the end: unmount, unless the mount is gone already or the service
 * manager keeps it for the next start.  Only a daemon that kept root may
 * do it itself; the others ask their helper. */
static void release_mount(struct daemon_state *d)
{
	if (connection_gone(d->se)) {
		lfs_info("%s: unmounted", d->mountpoint);
	} else if (d->stored) {
		lfs_info("%s: stopped; the mount stays, its connection in the service's file descriptor store for the next start",
			 d->mountpoint);
	} else if (d->privs.keep_root) {
		fuse_session_unmount(d->se);
		lfs_info("%s: unmounted", d->mountpoint);
	} else if (d->unmounter >= 0) {
		lfs_unmounter_unmount(d->unmounter);
		d->unmounter = -1;
		lfs_info("%s: unmounted", d->mountpoint);
	} else {
		lfs_warn("%s: cannot unmount (no helper): the mount stays stale", d->mountpoint);
	}
	/* libfuse unmounts in fuse_session_unmount, which also frees what
	 * it keeps of the mount: given a connection that looks gone (a
	 * /dev/fuse file of no mount), it only frees and closes. */
	if (d->spare_fd >= 0 && dup2(d->spare_fd, fuse_session_fd(d->se)) >= 0)
		fuse_session_unmount(d->se);
}

/* A layer named by a URL (http://, https://, s3://) is read over the
 * network: the filter must let its source open sockets. */
static int has_remote(const struct lfs_stack *s)
{
	for (size_t i = 0; i < lfs_stack_layer_count(s); i++) {
		struct lfs_stack_layer_info li;

		lfs_stack_layer_info(s, i, &li);
		if (strstr(li.path, "://"))
			return 1;
	}
	return 0;
}

/* -o uring=: auto leaves a connection kept in an fd store on /dev/fuse.
 * A daemon that crashes while it answers ring requests leaves them
 * waiting as long as the connection outlives it (their callers can be
 * killed), where /dev/fuse would fail them (own_clone).  A connection
 * taken over is served the way the earlier daemon served it, which the
 * store's name says (fdname). */
static int use_uring(const struct daemon_state *d)
{
	if (d->o->uring == LFS_URING_OFF || (d->o->uring == LFS_URING_AUTO && d->stored))
		return 0;
	return d->took_over || lfs_uring_kernel_offers();
}

static int run_daemon(struct daemon_state *d)
{
	struct fuse_loop_config *cfg;
	pthread_t ready, sigt;
	char err[512];
	int rc;

	/* Before any thread: the helper is a fork, the drop and the filter
	 * are for every thread to come. */
	d->spare_fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (!d->privs.keep_root && !d->stored) {
		d->unmounter = lfs_unmounter_start(d->mountpoint);
		if (d->unmounter < 0)
			lfs_warn("%s: no unmount helper (%s): the mount stays when the daemon stops",
				 d->mountpoint, strerror(errno));
	}
	/* The workers, and the pool and buffer threads they start, inherit
	 * this.  A batch thread woken by a request or a reply does not preempt
	 * whatever runs on its core: left to the scheduler's normal wake-up
	 * preemption, the workers kept interrupting the thread inflating ahead
	 * of a sequential reader (docs/performance.md).  Not the default: each
	 * small request then waits for a free core, which on a busy host costs
	 * a start far more.  Unprivileged; under a unit whose filter forbids
	 * the call, CPUSchedulingPolicy=batch does it. */
	if (d->sched_batch && sched_getscheduler(0) != SCHED_BATCH) {
		struct sched_param sp = { 0 };

		if (pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp))
			lfs_warn("cannot run the workers as SCHED_BATCH; going on without");
	}
	/* The rings' files and threads are made now: after the drop and the
	 * filter, only io_uring_enter is allowed. */
	if (use_uring(d)) {
		rc = lfs_uring_attach(d->se, d->o->uring_threads,
				      (enum lfs_uring_idle)d->o->uring_idle,
				      d->took_over ? d->mountpoint : NULL, &d->uring);
		if (rc)
			lfs_warn("%s: FUSE over io_uring unavailable (%s); serving through /dev/fuse",
				 d->mountpoint, strerror(-rc));
		d->ctx->uring = d->uring;
	}
	if (lfs_privs_drop(&d->privs, err, sizeof(err)) ||
	    lfs_seccomp_install((enum lfs_seccomp_mode)d->o->seccomp, has_remote(d->stack), err,
				sizeof(err))) {
		daemon_fail(d, err);
		release_mount(d);
		return 1;
	}
	if (d->metrics_dir >= 0) {
		rc = lfs_metrics_write_file(d->ctx->metrics, d->stack, d->metrics_dir,
					    d->metrics_name);
		if (rc) {
			snprintf(err, sizeof(err), "metrics_file %s: cannot write it as user %s: %s",
				 d->o->metrics_file, d->privs.name, strerror(-rc));
			daemon_fail(d, err);
			release_mount(d);
			return 1;
		}
	}
	if (trace_writable(d, err, sizeof(err))) {
		daemon_fail(d, err);
		release_mount(d);
		return 1;
	}
	if (fuse_set_signal_handlers(d->se)) {
		daemon_fail(d, "cannot install signal handlers");
		release_mount(d);
		return 1;
	}
	sigemptyset(&d->signals);
	sigaddset(&d->signals, SIGUSR1);
	sigaddset(&d->signals, SIGUSR2);
	sigaddset(&d->signals, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &d->signals, NULL);
	signal(SIGPIPE, SIG_IGN);
	pthread_create(&sigt, NULL, signal_thread, d);
	pthread_detach(sigt);
	d->ready_busy = 1;
	pthread_create(&ready, NULL, ready_thread, d);
	pthread_detach(ready);
	if (d->metrics_dir >= 0)
		d->metrics_running = !pthread_create(&d->metrics_thread, NULL, metrics_thread, d);
	d->ctx->inval = lfs_inval_start(d->se);
	if (d->ctx->inval)
		lfs_stack_set_on_untrusted(d->stack, drop_pages, d->ctx->inval);
	lfs_stack_start(d->stack);
	start_traces(d);
	if (d->took_over)
		replay_init(d);
	/* The earlier daemon's INIT set the connection up: its largest
	 * request is at most max_read's pages, and those at most 1 MiB. */
	if (d->took_over && d->uring)
		lfs_uring_start(d->uring, 1u << 20);
	cfg = fuse_loop_cfg_create();
	fuse_loop_cfg_set_max_threads(cfg, 16);
	/* Workers never exit once started: with few idle workers allowed,
	 * libfuse made and ended hundreds of threads per second during a
	 * sequential read. */
	fuse_loop_cfg_set_idle_threads(cfg, 16);
	rc = fuse_session_loop_mt(d->se, cfg);
	fuse_loop_cfg_destroy(cfg);
	/* The rings' threads serve as libfuse's workers did, and libfuse's
	 * are joined by now: they go too (each finishing the request it
	 * answers) before anything they use is taken down.  What comes
	 * later waits in the kernel's queues for the unmount or the next
	 * daemon, as on /dev/fuse. */
	lfs_uring_stop(d->uring);
	pthread_mutex_lock(&d->lock);
	d->stopping = 1;
	pthread_cond_broadcast(&d->cond);
	/* A ready_thread still reading the stack is about to stop (its
	 * statfs has an answer or an error by now); bounded all the same. */
	for (int i = 0; d->ready_busy && i < 2; i++) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&d->cond, &d->lock, &ts);
	}
	pthread_mutex_unlock(&d->lock);
	if (d->metrics_running) {
		pthread_join(d->metrics_thread, NULL);
		unlinkat(d->metrics_dir, d->metrics_name, 0);
	}
	lfs_stack_set_on_untrusted(d->stack, NULL, NULL);
	lfs_inval_stop(d->ctx->inval);
	d->ctx->inval = NULL;
	stop_traces(d);
	lfs_notify("STOPPING=1");
	release_mount(d);
	fuse_remove_signal_handlers(d->se);
	return rc < 0 ? 1 : 0;
}

/* The options FUSE itself gets: what the command line passed through, and
 * what every layerfs mount is. */
static int fuse_mount_args(struct lfs_options *o, const char *list)
{
	char *fsname = NULL, *escaped = escape_commas(list);
	int rc = -1;

	if (escaped &&
	    asprintf(&fsname,
		     "-ofsname=layerfs:%s,subtype=layerfs,ro,nosuid,nodev,default_permissions",
		     escaped) >= 0 &&
	    !fuse_opt_add_arg(&o->fuse_args, fsname) &&
	    (!o->debug || !fuse_opt_add_arg(&o->fuse_args, "-odebug")))
		rc = 0;
	/* A mount made by another user than root (the unit's layerfs, with
	 * CAP_SYS_ADMIN) is that user's: without allow_other only it could
	 * use the mount.  Root keeps the access it has to a mount it makes.
	 * (A user's own mount is fusermount3's, whose rules are its own.) */
	if (!rc && geteuid() != 0 && lfs_privs_can_mount()) {
		int other = 0;

		for (int i = 1; i < o->fuse_args.argc; i++)
			other |= strstr(o->fuse_args.argv[i], "allow_other") ||
				 strstr(o->fuse_args.argv[i], "allow_root");
		if (!other && fuse_opt_add_arg(&o->fuse_args, "-oallow_root"))
			rc = -1;
	}
	free(fsname);
	free(escaped);
	return rc;
}

/* The mount point as the daemon names it: its folder resolved, its own
 * name kept.  Nothing looks at the mount point itself, which may be a live
 * mount no daemon serves yet (the one to take over): any access would
 * wait for an answer only this process could give. */
static char *mount_path(const char *arg)
{
	char *copy = strdup(arg), *slash, *dir, *out = NULL;
	const char *base;

	if (!copy)
		return NULL;
	while (strlen(copy) > 1 && copy[strlen(copy) - 1] == '/')
		copy[strlen(copy) - 1] = '\0';
	slash = strrchr(copy, '/');
	base = slash ? slash + 1 : copy;
	if (slash == copy)
		dir = realpath("/", NULL);
	else if (slash) {
		*slash = '\0';
		dir = realpath(copy, NULL);
	} else {
		dir = realpath(".", NULL);
	}
	if (dir && (!strcmp(base, ".") || !strcmp(base, "..") || !base[0]))
		out = realpath(arg, NULL); /* not a name of its own */
	else if (dir && asprintf(&out, "%s%s%s", dir, strcmp(dir, "/") ? "/" : "", base) < 0)
		out = NULL;
	free(dir);
	free(copy);
	return out;
}

static uint32_t hash32(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

/* Makes fd (a /dev/fuse connection) a clone of itself: a file of this
 * process's own, so that what it reads and leaves unanswered ends with it.
 * Keeps the original when the kernel cannot clone. */
static void own_clone(int fd)
{
	int c = open("/dev/fuse", O_RDWR | O_CLOEXEC);

	if (c >= 0 && ioctl(c, FUSE_DEV_IOC_CLONE, &(uint32_t){ (uint32_t)fd }) == 0 &&
	    dup2(c, fd) == fd)
		(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	else
		lfs_warn("cannot clone the FUSE connection (%s): a crash leaves requests it was answering waiting",
			 strerror(errno));
	if (c >= 0)
		close(c);
}

/* Of the descriptors systemd passed, the connection of this mount point
 * and stack (its fd, or -1).  Others named after this mount point are
 * another stack's: its mount is detached and its descriptor dropped, so
 * this start mounts afresh. */
static int find_stored(struct daemon_state *d)
{
	struct lfs_listen_fd fds[LFS_NOTIFY_MAX_FDS];
	char mine[16];
	int n = lfs_notify_listen_fds(fds, LFS_NOTIFY_MAX_FDS), found = -1;

	snprintf(mine, sizeof(mine), "fuse-%08x-", hash32(d->mountpoint));
	for (int i = 0; i < n; i++) {
		struct pollfd p = { .fd = fds[i].fd, .events = 0 };
		int dead = poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLNVAL));

		if (found < 0 && !dead && !strcmp(fds[i].name, d->fdname)) {
			found = fds[i].fd;
			continue;
		}
		if (!strncmp(fds[i].name, "fuse-", 5))
			(void)lfs_notify_forget_fd(fds[i].name);
		if (!dead && !strncmp(fds[i].name, mine, strlen(mine))) {
			lfs_warn("%s: the stack changed since the mount was made (list or zips, or -o uring): mounting afresh",
				 d->mountpoint);
			if (umount2(d->mountpoint, MNT_DETACH) && errno != EINVAL)
				lfs_warn("%s: cannot detach the previous mount: %s", d->mountpoint,
					 strerror(errno));
		}
		close(fds[i].fd);
	}
	return found;
}

/* -o admin_group=: a group name or number. */
static int admin_group(const char *name, gid_t *gid)
{
	struct group *g = getgrnam(name);
	char *end;
	unsigned long v;

	if (g) {
		*gid = g->gr_gid;
		return 0;
	}
	v = strtoul(name, &end, 10);
	if (name[0] >= '0' && name[0] <= '9' && !*end && v < (gid_t)-1) {
		*gid = (gid_t)v;
		return 0;
	}
	lfs_err("-o admin_group=%s: no such group", name);
	return -1;
}

/* metrics_file's folder, opened now (as whoever started us), and its name. */
static int open_metrics_dir(struct daemon_state *d)
{
	const char *path = d->o->metrics_file, *slash = strrchr(path, '/');
	char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");

	d->metrics_name = slash ? slash + 1 : path;
	if (dir)
		d->metrics_dir = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (!dir || d->metrics_dir < 0 || !d->metrics_name[0]) {
		lfs_err("metrics_file %s: %s", path,
			!d->metrics_name[0] ? "names a folder, not a file" : strerror(errno));
		free(dir);
		return -1;
	}
	free(dir);
	return 0;
}

int lfs_daemon_mount(struct lfs_options *o)
{
	static struct fuse_lowlevel_ops ops;
	struct lfs_fuse_ctx ctx = { 0 };
	struct daemon_state d = { .ready_fd = -1, .unmounter = -1, .spare_fd = -1,
				  .metrics_dir = -1, .o = o, .trace_dirfd = -1,
				  .trace_lock = PTHREAD_MUTEX_INITIALIZER };
	char err[1024] = "", *mnt;
	int rc = 1, pipefd[2], stored_fd = -1;
	pid_t pid;

	if (o->npos != 2) {
		fprintf(stderr, "usage: layerfs mount [-f] [-o OPTIONS] LIST MOUNTPOINT\n");
		return 1;
	}
	pthread_mutex_init(&d.lock, NULL);
	pthread_cond_init(&d.cond, NULL);
	daemon_of_process = &d;
	o->stack.list_path = o->pos[0];
	if (lfs_privs_resolve(o->user, &d.privs, err, sizeof(err))) {
		lfs_err("%s", err);
		return 1;
	}
	if (o->admin_group && admin_group(o->admin_group, &ctx.admin_gid))
		return 1;
	ctx.has_admin_gid = o->admin_group != NULL;
	/* the host cache belongs to the user the daemon serves as, who goes
	 * on writing there once root is gone */
	if (d.privs.switch_user)
		lfs_hostdir_set_owner(d.privs.uid, d.privs.gid);
	mnt = mount_path(o->pos[1]);
	if (!mnt) {
		lfs_err("%s: %s", o->pos[1], strerror(errno));
		return 1;
	}
	d.mountpoint = mnt;
	d.sched_batch = o->sched == LFS_SCHED_BATCH;
	if (lfs_stack_open(&o->stack, &d.stack, err, sizeof(err))) {
		lfs_err("%s", err);
		goto out;
	}
	/* "-u": a connection served through io_uring, which a later daemon
	 * must serve the same way; a mismatch mounts afresh (find_stored) */
	snprintf(d.fdname, sizeof(d.fdname), "fuse-%08x-%016llx%s", hash32(mnt),
		 (unsigned long long)lfs_stack_fingerprint(d.stack),
		 o->uring == LFS_URING_ON ? "-u" : "");
	if (o->foreground && o->fdstore)
		stored_fd = find_stored(&d);
	if (stored_fd < 0) {
		struct stat lst;
		char *real;

		/* a symlink is followed by mount(2): name what it mounts on */
		if (lstat(mnt, &lst) == 0 && S_ISLNK(lst.st_mode) && (real = realpath(mnt, NULL))) {
			free(mnt);
			mnt = d.mountpoint = real;
		}
		if (prepare_mountpoint(mnt))
			goto out;
		if (served_by_layerfs(mnt)) {
			lfs_err("%s: layerfs already serves this mount point (layerfs umount it first)", mnt);
			goto out;
		}
	}
	if ((o->metrics_file && open_metrics_dir(&d)) || prepare_traces(&d))
		goto out;
	ctx.stack = d.stack;
	ctx.entry_timeout = o->entry_timeout;
	ctx.attr_timeout = o->attr_timeout;
	ctx.max_read = o->max_read;
	ctx.sched_auto = o->sched == LFS_SCHED_AUTO;
	ctx.dirplus = o->dirplus;
	ctx.provenance = o->provenance;
	ctx.metrics = lfs_metrics_new(LAYERFS_VERSION, LAYERFS_COMMIT, mnt);
	if (!ctx.metrics || fuse_mount_args(o, o->pos[0]))
		goto out;
	ops = lfs_fuse_ops;
	ops.init = daemon_init;
	d.se = fuse_session_new(&o->fuse_args, &ops, sizeof(ops), &ctx);
	d.ctx = &ctx;
	if (!d.se) {
		lfs_err("cannot start a FUSE session (bad -o option?)");
		goto out;
	}
	if (stored_fd >= 0) {
		char dev[32];

		own_clone(stored_fd);
		snprintf(dev, sizeof(dev), "/dev/fd/%d", stored_fd);
		if (fuse_session_mount(d.se, dev)) {
			lfs_err("%s: cannot take over the mount's connection", mnt);
			goto out_session;
		}
		d.stored = d.took_over = 1;
	} else {
		if (fuse_session_mount(d.se, mnt)) {
			lfs_err("%s: cannot mount (is /dev/fuse available?)", mnt);
			goto out_session;
		}
		/* Only a daemon systemd runs itself (-f) keeps the connection
		 * there: a forked one is not the service's main process.  And
		 * only when asked: a unit without a store (FileDescriptorStoreMax=)
		 * would drop it, and the daemon would leave its mount dead. */
		d.stored = o->foreground && o->fdstore && getenv("NOTIFY_SOCKET") &&
			   lfs_notify_store_fd(fuse_session_fd(d.se), d.fdname) == 0;
		if (d.stored)
			own_clone(fuse_session_fd(d.se));
	}
	if (o->foreground) {
		rc = run_daemon(&d);
		goto out_session;
	}
	if (pipe(pipefd)) {
		lfs_err("pipe: %s", strerror(errno));
		goto out_unmount;
	}
	pid = fork();
	if (pid < 0) {
		lfs_err("fork: %s", strerror(errno));
		goto out_unmount;
	}
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDWR);

		close(pipefd[0]);
		setsid();
		if (chdir("/")) {
			/* nothing relative is used after this point */
		}
		/* Let go of the caller's terminal or pipes (a caller reading
		 * our output to its end must not wait for the daemon). */
		if (devnull >= 0) {
			dup2(devnull, STDIN_FILENO);
			dup2(devnull, STDOUT_FILENO);
			dup2(devnull, STDERR_FILENO);
			close(devnull);
		}
		lfs_log_use_syslog();
		d.ready_fd = pipefd[1];
		rc = run_daemon(&d);
		goto out_session;
	}
	close(pipefd[1]);
	{
		char msg[1024];
		size_t len = 0;
		ssize_t n;

		do {
			n = read(pipefd[0], msg + len, sizeof(msg) - 1 - len);
			if (n > 0)
				len += (size_t)n;
		} while ((n > 0 && len < sizeof(msg) - 1) || (n < 0 && errno == EINTR));
		msg[len] = '\0';
		if (len && msg[0] == '1') {
			/* The daemon owns the mount now. */
			_exit(0);
		}
		if (len > 1 && msg[0] == 'E')
			lfs_err("%s", msg + 1);
		else
			lfs_err("%s: the daemon exited before the mount was ready", mnt);
	}
	waitpid(pid, NULL, 0);
	/* detaches it (lazily, as root), unless the daemon did; and frees
	 * libfuse's copy of the mount point */
	fuse_session_unmount(d.se);
	rc = 1;
	goto out_session;
out_unmount:
	if (!d.took_over)
		fuse_session_unmount(d.se);
out_session:
	fuse_session_destroy(d.se);
	lfs_uring_free(d.uring);
out:
	stop_traces(&d);
	if (d.metrics_dir >= 0)
		close(d.metrics_dir);
	if (d.spare_fd >= 0)
		close(d.spare_fd);
	lfs_metrics_free(ctx.metrics);
	lfs_stack_free(d.stack);
	free(d.mountpoint);
	return rc;
}
