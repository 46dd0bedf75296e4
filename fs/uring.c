#include "uring.h"

#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <linux/fuse.h>
#include <linux/io_uring.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* The kernel's side of it (include/uapi/linux/fuse.h, ABI 7.42), which
 * Debian 12's headers predate. */
#define OVER_IO_URING_FLAGS2 (1u << 9)	/* FUSE_OVER_IO_URING, bit 41 */
#define CMD_REGISTER 1u
#define CMD_COMMIT_AND_FETCH 2u
#define HEADER_IN_OUT 128
#define HEADER_OP_IN 128

struct ring_ent_in_out {
	uint64_t flags;
	uint64_t commit_id;	/* the request's, echoed in the commit */
	uint32_t payload_sz;	/* bytes of the payload, either way */
	uint32_t padding;
	uint64_t reserved;
};

struct ring_req_header {
	char in_out[HEADER_IN_OUT];	/* fuse_in_header / fuse_out_header */
	char op_in[HEADER_OP_IN];	/* the opcode's own argument struct */
	struct ring_ent_in_out ent;
};

struct ring_cmd_req {			/* in the SQE's 80-byte command area */
	uint64_t flags;
	uint64_t commit_id;
	uint16_t qid;
	uint8_t padding[6];
};

_Static_assert(sizeof(struct ring_cmd_req) <= 80, "the SQE128 command area holds it");
_Static_assert(sizeof(struct ring_req_header) == 288, "the kernel's struct fuse_uring_req_header");

#define STOP_TAG 1u	/* user_data of the eventfd poll; an entry's is 2 */
#define ENT_TAG 2u
/* Room before the payload for the request's headers, so that libfuse gets
 * the request as one buffer, the way /dev/fuse would have given it. */
#define PAD 4096u

struct worker {
	struct lfs_uring *u;
	pthread_t tid;
	pid_t os_tid;		/* atomic: the kernel's id of its thread, 0 until it runs */
	atomic_uint_fast64_t done; /* requests it has finished */
	unsigned qid;
	int started;
	/* the io_uring */
	int ring_fd, stop_fd;
	unsigned *sq_head, *sq_tail, *sq_mask, *sq_array;
	unsigned *cq_head, *cq_tail, *cq_mask;
	struct io_uring_cqe *cqes;
	unsigned char *sqes;	/* 128-byte entries */
	void *sq_map, *cq_map;
	size_t sq_map_len, cq_map_len, sqes_len;
	/* the one FUSE request it serves at a time */
	struct ring_req_header *hdr;
	char *region;		/* PAD + payload */
	size_t region_len;
	struct iovec iov[2];
	uint64_t unique;	/* atomic: the request being served, 0: none */
	int replied;		/* under lock */
	pthread_mutex_t lock;
	pthread_cond_t cond;
};

struct lfs_uring {
	struct fuse_session *se;
	int fd;
	uint64_t init_unique;	/* atomic */
	atomic_int offered;	/* the kernel offered the ring at INIT */
	int state;		/* under lock: 0 waiting for INIT, 1 go, -1 no */
	size_t payload;		/* bytes of each payload buffer */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum lfs_uring_idle idle;
	int base_policy;	/* the workers' policy at birth, when not idle */
	atomic_int owns_policy;	/* the workers' policy is the ring's to set */
	atomic_int idle_now;	/* the workers run as SCHED_IDLE */
	atomic_uint_fast64_t idle_switches;
	/* uring_idle=auto's monitor */
	pthread_t mon_tid;
	int mon_started;
	pthread_cond_t mon_cond; /* on CLOCK_MONOTONIC, with lock: the stop */
	int nice;		/* the process's nice value at attach */
	int loadavg_fd;		/* /proc/loadavg */
	long online;		/* CPUs online at attach */
	atomic_uint_fast64_t served;
	unsigned nworkers;
	struct worker *w;
	unsigned registered;	/* under lock: workers whose slot the kernel has
				 * (or that gave up) */
	unsigned started;	/* workers running */
	unsigned kickers_waiting; /* under lock: kickers that still look at u */
	int stopping;		/* under lock */
	int stopped;		/* lfs_uring_stop's, its caller's thread only */
};

/* A connection taken over may hold requests queued while no daemon
 * served it.  The kernel hands a queued request to a slot only when that
 * slot commits a reply, not when it is registered: one request of our own
 * on each CPU's queue (statfs is never cached) sets that going. */
struct kicker {
	struct lfs_uring *u;
	char *path;		/* owned */
};

static struct lfs_uring *the_uring;
static _Thread_local struct worker *current_worker;

static int sys_setup(unsigned entries, struct io_uring_params *p)
{
	return (int)syscall(__NR_io_uring_setup, entries, p);
}

static int sys_enter(int fd, unsigned submit, unsigned wait, unsigned flags)
{
	return (int)syscall(__NR_io_uring_enter, fd, submit, wait, flags, NULL, 0);
}

