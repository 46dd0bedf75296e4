#include "options.h"

#include "log.h"
#include "uring.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_LAYERS 5	/* the platform's limit */
#define DEFAULT_MAX_ENTRIES 1000000ull
#define DEFAULT_MAX_TOTAL 4000000ull
#define DEFAULT_MAX_NAME 65535	/* a guard against absurd names, not a limit of paths */
#define DEFAULT_TIMEOUT 86400.0	/* the tree never changes */
#define DEFAULT_MAX_READ (1u << 20)
#define DEFAULT_READAHEAD (8u << 20) /* docs/performance.md */
#define MAX_TIMEOUT (10.0 * 365 * 86400)
#define DEFAULT_CACHE_LEVEL 1	/* docs/performance.md */
#define DEFAULT_CACHE_DIR_MIN (256u << 10) /* docs/performance.md */
#define MAX_REMOTE_TIMEOUT 3600.0

enum type {
	T_SIZE,		/* bytes, with K/M/G */
	T_COUNT,	/* a plain number */
	T_SECONDS,
	T_STRING,
	T_CHOICE,	/* one of the words of arg, "a|b|c": its index */
	T_FLAG,		/* no value */
};

/* Where a value goes. */
enum target {
	O_CACHE_SIZE, O_BLOCK_SIZE, O_SPACING, O_READAHEAD, O_MAX_READ, O_THREADS,
	O_ENTRY_TIMEOUT, O_ATTR_TIMEOUT, O_TIMEOUT, O_UID, O_GID, O_MAX_LAYERS,
	O_MAX_ENTRIES, O_MAX_TOTAL, O_MAX_NAME, O_CACHE_DIR, O_CACHE_DIR_SIZE, O_CACHE_DIR_MIN,
	O_CACHE_LEVEL,
	O_TRACE, O_TRACE_SECONDS, O_PREFETCH, O_PREFETCH_JUMPS, O_PREFETCH_PUSH, O_SCHED, O_DIRPLUS, O_URING, O_URING_THREADS, O_URING_IDLE, O_DEBUG, O_JOURNAL,
	O_USER, O_SECCOMP, O_ADMIN_GROUP, O_PROVENANCE, O_METRICS_FILE, O_METRICS_INTERVAL,
	O_FDSTORE,
	O_REMOTE_TIMEOUT, O_REMOTE_CHUNK, O_REMOTE_CACHE, O_REMOTE_CONNS, O_S3_REGION,
	O_S3_ENDPOINT, O_S3_PATH_STYLE, O_S3_PROFILE, O_CA_FILE, O_INSECURE,
};

struct optdef {
	const char *name;
	enum type type;
	enum target target;
	uint64_t min, max;
	const char *arg, *help;	/* for --help: the value's name, one line */
};

