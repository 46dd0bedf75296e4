/* The host's cache directory: state shared by every mount on the host
 * (digests of layers; the disk tier of blocks).
 *
 * Tenants' layers meet here, so the directory must be the daemon's own:
 * it is created 0700 if missing, and refused when it is not a directory
 * owned by the effective user or when anyone else can write to it.  Its
 * entries are opened relative to its descriptor, never following links. */
#ifndef LFS_HOSTDIR_H
#define LFS_HOSTDIR_H

#include <stddef.h>

/* Opens (creating) directory `path` for the daemon's state; *fd is an
 * O_DIRECTORY descriptor.  0, or a negative errno with a one-line reason
 * naming the directory in err. */
int lfs_hostdir_open(const char *path, int *fd, char *err, size_t errlen);

/* Opens (creating, 0700) subdirectory `name` of dirfd. */
int lfs_hostdir_sub(int dirfd, const char *name, int *fd, char *err, size_t errlen);

#endif