static int ring_open(struct worker *w)
{
	struct io_uring_params p;

	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SQE128 | IORING_SETUP_CQSIZE;
	p.cq_entries = 8;
	w->ring_fd = sys_setup(4, &p);
	if (w->ring_fd < 0)
		return -errno;
	w->sq_map_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	w->cq_map_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	if (p.features & IORING_FEAT_SINGLE_MMAP) {
		if (w->cq_map_len > w->sq_map_len)
			w->sq_map_len = w->cq_map_len;
		w->cq_map_len = 0;
	}
	w->sq_map = mmap(NULL, w->sq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
			 w->ring_fd, IORING_OFF_SQ_RING);
	if (w->sq_map == MAP_FAILED)
		return -errno;
	w->cq_map = w->sq_map;
	if (w->cq_map_len) {
		w->cq_map = mmap(NULL, w->cq_map_len, PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_POPULATE, w->ring_fd, IORING_OFF_CQ_RING);
		if (w->cq_map == MAP_FAILED)
			return -errno;
	}
	w->sqes_len = p.sq_entries * 128u;
	w->sqes = mmap(NULL, w->sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
		       w->ring_fd, IORING_OFF_SQES);
	if (w->sqes == MAP_FAILED)
		return -errno;
	w->sq_head = (unsigned *)((char *)w->sq_map + p.sq_off.head);
	w->sq_tail = (unsigned *)((char *)w->sq_map + p.sq_off.tail);
	w->sq_mask = (unsigned *)((char *)w->sq_map + p.sq_off.ring_mask);
	w->sq_array = (unsigned *)((char *)w->sq_map + p.sq_off.array);
	w->cq_head = (unsigned *)((char *)w->cq_map + p.cq_off.head);
	w->cq_tail = (unsigned *)((char *)w->cq_map + p.cq_off.tail);
	w->cq_mask = (unsigned *)((char *)w->cq_map + p.cq_off.ring_mask);
	w->cqes = (struct io_uring_cqe *)((char *)w->cq_map + p.cq_off.cqes);
	return 0;
}

static struct io_uring_sqe *sqe_next(struct worker *w)
{
	unsigned tail = *w->sq_tail, idx = tail & *w->sq_mask;
	struct io_uring_sqe *sqe = (struct io_uring_sqe *)(w->sqes + (size_t)idx * 128u);

	memset(sqe, 0, 128);
	w->sq_array[idx] = idx;
	__atomic_store_n(w->sq_tail, tail + 1, __ATOMIC_RELEASE);
	return sqe;
}

/* The entry's command: REGISTER hands the kernel its buffers, COMMIT_AND_
 * FETCH the reply now in them, and each waits for the next request. */
static void queue_cmd(struct worker *w, unsigned cmd, uint64_t commit_id)
{
	struct io_uring_sqe *sqe;
	struct ring_cmd_req *req;

	sqe = sqe_next(w);
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = w->u->fd;
	sqe->cmd_op = cmd;
	sqe->user_data = ENT_TAG;
	if (cmd == CMD_REGISTER) {
		sqe->addr = (uint64_t)(uintptr_t)w->iov;
		sqe->len = 2;
	}
	req = (struct ring_cmd_req *)sqe->cmd;
	req->qid = (uint16_t)w->qid;
	req->commit_id = commit_id;
}

static void queue_stop_poll(struct worker *w)
{
	struct io_uring_sqe *sqe = sqe_next(w);

	sqe->opcode = IORING_OP_POLL_ADD;
	sqe->fd = w->stop_fd;
	sqe->poll32_events = 1; /* POLLIN */
	sqe->user_data = STOP_TAG;
}

/* Submits what is queued and waits for one completion: 0 and its result,
 * or -1 when the ring itself fails. */
static int ring_wait(struct worker *w, uint64_t *tag, int *res)
{
	unsigned submit = *w->sq_tail - __atomic_load_n(w->sq_head, __ATOMIC_ACQUIRE);

	for (;;) {
		unsigned head = *w->cq_head;

		if (head != __atomic_load_n(w->cq_tail, __ATOMIC_ACQUIRE)) {
			struct io_uring_cqe *c = &w->cqes[head & *w->cq_mask];

			*tag = c->user_data;
			*res = c->res;
			__atomic_store_n(w->cq_head, head + 1, __ATOMIC_RELEASE);
			if (submit && sys_enter(w->ring_fd, submit, 0, 0) < 0 && errno != EINTR)
				return -1;
			return 0;
		}
		if (sys_enter(w->ring_fd, submit, 1, IORING_ENTER_GETEVENTS) < 0) {
			if (errno != EINTR && errno != EAGAIN)
				return -1;
		} else {
			submit = 0;
		}
	}
}

