/* `layerfs check`: opens a stack exactly as mount would, without mounting,
 * and reports it against the platform's limits. */
#ifndef LFS_CHECK_H
#define LFS_CHECK_H

#include "options.h"

/* Exit status: 0 mountable (warnings or not), 1 refused. */
int lfs_check_run(struct lfs_options *o);

#endif
