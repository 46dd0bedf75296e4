#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Upper bounds of the read latency buckets, in microseconds: a page-cache
 * miss served from a cached block takes tens of microseconds, one
 * inflating a resume spacing a few milliseconds, one waiting for a slow
 * disk or a remote source far more. */
static const uint64_t bucket_us[] = { 50,    100,   250,    500,    1000,   2500,   5000,
				      10000, 25000, 50000, 100000, 250000, 1000000 };
#define NBUCKETS (sizeof(bucket_us) / sizeof(bucket_us[0]))

struct lfs_metrics {
	char *version, *commit, *mount;	/* mount: escaped for a label value */
	double started;			/* wall clock, for start_time */
	uint64_t started_mono;		/* ns */
	/* atomic */
	uint64_t buckets[NBUCKETS + 1];	/* the last is +Inf */
	uint64_t sum_ns, reads, read_errors;
	uint64_t op_count[LFS_OP_COUNT], op_ns[LFS_OP_COUNT];
};

static const char *const op_names[LFS_OP_COUNT] = {
	[LFS_OP_LOOKUP] = "lookup",	  [LFS_OP_GETATTR] = "getattr",
	[LFS_OP_READLINK] = "readlink",	  [LFS_OP_OPEN] = "open",
	[LFS_OP_READ] = "read",		  [LFS_OP_OPENDIR] = "opendir",
	[LFS_OP_READDIR] = "readdir",	  [LFS_OP_READDIRPLUS] = "readdirplus",
	[LFS_OP_STATFS] = "statfs",	  [LFS_OP_GETXATTR] = "getxattr",
	[LFS_OP_LISTXATTR] = "listxattr", [LFS_OP_IOCTL] = "ioctl",
	[LFS_OP_OTHER] = "other",
};

const char *lfs_op_name(enum lfs_op op) { return op < LFS_OP_COUNT ? op_names[op] : "?"; }

static void count_op(struct lfs_metrics *m, enum lfs_op op, uint64_t ns)
{
	__atomic_add_fetch(&m->op_count[op], 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&m->op_ns[op], ns, __ATOMIC_RELAXED);
}

void lfs_metrics_op(struct lfs_metrics *m, enum lfs_op op, uint64_t start)
{
	if (!m || op >= LFS_OP_COUNT)
		return;
	count_op(m, op, lfs_metrics_clock() - start);
}

