/* layerfs: the command line.  `mount` checks everything (list, zips,
 * limits) before mounting, mounts, and - unless -f - forks a daemon and
 * returns once the daemon has answered a request on the mount. */
#include "fuse_ops.h"
#include "log.h"
#include "notify.h"
#include "stack.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
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
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#ifndef LAYERFS_VERSION
#define LAYERFS_VERSION "0.1.0"
#endif

#define DEFAULT_MAX_LAYERS 5
#define DEFAULT_MAX_ENTRIES 1000000ull
#define DEFAULT_MAX_TOTAL 4000000ull
#define DEFAULT_MAX_NAME 65535
#define DEFAULT_TIMEOUT 86400.0
#define DEFAULT_MAX_READ (1u << 20)
#define DEFAULT_READAHEAD (8u << 20) /* see README, Performance */

static const char usage_text[] =
	"usage: layerfs mount [-f] [-d] [-o OPTION[,OPTION...]] LIST MOUNTPOINT\n"
	"       layerfs check [-o OPTION[,OPTION...]] LIST\n"
	"       layerfs umount MOUNTPOINT\n"
	"       layerfs stats MOUNTPOINT\n"
	"       layerfs dropcache MOUNTPOINT\n"
	"       layerfs LIST MOUNTPOINT [-o OPTIONS]   (as run by mount.fuse3)\n"
	"       layerfs --help | --version\n"
	"\n"
	"Mounts an ordered stack of layer zips (LIST: one zip per line, lowest\n"
	"first) as one merged, read-only tree, without extracting anything.\n"
	"\n"
	"mount options:\n"
	"  -f                     stay in the foreground (as under systemd)\n"
	"  -d                     debug log (same as -o debug)\n"
	"  -o cache_size=SIZE     decompressed block cache budget (default 256M)\n"
	"  -o block_size=SIZE     cache block size, a power of two (default 256K)\n"
	"  -o resume_spacing=SIZE distance between deflate resume points (default 1M)\n"
	"  -o readahead=SIZE      inflate this far ahead of a sequential reader\n"
	"                         (default 8M, at most cache_size/4; 0: off)\n"
	"  -o max_read=SIZE       largest read request asked of the kernel (default 1M)\n"
	"  -o timeout=SECONDS     how long the kernel caches names and attributes\n"
	"                         (default 86400; the tree never changes)\n"
	"  -o uid=N,gid=N         owner of every file (default 0, root)\n"
	"  -o max_layers=N        refuse lists with more layers (default 5, at most 64)\n"
	"  -o max_entries=N       refuse layers with more entries (default 1000000)\n"
	"  -o max_total_entries=N refuse stacks whose tree is larger (default 4000000)\n"
	"  -o max_name=N          refuse entry names longer than N bytes (default 65535;\n"
	"                         names no lookup can reach are skipped with a warning)\n"
	"  -o debug               log at debug level\n"
	"  -o journal             prefix log lines with syslog priorities (for journald)\n"
	"  -o sched=batch|normal  scheduling policy of the worker threads (default\n"
	"                         batch: their wake-ups do not preempt the inflater)\n"
	"  -o allow_other, -o default_permissions, ...\n"
	"                         any other option is passed to FUSE (see mount.fuse3(8))\n"
	"SIZE takes a K, M or G suffix (powers of 1024).\n"
	"\n"
	"check      opens LIST as mount would, without mounting: reports each layer\n"
	"           and warns where the platform's limits (5 layers, 262,144,000 bytes\n"
	"           unzipped, 50 MB per uploaded zip) would be exceeded.\n"
	"umount     unmounts MOUNTPOINT; the daemon exits.\n"
	"stats      prints the running daemon's counters (hits, misses, bytes\n"
	"           inflated, bytes read from the zips, ...), one 'key value' a line.\n"
	"dropcache  drops the daemon's cached blocks (keeps resume points).\n"
	"\n"
	"Every path carries the extended attribute user.layerfs.layer naming the\n"
	"layer(s) that provide it.  See layerfs(1).\n";

struct mount_opts {
	struct lfs_stack_config stack;
	struct lfs_fuse_ctx fuse;
	int foreground;
	int debug;
	int journal;
	int sched_batch;
	struct fuse_args fuse_args;
};

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || s[0] == '-')
		return -1;
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	default: break;
	}
	if (*end == 'i' || *end == 'B')
		end += (*end == 'i' && end[1] == 'B') ? 2 : 1;
	if (*end)
		return -1;
	*out = v;
	return 0;
}

