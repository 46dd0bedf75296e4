/* Shared by the fuzz targets: the bytes under test as a file the zip index
 * can open (a memfd, seen through /proc/self/fd). */
#ifndef LFS_FUZZ_COMMON_H
#define LFS_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../fs/log.h"

static inline int fuzz_file(const uint8_t *data, size_t size, char *path, size_t pathlen)
{
	int fd = memfd_create("fuzz.zip", MFD_CLOEXEC);
	size_t done = 0;

	if (fd < 0)
		return -1;
	while (done < size) {
		ssize_t n = write(fd, data + done, size - done);

		if (n <= 0) {
			close(fd);
			return -1;
		}
		done += (size_t)n;
	}
	snprintf(path, pathlen, "/proc/self/fd/%d", fd);
	lfs_log_set_level(LFS_LOG_SILENT); /* failures are expected here */
	return fd;
}

#endif
