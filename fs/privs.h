/* What the daemon may do once its mount is up: no root, no capabilities,
 * no way to regain any, and only the system calls serving needs.
 *
 * The order is fixed by what each step takes away: the user is looked up
 * (NSS may read files) before anything is dropped; the unmount helper is
 * forked while there is still a privilege to give it; setgroups, setresgid
 * and setresuid need CAP_SETGID/CAP_SETUID; capabilities left by a start
 * with ambient ones (the unit) need capset; no_new_privs comes before the
 * filter, which it allows without CAP_SYS_ADMIN. */
#ifndef LFS_PRIVS_H
#define LFS_PRIVS_H

#include <stddef.h>
#include <sys/types.h>

/* The default -o user=. */
#define LFS_DAEMON_USER "layerfs"

struct lfs_privs {
	uid_t uid;		/* the user the daemon serves as */
	gid_t gid;
	int keep_root;		/* user=root: stays root with its capabilities */
	int switch_user;	/* started as root: setresuid to uid */
	char name[64];
};

/* Resolves -o user= (NULL: LFS_DAEMON_USER for root, else whoever started
 * us) against how we were started.  Root may become anyone; anyone else may
 * only stay who they are (the unit starts the daemon as its User= with
 * CAP_SYS_ADMIN).  0, or -1 with a one-line reason in err. */
int lfs_privs_resolve(const char *user, struct lfs_privs *p, char *err, size_t errlen);

/* 1 when this process may mount(2) itself (CAP_SYS_ADMIN), not through
 * fusermount3. */
int lfs_privs_can_mount(void);

/* Becomes p's user with no capabilities (unless keep_root) and
 * no_new_privs, and checks that it worked.  Call before any thread is
 * started.  0, or -1 with a reason in err. */
int lfs_privs_drop(const struct lfs_privs *p, char *err, size_t errlen);

enum lfs_seccomp_mode {
	LFS_SECCOMP_KILL,	/* an unlisted system call ends the process */
	LFS_SECCOMP_LOG,	/* ... is allowed and logged by the kernel (audit) */
	LFS_SECCOMP_OFF,
};

/* Installs the serving loop's system call filter on every thread; with
 * `network`, what a remote layer's source needs (IP sockets).  0, or -1
 * with a reason in err.  Needs no_new_privs (lfs_privs_drop). */
int lfs_seccomp_install(enum lfs_seccomp_mode mode, int network, char *err, size_t errlen);

/* The unmount helper: a child that detaches `mnt` (lazily) when asked, so
 * that a daemon without privileges can still unmount when it stops.  With
 * CAP_SYS_ADMIN to start from (root, the unit) it keeps only that and may
 * make only the few calls it needs; without (a user's own mount) it runs
 * fusermount3.  It ignores SIGINT, SIGTERM and SIGHUP (the daemon decides)
 * and exits when the daemon's end of its socket closes.  Returns the
 * daemon's end, or -1. */
int lfs_unmounter_start(const char *mnt);
/* Asks the helper to unmount and waits until it has tried; closes fd. */
void lfs_unmounter_unmount(int fd);

#endif