/* Our own -o options; anything else goes to FUSE. */
static int parse_option(struct mount_opts *o, const char *opt)
{
	const char *eq = strchr(opt, '=');
	size_t klen = eq ? (size_t)(eq - opt) : strlen(opt);
	const char *val = eq ? eq + 1 : NULL;
	uint64_t v;
	char *buf;

#define KEY(k) (klen == strlen(k) && !strncmp(opt, k, klen))
	if (KEY("debug") && !val) {
		o->debug = 1;
		return 0;
	}
	if (KEY("journal") && !val) {
		o->journal = 1;
		return 0;
	}
	if (KEY("sched")) {
		if (!val || (strcmp(val, "batch") && strcmp(val, "normal"))) {
			fprintf(stderr, "layerfs: -o sched is batch or normal, got '%s'\n",
				val ? val : "");
			return -1;
		}
		o->sched_batch = !strcmp(val, "batch");
		return 0;
	}
	if (KEY("cache_size") || KEY("block_size") || KEY("resume_spacing") ||
	    KEY("max_read") || KEY("readahead") || KEY("uid") || KEY("gid") || KEY("max_layers") ||
	    KEY("max_entries") || KEY("max_total_entries") || KEY("max_name") ||
	    KEY("timeout")) {
		if (!val || parse_size(val, &v)) {
			fprintf(stderr, "layerfs: -o %.*s needs a number, got '%s'\n", (int)klen,
				opt, val ? val : "");
			return -1;
		}
		if (KEY("cache_size"))
			o->stack.reader.cache_size = v;
		else if (KEY("readahead"))
			o->stack.reader.readahead = v;
		else if (KEY("block_size") || KEY("resume_spacing") || KEY("max_read")) {
			if (v > (1u << 30)) {
				fprintf(stderr, "layerfs: -o %.*s is too large\n", (int)klen, opt);
				return -1;
			}
			if (KEY("block_size"))
				o->stack.reader.block_size = (uint32_t)v;
			else if (KEY("resume_spacing"))
				o->stack.reader.spacing = (uint32_t)v;
			else
				o->fuse.max_read = (unsigned)v;
		} else if (KEY("uid"))
			o->stack.uid = (uid_t)v;
		else if (KEY("gid"))
			o->stack.gid = (gid_t)v;
		else if (KEY("max_layers"))
			o->stack.max_layers = (size_t)v;
		else if (KEY("max_entries"))
			o->stack.max_entries = v;
		else if (KEY("max_total_entries"))
			o->stack.max_total_entries = v;
		else if (KEY("max_name"))
			o->stack.max_name = (size_t)v;
		else
			o->fuse.timeout = (double)v;
		return 0;
	}
#undef KEY
	if (asprintf(&buf, "-o%s", opt) < 0)
		return -1;
	if (fuse_opt_add_arg(&o->fuse_args, buf)) {
		free(buf);
		return -1;
	}
	free(buf);
	return 0;
}

static int parse_option_list(struct mount_opts *o, const char *list)
{
	char *copy = strdup(list), *save = NULL, *tok;
	int rc = 0;

	if (!copy)
		return -1;
	for (tok = strtok_r(copy, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save))
		rc = parse_option(o, tok);
	free(copy);
	return rc;
}

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

/* A mount point whose daemon died answers ENOTCONN: detach it first.
 * statfs, not stat: the kernel answers stat from its attribute cache (valid
 * for -o timeout, a day by default) even after the daemon died; statfs is
 * always a request. */
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

struct daemon_state {
	struct fuse_session *se;
	struct lfs_fuse_ctx *ctx;
	struct lfs_stack *stack;
	char *mountpoint;
	int ready_fd;		/* parent waiting for readiness, or -1 */
	int sched_batch;	/* run the workers as SCHED_BATCH */
	sigset_t signals;	/* handled by signal_thread */
};

/* Confirms the mount answers, then tells whoever waits (the parent of a
 * background daemon, systemd) and keeps the systemd watchdog fed. */
static void *ready_thread(void *arg)
{
	struct daemon_state *d = arg;
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
		 d->stack->nlayers, lfs_tree_count(d->stack->tree), d->mountpoint);
	lfs_notify(status);
	lfs_info("%s: serving %zu layers, %u inodes (opened in %.1f ms)", d->mountpoint,
		 d->stack->nlayers, lfs_tree_count(d->stack->tree),
		 d->stack->open_seconds * 1e3);
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