/* One request, given to libfuse as /dev/fuse would have given it. */
static void serve(struct worker *w)
{
	struct fuse_in_header in;
	size_t op;
	char *payload = w->region + PAD, *start;
	struct fuse_buf buf = { 0 };

	memcpy(&in, w->hdr->in_out, sizeof(in));
	if (in.len < sizeof(in) + w->hdr->ent.payload_sz ||
	    in.len - sizeof(in) - w->hdr->ent.payload_sz > HEADER_OP_IN) {
		/* not a request this module can rebuild: answer it so that
		 * the caller is not left waiting */
		struct fuse_out_header *out = (struct fuse_out_header *)w->hdr->in_out;

		lfs_warn("io_uring: request %u (opcode %u) of %u bytes with a %u-byte payload: answered EIO",
			 (unsigned)in.unique, in.opcode, in.len, w->hdr->ent.payload_sz);
		out->len = sizeof(*out);
		out->error = -EIO;
		out->unique = in.unique;
		w->hdr->ent.payload_sz = 0;
		return;
	}
	op = in.len - sizeof(in) - w->hdr->ent.payload_sz;
	start = payload - op - sizeof(in);
	memcpy(start, &in, sizeof(in));
	memcpy(start + sizeof(in), w->hdr->op_in, op);
	buf.mem = start;
	buf.size = in.len;
	pthread_mutex_lock(&w->lock);
	w->replied = 0;
	pthread_mutex_unlock(&w->lock);
	__atomic_store_n(&w->unique, in.unique, __ATOMIC_RELEASE);
	fuse_session_process_buf(w->u->se, &buf);
	/* a reply made elsewhere, later: wait for it */
	pthread_mutex_lock(&w->lock);
	while (!w->replied)
		pthread_cond_wait(&w->cond, &w->lock);
	pthread_mutex_unlock(&w->lock);
	atomic_fetch_add_explicit(&w->u->served, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&w->done, 1, memory_order_relaxed);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct lfs_uring *u = w->u;
	uint64_t tag;
	int res, state;

	__atomic_store_n(&w->os_tid, (pid_t)syscall(SYS_gettid), __ATOMIC_RELEASE);
	pthread_mutex_lock(&u->lock);
	while (!u->state)
		pthread_cond_wait(&u->cond, &u->lock);
	state = u->state;
	pthread_mutex_unlock(&u->lock);
	if (state < 0)
		return NULL;
	current_worker = w;
	/* A caller woken on a CPU that runs only idle-policy threads stays
	 * there (the scheduler counts the CPU as idle); otherwise it is
	 * moved to the other, idle CPU at every reply, and runs there with
	 * cold caches (docs/performance.md). */
	if (u->idle == LFS_URING_IDLE_ON) {
		struct sched_param sp = { 0 };
		int rc = pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);

		if (rc)
			lfs_warn("uring_idle: queue %u: %s", w->qid, strerror(rc));
	}
	w->hdr = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	w->region_len = PAD + u->payload;
	w->region = mmap(NULL, w->region_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			 -1, 0);
	if (w->hdr == MAP_FAILED || w->region == MAP_FAILED) {
		lfs_warn("io_uring: queue %u: no memory for its buffers", w->qid);
		pthread_mutex_lock(&u->lock);
		u->registered++; /* given up: no kicker waits for it */
		pthread_cond_broadcast(&u->cond);
		pthread_mutex_unlock(&u->lock);
		return NULL;
	}
	w->iov[0].iov_base = w->hdr;
	w->iov[0].iov_len = sizeof(*w->hdr);
	w->iov[1].iov_base = w->region + PAD;
	w->iov[1].iov_len = u->payload;
	queue_stop_poll(w);
	queue_cmd(w, CMD_REGISTER, 0);
	/* submitted alone, so that the slot is known to be the kernel's */
	if (sys_enter(w->ring_fd, 2, 0, 0) < 0)
		lfs_warn("io_uring: queue %u: cannot register: %s", w->qid, strerror(errno));
	pthread_mutex_lock(&u->lock);
	u->registered++;
	pthread_cond_broadcast(&u->cond);
	pthread_mutex_unlock(&u->lock);
	for (;;) {
		if (ring_wait(w, &tag, &res)) {
			lfs_warn("io_uring: queue %u: %s", w->qid, strerror(errno));
			break;
		}
		if (tag == STOP_TAG)
			break;
		if (res == -EINTR || res == -EAGAIN) {
			uint64_t id = __atomic_load_n(&w->unique, __ATOMIC_ACQUIRE);

			queue_cmd(w, id ? CMD_COMMIT_AND_FETCH : CMD_REGISTER, id);
			continue;
		}
		if (res < 0) {
			if (res != -ENOTCONN && res != -ENODEV)
				lfs_warn("io_uring: queue %u: the kernel ended it: %s", w->qid,
					 strerror(-res));
			break;
		}
		serve(w);
		queue_cmd(w, CMD_COMMIT_AND_FETCH, w->hdr->ent.commit_id);
		__atomic_store_n(&w->unique, 0, __ATOMIC_RELEASE);
	}
	return NULL;
}

static void *kicker_main(void *arg)
{
	struct kicker *k = arg;
	struct lfs_uring *u = k->u;
	struct statfs sfs;
	int go;

	pthread_mutex_lock(&u->lock);
	while (!u->stopping && (u->state == 0 || (u->state > 0 && u->registered < u->started)))
		pthread_cond_wait(&u->cond, &u->lock);
	go = !u->stopping && u->state > 0;
	u->kickers_waiting--;
	pthread_cond_broadcast(&u->cond);
	pthread_mutex_unlock(&u->lock);
	/* u may be gone from here on */
	if (go && statfs(k->path, &sfs) < 0)
		lfs_warn("io_uring: %s: statfs: %s", k->path, strerror(errno));
	free(k->path);
	free(k);
	return NULL;
}