static const struct optdef defs[] = {
	{ "cache_size", T_SIZE, O_CACHE_SIZE, 1u << 20, 1ull << 40, "SIZE",
	  "decompressed block cache budget (default 256M)" },
	{ "block_size", T_SIZE, O_BLOCK_SIZE, 4096, 64u << 20, "SIZE",
	  "cache block size, a power of two from 4K to 64M (default 256K)" },
	{ "resume_spacing", T_SIZE, O_SPACING, 4096, 1u << 30, "SIZE",
	  "distance between deflate resume points (default 1M)" },
	{ "readahead", T_SIZE, O_READAHEAD, 0, 1ull << 40, "SIZE",
	  "inflate this far ahead of a sequential reader (default 8M,\n"
	  "                           at most cache_size/4; 0: off)" },
	{ "threads", T_COUNT, O_THREADS, 1, 64, "N",
	  "threads of the inflate pool (read-ahead, hashing; default: cores)" },
	{ "max_read", T_SIZE, O_MAX_READ, 4096, 1u << 20, "SIZE",
	  "largest read request asked of the kernel (default 1M)" },
	{ "entry_timeout", T_SECONDS, O_ENTRY_TIMEOUT, 0, 0, "SECONDS",
	  "how long the kernel caches names and negative lookups\n"
	  "                           (default 86400; the tree never changes)" },
	{ "attr_timeout", T_SECONDS, O_ATTR_TIMEOUT, 0, 0, "SECONDS",
	  "how long the kernel caches attributes (default 86400)" },
	{ "timeout", T_SECONDS, O_TIMEOUT, 0, 0, "SECONDS",
	  "both of the above (kept for older command lines)" },
	{ "uid", T_COUNT, O_UID, 0, UINT32_MAX - 1, "N", "owner of every file (default 0, root)" },
	{ "gid", T_COUNT, O_GID, 0, UINT32_MAX - 1, "N", "group of every file (default 0)" },
	{ "max_layers", T_COUNT, O_MAX_LAYERS, 1, LFS_TREE_MAX_LAYERS, "N",
	  "refuse lists with more layers (default 5, at most 64)" },
	{ "max_entries", T_COUNT, O_MAX_ENTRIES, 1, UINT32_MAX - 1, "N",
	  "refuse layers with more entries (default 1000000)" },
	{ "max_total_entries", T_COUNT, O_MAX_TOTAL, 1, UINT32_MAX - 1, "N",
	  "refuse stacks whose tree is larger (default 4000000)" },
	{ "max_name", T_COUNT, O_MAX_NAME, 1, 65535, "N",
	  "refuse layers with an entry name longer than N bytes\n"
	  "                           (default 65535; names no lookup can reach are\n"
	  "                           skipped with a warning)" },
	{ "cache_dir", T_STRING, O_CACHE_DIR, 0, 0, "DIR",
	  "the host's cache directory: layer digests and decompressed\n"
	  "                           blocks on disk, shared by every mount on the host\n"
	  "                           (default: none, the cache is the daemon's memory)" },
	{ "cache_dir_size", T_SIZE, O_CACHE_DIR_SIZE, 1u << 20, 1ull << 50, "SIZE",
	  "quota of cache_dir (default 4G, or a quarter of its file system)" },
	{ "cache_dir_min", T_SIZE, O_CACHE_DIR_MIN, 0, 1ull << 50, "SIZE",
	  "files smaller than SIZE are not kept in cache_dir: they are\n"
	  "                           read from the layer again, next to their neighbours\n"
	  "                           (default 256K; 0 keeps every file)" },
	{ "cache_level", T_COUNT, O_CACHE_LEVEL, 0, 19, "N",
	  "zstd level of the blocks written to cache_dir (default 1; 0: raw)" },
	{ "trace", T_STRING, O_TRACE, 0, 0, "FILE",
	  "record what the function reads (and the names it misses,\n"
	  "                           the directories it lists) as it starts, into FILE\n"
	  "                           (written when trace_seconds are up, at `layerfs\n"
	  "                           trace stop` or at unmount, whichever is first)" },
	{ "trace_seconds", T_SECONDS, O_TRACE_SECONDS, 0, 0, "SECONDS",
	  "how long a recording lasts from the first read (default 60)" },
	{ "prefetch", T_STRING, O_PREFETCH, 0, 0, "FILE|auto",
	  "replay a recorded trace at mount: make what it names ahead;\n"
	  "                           auto: with cache_dir, record a stack's first start\n"
	  "                           and replay it at its later mounts" },
	{ "prefetch_jumps", T_COUNT, O_PREFETCH_JUMPS, 0, 1, "0|1",
	  "1: a read far into a member no stream is near (an mmap'd\n"
	  "                           library's fault) has the rest of it made ahead\n"
	  "                           (default 0)" },
	{ "prefetch_push", T_COUNT, O_PREFETCH_PUSH, 0, 1, "0|1",
	  "1: a replay also stores what it made into the kernel's\n"
	  "                           page cache once each file is looked up, and looks\n"
	  "                           up the traced missing names and lists the traced\n"
	  "                           directories, so the function's reads, lookups and\n"
	  "                           listings of them never reach the daemon (default 1)" },
	{ "sched", T_CHOICE, O_SCHED, 0, 0, "auto|normal|batch",
	  "scheduling policy of the serving threads (default auto:\n"
	  "                           batch after a read 4 MiB or more into a file read\n"
	  "                           in order, so their wake-ups do not preempt the\n"
	  "                           inflater or the reader; normal otherwise, so small\n"
	  "                           requests are answered at once on a busy host)" },
	{ "uring", T_CHOICE, O_URING, 0, 0, "auto|on|off",
	  "FUSE over io_uring (Linux 6.14+, once root sets\n"
	  "                           /sys/module/fuse/parameters/enable_uring): each\n"
	  "                           request is answered on the CPU that made it.  auto\n"
	  "                           (default): when the kernel offers it and the\n"
	  "                           connection is not kept in an fd store (fdstore);\n"
	  "                           on: also then; off: never" },
	{ "uring_threads", T_COUNT, O_URING_THREADS, 1, 16, "N",
	  "threads serving each CPU's queue, one request each\n"
	  "                           at a time (default 4, fewer past 8 CPUs: at\n"
	  "                           most 32 in all, at least 1 per CPU)" },
	{ "uring_idle", T_CHOICE, O_URING_IDLE, 0, 0, "auto|on|off",
	  "when those threads run as SCHED_IDLE, which keeps a\n"
	  "                           woken caller on its CPU instead of moving it to an\n"
	  "                           idle one, but has them wait behind every other task\n"
	  "                           on a busy CPU.  auto (default): until one is seen\n"
	  "                           waiting behind other processes' tasks, then again\n"
	  "                           after a backoff (needs CAP_SYS_NICE or RLIMIT_NICE\n"
	  "                           20, else never); on (also bare uring_idle):\n"
	  "                           always; off: never" },
	{ "readdirplus", T_CHOICE, O_DIRPLUS, 0, 0, "auto|always|never",
	  "which directory listings carry each entry's attributes\n"
	  "                           (the kernel then makes its inode, sparing a lookup\n"
	  "                           per entry a program stats; a cost for one that only\n"
	  "                           lists, like find).  auto (default): entries of\n"
	  "                           subdirectories always, the others for a thread that\n"
	  "                           has looked up a file; always; never: no\n"
	  "                           READDIRPLUS at all" },
	{ "user", T_STRING, O_USER, 0, 0, "NAME",
	  "the user the daemon serves as once mounted, with no\n"
	  "                           capabilities (default layerfs; root keeps root)" },
	{ "seccomp", T_CHOICE, O_SECCOMP, 0, 0, "kill|log|off",
	  "what a system call outside the serving loop's list does:\n"
	  "                           end the daemon (default), be logged, or nothing" },
	{ "admin_group", T_STRING, O_ADMIN_GROUP, 0, 0, "GROUP",
	  "besides root, who may read the stats and metrics\n"
	  "                           attributes (default: root only)" },
	{ "provenance", T_CHOICE, O_PROVENANCE, 0, 0, "name|path|off",
	  "what user.layerfs.layer shows other users: layer names\n"
	  "                           (default; file names for unnamed layers), zip\n"
	  "                           paths, or nothing" },
	{ "metrics_file", T_STRING, O_METRICS_FILE, 0, 0, "PATH",
	  "write Prometheus metrics there every metrics_interval\n"
	  "                           (node_exporter's textfile collector)" },
	{ "metrics_interval", T_SECONDS, O_METRICS_INTERVAL, 0, 0, "SECONDS",
	  "how often metrics_file is written (default 15)" },
	{ "fdstore", T_FLAG, O_FDSTORE, 0, 0, NULL,
	  "with -f under systemd: keep the mount's connection in the\n"
	  "                           unit's fd store, for the next start to take over" },
	{ "remote_timeout", T_SECONDS, O_REMOTE_TIMEOUT, 0, 0, "SECONDS",
	  "longest a read of a remote layer may wait, retries\n"
	  "                           included, then EIO (default 30)" },
	{ "remote_chunk_size", T_SIZE, O_REMOTE_CHUNK, 4096, 16u << 20, "SIZE",
	  "remote layers are fetched in aligned chunks of SIZE, a\n"
	  "                           power of two from 4K to 16M (default 256K)" },
	{ "remote_cache_size", T_SIZE, O_REMOTE_CACHE, 1u << 20, 1ull << 32, "SIZE",
	  "fetched chunks kept in memory, per remote layer (default 16M)" },
	{ "remote_connections", T_COUNT, O_REMOTE_CONNS, 1, 64, "N",
	  "requests at once per remote layer, each on a kept-alive\n"
	  "                           connection (default 4)" },
	{ "s3_region", T_STRING, O_S3_REGION, 0, 0, "REGION",
	  "region of s3:// layers (default $AWS_REGION,\n"
	  "                           $AWS_DEFAULT_REGION, else us-east-1)" },
	{ "s3_endpoint", T_STRING, O_S3_ENDPOINT, 0, 0, "URL",
	  "S3 endpoint, https://host[:port] (default $AWS_ENDPOINT_URL_S3,\n"
	  "                           $AWS_ENDPOINT_URL, else AWS's for the region)" },
	{ "s3_path_style", T_FLAG, O_S3_PATH_STYLE, 0, 0, NULL,
	  "the bucket in the path, not the host name (S3-compatible stores)" },
	{ "s3_profile", T_STRING, O_S3_PROFILE, 0, 0, "NAME",
	  "profile of the shared credentials file (default $AWS_PROFILE,\n"
	  "                           else default)" },
	{ "ca_file", T_STRING, O_CA_FILE, 0, 0, "FILE",
	  "verify https against the CAs in FILE (PEM) instead of the system's" },
	{ "insecure", T_FLAG, O_INSECURE, 0, 0, NULL,
	  "do not verify https certificates of remote layers (never the default)" },
	{ "debug", T_FLAG, O_DEBUG, 0, 0, NULL, "log at debug level (also -d)" },
	{ "journal", T_FLAG, O_JOURNAL, 0, 0, NULL,
	  "prefix log lines with syslog priorities (for journald)" },
};

