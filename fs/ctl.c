#include "ctl.h"

#include "fuse_ops.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define STATS_TRIES 8

/* fusermount3 says "entry ... not found in /etc/mtab" for a mount that is
 * not the caller's; the caller wants to know it may not. */
static int fusermount_umount(const char *mnt)
{
	int out[2], status;
	pid_t pid;
	char msg[512];
	ssize_t n;
	size_t len = 0;

	if (pipe(out))
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		dup2(out[1], STDERR_FILENO);
		close(out[0]);
		close(out[1]);
		execlp("fusermount3", "fusermount3", "-u", "--", mnt, (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	while (len < sizeof(msg) - 1 && (n = read(out[0], msg + len, sizeof(msg) - 1 - len)) > 0)
		len += (size_t)n;
	msg[len] = '\0';
	close(out[0]);
	if (waitpid(pid, &status, 0) < 0)
		return -1;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
		fprintf(stderr, "layerfs: %s: cannot unmount: not permitted (and no fusermount3)\n", mnt);
	else if (strstr(msg, "not found in") || strstr(msg, "Operation not permitted") ||
		 strstr(msg, "Permission denied"))
		fprintf(stderr, "layerfs: %s: cannot unmount: not permitted (the mount is not yours; ask root)\n",
			mnt);
	else
		fprintf(stderr, "layerfs: %s: cannot unmount: %s", mnt, len ? msg : "fusermount3 failed\n");
	return 1;
}

int lfs_ctl_umount(const char *mnt)
{
	const struct timespec pause = { 0, 50 * 1000 * 1000 };
	int rc;

	/* Busy for a moment is not busy: a replay's look-ahead (push.h) holds
	 * a path in the mount for the length of one lookup. */
	for (int i = 0; (rc = umount2(mnt, 0)) < 0 && errno == EBUSY && i < 10; i++)
		nanosleep(&pause, NULL);
	if (rc == 0)
		return 0;
	if (errno == EPERM)
		return fusermount_umount(mnt) ? 1 : 0; /* not root: the setuid helper */
	fprintf(stderr, "layerfs: %s: cannot unmount: %s\n", mnt, strerror(errno));
	return 1;
}

static const char *why(int err)
{
	if (err == ENODATA || err == ENOTSUP)
		return "not a layerfs mount";
	if (err == EACCES || err == EPERM)
		return "not permitted (the daemon's counters are for root and its admin_group)";
	if (err == E2BIG)
		return "too large for an extended attribute (use -o metrics_file)";
	return strerror(err);
}

/* Reads a value the running daemon publishes on its root.  Counters grow
 * while reads run, between the call that sizes the value and the one that
 * reads it: so room is left over, and a value that outgrew it is asked for
 * again. */
static char *read_attr(const char *mnt, const char *name)
{
	for (int i = 0; i < STATS_TRIES; i++) {
		ssize_t n = getxattr(mnt, name, NULL, 0);
		size_t cap;
		char *buf;

		if (n < 0) {
			fprintf(stderr, "layerfs: %s: %s\n", mnt, why(errno));
			return NULL;
		}
		cap = (size_t)n + 4096 + ((size_t)n << i);
		if (cap > 65536)
			cap = 65536; /* the most an attribute holds */
		buf = malloc(cap + 1);
		if (!buf)
			return NULL;
		n = getxattr(mnt, name, buf, cap);
		if (n >= 0) {
			buf[n] = '\0';
			return buf;
		}
		free(buf);
		if (errno != ERANGE)
			break;
	}
	fprintf(stderr, "layerfs: %s: %s\n", mnt, why(errno));
	return NULL;
}

int lfs_ctl_stats(int argc, char **argv)
{
	const char *name = LFS_XATTR_STATS, *mnt = NULL;
	char *s;

	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--format=text"))
			name = LFS_XATTR_STATS;
		else if (!strcmp(argv[i], "--format=prometheus"))
			name = LFS_XATTR_METRICS;
		else if (argv[i][0] == '-' || mnt) {
			fprintf(stderr, "usage: layerfs stats [--format=text|prometheus] MOUNTPOINT\n");
			return 2;
		} else
			mnt = argv[i];
	}
	if (!mnt) {
		fprintf(stderr, "usage: layerfs stats [--format=text|prometheus] MOUNTPOINT\n");
		return 2;
	}
	s = read_attr(mnt, name);
	if (!s)
		return 1;
	fputs(s, stdout);
	free(s);
	return 0;
}

/* The daemon's pid is the first line of its stats. */
static int signal_daemon(const char *mnt, int sig)
{
	char *s = read_attr(mnt, LFS_XATTR_STATS), *line;
	long pid;

	if (!s)
		return 1;
	line = !strncmp(s, "pid ", 4) ? s : strstr(s, "\npid ");
	pid = line ? strtol(line + (line == s ? 4 : 5), NULL, 10) : 0;
	free(s);
	if (pid <= 0 || kill((pid_t)pid, sig)) {
		fprintf(stderr, "layerfs: %s: cannot signal the daemon: %s\n", mnt,
			errno == EPERM ? "not permitted (it runs as another user; ask root)"
				       : strerror(errno));
		return 1;
	}
	return 0;
}

int lfs_ctl_dropcache(const char *mnt) { return signal_daemon(mnt, SIGUSR1); }

int lfs_ctl_trace_stop(const char *mnt) { return signal_daemon(mnt, SIGUSR2); }
