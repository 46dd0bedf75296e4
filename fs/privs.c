#include "privs.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__x86_64__)
#define LFS_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define LFS_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

/* Sanitizer builds (make asan, make tsan) make calls of their own: the
 * leak check at exit stops the threads with ptrace from a clone, reads
 * /proc and needs the process dumpable. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define LFS_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define LFS_SANITIZED 1
#endif
#endif

int lfs_privs_resolve(const char *user, struct lfs_privs *p, char *err, size_t errlen)
{
	struct passwd *pw;
	uid_t euid = geteuid();

	memset(p, 0, sizeof(*p));
	/* started as someone else than root: that user, unless told */
	if (!user && euid != 0 && (pw = getpwuid(euid)))
		user = pw->pw_name;
	if (!user)
		user = LFS_DAEMON_USER;
	snprintf(p->name, sizeof(p->name), "%s", user);
	errno = 0;
	pw = getpwnam(p->name);
	if (!pw) {
		if (!strcmp(user, LFS_DAEMON_USER))
			snprintf(err, errlen,
				 "user %s does not exist: create it (systemd-sysusers, with the sysusers.d file make install ships), or choose one with -o user=NAME (user=root keeps root)",
				 user);
		else
			snprintf(err, errlen, "-o user=%s: %s", user,
				 errno ? strerror(errno) : "no such user");
		return -1;
	}
	p->uid = pw->pw_uid;
	p->gid = pw->pw_gid;
	if (p->uid == 0) {
		if (euid != 0) {
			snprintf(err, errlen, "-o user=%s: started as uid %u, cannot become root",
				 user, (unsigned)euid);
			return -1;
		}
		p->keep_root = 1;
		return 0;
	}
	if (euid == 0) {
		p->switch_user = 1;
		return 0;
	}
	if (p->uid != euid) {
		snprintf(err, errlen, "-o user=%s: started as uid %u, cannot become uid %u", user,
			 (unsigned)euid, (unsigned)p->uid);
		return -1;
	}
	return 0;
}

static int set_caps(uint32_t keep)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2] = { { keep, keep, 0 }, { 0, 0, 0 } };

	return (int)syscall(SYS_capset, &h, d);
}

static int caps_empty(void)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];

	if (syscall(SYS_capget, &h, d))
		return 0;
	return !(d[0].effective | d[0].permitted | d[1].effective | d[1].permitted);
}

int lfs_privs_can_mount(void)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];

	return syscall(SYS_capget, &h, d) == 0 && (d[0].effective & (1u << CAP_SYS_ADMIN));
}

int lfs_privs_drop(const struct lfs_privs *p, char *err, size_t errlen)
{
	if (p->switch_user) {
		/* no supplementary groups: root's would grant file access */
		if (setgroups(0, NULL) || setresgid(p->gid, p->gid, p->gid) ||
		    setresuid(p->uid, p->uid, p->uid)) {
			snprintf(err, errlen, "cannot become user %s: %s", p->name, strerror(errno));
			return -1;
		}
	}
	if (!p->keep_root) {
		/* Leaving uid 0 cleared the capabilities; a start as another
		 * user with ambient ones (the unit) still has them. */
		(void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
		if (set_caps(0) || !caps_empty() || getuid() == 0 || geteuid() == 0) {
			snprintf(err, errlen, "cannot drop capabilities: %s", strerror(errno));
			return -1;
		}
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1) {
		snprintf(err, errlen, "cannot set no_new_privs: %s", strerror(errno));
		return -1;
	}
#ifdef LFS_SANITIZED
	(void)prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
#endif
	return 0;
}

#ifdef LFS_AUDIT_ARCH

/* The program: check the architecture, then one comparison per allowed
 * call; a few calls are allowed only with the argument serving uses. */
struct prog {
	struct sock_filter f[400];
	unsigned short n;
	int overflow;
};

static void emit(struct prog *p, struct sock_filter ins)
{
	if (p->n < sizeof(p->f) / sizeof(p->f[0]))
		p->f[p->n++] = ins;
	else
		p->overflow = 1;
}

#define LOAD_NR BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr))
/* The low 32 bits of argument i (little-endian): what the kernel takes
 * of an int, and of the flags and commands compared below. */
#define LOAD_ARG(i) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[i]))

static void allow(struct prog *p, long nr)
{
	emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nr, 0, 1));
	emit(p, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
}

