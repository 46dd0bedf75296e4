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

/* What a run exercised, counted by the target (ended by a NULL name): the
 * corpus replay (replay.c) prints the counts and fails below the minimums
 * it is given, so that a corpus that no longer reaches the checks (every
 * input refused by the index, say) cannot pass. */
struct fuzz_count {
	const char *name;
	unsigned long n;
};
extern struct fuzz_count fuzz_counts[];

static inline void fuzz_count(unsigned i) { __atomic_add_fetch(&fuzz_counts[i].n, 1, __ATOMIC_RELAXED); }

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