/* uring_idle=auto.  A ring thread that runs as SCHED_IDLE leaves the
 * caller it wakes on its own CPU (the scheduler counts a CPU running only
 * idle-policy threads as idle, and wakes there), where at every reply a
 * SCHED_OTHER one has the caller moved to another, halted CPU; but it runs
 * only when nothing else is runnable on its CPU, so on a busy host its
 * requests wait behind every other task (docs/performance.md: a read of
 * every file under two CPU hogs).  How many tasks the host runs says too
 * little alone (a start's own threads keep two CPUs busy), so the monitor
 * looks for the harm itself, in the threads' scheduler statistics: one
 * runnable in two samples in a row without finishing a request in between,
 * or their waits for a CPU long (STARVED_*).  Waiting behind this
 * process's own threads (inflating ahead) is no harm, so it acts only when
 * tasks of others are runnable, as many as the CPUs.  The threads then go
 * back to their policy at once, and try idle again after a backoff that
 * doubles, up to MAX_BACKOFF_NS, while the harm recurs.  Samples come every
 * ACTIVE_NS while requests flow or a ring thread is runnable, every
 * QUIET_NS otherwise. */
#define ACTIVE_NS 10000000LL
#define QUIET_NS 100000000LL
#define MIN_BACKOFF_NS 1000000000LL
#define MAX_BACKOFF_NS 16000000000LL

static long long now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Whether the thread whose /proc stat file is fd is runnable or running
 * ('R'); 0 when it cannot tell. */
static int thread_runnable(int fd)
{
	char buf[512], *p;
	ssize_t n = fd >= 0 ? pread(fd, buf, sizeof(buf) - 1, 0) : -1;

	if (n <= 0)
		return 0;
	buf[n] = 0;
	p = strrchr(buf, ')'); /* "tid (comm) S ..." */
	return p && p[1] == ' ' && p[2] == 'R';
}

static void set_workers_idle(struct lfs_uring *u, int idle)
{
	struct sched_param sp = { 0 };
	int policy = idle ? SCHED_IDLE : u->base_policy;

	for (unsigned i = 0; i < u->nworkers; i++) {
		pid_t t = __atomic_load_n(&u->w[i].os_tid, __ATOMIC_ACQUIRE);

		/* a thread that has already ended: ESRCH, nothing to do */
		if (t > 0 && sched_setscheduler(t, policy, &sp) && errno != ESRCH)
			lfs_debug("uring_idle=auto: queue %u: %s", u->w[i].qid, strerror(errno));
	}
	atomic_store(&u->idle_now, idle);
	atomic_fetch_add(&u->idle_switches, 1);
}

/* Whether a thread of this process that went SCHED_IDLE may come back
 * (without CAP_SYS_NICE, only within RLIMIT_NICE): tried on the calling
 * thread, which is SCHED_IDLE afterwards if not. */
static int idle_is_reversible(int base_policy)
{
	struct sched_param sp = { 0 };

	return !sched_setscheduler(0, SCHED_IDLE, &sp) && !sched_setscheduler(0, base_policy, &sp);
}

struct watch {
	int fd, sched_fd;	/* the worker's /proc stat and schedstat files */
	uint64_t done;		/* its requests finished at the last sample */
	int runnable;		/* ... and whether it was runnable then */
	unsigned long long delay, slices; /* ... its schedstat then */
};

/* Scheduling delays that say a ring thread waits behind other tasks: its
 * requests wait for a CPU STARVED_SLICE_NS on average, at least
 * STARVED_TOTAL_NS in all in one sample (on a calm host, a few
 * microseconds each: only the caller it serves has to get off the CPU). */
#define STARVED_SLICE_NS 100000ULL
#define STARVED_TOTAL_NS 1000000ULL

/* Whether the workers have waited for a CPU since the last sample: one
 * runnable in both without finishing a request, or their delays above;
 * *busy: whether one is runnable now. */
static int any_starved(struct lfs_uring *u, struct watch *ws, int *busy)
{
	unsigned long long delay = 0, slices = 0;
	int stuck = 0;

	*busy = 0;
	for (unsigned i = 0; i < u->nworkers; i++) {
		uint64_t done = atomic_load_explicit(&u->w[i].done, memory_order_relaxed);
		int runnable = thread_runnable(ws[i].fd);
		unsigned long long on, d, n;
		char buf[128];
		ssize_t len = ws[i].sched_fd >= 0 ? pread(ws[i].sched_fd, buf, sizeof(buf) - 1, 0) : -1;

		if (runnable && ws[i].runnable && done == ws[i].done)
			stuck = 1;
		*busy |= runnable;
		ws[i].done = done;
		ws[i].runnable = runnable;
		if (len <= 0)
			continue;
		buf[len] = 0;
		/* "time on a CPU, time waiting for one, times run" (ns) */
		if (sscanf(buf, "%llu %llu %llu", &on, &d, &n) != 3)
			continue;
		if (d >= ws[i].delay && n >= ws[i].slices) {
			delay += d - ws[i].delay;
			slices += n - ws[i].slices;
		}
		ws[i].delay = d;
		ws[i].slices = n;
	}
	return stuck || (delay >= STARVED_TOTAL_NS && delay >= STARVED_SLICE_NS * slices);
}

