/* `layerfs mount`: checks everything (list, zips, limits) before
 * mounting, mounts, and - unless -f - forks a daemon and returns once the
 * daemon has answered a request on the mount. */
#ifndef LFS_DAEMON_H
#define LFS_DAEMON_H

#include "options.h"

/* Exit status: 0 mounted (or, with -f, served and unmounted), 1 not. */
int lfs_daemon_mount(struct lfs_options *o);

#endif