static void answer(struct prog *p, long nr, uint32_t action)
{
	emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nr, 0, 1));
	emit(p, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, action));
}

/* nr allowed when argument i equals val (JEQ) or has every bit of val
 * (JSET); otherwise `deny`.  A is reloaded with nr afterwards. */
static void allow_if(struct prog *p, long nr, int i, int jset, uint32_t val, uint32_t deny)
{
	emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nr, 0, 4));
	emit(p, (struct sock_filter)LOAD_ARG(i));
	emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | (jset ? BPF_JSET : BPF_JEQ) | BPF_K, val, 0, 1));
	emit(p, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
	emit(p, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, deny));
}

/* nr allowed when argument i is one of vals; otherwise `deny`. */
static void allow_one_of(struct prog *p, long nr, int i, const uint32_t *vals, unsigned n,
			 uint32_t deny)
{
	emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nr, 0,
					      (unsigned char)(n + 3)));
	emit(p, (struct sock_filter)LOAD_ARG(i));
	for (unsigned k = 0; k < n; k++)
		emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, vals[k],
						      (unsigned char)(n - k), 0));
	emit(p, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, deny));
	emit(p, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
}

static void begin(struct prog *p, uint32_t deny)
{
	p->n = 0;
	p->overflow = 0;
	emit(p, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
					      offsetof(struct seccomp_data, arch)));
	emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, LFS_AUDIT_ARCH, 1, 0));
	emit(p, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
	emit(p, (struct sock_filter)LOAD_NR);
#ifdef __x86_64__
	/* x32 calls share the architecture; none is allowed */
	emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, 0, 1));
	emit(p, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, deny));
#endif
}

static int load(struct prog *p, uint32_t deny, unsigned flags, char *err, size_t errlen)
{
	struct sock_fprog fp;
	long rc;

	emit(p, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, deny));
	if (p->overflow) {
		snprintf(err, errlen, "seccomp: the filter outgrew its buffer");
		return -1;
	}
	fp.len = p->n;
	fp.filter = p->f;
	rc = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &fp);
	if (rc) {
		snprintf(err, errlen, "cannot install the system call filter: %s",
			 rc > 0 ? "a thread could not be synchronized" : strerror(errno));
		return -1;
	}
	return 0;
}

/* What the serving loop calls, and what it may grow into (the host cache
 * reads and writes files in its directory).  Grouped by who needs it. */