uint64_t lfs_metrics_clock(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A label value: backslash, double quote and newline escaped. */
static char *escape_label(const char *s)
{
	char *out = malloc(2 * strlen(s) + 1), *o = out;

	for (; out && *s; s++) {
		if (*s == '\\' || *s == '"' || *s == '\n') {
			*o++ = '\\';
			*o++ = *s == '\n' ? 'n' : *s;
		} else {
			*o++ = *s;
		}
	}
	if (out)
		*o = '\0';
	return out;
}

struct lfs_metrics *lfs_metrics_new(const char *version, const char *commit,
				    const char *mountpoint)
{
	struct lfs_metrics *m = calloc(1, sizeof(*m));
	struct timespec ts;

	if (!m)
		return NULL;
	m->version = escape_label(version);
	m->commit = escape_label(commit);
	m->mount = escape_label(mountpoint);
	if (!m->version || !m->commit || !m->mount) {
		lfs_metrics_free(m);
		return NULL;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	m->started = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	m->started_mono = lfs_metrics_clock();
	return m;
}

void lfs_metrics_free(struct lfs_metrics *m)
{
	if (!m)
		return;
	free(m->version);
	free(m->commit);
	free(m->mount);
	free(m);
}

void lfs_metrics_read(struct lfs_metrics *m, uint64_t start, int failed)
{
	uint64_t ns, us;
	size_t b = 0;

	if (!m)
		return;
	ns = lfs_metrics_clock() - start;
	us = ns / 1000;
	while (b < NBUCKETS && us >= bucket_us[b])
		b++;
	/* Buckets are counted as they are (not cumulative) and summed up
	 * when the text is made. */
	__atomic_add_fetch(&m->buckets[b], 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&m->sum_ns, ns, __ATOMIC_RELAXED);
	__atomic_add_fetch(&m->reads, 1, __ATOMIC_RELAXED);
	count_op(m, LFS_OP_READ, ns); /* the same request, the same time */
	if (failed)
		__atomic_add_fetch(&m->read_errors, 1, __ATOMIC_RELAXED);
}

static uint64_t get(const uint64_t *v) { return __atomic_load_n(v, __ATOMIC_RELAXED); }

static double uptime(const struct lfs_metrics *m)
{
	return (double)(lfs_metrics_clock() - m->started_mono) / 1e9;
}

struct out {
	char *buf;
	size_t size, len;
	int rc;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(o->buf + o->len, o->len < o->size ? o->size - o->len : 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		o->rc = -EINVAL;
	else
		o->len += (size_t)n;
	if (o->len >= o->size && !o->rc)
		o->rc = -ERANGE;
}

static int finish(struct out *o) { return o->rc ? o->rc : (int)o->len; }

int lfs_metrics_stats_text(struct lfs_metrics *m, struct lfs_stack *s, char *buf, size_t size)
{
	int n = lfs_stack_stats_text(s, buf, size);
	struct out o = { buf, size, 0, 0 };

	if (n < 0)
		return n;
	o.len = (size_t)n;
	put(&o, "version %s\ncommit %s\nuptime_seconds %.0f\nreads %llu\nread_errors %llu\n",
	    m->version, m->commit, uptime(m), (unsigned long long)get(&m->reads),
	    (unsigned long long)get(&m->read_errors));
	for (int op = 0; op < LFS_OP_COUNT; op++)
		put(&o, "op.%s.requests %llu\nop.%s.service_us %llu\n", op_names[op],
		    (unsigned long long)get(&m->op_count[op]), op_names[op],
		    (unsigned long long)(get(&m->op_ns[op]) / 1000));
	return finish(&o);
}

static void family(struct out *o, const char *name, const char *type, const char *help)
{
	put(o, "# HELP layerfs_%s %s\n# TYPE layerfs_%s %s\n", name, help, name, type);
}

/* One sample of the mount as a whole: whole numbers as they are. */
static void sample(struct out *o, struct lfs_metrics *m, const char *name, const char *type,
		   const char *help, double v)
{
	family(o, name, type, help);
	if (v == (double)(uint64_t)v && v < 9007199254740992.0)
		put(o, "layerfs_%s{mount=\"%s\"} %llu\n", name, m->mount, (unsigned long long)v);
	else
		put(o, "layerfs_%s{mount=\"%s\"} %.6f\n", name, m->mount, v);
}

/* One sample per layer, of the field at `off` in its stats. */
static void per_layer(struct out *o, struct lfs_metrics *m, const struct lfs_stack_stats *st,
		      char *const *labels, const char *name, const char *help, size_t off)
{
	family(o, name, "counter", help);
	for (size_t i = 0; i < st->nlayers; i++)
		put(o, "layerfs_%s{mount=\"%s\",layer=\"%s\"} %llu\n", name, m->mount, labels[i],
		    (unsigned long long)*(const uint64_t *)(const void *)((const char *)&st->layers[i] + off));
}

static void render(struct out *o, struct lfs_metrics *m, const struct lfs_stack_stats *st,
		   char *const *labels)
{
	const struct lfs_reader_stats *r = &st->reader;
	static const struct {
		const char *reason;
		size_t off;
	} faults[] = {
		{ "data", offsetof(struct lfs_stack_layer_stats, data_faults) },
		{ "header", offsetof(struct lfs_stack_layer_stats, header_faults) },
		{ "source", offsetof(struct lfs_stack_layer_stats, source_errors) },
		{ "changed", offsetof(struct lfs_stack_layer_stats, changed_reads) },
		{ "digest", offsetof(struct lfs_stack_layer_stats, digest_refused) },
	};
	uint64_t cum = 0;

	family(o, "info", "gauge", "The daemon's build; always 1.");
	put(o, "layerfs_info{mount=\"%s\",version=\"%s\",commit=\"%s\"} 1\n", m->mount, m->version,
	    m->commit);
	sample(o, m, "start_time_seconds", "gauge", "When the daemon started, seconds since the epoch.",
	       m->started);
	sample(o, m, "uptime_seconds", "gauge", "Seconds since the daemon started.", uptime(m));
	sample(o, m, "mount_open_seconds", "gauge", "Seconds opening the stack took.",
	       st->open_seconds);
	sample(o, m, "layers", "gauge", "Layers in the stack.", (double)st->nlayers);
	sample(o, m, "inodes", "gauge", "Inodes of the merged tree.", (double)st->inodes);
	family(o, "layer_info", "gauge", "A layer of the stack and its SHA-256 (empty while pending); always 1.");
	for (size_t i = 0; i < st->nlayers; i++)
		put(o, "layerfs_layer_info{mount=\"%s\",layer=\"%s\",sha256=\"%s\"} 1\n", m->mount,
		    labels[i], st->layers[i].sha256);
	per_layer(o, m, st, labels, "zip_read_bytes_total", "Bytes read from the layer's zip.",
		  offsetof(struct lfs_stack_layer_stats, bytes_read));
	per_layer(o, m, st, labels, "inflated_bytes_total", "Bytes the layer's members decoded to.",
		  offsetof(struct lfs_stack_layer_stats, bytes_inflated));
	per_layer(o, m, st, labels, "served_bytes_total", "Bytes of the layer's files served.",
		  offsetof(struct lfs_stack_layer_stats, bytes_served));
	family(o, "faults_total", "counter",
	       "Failures the log reports, by reason: data (a member's data is bad, EIO from then on), header (an entry's local header is bad), source (a read of the zip failed), changed (a read failed because the zip changed), digest (a read failed because the layer's bytes are not its listed sha256=).");
	for (size_t i = 0; i < st->nlayers; i++)
		for (size_t f = 0; f < sizeof(faults) / sizeof(faults[0]); f++)
			put(o, "layerfs_faults_total{mount=\"%s\",layer=\"%s\",reason=\"%s\"} %llu\n",
			    m->mount, labels[i], faults[f].reason,
			    (unsigned long long)*(const uint64_t *)(const void *)((const char *)&st->layers[i] + faults[f].off));
	family(o, "layer_digest_mismatch", "gauge",
	       "1 once a remote layer's bytes, all fetched, proved not to have its listed sha256= (every read of it fails from then on), else 0.");
	for (size_t i = 0; i < st->nlayers; i++)
		put(o, "layerfs_layer_digest_mismatch{mount=\"%s\",layer=\"%s\"} %llu\n", m->mount,
		    labels[i], (unsigned long long)st->layers[i].digest_mismatch);
	family(o, "entry_problems", "gauge",
	       "Entries found at mount not to be served as declared, by reason (only reasons a layer has).");
	for (size_t i = 0; i < st->nlayers; i++)
		for (int p = 0; p < LFS_PROBLEM_COUNT; p++)
			if (st->layers[i].problems[p])
				put(o, "layerfs_entry_problems{mount=\"%s\",layer=\"%s\",reason=\"%s\"} %llu\n",
				    m->mount, labels[i], lfs_problem_name((enum lfs_problem)p),
				    (unsigned long long)st->layers[i].problems[p]);
	sample(o, m, "read_errors_total", "counter", "Read requests answered with an error.",
	       (double)get(&m->read_errors));
	family(o, "read_duration_seconds", "histogram", "How long read requests took to answer.");
	for (size_t b = 0; b <= NBUCKETS; b++) {
		cum += get(&m->buckets[b]);
		if (b < NBUCKETS)
			put(o, "layerfs_read_duration_seconds_bucket{mount=\"%s\",le=\"%g\"} %llu\n",
			    m->mount, (double)bucket_us[b] / 1e6, (unsigned long long)cum);
		else
			put(o, "layerfs_read_duration_seconds_bucket{mount=\"%s\",le=\"+Inf\"} %llu\n",
			    m->mount, (unsigned long long)cum);
	}
	put(o, "layerfs_read_duration_seconds_sum{mount=\"%s\"} %.9f\n", m->mount,
	    (double)get(&m->sum_ns) / 1e9);
	put(o, "layerfs_read_duration_seconds_count{mount=\"%s\"} %llu\n", m->mount,
	    (unsigned long long)cum);
	family(o, "requests_total", "counter", "Requests the kernel sent, by kind.");
	for (int op = 0; op < LFS_OP_COUNT; op++)
		put(o, "layerfs_requests_total{mount=\"%s\",op=\"%s\"} %llu\n", m->mount,
		    op_names[op], (unsigned long long)get(&m->op_count[op]));
	family(o, "request_service_seconds_total", "counter",
	       "Time spent answering requests, by kind (not the time they waited for a worker).");
	for (int op = 0; op < LFS_OP_COUNT; op++)
		put(o, "layerfs_request_service_seconds_total{mount=\"%s\",op=\"%s\"} %.9f\n",
		    m->mount, op_names[op], (double)get(&m->op_ns[op]) / 1e9);
	sample(o, m, "cache_budget_bytes", "gauge", "The block cache's budget.", (double)r->cache.budget);
	sample(o, m, "cache_bytes", "gauge", "Bytes the block cache holds.", (double)r->cache.bytes);
	sample(o, m, "cache_entries", "gauge", "Blocks, resume points and streams cached.",
	       (double)r->cache.entries);
	sample(o, m, "cache_hits_total", "counter", "Blocks found in the cache.", (double)r->cache.hits);
	sample(o, m, "cache_misses_total", "counter", "Blocks not found in the cache.",
	       (double)r->cache.misses);
	sample(o, m, "cache_evictions_total", "counter", "Cache entries evicted.",
	       (double)r->cache.evictions);
	sample(o, m, "resume_points", "gauge", "Resume points cached.", (double)r->cache.resume_points);
	sample(o, m, "resume_points_made_total", "counter", "Resume points made.",
	       (double)r->resume_points_made);
	sample(o, m, "stream_waits_total", "counter", "Reads that waited for another thread's stream.",
	       (double)r->stream_waits);
	sample(o, m, "readahead_jobs_total", "counter", "Read-ahead jobs started.",
	       (double)r->readahead_jobs);
	sample(o, m, "pool_queued", "gauge", "Jobs waiting for the inflate pool.", (double)r->pool.queued);
}

int lfs_metrics_prometheus(struct lfs_metrics *m, struct lfs_stack *s, char *buf, size_t size)
{
	struct lfs_stack_stats *st = malloc(sizeof(*st));
	char *labels[LFS_TREE_MAX_LAYERS] = { 0 };
	struct out o = { buf, size, 0, 0 };

	if (!st)
		return -ENOMEM;
	lfs_stack_get_stats(s, st);
	for (size_t i = 0; i < st->nlayers; i++)
		if (!(labels[i] = escape_label(st->layers[i].label)))
			o.rc = -ENOMEM;
	if (size)
		buf[0] = '\0';
	if (!o.rc)
		render(&o, m, st, labels);
	for (size_t i = 0; i < st->nlayers; i++)
		free(labels[i]);
	free(st);
	return finish(&o);
}

int lfs_metrics_write_file(struct lfs_metrics *m, struct lfs_stack *s, int dirfd,
			   const char *name)
{
	char tmp[512];
	size_t cap = 64 << 10;
	char *buf = NULL;
	int n = -ERANGE, fd, rc = 0;

	while (n == -ERANGE && cap <= (16u << 20)) {
		char *grown = realloc(buf, cap);

		if (!grown) {
			free(buf);
			return -ENOMEM;
		}
		buf = grown;
		n = lfs_metrics_prometheus(m, s, buf, cap);
		cap *= 4;
	}
	if (n < 0) {
		free(buf);
		return n;
	}
	/* a dot file: the textfile collector reads only *.prom */
	if (snprintf(tmp, sizeof(tmp), ".%s.%ld", name, (long)getpid()) >= (int)sizeof(tmp)) {
		free(buf);
		return -ENAMETOOLONG;
	}
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0) {
		free(buf);
		return -errno;
	}
	if (write(fd, buf, (size_t)n) != n)
		rc = errno ? -errno : -EIO;
	/* readable by node_exporter's user whatever the umask */
	if (!rc && fchmod(fd, 0644))
		rc = -errno;
	if (close(fd) && !rc)
		rc = -errno;
	if (!rc && renameat(dirfd, tmp, dirfd, name))
		rc = -errno;
	if (rc)
		unlinkat(dirfd, tmp, 0);
	free(buf);
	return rc;
}
