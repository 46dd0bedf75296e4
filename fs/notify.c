#include "notify.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define LISTEN_FDS_START 3	/* sd_listen_fds(3) */

int lfs_notify_fds(const char *state, const int *fds, size_t nfds)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * LFS_NOTIFY_MAX_FDS)];
	} control;
	struct iovec iov = { (void *)(uintptr_t)state, strlen(state) };
	struct msghdr msg = { .msg_name = &sa, .msg_iov = &iov, .msg_iovlen = 1 };
	size_t plen;
	int fd, rc = 0;

	if (!path || !path[0])
		return 0;
	plen = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || plen >= sizeof(sa.sun_path) ||
	    nfds > LFS_NOTIFY_MAX_FDS)
		return -EINVAL;
	memcpy(sa.sun_path, path, plen);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';
	msg.msg_namelen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + (path[0] == '/'));
	if (nfds) {
		struct cmsghdr *c;

		memset(&control, 0, sizeof(control));
		msg.msg_control = control.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (sendmsg(fd, &msg, MSG_NOSIGNAL) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

int lfs_notify(const char *state) { return lfs_notify_fds(state, NULL, 0); }

int lfs_notify_store_fd(int fd, const char *name)
{
	char state[300];

	if (snprintf(state, sizeof(state), "FDSTORE=1\nFDNAME=%s", name) >= (int)sizeof(state))
		return -EINVAL;
	return lfs_notify_fds(state, &fd, 1);
}

int lfs_notify_forget_fd(const char *name)
{
	char state[300];

	if (snprintf(state, sizeof(state), "FDSTOREREMOVE=1\nFDNAME=%s", name) >= (int)sizeof(state))
		return -EINVAL;
	return lfs_notify(state);
}

int lfs_notify_listen_fds(struct lfs_listen_fd *out, size_t max)
{
	const char *pid = getenv("LISTEN_PID"), *count = getenv("LISTEN_FDS");
	const char *names = getenv("LISTEN_FDNAMES");
	long n;
	size_t got = 0;

	if (!pid || !count || strtol(pid, NULL, 10) != (long)getpid())
		return 0;
	n = strtol(count, NULL, 10);
	for (long i = 0; i < n; i++) {
		int fd = LISTEN_FDS_START + (int)i;
		const char *end = names ? strchr(names, ':') : NULL;
		size_t len = names ? (end ? (size_t)(end - names) : strlen(names)) : 0;

		(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
		if (got < max) {
			out[got].fd = fd;
			snprintf(out[got].name, sizeof(out[got].name), "%.*s", (int)len, names ? names : "");
			got++;
		} else {
			close(fd);
		}
		names = end ? end + 1 : NULL;
	}
	/* not for anything we might start */
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return (int)got;
}

uint64_t lfs_notify_watchdog_usec(void)
{
	const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
	char *end;
	unsigned long long v;

	if (!usec)
		return 0;
	if (pid && strtol(pid, NULL, 10) != (long)getpid())
		return 0;
	v = strtoull(usec, &end, 10);
	return *end ? 0 : v;
}
