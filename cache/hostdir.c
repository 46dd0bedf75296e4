#include "hostdir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uid_t owner_uid;
static gid_t owner_gid;
static int owner_set;

void lfs_hostdir_set_owner(uid_t uid, gid_t gid)
{
	owner_uid = uid;
	owner_gid = gid;
	owner_set = 1;
}

int lfs_hostdir_own(int fd)
{
	if (!owner_set || geteuid() != 0 || owner_uid == 0)
		return 0;
	return fchown(fd, owner_uid, owner_gid) ? -errno : 0;
}

static int check_dir(int fd, const char *what, char *err, size_t errlen)
{
	uid_t want = owner_set ? owner_uid : geteuid();
	struct stat st;

	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "%s: %s", what, strerror(errno));
		return -errno;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s: not a directory", what);
		return -ENOTDIR;
	}
	if (st.st_uid != want) {
		snprintf(err, errlen, "%s: owned by uid %u, not by the daemon's user (uid %u); refused",
			 what, (unsigned)st.st_uid, (unsigned)want);
		return -EPERM;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(err, errlen, "%s: others can write to it (mode %04o); refused", what,
			 (unsigned)(st.st_mode & 07777));
		return -EPERM;
	}
	return 0;
}

static int open_at(int dirfd, const char *path, const char *what, int *out, char *err,
		   size_t errlen)
{
	int fd, rc, made = 1;

	if (mkdirat(dirfd, path, 0700) < 0) {
		if (errno != EEXIST) {
			snprintf(err, errlen, "%s: cannot create it: %s", what, strerror(errno));
			return -errno;
		}
		made = 0;
	}
	fd = openat(dirfd, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		struct stat st;

		rc = -errno;
		if (fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
			snprintf(err, errlen, "%s: a symbolic link; refused", what);
		else
			snprintf(err, errlen, "%s: %s", what, strerror(-rc));
		return rc;
	}
	rc = made ? lfs_hostdir_own(fd) : 0;
	if (rc)
		snprintf(err, errlen, "%s: cannot give it to the daemon's user: %s", what,
			 strerror(-rc));
	else
		rc = check_dir(fd, what, err, errlen);
	if (rc) {
		close(fd);
		return rc;
	}
	*out = fd;
	return 0;
}

int lfs_hostdir_open(const char *path, int *fd, char *err, size_t errlen)
{
	char what[4200];

	snprintf(what, sizeof(what), "cache_dir %s", path);
	return open_at(AT_FDCWD, path, what, fd, err, errlen);
}

int lfs_hostdir_sub(int dirfd, const char *name, int *fd, char *err, size_t errlen)
{
	char what[300];

	snprintf(what, sizeof(what), "cache_dir/%s", name);
	return open_at(dirfd, name, what, fd, err, errlen);
}
