/* The host's cache directory: state shared by every mount on the host
 * (digests of layers; the disk tier of blocks).
 *
 * Tenants' layers meet here, so the directory must be the daemon's own:
 * it is created 0700 if missing, and refused when it is not a directory
 * owned by the daemon's user (the effective user, or the owner set below)
 * or when anyone else can write to it.  Its
 * entries are opened relative to its descriptor, never following links. */
#ifndef LFS_HOSTDIR_H
#define LFS_HOSTDIR_H

#include <stddef.h>
#include <sys/types.h>

/* The user the daemon serves as, when it is started as root and drops to
 * another (-o user=): the directory and what is made in it belong to that
 * user, who goes on writing there once root is gone.  Process-wide; set
 * before anything is opened.  Without it the owner is the effective user. */
void lfs_hostdir_set_owner(uid_t uid, gid_t gid);

/* Gives a file or directory just made in the cache (fd) to the owner
 * above, when running as root; otherwise nothing.  0 or a negative errno. */
int lfs_hostdir_own(int fd);

/* Opens (creating) directory `path` for the daemon's state; *fd is an
 * O_DIRECTORY descriptor.  0, or a negative errno with a one-line reason
 * naming the directory in err. */
int lfs_hostdir_open(const char *path, int *fd, char *err, size_t errlen);

/* Opens (creating, 0700) subdirectory `name` of dirfd. */
int lfs_hostdir_sub(int dirfd, const char *name, int *fd, char *err, size_t errlen);

#endif
