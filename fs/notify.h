/* The systemd notification protocol (sd_notify(3)), spoken directly, and
 * the file descriptors systemd hands over (sd_listen_fds(3)).
 *
 * The protocol is one datagram of "KEY=VALUE" lines to the AF_UNIX socket
 * named by $NOTIFY_SOCKET (a leading '@' means the abstract namespace),
 * with file descriptors attached for FDSTORE=1.  That is a few dozen lines
 * of code, so layerfs does not link libsystemd for it.  Everything here is
 * a no-op when NOTIFY_SOCKET (or LISTEN_FDS) is unset. */
#ifndef LFS_NOTIFY_H
#define LFS_NOTIFY_H

#include <stddef.h>
#include <stdint.h>

#define LFS_NOTIFY_MAX_FDS 8

/* Sends `state` (e.g. "READY=1\nSTATUS=..."); 0 or negative errno. */
int lfs_notify(const char *state);
/* The same with file descriptors attached (SCM_RIGHTS). */
int lfs_notify_fds(const char *state, const int *fds, size_t nfds);

/* Keeps fd in the service's file descriptor store under `name` (systemd
 * hands it back to the next start of the service, see
 * lfs_notify_listen_fds), and takes it out again.  The unit must allow
 * the store (FileDescriptorStoreMax=). */
int lfs_notify_store_fd(int fd, const char *name);
int lfs_notify_forget_fd(const char *name);

struct lfs_listen_fd {
	int fd;
	char name[256];		/* its FDNAME=, "" when unnamed */
};

/* The descriptors systemd passed to this process ($LISTEN_FDS, when
 * $LISTEN_PID is ours), with their names; made close-on-exec, and the
 * variables unset.  Returns how many were filled in (more are closed). */
int lfs_notify_listen_fds(struct lfs_listen_fd *out, size_t max);

/* Watchdog interval in microseconds from $WATCHDOG_USEC (when $WATCHDOG_PID
 * is unset or ours), 0 when the unit sets no WatchdogSec=. */
uint64_t lfs_notify_watchdog_usec(void);

#endif
