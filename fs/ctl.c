#include "ctl.h"

#include "fuse_ops.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/xattr.h>
#include <unistd.h>

#define STATS_TRIES 8

int lfs_ctl_umount(const char *mnt)
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

/* Reads the counters a running daemon publishes on its root.  They grow
 * while reads run, between the call that sizes the value and the one that
 * reads it: so room is left over, and a value that outgrew it is asked for
 * again. */
static char *read_stats(const char *mnt)
{
	for (int i = 0; i < STATS_TRIES; i++) {
		ssize_t n = getxattr(mnt, LFS_XATTR_STATS, NULL, 0);
		size_t cap;
		char *buf;

		if (n < 0) {
			fprintf(stderr, "layerfs: %s: %s\n", mnt,
				errno == ENODATA || errno == ENOTSUP ? "not a layerfs mount"
								     : strerror(errno));
			return NULL;
		}
		cap = (size_t)n + 4096 + ((size_t)n << i);
		buf = malloc(cap + 1);
		if (!buf)
			return NULL;
		n = getxattr(mnt, LFS_XATTR_STATS, buf, cap);
		if (n >= 0) {
			buf[n] = '\0';
			return buf;
		}
		free(buf);
		if (errno != ERANGE)
			break;
	}
	fprintf(stderr, "layerfs: %s: %s\n", mnt, strerror(errno));
	return NULL;
}

int lfs_ctl_stats(const char *mnt)
{
	char *s = read_stats(mnt);

	if (!s)
		return 1;
	fputs(s, stdout);
	free(s);
	return 0;
}

/* The daemon's pid is the first line of its stats. */
static int signal_daemon(const char *mnt, int sig)
{
	char *s = read_stats(mnt);
	long pid;

	if (!s)
		return 1;
	pid = strncmp(s, "pid ", 4) ? 0 : strtol(s + 4, NULL, 10);
	free(s);
	if (pid <= 0 || kill((pid_t)pid, sig)) {
		fprintf(stderr, "layerfs: %s: cannot signal the daemon: %s\n", mnt,
			strerror(errno));
		return 1;
	}
	return 0;
}

int lfs_ctl_dropcache(const char *mnt) { return signal_daemon(mnt, SIGUSR1); }

int lfs_ctl_trace_stop(const char *mnt) { return signal_daemon(mnt, SIGUSR2); }