#define NDEFS (sizeof(defs) / sizeof(defs[0]))

enum { KEY_FOREGROUND = 1000, KEY_DEBUG, KEY_STRICT };

void lfs_options_usage(FILE *out)
{
	fputs("usage: layerfs mount [-f] [-d] [-o OPTION[,OPTION...]] LIST MOUNTPOINT\n"
	      "       layerfs check [--strict] [-o OPTION[,OPTION...]] LIST\n"
	      "       layerfs umount MOUNTPOINT\n"
	      "       layerfs stats [--format=text|prometheus] MOUNTPOINT\n"
	      "       layerfs dropcache MOUNTPOINT\n"
	      "       layerfs cache stats|verify|prune|clear [-o cache_dir=DIR,...]\n"
	      "       layerfs trace stop MOUNTPOINT\n"
	      "       layerfs LIST MOUNTPOINT [-o OPTIONS]   (as run by mount.fuse3)\n"
	      "       layerfs --help | --version\n"
	      "\n"
	      "Mounts an ordered stack of layer zips (LIST: one zip per line, lowest\n"
	      "first) as one merged, read-only tree, without extracting anything.\n"
	      "\n"
	      "mount options:\n"
	      "  -f                       stay in the foreground (as under systemd)\n"
	      "  -d                       debug log (same as -o debug)\n",
	      out);
	for (size_t i = 0; i < NDEFS; i++) {
		char head[64];

		snprintf(head, sizeof(head), "-o %s%s%s", defs[i].name, defs[i].arg ? "=" : "",
			 defs[i].arg ? defs[i].arg : "");
		if (strlen(head) > 22)
			fprintf(out, "  %s\n  %-22s   %s\n", head, "", defs[i].help);
		else
			fprintf(out, "  %-22s   %s\n", head, defs[i].help);
	}
	fputs("  -o allow_other, -o ...   any other option is passed to FUSE (see mount.fuse3(8));\n"
	      "                           the mount is always ro,nosuid,nodev,default_permissions\n"
	      "SIZE takes a K, M or G suffix (powers of 1024).\n"
	      "\n"
	      "check      opens LIST as mount would, without mounting: reports each layer\n"
	      "           and warns where the platform's limits (5 layers, 262,144,000 bytes\n"
	      "           unzipped, 50 MB per uploaded zip) would be exceeded, and counts\n"
	      "           entries with problems; --strict exits 1 on any warning or problem.\n"
	      "umount     unmounts MOUNTPOINT; the daemon exits.\n"
	      "stats      prints the running daemon's counters (hits, misses, bytes\n"
	      "           inflated, bytes read from the zips, ...), one 'key value' a line,\n"
	      "           or in Prometheus's text format; root (or admin_group) only.\n"
	      "dropcache  drops the daemon's cached blocks (keeps resume points).\n"
	      "trace stop ends the daemon's recording (-o trace) and writes the trace.\n"
	      "cache      the host's cache directory (default /var/cache/layerfs): stats\n"
	      "           (size, quota, layers, hit rates), verify (checks every record,\n"
	      "           drops bad ones), prune (down to cache_dir_size), clear.\n"
	      "\n"
	      "Every path carries the extended attribute user.layerfs.layer naming the\n"
	      "layer(s) that provide it.  See layerfs(1).\n",
	      out);
}