static const long serving_calls[] = {
	/* requests and replies on /dev/fuse, zips, the cache directory, the
	 * metrics file */
	SYS_read, SYS_write, SYS_readv, SYS_writev, SYS_io_uring_enter, SYS_pread64, SYS_pwrite64, SYS_preadv,
	SYS_preadv2, SYS_pwritev, SYS_openat, SYS_close, SYS_lseek, SYS_fstat, SYS_newfstatat,
	SYS_statx, SYS_fstatfs, SYS_statfs, SYS_fcntl, SYS_dup, SYS_dup3, SYS_fsync,
	SYS_fdatasync, SYS_ftruncate, SYS_fallocate, SYS_fadvise64, SYS_readahead, SYS_mkdirat,
	SYS_unlinkat, SYS_renameat, SYS_renameat2, SYS_getdents64, SYS_fchmod, SYS_flock,
	SYS_readlinkat, SYS_faccessat, SYS_faccessat2, SYS_splice, SYS_pipe2, SYS_poll,
	SYS_ppoll, SYS_umount2, SYS_utimensat, SYS_openat2,
#ifdef SYS_open
	SYS_open, SYS_stat, SYS_lstat, SYS_readlink, SYS_access, SYS_pipe, SYS_rename, SYS_dup2,
	SYS_unlink, SYS_mkdir,
#endif
	/* memory */
	SYS_mmap, SYS_munmap, SYS_mremap, SYS_mprotect, SYS_madvise, SYS_brk, SYS_mincore,
	/* threads: workers, the inflate pool, their locks and sleeps */
	SYS_futex, SYS_set_robust_list, SYS_get_robust_list, SYS_rseq, SYS_sched_yield,
	SYS_sched_getaffinity, SYS_sched_getscheduler, SYS_sched_getparam, SYS_nanosleep,
	SYS_clock_nanosleep, SYS_clock_gettime, SYS_clock_getres, SYS_gettimeofday,
	SYS_getpid, SYS_gettid, SYS_getppid, SYS_getuid, SYS_geteuid, SYS_getgid,
	SYS_getegid, SYS_getresuid, SYS_getresgid, SYS_getgroups, SYS_tgkill, SYS_getcpu,
	SYS_getrandom, SYS_membarrier, SYS_prlimit64, SYS_sysinfo, SYS_uname,
	/* a thread lowering its own policy (SCHED_IDLE, SCHED_BATCH) or I/O
	 * class (idle); without a capability or an RLIMIT_RTPRIO nothing
	 * higher is allowed */
	SYS_sched_setscheduler, SYS_sched_setparam, SYS_ioprio_set,
#ifdef SYS_time
	SYS_time,
#endif
	/* signals: the signal thread, libfuse's handlers, cancellation */
	SYS_rt_sigaction, SYS_rt_sigprocmask, SYS_rt_sigreturn, SYS_rt_sigtimedwait,
	SYS_sigaltstack, SYS_restart_syscall, SYS_exit, SYS_exit_group,
	/* notify socket, syslog */
	SYS_sendto, SYS_sendmsg, SYS_connect,
};

/* What a remote source (libcurl: name lookups, TCP, TLS) adds. */
static const long network_calls[] = {
	SYS_connect, SYS_bind, SYS_getsockopt, SYS_setsockopt, SYS_getsockname, SYS_getpeername,
	SYS_recvfrom, SYS_recvmsg, SYS_recvmmsg, SYS_sendmmsg, SYS_shutdown, SYS_socketpair,
	SYS_epoll_create1, SYS_epoll_ctl, SYS_epoll_wait, SYS_epoll_pwait, SYS_eventfd2,
};

int lfs_seccomp_install(enum lfs_seccomp_mode mode, int network, char *err, size_t errlen)
{
	static const uint32_t local[] = { AF_UNIX };
	/* glibc's name lookup asks the kernel for the host's addresses over
	 * netlink */
	static const uint32_t net[] = { AF_UNIX, AF_INET, AF_INET6, AF_NETLINK };
	static struct prog p;
	uint32_t deny = mode == LFS_SECCOMP_LOG ? SECCOMP_RET_LOG : SECCOMP_RET_KILL_PROCESS;

	if (mode == LFS_SECCOMP_OFF)
		return 0;
	begin(&p, deny);
	for (size_t i = 0; i < sizeof(serving_calls) / sizeof(serving_calls[0]); i++)
		allow(&p, serving_calls[i]);
	/* glibc falls back to clone when clone3 is missing, and clone's
	 * flags can be checked: threads only, never a new process */
	answer(&p, SYS_clone3, SECCOMP_RET_ERRNO | ENOSYS);
#ifdef LFS_SANITIZED
	allow(&p, SYS_clone);
	allow(&p, SYS_ptrace);
	allow(&p, SYS_wait4);
	allow(&p, SYS_prctl);
	allow(&p, SYS_kill);
#ifdef SYS_getdents
	allow(&p, SYS_getdents);	/* the leak check lists the threads with it */
#endif
#else
	allow_if(&p, SYS_clone, 0, 1, CLONE_THREAD, deny);
	/* glibc asks for its own threads' state; the pool names its threads */
	{
		static const uint32_t names[] = { PR_GET_NAME, PR_SET_NAME };

		allow_one_of(&p, SYS_prctl, 0, names, 2, SECCOMP_RET_ERRNO | EPERM);
	}
#endif
	/* the notify socket and syslog: local sockets only, unless a layer
	 * is remote */
	if (network) {
		for (size_t i = 0; i < sizeof(network_calls) / sizeof(network_calls[0]); i++)
			allow(&p, network_calls[i]);
		allow_one_of(&p, SYS_socket, 0, net, sizeof(net) / sizeof(net[0]),
			     SECCOMP_RET_ERRNO | EAFNOSUPPORT);
	} else {
		allow_one_of(&p, SYS_socket, 0, local, 1, SECCOMP_RET_ERRNO | EAFNOSUPPORT);
	}
	/* no ioctl: isatty() learns "not a terminal" */
	answer(&p, SYS_ioctl, SECCOMP_RET_ERRNO | ENOTTY);
	return load(&p, deny, SECCOMP_FILTER_FLAG_TSYNC, err, errlen);
}

