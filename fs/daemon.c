#include "daemon.h"

#include "fuse_ops.h"
#include "log.h"
#include "notify.h"
#include "prefetch.h"

#include "../cache/hostdir.h"

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

struct daemon_state {
	struct fuse_session *se;
	struct lfs_fuse_ctx *ctx;
	struct lfs_stack *stack;
	char *mountpoint;
	int ready_fd;		/* parent waiting for readiness, or -1 */
	int sched_batch;	/* run the workers as SCHED_BATCH */
	sigset_t signals;	/* handled by signal_thread */
	const struct lfs_options *opts;
	pthread_mutex_t trace_lock;	/* recorder, between its owner and signal_thread */
	struct lfs_recorder *recorder;	/* -o trace, or prefetch=auto's first mount */
	struct lfs_replay *replay;	/* -o prefetch */
};

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

/* Confirms the mount answers, then tells whoever waits (the parent of a
 * background daemon, systemd) and keeps the systemd watchdog fed. */
static void *ready_thread(void *arg)
{
	struct daemon_state *d = arg;
	const struct lfs_tree *t = lfs_stack_tree(d->stack);
	struct stat st;
	char status[256];
	uint64_t wd;

	if (stat(d->mountpoint, &st) < 0) {
		lfs_err("%s: the mount does not answer: %s", d->mountpoint, strerror(errno));
		fuse_session_exit(d->se);
		return NULL;
	}
	if (d->ready_fd >= 0) {
		if (write(d->ready_fd, "1", 1) != 1)
			lfs_warn("cannot signal readiness to the parent: %s", strerror(errno));
		close(d->ready_fd);
		d->ready_fd = -1;
	}
	snprintf(status, sizeof(status), "READY=1\nSTATUS=serving %zu layers, %u inodes at %s",
		 lfs_stack_layer_count(d->stack), lfs_tree_count(t), d->mountpoint);
	lfs_notify(status);
	lfs_info("%s: serving %zu layers, %u inodes (opened in %.1f ms)", d->mountpoint,
		 lfs_stack_layer_count(d->stack), lfs_tree_count(t),
		 lfs_stack_open_seconds(d->stack) * 1e3);
	wd = lfs_notify_watchdog_usec();
	while (wd && !fuse_session_exited(d->se)) {
		struct timespec ts = { (time_t)(wd / 2000000), (long)(wd / 2 % 1000000) * 1000 };
		struct statfs sfs;

		/* statfs is never cached by the kernel: it answers only while
		 * the FUSE loop does, so a hung loop stops the pings and
		 * systemd restarts us. */
		if (statfs(d->mountpoint, &sfs) == 0)
			lfs_notify("WATCHDOG=1");
		nanosleep(&ts, NULL);
	}
	return NULL;
}

/* SIGUSR1 drops cached blocks, SIGUSR2 ends the trace's recording
 * (`layerfs trace stop`); taken synchronously so they can take locks. */
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
		}
	}
	return NULL;
}

/* -o prefetch=auto keeps a stack's trace in cache_dir/traces under the
 * stack's key: a mount that finds one replays it, else it records one. */
static int auto_trace_dir(const struct lfs_options *o, char **dir)
{
	char err[512];
	int fd, sub, rc;

	rc = lfs_hostdir_open(o->cache_dir, &fd, err, sizeof(err));
	if (!rc) {
		rc = lfs_hostdir_sub(fd, "traces", &sub, err, sizeof(err));
		if (!rc)
			close(sub);
		close(fd);
	}
	if (rc) {
		lfs_warn("prefetch=auto: %s; no trace recorded or replayed", err);
		return rc;
	}
	return asprintf(dir, "%s/traces", o->cache_dir) < 0 ? -ENOMEM : 0;
}

/* Started once the stack is: recording needs the served tree, replaying
 * the inflate pool. */
static void start_traces(struct daemon_state *d)
{
	const struct lfs_options *o = d->opts;
	char *dir = NULL, *path = NULL, hex[65];

	pthread_mutex_lock(&d->trace_lock);
	if (o->prefetch && strcmp(o->prefetch, "auto"))
		d->replay = lfs_replay_start(d->stack, o->prefetch);
	if (o->trace) {
		d->recorder = lfs_recorder_start(d->stack, o->trace, NULL, o->trace_seconds);
	} else if (o->prefetch && !strcmp(o->prefetch, "auto") && !auto_trace_dir(o, &dir)) {
		struct stat st;

		if (!lfs_stack_key_hex(d->stack, hex) && asprintf(&path, "%s/%s", dir, hex) >= 0 &&
		    stat(path, &st) == 0)
			d->replay = lfs_replay_start(d->stack, path);
		if (!d->replay)
			d->recorder = lfs_recorder_start(d->stack, NULL, dir, o->trace_seconds);
	}
	pthread_mutex_unlock(&d->trace_lock);
	free(path);
	free(dir);
}

