/* `layerfs check`: opens a stack exactly as mount would, without mounting,
 * and reports it against the platform's limits and its entries' problems. */
#ifndef LFS_CHECK_H
#define LFS_CHECK_H

#include "options.h"

/* Exit status: 0 mountable, 1 refused, or with --strict (o->strict) any
 * warning or entry problem. */
int lfs_check_run(struct lfs_options *o);

#endif