/* SIGUSR1 drops cached blocks; taken synchronously so it can take locks. */
static void *signal_thread(void *arg)
{
	struct daemon_state *d = arg;
	int sig;

	while (sigwait(&d->signals, &sig) == 0) {
		if (sig == SIGUSR1) {
			lfs_reader_drop_blocks(d->stack->reader);
			lfs_info("dropped cached blocks on request");
		}
	}
	return NULL;
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
	pthread_sigmask(SIG_BLOCK, &d->signals, NULL);
	signal(SIGPIPE, SIG_IGN);
	pthread_create(&sigt, NULL, signal_thread, d);
	pthread_detach(sigt);
	pthread_create(&ready, NULL, ready_thread, d);
	pthread_detach(ready);
	d->ctx->inval = lfs_inval_start(d->se);

	/* The workers, and the read-ahead and pool threads they start, inherit
	 * this.  A batch thread woken by a request or a reply does not preempt
	 * whatever runs on its core; left to the scheduler's normal wake-up
	 * preemption, the workers kept interrupting the thread inflating ahead
	 * of a sequential reader: a cold read of 256 MiB went from 638 to
	 * 675 MB/s (A/B of make bench's item 1, 2 cores).  Unprivileged, and it
	 * gives way to others rather than taking anything from them. */
	if (d->sched_batch) {
		struct sched_param sp = { 0 };

		if (pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp))
			lfs_warn("cannot run the workers as SCHED_BATCH; going on without");
	}
	cfg = fuse_loop_cfg_create();
	fuse_loop_cfg_set_max_threads(cfg, 16);
	/* Workers never exit once started: read-ahead keeps them busy after
	 * replying, and with few idle workers allowed libfuse made and ended
	 * hundreds of threads per second during a sequential read. */
	fuse_loop_cfg_set_idle_threads(cfg, 16);
	rc = fuse_session_loop_mt(d->se, cfg);
	fuse_loop_cfg_destroy(cfg);
	lfs_inval_stop(d->ctx->inval);
	d->ctx->inval = NULL;
	lfs_notify("STOPPING=1");
	fuse_session_unmount(d->se);
	fuse_remove_signal_handlers(d->se);
	lfs_info("%s: unmounted", d->mountpoint);
	return rc < 0 ? 1 : 0;
}

/* Options and positional arguments shared by mount and check. */
static int parse_args(int argc, char **argv, struct mount_opts *o, const char **pos, int *npos)
{
	o->stack.max_layers = DEFAULT_MAX_LAYERS;
	o->stack.max_entries = DEFAULT_MAX_ENTRIES;
	o->stack.max_total_entries = DEFAULT_MAX_TOTAL;
	o->stack.max_name = DEFAULT_MAX_NAME;
	o->fuse.timeout = DEFAULT_TIMEOUT;
	o->stack.reader.readahead = DEFAULT_READAHEAD;
	o->fuse.max_read = DEFAULT_MAX_READ;
	o->sched_batch = 1;
	if (fuse_opt_add_arg(&o->fuse_args, "layerfs"))
		return -1;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-f")) {
			o->foreground = 1;
		} else if (!strcmp(argv[i], "-d")) {
			o->debug = 1;
		} else if (!strncmp(argv[i], "-o", 2)) {
			const char *list = argv[i][2] ? argv[i] + 2 : (i + 1 < argc ? argv[++i] : NULL);

			if (!list) {
				lfs_err("-o needs options");
				return -1;
			}
			if (parse_option_list(o, list))
				return -1;
		} else if (argv[i][0] == '-' && argv[i][1]) {
			lfs_err("unknown option %s (see layerfs --help)", argv[i]);
			return -1;
		} else if (*npos < 2) {
			pos[(*npos)++] = argv[i];
		} else {
			lfs_err("too many arguments (see layerfs --help)");
			return -1;
		}
	}
	return 0;
}

