/* Local files: pread, with the file's identity checked by fstat. */
#include "source.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct file_source {
	struct lfs_source src;	/* first: the public part */
	int fd;
	struct stat st;		/* as opened */
};

static int same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static int file_check(struct lfs_source *src)
{
	struct file_source *f = (struct file_source *)src;
	struct stat now;

	if (fstat(f->fd, &now) < 0)
		return -errno;
	return same_file(&now, &f->st) ? 0 : -ESTALE;
}

static int file_read(struct lfs_source *src, void *buf, size_t len, uint64_t off)
{
	struct file_source *f = (struct file_source *)src;
	unsigned char *p = buf;

	while (len) {
		ssize_t n = pread(f->fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0) {
			/* The file is shorter than when it was opened. */
			int rc = file_check(src);

			return rc ? rc : -EIO;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static void file_will_need(struct lfs_source *src, uint64_t off, uint64_t len)
{
	struct file_source *f = (struct file_source *)src;

	(void)posix_fadvise(f->fd, (off_t)off, (off_t)len, POSIX_FADV_WILLNEED);
}

static void file_close(struct lfs_source *src)
{
	struct file_source *f = (struct file_source *)src;

	close(f->fd);
	free(f);
}

static const struct lfs_source_ops file_ops = {
	.read = file_read,
	.will_need = file_will_need,
	.check = file_check,
	.close = file_close,
};

int lfs_source_file_open(const char *path, struct lfs_source **out, char *err, size_t errlen)
{
	struct file_source *f = calloc(1, sizeof(*f));
	int rc;

	if (!f) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -ENOMEM;
	}
	/* O_NONBLOCK: a fifo named as a layer must not hang the mount; it is
	 * refused below as not a regular file. */
	f->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (f->fd < 0 || fstat(f->fd, &f->st) < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (S_ISDIR(f->st.st_mode)) {
		rc = -EISDIR;
		snprintf(err, errlen, "%s: is a directory, not a zip file", path);
		goto fail;
	}
	if (!S_ISREG(f->st.st_mode)) {
		rc = -EINVAL;
		snprintf(err, errlen, "%s: not a regular file", path);
		goto fail;
	}
	if (f->st.st_size == 0) {
		rc = -EINVAL;
		snprintf(err, errlen, "%s: empty file, not a zip", path);
		goto fail;
	}
	/* Reads block from here on (O_NONBLOCK means nothing for a regular
	 * file, but keep the descriptor plain). */
	(void)fcntl(f->fd, F_SETFL, 0);
	f->src.ops = &file_ops;
	f->src.size = (uint64_t)f->st.st_size;
	f->src.mtime = f->st.st_mtim.tv_sec;
	snprintf(f->src.object, sizeof(f->src.object), "file %llu %llu",
		 (unsigned long long)f->st.st_dev, (unsigned long long)f->st.st_ino);
	snprintf(f->src.version, sizeof(f->src.version),
		 "file %llu %llu size %llu mtime %lld.%09ld ctime %lld.%09ld",
		 (unsigned long long)f->st.st_dev, (unsigned long long)f->st.st_ino,
		 (unsigned long long)f->st.st_size,
		 (long long)f->st.st_mtim.tv_sec, f->st.st_mtim.tv_nsec,
		 (long long)f->st.st_ctim.tv_sec, f->st.st_ctim.tv_nsec);
	*out = &f->src;
	return 0;
fail:
	if (f->fd >= 0)
		close(f->fd);
	free(f);
	return rc;
}