/* Tasks runnable on the host that are not this process's threads, now,
 * or -1: /proc/loadavg's count less ours. */
static long foreign_runnable(int loadavg_fd)
{
	char buf[512], *p;
	ssize_t n = pread(loadavg_fd, buf, sizeof(buf) - 1, 0);
	long all, ours = 0;
	DIR *d;
	struct dirent *e;

	if (n <= 0)
		return -1;
	buf[n] = 0;
	p = strchr(buf, '/'); /* "0.00 0.01 0.00 3/123 4567" */
	if (!p)
		return -1;
	while (p > buf && p[-1] != ' ')
		p--;
	all = strtol(p, NULL, 10);
	d = opendir("/proc/self/task");
	if (!d)
		return -1;
	while ((e = readdir(d))) {
		char path[sizeof("/proc/self/task//stat") + sizeof(e->d_name)];
		int fd;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/stat", e->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		ours += thread_runnable(fd);
		if (fd >= 0)
			close(fd);
	}
	closedir(d);
	return all - ours;
}

static void *monitor_main(void *arg)
{
	struct lfs_uring *u = arg;
	struct watch *ws;
	long long backoff = MIN_BACKOFF_NS, retry_at = 0, idle_since = 0;
	uint64_t seen = 0;
	int go;

	pthread_mutex_lock(&u->lock);
	while (!u->stopping && (u->state == 0 || (u->state > 0 && u->registered < u->started)))
		pthread_cond_wait(&u->cond, &u->lock);
	go = !u->stopping && u->state > 0;
	pthread_mutex_unlock(&u->lock);
	if (!go)
		return NULL;
	ws = calloc(u->nworkers, sizeof(*ws));
	if (!ws || !idle_is_reversible(u->base_policy)) {
		if (ws)
			lfs_info("uring_idle=auto: a thread gone SCHED_IDLE could not come back "
				 "(RLIMIT_NICE below %d, no CAP_SYS_NICE): the rings' threads stay as they are",
				 20 - u->nice);
		free(ws);
		atomic_store(&u->owns_policy, 0);
		return NULL;
	}
	for (unsigned i = 0; i < u->nworkers; i++) {
		int tid = (int)__atomic_load_n(&u->w[i].os_tid, __ATOMIC_ACQUIRE);
		char path[64];

		snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
		ws[i].fd = u->w[i].started ? open(path, O_RDONLY | O_CLOEXEC) : -1;
		/* without it (no CONFIG_SCHED_INFO), only a thread stuck is seen */
		snprintf(path, sizeof(path), "/proc/self/task/%d/schedstat", tid);
		ws[i].sched_fd = u->w[i].started ? open(path, O_RDONLY | O_CLOEXEC) : -1;
	}
	pthread_mutex_lock(&u->lock);
	while (!u->stopping) {
		uint64_t served = atomic_load_explicit(&u->served, memory_order_relaxed);
		long long t = now_ns(), wake;
		struct timespec at;
		int busy = 0;

		pthread_mutex_unlock(&u->lock);
		if (atomic_load(&u->idle_now)) {
			long foreign;

			if (any_starved(u, ws, &busy) &&
			    ((foreign = foreign_runnable(u->loadavg_fd)) < 0 || foreign >= u->online)) {
				lfs_debug("uring_idle=auto: a ring thread waits behind other tasks (%lld ms after "
					  "they went idle): they no longer idle, for %lld ms",
					  (t - idle_since) / 1000000, backoff / 1000000);
				set_workers_idle(u, 0);
				retry_at = t + backoff;
				backoff = backoff * 2 > MAX_BACKOFF_NS ? MAX_BACKOFF_NS : backoff * 2;
			} else if (t - idle_since > MAX_BACKOFF_NS) {
				backoff = MIN_BACKOFF_NS;
			}
		} else if (t >= retry_at) {
			lfs_debug("uring_idle=auto: the rings' threads idle");
			set_workers_idle(u, 1);
			idle_since = t;
			(void)any_starved(u, ws, &busy); /* from now on */
			busy = 1;
		}
		/* a thread that is runnable now is looked at again soon */
		wake = t + (served != seen || busy ? ACTIVE_NS : QUIET_NS);
		seen = served;
		at.tv_sec = (time_t)(wake / 1000000000LL);
		at.tv_nsec = (long)(wake % 1000000000LL);
		pthread_mutex_lock(&u->lock);
		while (!u->stopping && pthread_cond_timedwait(&u->mon_cond, &u->lock, &at) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&u->lock);
	for (unsigned i = 0; i < u->nworkers; i++) {
		if (ws[i].fd >= 0)
			close(ws[i].fd);
		if (ws[i].sched_fd >= 0)
			close(ws[i].sched_fd);
	}
	free(ws);
	return NULL;
}

/* The reply for a request a worker serves, into its buffers. */
static ssize_t fill(struct worker *w, const struct iovec *iov, int count)
{
	struct fuse_out_header *out = (struct fuse_out_header *)w->hdr->in_out;
	size_t len = 0, total = iov[0].iov_len;

	memcpy(out, iov[0].iov_base, sizeof(*out));
	for (int i = 1; i < count; i++) {
		total += iov[i].iov_len;
		if (len + iov[i].iov_len > w->u->payload) {
			out->error = -EIO;
			len = 0;
			break;
		}
		memcpy(w->region + PAD + len, iov[i].iov_base, iov[i].iov_len);
		len += iov[i].iov_len;
	}
	w->hdr->ent.payload_sz = (uint32_t)len;
	pthread_mutex_lock(&w->lock);
	w->replied = 1;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	return (ssize_t)total;
}

static ssize_t init_reply(struct lfs_uring *u, int fd, struct iovec *iov, int count)
{
	struct fuse_init_out o;
	struct iovec v[2];
	ssize_t n;
	int ok;

	if (count != 2 || iov[1].iov_len < offsetof(struct fuse_init_out, unused) ||
	    iov[1].iov_len > sizeof(o) || !u->offered)
		return writev(fd, iov, count);
	memcpy(&o, iov[1].iov_base, iov[1].iov_len);
	o.flags |= FUSE_INIT_EXT;
	o.flags2 |= OVER_IO_URING_FLAGS2;
	v[0] = iov[0];
	v[1].iov_base = &o;
	v[1].iov_len = iov[1].iov_len;
	n = writev(fd, v, 2);
	ok = n == (ssize_t)(iov[0].iov_len + iov[1].iov_len);
	u->payload = o.max_write > 8192 ? o.max_write : 8192;
	if ((size_t)o.max_pages * 4096u > u->payload)
		u->payload = (size_t)o.max_pages * 4096u;
	pthread_mutex_lock(&u->lock);
	u->state = ok ? 1 : -1;
	pthread_cond_broadcast(&u->cond);
	pthread_mutex_unlock(&u->lock);
	return n;
}

static ssize_t hook_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	struct lfs_uring *u = __atomic_load_n(&the_uring, __ATOMIC_ACQUIRE);
	struct worker *w = current_worker;
	uint64_t unique;

	(void)userdata;
	if (!u || count < 1 || iov[0].iov_len < sizeof(struct fuse_out_header))
		return writev(fd, iov, count);
	unique = ((const struct fuse_out_header *)iov[0].iov_base)->unique;
	if (unique && w && __atomic_load_n(&w->unique, __ATOMIC_ACQUIRE) == unique)
		return fill(w, iov, count);
	if (unique && unique == __atomic_load_n(&u->init_unique, __ATOMIC_ACQUIRE))
		return init_reply(u, fd, iov, count);
	for (unsigned i = 0; unique && i < u->nworkers; i++)
		if (__atomic_load_n(&u->w[i].unique, __ATOMIC_ACQUIRE) == unique)
			return fill(&u->w[i], iov, count);
	return writev(fd, iov, count);
}