/* A number with an optional K/M/G suffix (and "iB"/"B"), without wrapping. */
static int parse_number(const char *s, int suffixes, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	errno = 0;
	if (s[0] < '0' || s[0] > '9')
		return -1;
	v = strtoull(s, &end, 10);
	if (errno)
		return -1;
	if (suffixes) {
		switch (*end) {
		case 'k': case 'K': shift = 10; end++; break;
		case 'm': case 'M': shift = 20; end++; break;
		case 'g': case 'G': shift = 30; end++; break;
		default: break;
		}
		if (*end == 'i' && end[1] == 'B')
			end += 2;
		else if (*end == 'B')
			end++;
	}
	if (*end || (shift && v > (UINT64_MAX >> shift)))
		return -1;
	*out = (uint64_t)v << shift;
	return 0;
}

static int bad(const struct optdef *d, const char *val, const char *why)
{
	lfs_err("-o %s=%s: %s", d->name, val, why);
	return -1;
}

/* A string option: a copy owned by o, pointed to from the stack's config. */
static int keep(char **own, const char **use, const char *val)
{
	free(*own);
	*own = strdup(val);
	*use = *own;
	return *own ? 0 : -1;
}

static int apply(struct lfs_options *o, const struct optdef *d, const char *val)
{
	uint64_t v = 0;
	char why[128];

	switch (d->type) {
	case T_FLAG:
		if (val)
			return bad(d, val, "takes no value");
		break;
	case T_STRING:
		if (!val || !val[0])
			return bad(d, val ? val : "", "needs a value");
		break;
	case T_CHOICE: {
		const char *w = d->arg;
		size_t n = val ? strlen(val) : 0;

		if (!val && d->target == O_URING_IDLE) {
			v = LFS_URING_IDLE_ON; /* the flag it was before auto */
			break;
		}
		for (v = 0; val && w; v++, w = strchr(w, '|') ? strchr(w, '|') + 1 : NULL)
			if (!strncmp(w, val, n) && (w[n] == '|' || !w[n]))
				break;
		if (!val || !w) {
			snprintf(why, sizeof(why), "is one of %s", d->arg ? d->arg : "");
			return bad(d, val ? val : "", why);
		}
		break;
	}
	case T_SECONDS: {
		char *end;
		double sec;

		if (!val)
			return bad(d, "", "needs a number of seconds");
		errno = 0;
		sec = strtod(val, &end);
		if (d->target == O_REMOTE_TIMEOUT) {
			if (errno || end == val || *end || !(sec > 0) || sec > MAX_REMOTE_TIMEOUT)
				return bad(d, val, "needs a number of seconds above 0, at most 3600");
			o->stack.http.remote_timeout = sec;
			return 0;
		}
		if (errno || end == val || *end || !(sec >= 0) || sec > MAX_TIMEOUT)
			return bad(d, val, "needs a number of seconds from 0 to 10 years");
		if (d->target == O_TRACE_SECONDS) {
			o->trace_seconds = sec;
			return 0;
		}
		if (d->target == O_ENTRY_TIMEOUT || d->target == O_TIMEOUT)
			o->entry_timeout = sec;
		if (d->target == O_ATTR_TIMEOUT || d->target == O_TIMEOUT)
			o->attr_timeout = sec;
		if (d->target == O_METRICS_INTERVAL) {
			if (sec < 1)
				return bad(d, val, "needs at least 1 second");
			o->metrics_interval = sec;
		}
		return 0;
	}
	case T_SIZE:
	case T_COUNT:
		if (!val || parse_number(val, d->type == T_SIZE, &v))
			return bad(d, val ? val : "", d->type == T_SIZE
						      ? "needs a size (a number, K, M or G)"
						      : "needs a number");
		if (v < d->min || v > d->max) {
			snprintf(why, sizeof(why), "out of range (%llu to %llu)",
				 (unsigned long long)d->min, (unsigned long long)d->max);
			return bad(d, val, why);
		}
		if ((d->target == O_BLOCK_SIZE || d->target == O_REMOTE_CHUNK) && (v & (v - 1)))
			return bad(d, val, "must be a power of two");
		break;
	}
	switch (d->target) {
	case O_CACHE_SIZE: o->stack.reader.cache_size = v; break;
	case O_BLOCK_SIZE: o->stack.reader.block_size = (uint32_t)v; break;
	case O_SPACING: o->stack.reader.spacing = (uint32_t)v; break;
	case O_READAHEAD: o->stack.reader.readahead = v; break;
	case O_PREFETCH_JUMPS: o->stack.reader.prefetch_jumps = (int)v; break;
	case O_PREFETCH_PUSH: o->prefetch_push = (int)v; break;
	case O_THREADS: o->stack.reader.threads = (unsigned)v; break;
	case O_MAX_READ: o->max_read = (unsigned)v; break;
	case O_UID: o->stack.uid = (uid_t)v; break;
	case O_GID: o->stack.gid = (gid_t)v; break;
	case O_MAX_LAYERS: o->stack.max_layers = (size_t)v; break;
	case O_MAX_ENTRIES: o->stack.max_entries = v; break;
	case O_MAX_TOTAL: o->stack.max_total_entries = v; break;
	case O_MAX_NAME: o->stack.max_name = (size_t)v; break;
	case O_CACHE_DIR:
		free(o->cache_dir);
		o->cache_dir = strdup(val);
		if (!o->cache_dir)
			return -1;
		o->stack.cache_dir = o->cache_dir;
		break;
	case O_TRACE:
	case O_PREFETCH: {
		char **slot = d->target == O_TRACE ? &o->trace : &o->prefetch;

		free(*slot);
		*slot = strdup(val);
		if (!*slot)
			return -1;
		break;
	}
	case O_TRACE_SECONDS: break;
	case O_REMOTE_CHUNK: o->stack.http.chunk_size = (size_t)v; break;
	case O_REMOTE_CACHE: o->stack.http.cache_bytes = (size_t)v; break;
	case O_REMOTE_CONNS: o->stack.http.connections = (unsigned)v; break;
	case O_S3_REGION: return keep(&o->s3_region, &o->stack.http.s3_region, val);
	case O_S3_ENDPOINT: return keep(&o->s3_endpoint, &o->stack.http.s3_endpoint, val);
	case O_S3_PROFILE: return keep(&o->s3_profile, &o->stack.http.s3_profile, val);
	case O_CA_FILE: return keep(&o->ca_file, &o->stack.http.ca_file, val);
	case O_S3_PATH_STYLE: o->stack.http.s3_path_style = 1; break;
	case O_INSECURE: o->stack.http.insecure = 1; break;
	case O_REMOTE_TIMEOUT: break;
	case O_CACHE_DIR_SIZE: o->stack.cache_dir_size = v; break;
	case O_CACHE_DIR_MIN: o->stack.reader.disk_min = v; break;
	case O_CACHE_LEVEL: o->stack.cache_level = (int)v; break;
	case O_SCHED: o->sched = (enum lfs_sched)v; break;
	case O_DIRPLUS: o->dirplus = (enum lfs_dirplus)v; break;
	case O_URING: o->uring = (enum lfs_uring_mode)v; break;
	case O_URING_THREADS: o->uring_threads = (unsigned)v; break;
	case O_URING_IDLE: o->uring_idle = (int)v; break;
	case O_SECCOMP: o->seccomp = (int)v; break;
	case O_PROVENANCE: o->provenance = (int)v; break;
	case O_USER: case O_ADMIN_GROUP: case O_METRICS_FILE: {
		char **slot = d->target == O_USER ? &o->user
			    : d->target == O_ADMIN_GROUP ? &o->admin_group : &o->metrics_file;

		free(*slot);
		*slot = strdup(val);
		if (!*slot)
			return -1;
		break;
	}
	case O_DEBUG: o->debug = 1; break;
	case O_FDSTORE: o->fdstore = 1; break;
	case O_JOURNAL: o->journal = 1; break;
	case O_ENTRY_TIMEOUT: case O_ATTR_TIMEOUT: case O_TIMEOUT: case O_METRICS_INTERVAL: break;
	}
	return 0;
}

