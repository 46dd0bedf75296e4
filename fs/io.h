/* Small I/O helpers shared by the zip index and the read path. */
#ifndef LFS_IO_H
#define LFS_IO_H

#include <stddef.h>
#include <stdint.h>

/* pread that retries short reads and EINTR.  Returns 0, a negative errno,
 * or -EIO when the file ends before len bytes. */
int lfs_pread_full(int fd, void *buf, size_t len, uint64_t off);

#endif