static ssize_t hook_read(int fd, void *buf, size_t len, void *userdata)
{
	struct lfs_uring *u = __atomic_load_n(&the_uring, __ATOMIC_ACQUIRE);
	ssize_t n = read(fd, buf, len);
	const struct fuse_in_header *in = buf;

	(void)userdata;
	if (u && n >= (ssize_t)(sizeof(*in) + offsetof(struct fuse_init_in, unused)) &&
	    in->opcode == FUSE_INIT) {
		const struct fuse_init_in *a = (const void *)(in + 1);

		u->offered = (a->flags & FUSE_INIT_EXT) && (a->flags2 & OVER_IO_URING_FLAGS2);
		__atomic_store_n(&u->init_unique, in->unique, __ATOMIC_RELEASE);
		if (!u->offered) {
			pthread_mutex_lock(&u->lock);
			u->state = -1;
			pthread_cond_broadcast(&u->cond);
			pthread_mutex_unlock(&u->lock);
		}
	}
	return n;
}

static void worker_close(struct worker *w)
{
	if (w->sqes && w->sqes != MAP_FAILED)
		munmap(w->sqes, w->sqes_len);
	if (w->cq_map && w->cq_map != MAP_FAILED && w->cq_map != w->sq_map)
		munmap(w->cq_map, w->cq_map_len);
	if (w->sq_map && w->sq_map != MAP_FAILED)
		munmap(w->sq_map, w->sq_map_len);
	if (w->ring_fd >= 0)
		close(w->ring_fd);
	if (w->stop_fd >= 0)
		close(w->stop_fd);
	if (w->hdr && w->hdr != MAP_FAILED)
		munmap(w->hdr, 4096);
	if (w->region && w->region != MAP_FAILED)
		munmap(w->region, w->region_len);
	w->sqes = NULL;
	w->sq_map = w->cq_map = NULL;
	w->hdr = NULL;
	w->region = NULL;
	w->ring_fd = w->stop_fd = -1;
}