static int run_daemon(struct daemon_state *d)
{
	struct fuse_loop_config *cfg;
	pthread_t ready, sigt;
	int rc;

	if (fuse_set_signal_handlers(d->se)) {
		lfs_err("cannot install signal handlers");
		return 1;
	}
	sigemptyset(&d->signals);
	sigaddset(&d->signals, SIGUSR1);
	sigaddset(&d->signals, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &d->signals, NULL);
	signal(SIGPIPE, SIG_IGN);
	pthread_create(&sigt, NULL, signal_thread, d);
	pthread_detach(sigt);
	pthread_create(&ready, NULL, ready_thread, d);
	pthread_detach(ready);
	d->ctx->inval = lfs_inval_start(d->se);

	/* The workers, and the pool and buffer threads they start, inherit
	 * this.  A batch thread woken by a request or a reply does not preempt
	 * whatever runs on its core: left to the scheduler's normal wake-up
	 * preemption, the workers kept interrupting the thread inflating ahead
	 * of a sequential reader (docs/performance.md).  Unprivileged, and it
	 * gives way to others rather than taking anything from them. */
	if (d->sched_batch) {
		struct sched_param sp = { 0 };

		if (pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp))
			lfs_warn("cannot run the workers as SCHED_BATCH; going on without");
	}
	lfs_stack_start(d->stack);
	start_traces(d);
	cfg = fuse_loop_cfg_create();
	fuse_loop_cfg_set_max_threads(cfg, 16);
	/* Workers never exit once started: with few idle workers allowed,
	 * libfuse made and ended hundreds of threads per second during a
	 * sequential read. */
	fuse_loop_cfg_set_idle_threads(cfg, 16);
	rc = fuse_session_loop_mt(d->se, cfg);
	fuse_loop_cfg_destroy(cfg);
	lfs_inval_stop(d->ctx->inval);
	d->ctx->inval = NULL;
	lfs_replay_free(d->replay);
	d->replay = NULL;
	pthread_mutex_lock(&d->trace_lock);
	lfs_recorder_free(d->recorder);
	d->recorder = NULL;
	pthread_mutex_unlock(&d->trace_lock);
	lfs_notify("STOPPING=1");
	fuse_session_unmount(d->se);
	fuse_remove_signal_handlers(d->se);
	lfs_info("%s: unmounted", d->mountpoint);
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
	free(fsname);
	free(escaped);
	return rc;
}

int lfs_daemon_mount(struct lfs_options *o)
{
	struct lfs_fuse_ctx ctx = { 0 };
	struct daemon_state d = { .ready_fd = -1, .trace_lock = PTHREAD_MUTEX_INITIALIZER };
	char err[1024] = "", *mnt;
	int rc = 1, pipefd[2];
	pid_t pid;

	if (o->npos != 2) {
		fprintf(stderr, "usage: layerfs mount [-f] [-o OPTIONS] LIST MOUNTPOINT\n");
		return 1;
	}
	o->stack.list_path = o->pos[0];
	if (prepare_mountpoint(o->pos[1]))
		return 1;
	mnt = realpath(o->pos[1], NULL);
	if (!mnt) {
		lfs_err("%s: %s", o->pos[1], strerror(errno));
		return 1;
	}
	d.mountpoint = mnt;
	d.sched_batch = o->sched_batch;
	d.opts = o;
	if (served_by_layerfs(mnt)) {
		lfs_err("%s: layerfs already serves this mount point (layerfs umount it first)", mnt);
		goto out;
	}
	if (lfs_stack_open(&o->stack, &d.stack, err, sizeof(err))) {
		lfs_err("%s", err);
		goto out;
	}
	ctx.stack = d.stack;
	ctx.entry_timeout = o->entry_timeout;
	ctx.attr_timeout = o->attr_timeout;
	ctx.max_read = o->max_read;
	if (fuse_mount_args(o, o->pos[0]))
		goto out;
	d.se = fuse_session_new(&o->fuse_args, &lfs_fuse_ops, sizeof(lfs_fuse_ops), &ctx);
	d.ctx = &ctx;
	if (!d.se) {
		lfs_err("cannot start a FUSE session (bad -o option?)");
		goto out;
	}
	if (fuse_session_mount(d.se, mnt)) {
		lfs_err("%s: cannot mount (is /dev/fuse available?)", mnt);
		goto out_session;
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
		char c;
		ssize_t n;

		do
			n = read(pipefd[0], &c, 1);
		while (n < 0 && errno == EINTR);
		if (n == 1) {
			/* The daemon owns the mount now. */
			_exit(0);
		}
	}
	lfs_err("%s: the daemon exited before the mount was ready", mnt);
	waitpid(pid, NULL, 0);
	umount2(mnt, MNT_DETACH);
	rc = 1;
	goto out_session;
out_unmount:
	fuse_session_unmount(d.se);
out_session:
	fuse_session_destroy(d.se);
out:
	lfs_stack_free(d.stack);
	free(d.mountpoint);
	return rc;
}