static int proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct lfs_options *o = data;

	(void)outargs;
	switch (key) {
	case KEY_FOREGROUND:
		o->foreground = 1;
		return 0;
	case KEY_DEBUG:
		o->debug = 1;
		return 0;
	case KEY_STRICT:
		o->strict = 1;
		return 0;
	case FUSE_OPT_KEY_NONOPT:
		if (o->npos == 2) {
			lfs_err("too many arguments (see layerfs --help)");
			return -1;
		}
		o->pos[o->npos++] = arg;
		return 0;
	case FUSE_OPT_KEY_OPT:
		if (arg[0] == '-' && strcmp(arg, "-o")) {
			lfs_err("unknown option %s (see layerfs --help)", arg);
			return -1;
		}
		for (size_t i = 0; i < NDEFS; i++) {
			size_t n = strlen(defs[i].name);

			if (!strncmp(arg, defs[i].name, n) && (arg[n] == '=' || !arg[n]))
				return apply(o, &defs[i], arg[n] ? arg + n + 1 : NULL) ? -1 : 0;
		}
		return 1; /* FUSE's (allow_other, ...) */
	}
	return 1;
}

int lfs_options_parse(int argc, char **argv, struct lfs_options *o)
{
	static const struct fuse_opt opts[] = {
		FUSE_OPT_KEY("-f", KEY_FOREGROUND),
		FUSE_OPT_KEY("-d", KEY_DEBUG),
		FUSE_OPT_KEY("--strict", KEY_STRICT),
		FUSE_OPT_END,
	};
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);

	memset(o, 0, sizeof(*o));
	o->stack.max_layers = DEFAULT_MAX_LAYERS;
	o->stack.max_entries = DEFAULT_MAX_ENTRIES;
	o->stack.max_total_entries = DEFAULT_MAX_TOTAL;
	o->stack.max_name = DEFAULT_MAX_NAME;
	o->stack.reader.readahead = DEFAULT_READAHEAD;
	o->prefetch_push = 1;
	o->entry_timeout = DEFAULT_TIMEOUT;
	o->attr_timeout = DEFAULT_TIMEOUT;
	o->max_read = DEFAULT_MAX_READ;
	o->sched = LFS_SCHED_AUTO; /* docs/performance.md: small requests wait for a batch worker */
	o->stack.cache_level = DEFAULT_CACHE_LEVEL;
	o->stack.reader.disk_min = DEFAULT_CACHE_DIR_MIN;
	o->trace_seconds = 60;
	o->metrics_interval = 15;
	if (fuse_opt_parse(&args, o, opts, proc)) {
		fuse_opt_free_args(&args);
		return -1;
	}
	o->fuse_args = args;
	if (o->prefetch && !strcmp(o->prefetch, "auto") && !o->cache_dir) {
		lfs_err("prefetch=auto keeps its traces in the host cache: it needs cache_dir");
		return -1;
	}
	return 0;
}

void lfs_options_free(struct lfs_options *o)
{
	fuse_opt_free_args(&o->fuse_args);
	free(o->cache_dir);
	free(o->trace);
	free(o->prefetch);
	o->cache_dir = o->trace = o->prefetch = NULL;
	free(o->user);
	free(o->admin_group);
	free(o->metrics_file);
	o->cache_dir = o->user = o->admin_group = o->metrics_file = NULL;
	free(o->s3_region);
	free(o->s3_endpoint);
	free(o->s3_profile);
	free(o->ca_file);
	o->cache_dir = o->s3_region = o->s3_endpoint = o->s3_profile = o->ca_file = NULL;
}