/* The kernel keeps a queue for every possible CPU, and takes the ring
 * only once each has a request slot: the highest possible CPU's number,
 * plus one. */
static long possible_cpus(void)
{
	FILE *f = fopen("/sys/devices/system/cpu/possible", "re");
	char line[256];
	long last = -1;

	if (f) {
		if (fgets(line, sizeof(line), f)) {
			char *p = line;

			while (*p) {	/* "0-3,8-11": the last number */
				char *end;
				long v = strtol(p, &end, 10);

				if (end == p)
					break;
				last = v;
				p = *end ? end + 1 : end;
			}
		}
		fclose(f);
	}
	return last >= 0 ? last + 1 : sysconf(_SC_NPROCESSORS_CONF);
}

int lfs_uring_owns_policy(void)
{
	return current_worker && atomic_load_explicit(&current_worker->u->owns_policy,
						      memory_order_relaxed);
}

int lfs_uring_idle_now(const struct lfs_uring *u, uint64_t *switches)
{
	if (switches)
		*switches = u ? atomic_load(&u->idle_switches) : 0;
	return u && atomic_load(&u->idle_now);
}

/* So that a thread gone SCHED_IDLE may come back to its nice value
 * unprivileged (sched(7)): allowed from root, before the drop; where it
 * is not, the monitor finds out and leaves the threads alone. */
static void allow_return_from_idle(int nice)
{
	rlim_t need = (rlim_t)(20 - nice);
	struct rlimit r;

	if (getrlimit(RLIMIT_NICE, &r) || r.rlim_cur >= need)
		return;
	r.rlim_cur = need;
	if (r.rlim_max < need)
		r.rlim_max = need;
	(void)setrlimit(RLIMIT_NICE, &r);
}

/* A thread on `cpu` (pinned where this process may run there), else
 * unpinned: a filter may forbid the pinning (a unit without @resources),
 * and a queue needs a thread all the same, or the kernel never takes the
 * ring.  0, or an errno. */
static int start_on_cpu(pthread_t *tid, long cpu, const cpu_set_t *allowed, int detached,
			void *(*fn)(void *), void *arg)
{
	pthread_attr_t attr;
	cpu_set_t set;
	int rc;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_attr_init(&attr);
	if (detached)
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (CPU_ISSET(cpu, allowed))
		pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
	rc = pthread_create(tid, &attr, fn, arg);
	if (rc) {
		pthread_attr_destroy(&attr);
		pthread_attr_init(&attr);
		if (detached)
			pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		rc = pthread_create(tid, &attr, fn, arg);
	}
	pthread_attr_destroy(&attr);
	return rc;
}