static int cmd_mount(int argc, char **argv)
{
	struct mount_opts o = { .fuse_args = FUSE_ARGS_INIT(0, NULL) };
	struct daemon_state d = { .ready_fd = -1 };
	const char *pos[2];
	char err[1024] = "", *mnt;
	int npos = 0, rc = 1, pipefd[2];
	pid_t pid;

	if (parse_args(argc, argv, &o, pos, &npos))
		goto out;
	if (npos != 2) {
		fprintf(stderr, "usage: layerfs mount [-f] [-o OPTIONS] LIST MOUNTPOINT\n");
		goto out;
	}
	lfs_log_set_level(o.debug ? LFS_LOG_DEBUG : LFS_LOG_INFO);
	lfs_log_set_journal(o.journal);
	if (o.fuse.max_read < 4096 || o.fuse.max_read > (1u << 20)) {
		lfs_err("max_read must be from 4K to 1M");
		goto out;
	}
	o.stack.list_path = pos[0];
	if (prepare_mountpoint(pos[1]))
		goto out;
	mnt = realpath(pos[1], NULL);
	if (!mnt) {
		lfs_err("%s: %s", pos[1], strerror(errno));
		goto out;
	}
	d.mountpoint = mnt;
	d.sched_batch = o.sched_batch;
	if (lfs_stack_open(&o.stack, &d.stack, err, sizeof(err))) {
		lfs_err("%s", err);
		goto out;
	}
	o.fuse.stack = d.stack;
	{
		char *fsname = NULL, *list = escape_commas(pos[0]);

		if (!list || asprintf(&fsname, "-ofsname=layerfs:%s,subtype=layerfs,ro,nosuid,nodev",
				      list) < 0 ||
		    fuse_opt_add_arg(&o.fuse_args, fsname)) {
			free(fsname);
			free(list);
			goto out;
		}
		free(fsname);
		free(list);
	}
	if (o.debug && fuse_opt_add_arg(&o.fuse_args, "-odebug"))
		goto out;
	d.se = fuse_session_new(&o.fuse_args, &lfs_fuse_ops, sizeof(lfs_fuse_ops), &o.fuse);
	d.ctx = &o.fuse;
	if (!d.se) {
		lfs_err("cannot start a FUSE session (bad -o option?)");
		goto out;
	}
	if (fuse_session_mount(d.se, mnt)) {
		lfs_err("%s: cannot mount (is /dev/fuse available?)", mnt);
		goto out_session;
	}
	if (o.foreground) {
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
	fuse_opt_free_args(&o.fuse_args);
	return rc;
}

static int cmd_umount(const char *mnt)
{
	if (umount2(mnt, 0) == 0)
		return 0;
	if (errno == EPERM) {
		/* not root: let the setuid helper do it */
		execlp("fusermount3", "fusermount3", "-u", mnt, (char *)NULL);
	}
	fprintf(stderr, "layerfs: %s: cannot unmount: %s\n", mnt, strerror(errno));
	return 1;
}

/* Reads the counters a running daemon publishes on its root. */
static char *read_stats(const char *mnt)
{
	ssize_t n = getxattr(mnt, LFS_XATTR_STATS, NULL, 0);
	char *buf;

	if (n < 0) {
		fprintf(stderr, "layerfs: %s: %s\n", mnt,
			errno == ENODATA || errno == ENOTSUP ? "not a layerfs mount"
							     : strerror(errno));
		return NULL;
	}
	buf = malloc((size_t)n + 1);
	if (!buf)
		return NULL;
	n = getxattr(mnt, LFS_XATTR_STATS, buf, (size_t)n);
	if (n < 0) {
		fprintf(stderr, "layerfs: %s: %s\n", mnt, strerror(errno));
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	return buf;
}

static int cmd_stats(const char *mnt)
{
	char *s = read_stats(mnt);

	if (!s)
		return 1;
	fputs(s, stdout);
	free(s);
	return 0;
}

static int cmd_dropcache(const char *mnt)
{
	char *s = read_stats(mnt);
	long pid;

	if (!s)
		return 1;
	pid = strncmp(s, "pid ", 4) ? 0 : strtol(s + 4, NULL, 10);
	free(s);
	if (pid <= 0 || kill((pid_t)pid, SIGUSR1)) {
		fprintf(stderr, "layerfs: %s: cannot signal the daemon: %s\n", mnt,
			strerror(errno));
		return 1;
	}
	return 0;
}

/* The platform's limits (see LAYERS.md): warned about, never enforced. */
#define PLATFORM_MAX_LAYERS 5
#define PLATFORM_MAX_UNZIPPED 262144000ull
#define PLATFORM_MAX_ZIP (50ull * 1000 * 1000)

/* Opens the stack as mount would, reports it, and warns where the
 * platform would refuse it.  0: mountable (warnings or not), 1: refused. */
static int cmd_check(int argc, char **argv)
{
	struct mount_opts o = { .fuse_args = FUSE_ARGS_INIT(0, NULL) };
	struct lfs_stack *s = NULL;
	const char *pos[2];
	char err[1024] = "";
	uint64_t unzipped = 0, warnings = 0;
	int npos = 0, rc = 1;

	if (parse_args(argc, argv, &o, pos, &npos))
		goto out;
	if (npos != 1) {
		fprintf(stderr, "usage: layerfs check [-o OPTIONS] LIST\n");
		goto out;
	}
	lfs_log_set_level(LFS_LOG_WARN);
	/* more layers than the platform allows is a warning here, not a refusal */
	if (o.stack.max_layers == DEFAULT_MAX_LAYERS)
		o.stack.max_layers = LFS_TREE_MAX_LAYERS;
	o.stack.list_path = pos[0];
	if (lfs_stack_open(&o.stack, &s, err, sizeof(err))) {
		lfs_err("%s", err);
		goto out;
	}
	printf("%-40s %10s %14s %14s\n", "layer", "entries", "zip bytes", "unzipped bytes");
	for (size_t i = 0; i < s->nlayers; i++) {
		const struct lfs_zip_index *zi = s->layers[i].zi;
		uint64_t bytes = s->layers[i].unzipped_bytes;

		unzipped += bytes;
		printf("%-40s %10llu %14llu %14llu\n", s->layers[i].label,
		       (unsigned long long)zi->count, (unsigned long long)zi->file_size,
		       (unsigned long long)bytes);
		if (zi->file_size > PLATFORM_MAX_ZIP) {
			printf("warning: %s: %llu bytes, more than the %llu a direct upload may have\n",
			       zi->path, (unsigned long long)zi->file_size, PLATFORM_MAX_ZIP);
			warnings++;
		}
	}
	printf("merged tree: %u inodes, %llu bytes of files\n", lfs_tree_count(s->tree),
	       (unsigned long long)lfs_tree_total_bytes(s->tree));
	if (s->nlayers > PLATFORM_MAX_LAYERS) {
		printf("warning: %zu layers, the platform allows %d per function\n", s->nlayers,
		       PLATFORM_MAX_LAYERS);
		warnings++;
	}
	if (unzipped > PLATFORM_MAX_UNZIPPED) {
		printf("warning: %llu bytes unzipped, more than the platform's %llu for a function and its layers\n",
		       (unsigned long long)unzipped, PLATFORM_MAX_UNZIPPED);
		warnings++;
	}
	printf("%s: mountable, %llu warning%s\n", pos[0], (unsigned long long)warnings,
	       warnings == 1 ? "" : "s");
	rc = 0;
out:
	lfs_stack_free(s);
	fuse_opt_free_args(&o.fuse_args);
	return rc;
}

int main(int argc, char **argv)
{
	/* Cache blocks are allocated in one FUSE thread and freed in another;
	 * with glibc's default of 8 arenas per core, freed blocks linger in
	 * idle arenas and the daemon's RSS drifts well past the cache budget
	 * (make bench, item 4, before block buffers were pooled: 107 MiB with
	 * the default, 87 MiB with 2). */
	mallopt(M_ARENA_MAX, 2);
	if (argc < 2) {
		fputs(usage_text, stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		fputs(usage_text, stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("layerfs %s (libfuse %d)\n", LAYERFS_VERSION, fuse_version());
		return 0;
	}
	if (!strcmp(argv[1], "mount"))
		return cmd_mount(argc - 1, argv + 1);
	if (!strcmp(argv[1], "check"))
		return cmd_check(argc - 1, argv + 1);
	if (argc == 3 && !strcmp(argv[1], "umount"))
		return cmd_umount(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "stats"))
		return cmd_stats(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "dropcache"))
		return cmd_dropcache(argv[2]);
	/* mount.fuse3 runs "layerfs LIST MOUNTPOINT -o OPTIONS" for
	 * `mount -t fuse.layerfs` and fstab lines. */
	if (argc >= 3 && argv[1][0] != '-')
		return cmd_mount(argc, argv);
	fputs(usage_text, stderr);
	return 2;
}
