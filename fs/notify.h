/* The systemd notification protocol (sd_notify(3)), spoken directly.
 *
 * The protocol is one datagram of "KEY=VALUE" lines to the AF_UNIX socket
 * named by $NOTIFY_SOCKET (a leading '@' means the abstract namespace).
 * That is a dozen lines of code, so layerfs does not link libsystemd for
 * it.  Everything here is a no-op when NOTIFY_SOCKET is unset. */
#ifndef LFS_NOTIFY_H
#define LFS_NOTIFY_H

#include <stdint.h>

/* Sends `state` (e.g. "READY=1\nSTATUS=..."); 0 or negative errno. */
int lfs_notify(const char *state);

/* Watchdog interval in microseconds from $WATCHDOG_USEC (when $WATCHDOG_PID
 * is unset or ours), 0 when the unit sets no WatchdogSec=. */
uint64_t lfs_notify_watchdog_usec(void);

#endif