int lfs_uring_attach(struct fuse_session *se, unsigned per_cpu, enum lfs_uring_idle idle,
		     const char *taken_over, struct lfs_uring **out)
{
	static const struct fuse_custom_io io = { .writev = hook_writev, .read = hook_read };
	struct lfs_uring *u;
	long cpus = possible_cpus();
	cpu_set_t allowed;
	sigset_t all, old;
	int rc = 0;

	*out = NULL;
	if (__atomic_load_n(&the_uring, __ATOMIC_ACQUIRE) || cpus < 1 || cpus > CPU_SETSIZE)
		return -EINVAL;
	/* Each slot holds a payload buffer of the largest request (1 MiB by
	 * default), resident once used: four per CPU kept four cold readers
	 * on two CPUs as fast as /dev/fuse (two did not, docs/performance.md),
	 * and past 8 CPUs the slots are shared out, at least one per CPU. */
	if (!per_cpu)
		per_cpu = cpus >= 32 ? 1 : cpus > 8 ? (unsigned)(32 / cpus) : 4;
	if (sched_getaffinity(0, sizeof(allowed), &allowed))
		CPU_ZERO(&allowed);
	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->se = se;
	u->idle = idle;
	u->base_policy = sched_getscheduler(0) == SCHED_BATCH ? SCHED_BATCH : SCHED_OTHER;
	u->fd = fuse_session_fd(se);
	u->loadavg_fd = -1;
	pthread_mutex_init(&u->lock, NULL);
	pthread_cond_init(&u->cond, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&u->mon_cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	if (idle == LFS_URING_IDLE_AUTO) {
		/* the filter to come allows no getpriority */
		errno = 0;
		u->nice = getpriority(PRIO_PROCESS, 0); /* -1 is a nice value too */
		if (errno)
			u->nice = 0;
		allow_return_from_idle(u->nice);
		u->online = sysconf(_SC_NPROCESSORS_ONLN);
		if (u->online < 1)
			u->online = 1;
		u->loadavg_fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
	}
	atomic_store(&u->owns_policy, idle != LFS_URING_IDLE_OFF);
	atomic_store(&u->idle_now, idle == LFS_URING_IDLE_ON);
	u->nworkers = (unsigned)cpus * per_cpu;
	u->w = calloc(u->nworkers, sizeof(*u->w));
	if (!u->w) {
		lfs_uring_free(u);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < u->nworkers; i++) {
		struct worker *w = &u->w[i];

		w->u = u;
		w->qid = i / per_cpu;
		w->ring_fd = w->stop_fd = -1;
		pthread_mutex_init(&w->lock, NULL);
		pthread_cond_init(&w->cond, NULL);
		w->stop_fd = eventfd(0, EFD_CLOEXEC);
		if (w->stop_fd < 0)
			rc = -errno;
		if (!rc)
			rc = ring_open(w);
		if (rc)
			break;
	}
	if (!rc) {
		/* before the hooks, which find u through it */
		__atomic_store_n(&the_uring, u, __ATOMIC_RELEASE);
		rc = fuse_session_custom_io(se, &io, u->fd);
	}
	if (rc) {
		for (unsigned i = 0; i < u->nworkers; i++)
			worker_close(&u->w[i]);
		lfs_uring_free(u);
		return rc < 0 ? rc : -EINVAL;
	}
	/* The daemon's signals are its signal thread's to take (sigwait):
	 * the workers block them all, whatever the creating thread does. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (unsigned i = 0; i < u->nworkers; i++) {
		struct worker *w = &u->w[i];

		/* a CPU this process may not run on (offline, or outside its
		 * cpuset) gets its queue served from elsewhere */
		w->started = !start_on_cpu(&w->tid, w->qid, &allowed, 0, worker_main, w);
		if (!w->started)
			lfs_warn("io_uring: no thread for queue %u: the ring stays unused", w->qid);
		else
			u->started++;
	}
	if (idle == LFS_URING_IDLE_AUTO) {
		u->mon_started = !pthread_create(&u->mon_tid, NULL, monitor_main, u);
		if (!u->mon_started)
			atomic_store(&u->owns_policy, 0);
	}
	for (long cpu = 0; taken_over && cpu < cpus; cpu++) {
		struct kicker *k;
		pthread_t tid;

		if (!CPU_ISSET(cpu, &allowed))
			continue; /* nobody makes requests there */
		k = calloc(1, sizeof(*k));
		if (!k || !(k->path = strdup(taken_over))) {
			free(k);
			break;
		}
		k->u = u;
		pthread_mutex_lock(&u->lock);
		u->kickers_waiting++;
		pthread_mutex_unlock(&u->lock);
		if (start_on_cpu(&tid, cpu, &allowed, 1, kicker_main, k)) {
			pthread_mutex_lock(&u->lock);
			u->kickers_waiting--;
			pthread_mutex_unlock(&u->lock);
			free(k->path);
			free(k);
		}
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	*out = u;
	return 0;
}

void lfs_uring_start(struct lfs_uring *u, size_t payload)
{
	pthread_mutex_lock(&u->lock);
	if (!u->state) {
		u->payload = payload;
		u->state = 1;
	}
	pthread_cond_broadcast(&u->cond);
	pthread_mutex_unlock(&u->lock);
}

int lfs_uring_kernel_offers(void)
{
	char c = 'N';
	FILE *f = fopen("/sys/module/fuse/parameters/enable_uring", "re");

	if (f) {
		if (fread(&c, 1, 1, f) != 1)
			c = 'N';
		fclose(f);
	}
	return c == 'Y' || c == '1';
}

uint64_t lfs_uring_served(const struct lfs_uring *u)
{
	return u ? atomic_load_explicit(&u->served, memory_order_relaxed) : 0;
}

void lfs_uring_stop(struct lfs_uring *u)
{
	if (!u || u->stopped)
		return;
	u->stopped = 1;
	pthread_mutex_lock(&u->lock);
	if (!u->state)
		u->state = -1;
	u->stopping = 1;
	pthread_cond_broadcast(&u->cond);
	pthread_cond_broadcast(&u->mon_cond);
	while (u->kickers_waiting)
		pthread_cond_wait(&u->cond, &u->lock);
	pthread_mutex_unlock(&u->lock);
	if (u->mon_started)
		pthread_join(u->mon_tid, NULL);
	u->mon_started = 0;
	for (unsigned i = 0; i < u->nworkers; i++) {
		uint64_t one = 1;

		if (u->w[i].stop_fd >= 0 && write(u->w[i].stop_fd, &one, sizeof(one)) < 0)
			lfs_warn("io_uring: cannot stop queue %u: %s", u->w[i].qid, strerror(errno));
	}
	for (unsigned i = 0; i < u->nworkers; i++) {
		if (u->w[i].started)
			pthread_join(u->w[i].tid, NULL);
		u->w[i].started = 0;
		worker_close(&u->w[i]);
	}
}

void lfs_uring_free(struct lfs_uring *u)
{
	if (!u)
		return;
	lfs_uring_stop(u); /* a daemon that failed before its loop ran */
	__atomic_store_n(&the_uring, NULL, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < u->nworkers; i++) {
		pthread_mutex_destroy(&u->w[i].lock);
		pthread_cond_destroy(&u->w[i].cond);
	}
	free(u->w);
	if (u->loadavg_fd >= 0)
		close(u->loadavg_fd);
	pthread_mutex_destroy(&u->lock);
	pthread_cond_destroy(&u->cond);
	pthread_cond_destroy(&u->mon_cond);
	free(u);
}