/* The unmount helper's own filter: read its pipe, unmount, say why not. */
static int unmounter_filter(void)
{
	static struct prog p;
	char err[128];

	begin(&p, SECCOMP_RET_KILL_PROCESS);
	allow(&p, SYS_read);
	allow(&p, SYS_write);
	allow(&p, SYS_umount2);
	allow(&p, SYS_close);
	allow(&p, SYS_exit_group);
	allow(&p, SYS_exit);
	allow(&p, SYS_rt_sigreturn);
	/* a sanitizer runtime's _exit tears down its signal stack */
	allow(&p, SYS_sigaltstack);
	allow(&p, SYS_munmap);
	return load(&p, SECCOMP_RET_KILL_PROCESS, 0, err, sizeof(err));
}

#else /* no filter for this architecture */

int lfs_seccomp_install(enum lfs_seccomp_mode mode, int network, char *err, size_t errlen)
{
	(void)network;
	if (mode == LFS_SECCOMP_OFF)
		return 0;
	snprintf(err, errlen, "no system call filter for this architecture (-o seccomp=off)");
	return -1;
}

static int unmounter_filter(void) { return 0; }

#endif

/* A helper with CAP_SYS_ADMIN (root's, or the unit's ambient one) keeps
 * only that and unmounts itself; one without (a user's mount, which
 * fusermount3 made) runs fusermount3, the setuid helper, so it may not set
 * no_new_privs: it is the user's own process, with nothing to give away. */
static void unmounter_main(int fd, const char *mnt)
{
	int capable = set_caps(1u << CAP_SYS_ADMIN) == 0 && !caps_empty();
	char c;
	ssize_t n;

	/* SIGINT reaches the whole process group of a -f daemon, SIGTERM a
	 * unit's whole cgroup: the daemon decides whether to unmount. */
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	if (capable && (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || unmounter_filter()))
		_exit(1);
	do
		n = read(fd, &c, 1);
	while (n < 0 && errno == EINTR);
	if (n == 1 && c == 'u') {
		if (!capable) {
			pid_t pid = fork();

			if (pid == 0) {
				execlp("fusermount3", "fusermount3", "-u", "-q", "-z", "--", mnt,
				       (char *)NULL);
				_exit(127);
			}
			if (pid > 0)
				while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
					;
		} else if (umount2(mnt, MNT_DETACH) && errno != EINVAL && errno != ENOENT) {
			static const char msg[] = "layerfs: cannot unmount at exit\n";

			(void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
		}
	}
	if (n == 1)
		(void)!write(fd, "d", 1);
	_exit(0);
}

int lfs_unmounter_start(const char *mnt)
{
	int sv[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return -1;
	pid = fork();
	if (pid < 0) {
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	if (pid == 0) {
		/* Nothing but the socket: holding /dev/fuse would keep a
		 * crashed daemon's connection alive. */
		if (dup2(sv[1], 3) < 0)
			_exit(1);
		syscall(SYS_close_range, 4u, ~0u, 0u);
		unmounter_main(3, mnt);
	}
	close(sv[1]);
	return sv[0];
}

void lfs_unmounter_unmount(int fd)
{
	char c;

	if (fd < 0)
		return;
	if (write(fd, "u", 1) == 1)
		while (read(fd, &c, 1) < 0 && errno == EINTR)
			;
	close(fd);
}
