/* Remote sources: ranged GETs over libcurl, for http(s):// and s3:// layers.
 *
 * The contract is in source_http.h.  How it is built:
 *
 * - One mutex per source (`lock`) guards the chunk table, its LRU list, the
 *   pool of easy handles and the read-ahead queue.  It is never held across
 *   a transfer, an allocation of a transfer's buffers or a wait: a thread
 *   that must fetch claims its chunks (state FETCHING) under the lock, lets
 *   go, runs the transfer, and takes the lock again to publish the result
 *   and wake the waiters.  A thread that finds a chunk FETCHING waits on
 *   `chunk_cv` (bounded by its own deadline) instead of asking again.
 *   A thread fetches all the chunks it claimed before it waits for any
 *   chunk claimed by another, so two readers never wait for each other.
 * - Every easy handle of a source uses the source's curl share, which holds
 *   the connection cache, DNS and TLS sessions: the pool's handles reuse
 *   each other's kept-alive connections, the open's included.
 * - A response is checked before its first byte is stored: the status, the
 *   Content-Range against the range asked for, the total size and ETag
 *   against those pinned at open.  Anything unproven aborts the transfer.
 * - The listed SHA-256 is checked by a hasher thread (dg_main) that walks
 *   the chunks in order: chunks are marked in `dg_seen` as they become
 *   ready (publish), and the hasher, woken on `dg_cv` when the chunk it
 *   needs next arrives (or is written to the disk, or the last one was
 *   fetched), hashes each from memory with a reference held and no lock,
 *   else as lfs_hash_step says (coverage.h). */
#include "source_http.h"

#include "coverage.h"
#include "curl_lazy.h"
#include "digest.h"
#include "disk.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#ifndef LAYERFS_VERSION
#define LAYERFS_VERSION "0"
#endif
#ifndef CURL_WRITEFUNC_ERROR
#define CURL_WRITEFUNC_ERROR 0
#endif

#define RANGE_IGNORED_MAX (4u << 20)	/* a 200 is used when the bytes lie within this */
#define ERR_BODY_MAX 2048		/* of an error response, enough for S3's XML */
#define NBUCKETS 256
#define RA_QUEUE 8
#define WR_QUEUE 64	/* chunks waiting for the disk; past that they are not written */
#define HEAD_MAGIC "layerfs object head 1\n"
#ifndef SEQ_RUN
#define SEQ_RUN (2u << 20) /* bytes read in a row before fetching ahead (docs/remote.md) */
#endif
#define SEQ_SLOTS 8	/* readers going in order, followed at once */
#define SEQ_GAP 4096	/* a read this close to where one ended continues it
			 * (a data descriptor, a local header skipped) */
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

enum kind {
	K_OK,
	K_TIMEOUT,
	K_CONNECT,
	K_TRANSFER,	/* retried: reset, short body */
	K_FATAL,	/* not retried: TLS verification, redirects, protocol */
	K_THROTTLED,
	K_5XX,
	K_4XX,
	K_RANGE,
	K_STALE,
};

enum chunk_state { CH_FETCHING, CH_READY, CH_FAILED };

struct chunk {
	uint64_t index;
	unsigned char *data;
	size_t len;		/* the last chunk before the tail may be short */
	int state;		/* enum chunk_state; under lock */
	int err;		/* CH_FAILED: negative errno */
	int refs;		/* readers using it and the fetcher; under lock */
	int in_table;
	int by_readahead;	/* its fetcher was read-ahead (which does not retry) */
	struct chunk *hnext;
	struct chunk *lru_prev, *lru_next; /* READY chunks in the table */
};

struct ra_range {
	uint64_t off, len;
};

/* A reader going through the object in order: where its last read ended,
 * how many bytes in a row it has read. */
struct seq_run {
	uint64_t end, run;
	uint64_t used;			/* the clock at its last read; 0: free */
};

struct http_source {
	struct lfs_source src;		/* first: the public part */
	struct lfs_http_config cfg;	/* defaults filled in; no strings kept */
	char *url;			/* the request URL: may carry a presigned query, never printed */
	char *ca_file;
	char name[LFS_SOURCE_ID_MAX];	/* the URL for messages: no query, no user information */
	int https;
	/* S3 signing; NULL for plain http(s) */
	char *sigv4;			/* "aws:amz:REGION:s3" */
	char *access_key, *secret_key;
	char *token_header;		/* "x-amz-security-token: ..." */
	/* pinned at open */
	char etag[256];
	int etag_weak;			/* If-Match needs a strong ETag */
	char last_modified[64];
	unsigned char *tail;		/* bytes [tail_off, size) */
	uint64_t tail_off;
	int stale;			/* atomic */

	CURLSH *share;
	pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];

	pthread_mutex_t lock;
	pthread_cond_t chunk_cv;	/* a chunk left CH_FETCHING */
	pthread_cond_t pool_cv;		/* a handle came back */
	pthread_cond_t ra_cv;		/* read-ahead queue or stop */
	CURL **free_handles;		/* [cfg.connections]; under lock */
	unsigned nfree, nmade;
	struct chunk *buckets[NBUCKETS];
	struct chunk lru;		/* sentinel: lru.lru_next is the most recent */
	uint64_t cached;		/* chunk bytes in the table */
	pthread_t ra_thread;
	int ra_started, stopping;	/* stopping: atomic as well (progress callback) */
	int threads_ok;			/* 0 until threads may start (defer_threads) */
	struct ra_range ra_queue[RA_QUEUE];
	unsigned ra_head, ra_count;
	struct seq_run seq[SEQ_SLOTS];
	uint64_t seq_clock;
	char last_err[512];

	/* The disk tier: NULL, or the object's records.  Chunks there carry
	 * `version_key`: what the object's bytes are as pinned at open. */
	struct lfs_disk_object *dobj;
	unsigned char version_key[LFS_DIGEST_LEN];
	int keyed_by_sha;		/* the records are under the listed SHA-256 */
	/* The writer: fetched chunks (a reference each) on their way to the
	 * disk; under lock. */
	pthread_t wr_thread;
	int wr_started;
	pthread_cond_t wr_cv;
	struct chunk *wr_queue[WR_QUEUE];
	unsigned wr_head, wr_count;
	uint64_t wr_pending;		/* atomic: queued or being written */

	/* The listed SHA-256, checked against every byte; hc.digest_state is
	 * where it stands (atomic).  dg_seen.bits is NULL when nothing is
	 * checked. */
	unsigned char dg_listed[LFS_DIGEST_LEN];
	void *dg_ctx;
	struct lfs_coverage dg_seen;	/* chunks ready at least once; under lock */
	uint64_t dg_next;		/* chunks hashed, in order; under lock */
	int dg_disk_missed;		/* chunk dg_next was not on disk ... */
	uint64_t dg_disk_gen;		/* ... when hc.disk_writes was this */
	pthread_t dg_thread;
	int dg_started;			/* under lock */
	pthread_cond_t dg_cv;		/* the next chunk came, a chunk was written, stop */

	struct lfs_http_counters hc;	/* atomic adds */
};

/* One HTTP request and what its response said. */
struct xfer {
	struct http_source *hs;
	int opening;			/* the tail GET of open: the range is learnt */
	uint64_t start, len;		/* the bytes wanted */
	unsigned char *dst;		/* where they go, or: */
	struct chunk **chunks;		/* consecutive chunks from start */
	struct curl_slist *headers;
	/* the response (the last one after redirects) */
	long status;
	char reason[64];
	int have_range, range_star;
	uint64_t cr_start, cr_end, cr_total;
	int64_t content_length;
	char etag[256];
	char last_modified[64];
	int multipart, encoded;
	const char *if_none_match;	/* the open: the ETag the disk holds, or NULL */
	int not_modified;		/* the open was answered 304 */
	/* the body */
	int checked;
	enum kind verdict;		/* set when checking the response refused it */
	char why[160];			/* what the check found */
	uint64_t skip, got;
	int done;			/* every wanted byte arrived */
	char body[ERR_BODY_MAX + 1];
	size_t body_len;
	char curl_err[CURL_ERROR_SIZE];
	/* the outcome */
	enum kind kind;
	int rc;
	char msg[512];
};

static const struct lfs_source_ops http_ops;

static void add(uint64_t *c, uint64_t n) { __atomic_add_fetch(c, n, __ATOMIC_RELAXED); }

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct timespec abs_time(double t)
{
	struct timespec ts;

	ts.tv_sec = (time_t)t;
	ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
	return ts;
}

static void sleep_s(double s)
{
	struct timespec ts;

	if (s <= 0)
		return;
	ts.tv_sec = (time_t)s;
	ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Jitter only: a per-thread xorshift is enough. */
static double random01(void)
{
	static __thread uint64_t x;

	if (!x) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		x = ((uint64_t)ts.tv_nsec << 20 ^ (uint64_t)(uintptr_t)&x) | 1;
	}
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return (double)(x >> 11) / 9007199254740992.0;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
	curl_init_rc = lfs_curl_error() ? CURLE_FAILED_INIT : curl_global_init(CURL_GLOBAL_DEFAULT);
}

int lfs_source_http_is_url(const char *name)
{
	return !strncasecmp(name, "http://", 7) || !strncasecmp(name, "https://", 8) ||
	       !strncasecmp(name, "s3://", 5);
}

/* --- names and identities --------------------------------------------- */

/* Copies at most len bytes of s, printable ASCII only: server text goes
 * into one-line messages. */
static void copy_printable(char *dst, size_t size, const char *s, size_t len)
{
	size_t n = 0;

	for (size_t i = 0; i < len && s[i] && n + 1 < size; i++)
		dst[n++] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
	if (size)
		dst[n] = 0;
}

/* A URL that does not parse, for a message: up to the query or fragment,
 * without anything between "://" and an '@' (user information). */
static void name_unparsed(char *dst, size_t size, const char *url)
{
	const char *p = strstr(url, "://"), *at;
	size_t n = strcspn(url, "?#");

	if (!p || (size_t)(p - url) > n) {
		copy_printable(dst, size, url, n);
		return;
	}
	p += 3;
	at = memchr(p, '@', n - (size_t)(p - url));
	if (!at) {
		copy_printable(dst, size, url, n);
		return;
	}
	copy_printable(dst, size, url, (size_t)(p - url));
	copy_printable(dst + strlen(dst), size - strlen(dst), at + 1, n - (size_t)(at + 1 - url));
}

/* scheme://host[:port]/path of url: no user information, no query, no
 * fragment.  NULL when url does not parse. */
static char *redact_url(const char *url)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *out = NULL;

	if (!u)
		return NULL;
	if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
		size_t n;

		(void)curl_url_get(u, CURLUPART_PORT, &port, 0);
		(void)curl_url_get(u, CURLUPART_PATH, &path, 0);
		n = strlen(scheme) + strlen(host) + (port ? strlen(port) : 0) +
		    (path ? strlen(path) : 0) + 8;
		out = malloc(n);
		if (out)
			snprintf(out, n, "%s://%s%s%s%s", scheme, host, port ? ":" : "",
				 port ? port : "", path ? path : "");
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_free(path);
	curl_url_cleanup(u);
	return out;
}

static uint64_t fnv64(const char *s, uint64_t h)
{
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	return h;
}

/* An identity that does not fit is cut and followed by two hashes of the
 * whole, so that two long URLs sharing a prefix stay two objects. */
static void set_id(char *dst, const char *s)
{
	if (strlen(s) < LFS_SOURCE_ID_MAX) {
		snprintf(dst, LFS_SOURCE_ID_MAX, "%s", s);
		return;
	}
	snprintf(dst, LFS_SOURCE_ID_MAX, "%.200s ~%016llx%016llx", s,
		 (unsigned long long)fnv64(s, 0xcbf29ce484222325ull),
		 (unsigned long long)fnv64(s, 0x84222325cbf29ce4ull));
}

/* --- S3 ----------------------------------------------------------------- */

static const char *env(const char *name)
{
	const char *v = getenv(name);

	return v && *v ? v : NULL;
}

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
		*--e = 0;
	return s;
}

/* Reads the profile's keys from the shared credentials file, as the SDKs
 * do ("[name]" sections; "[profile name]" accepted too).  Missing file or
 * profile: nothing set, 0. */
static void read_credentials_file(const char *profile, char **akid, char **secret, char **token)
{
	const char *path = env("AWS_SHARED_CREDENTIALS_FILE");
	char buf[1024], def[512];
	FILE *f;
	int in = 0;

	if (!path) {
		const char *home = env("HOME");

		if (!home)
			return;
		snprintf(def, sizeof(def), "%s/.aws/credentials", home);
		path = def;
	}
	f = fopen(path, "re");
	if (!f)
		return;
	while (fgets(buf, sizeof(buf), f)) {
		char *line = trim(buf), *eq;

		if (*line == '#' || *line == ';' || !*line)
			continue;
		if (*line == '[') {
			char *end = strchr(line, ']'), *sec = line + 1;

			if (end)
				*end = 0;
			sec = trim(sec);
			if (!strncmp(sec, "profile ", 8))
				sec = trim(sec + 8);
			in = !strcmp(sec, profile);
			continue;
		}
		eq = strchr(line, '=');
		if (!in || !eq)
			continue;
		*eq = 0;
		line = trim(line);
		eq = trim(eq + 1);
		if (!strcmp(line, "aws_access_key_id") && !*akid)
			*akid = strdup(eq);
		else if (!strcmp(line, "aws_secret_access_key") && !*secret)
			*secret = strdup(eq);
		else if (!strcmp(line, "aws_session_token") && !*token)
			*token = strdup(eq);
	}
	fclose(f);
}

/* A bucket name that can be the first label of a host name. */
static int dns_bucket(const char *b)
{
	size_t n = strlen(b);

	if (n < 3 || n > 63 || b[0] == '.' || b[0] == '-' || b[n - 1] == '.' ||
	    b[n - 1] == '-' || strstr(b, ".."))
		return 0;
	for (; *b; b++)
		if (!((*b >= 'a' && *b <= 'z') || (*b >= '0' && *b <= '9') || *b == '-' || *b == '.'))
			return 0;
	return 1;
}

static int ip_host(const char *host)
{
	unsigned char a[16];

	return host[0] == '[' || inet_pton(AF_INET, host, a) == 1;
}

/* Appends s to dst, percent-encoding all but RFC 3986 unreserved bytes
 * (and '/' when keep_slash), as S3's canonical URI wants it. */
static void append_encoded(char *dst, const char *s, int keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	char *p = dst + strlen(dst);

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
			*p++ = (char)c;
		} else {
			*p++ = '%';
			*p++ = hex[c >> 4];
			*p++ = hex[c & 15];
		}
	}
	*p = 0;
}

/* Turns s3://BUCKET/KEY into the request URL and the signing setup. */
static int setup_s3(struct http_source *hs, const char *url, const struct lfs_http_config *cfg,
		    char *err, size_t errlen)
{
	const char *rest = url + 5, *slash = strchr(rest, '/');
	const char *region = cfg->s3_region ? cfg->s3_region
			     : env("AWS_REGION") ? env("AWS_REGION")
			     : env("AWS_DEFAULT_REGION") ? env("AWS_DEFAULT_REGION") : "us-east-1";
	const char *endpoint = cfg->s3_endpoint ? cfg->s3_endpoint
			       : env("AWS_ENDPOINT_URL_S3") ? env("AWS_ENDPOINT_URL_S3")
			       : env("AWS_ENDPOINT_URL");
	const char *profile = cfg->s3_profile ? cfg->s3_profile
			      : env("AWS_PROFILE") ? env("AWS_PROFILE") : "default";
	char defendpoint[256], *bucket = NULL, *key = NULL, *scheme = NULL, *host = NULL,
	     *port = NULL;
	char *akid = NULL, *secret = NULL, *token = NULL;
	CURLU *u = NULL;
	int rc = -EINVAL, path_style;
	size_t n;

	if (!slash || slash == rest || !slash[1] || strchr(url, '?') || strchr(url, '#')) {
		snprintf(err, errlen, "%s: not an S3 URL (s3://BUCKET/KEY)", hs->name);
		return -EINVAL;
	}
	bucket = strndup(rest, (size_t)(slash - rest));
	key = strdup(slash + 1);
	if (!endpoint) {
		snprintf(defendpoint, sizeof(defendpoint), "https://s3.%s.amazonaws.com", region);
		endpoint = defendpoint;
	}
	u = curl_url();
	if (!bucket || !key || !u) {
		rc = -ENOMEM;
		goto out;
	}
	if (curl_url_set(u, CURLUPART_URL, endpoint, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    (strcmp(scheme, "http") && strcmp(scheme, "https"))) {
		snprintf(err, errlen, "%s: the S3 endpoint is not an http(s) URL", hs->name);
		goto out;
	}
	(void)curl_url_get(u, CURLUPART_PORT, &port, 0);
	/* As the SDKs: the bucket in the host name unless that cannot work
	 * (an IP address, a name that is no host label, dots under https,
	 * where the certificate's wildcard covers one label only). */
	path_style = cfg->s3_path_style || ip_host(host) || !dns_bucket(bucket) ||
		     (!strcmp(scheme, "https") && strchr(bucket, '.'));
	n = strlen(scheme) + strlen(host) + (port ? strlen(port) : 0) + 3 * strlen(bucket) +
	    3 * strlen(key) + 16;
	hs->url = malloc(n);
	if (!hs->url) {
		rc = -ENOMEM;
		goto out;
	}
	if (path_style) {
		snprintf(hs->url, n, "%s://%s%s%s/", scheme, host, port ? ":" : "", port ? port : "");
		append_encoded(hs->url, bucket, 0);
		strcat(hs->url, "/");
	} else {
		snprintf(hs->url, n, "%s://%s.%s%s%s/", scheme, bucket, host, port ? ":" : "",
			 port ? port : "");
	}
	append_encoded(hs->url, key, 1);
	hs->https = !strcmp(scheme, "https");

	if (cfg->s3_access_key && cfg->s3_secret_key) {
		akid = strdup(cfg->s3_access_key);
		secret = strdup(cfg->s3_secret_key);
		token = cfg->s3_session_token ? strdup(cfg->s3_session_token) : NULL;
	} else if (env("AWS_ACCESS_KEY_ID") && env("AWS_SECRET_ACCESS_KEY")) {
		akid = strdup(env("AWS_ACCESS_KEY_ID"));
		secret = strdup(env("AWS_SECRET_ACCESS_KEY"));
		token = env("AWS_SESSION_TOKEN") ? strdup(env("AWS_SESSION_TOKEN")) : NULL;
	} else {
		read_credentials_file(profile, &akid, &secret, &token);
	}
	if (akid && secret) {
		/* Without credentials requests go unsigned (a public bucket). */
		size_t tn = token ? strlen(token) + 32 : 0;

		hs->sigv4 = malloc(strlen(region) + 16);
		if (hs->sigv4)
			sprintf(hs->sigv4, "aws:amz:%s:s3", region);
		hs->access_key = akid;
		hs->secret_key = secret;
		akid = secret = NULL;
		if (token) {
			hs->token_header = malloc(tn);
			if (hs->token_header)
				snprintf(hs->token_header, tn, "x-amz-security-token: %s", token);
		}
		if (!hs->sigv4 || (token && !hs->token_header)) {
			rc = -ENOMEM;
			goto out;
		}
	}
	rc = 0;
out:
	if (secret) {
		memset(secret, 0, strlen(secret));
		free(secret);
	}
	if (token) {
		memset(token, 0, strlen(token));
		free(token);
	}
	free(akid);
	free(bucket);
	free(key);
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return rc;
}

/* --- curl handles ------------------------------------------------------- */

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *arg)
{
	struct http_source *hs = arg;

	(void)h;
	(void)access;
	pthread_mutex_lock(&hs->share_locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *arg)
{
	struct http_source *hs = arg;

	(void)h;
	pthread_mutex_unlock(&hs->share_locks[data]);
}

static int stopping(struct http_source *hs)
{
	return __atomic_load_n(&hs->stopping, __ATOMIC_ACQUIRE);
}

/* Ends read-ahead transfers at close instead of waiting them out. */
static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	(void)dt;
	(void)dn;
	(void)ut;
	(void)un;
	return stopping(arg);
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *arg);
static size_t on_body(char *ptr, size_t size, size_t nmemb, void *arg);

static CURL *make_handle(struct http_source *hs)
{
	CURL *h = curl_easy_init();
	const struct lfs_http_config *c = &hs->cfg;

	if (!h)
		return NULL;
	curl_easy_setopt(h, CURLOPT_URL, hs->url);
	curl_easy_setopt(h, CURLOPT_SHARE, hs->share);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(h, CURLOPT_MAXREDIRS, (long)c->max_redirects);
	/* Never from https to http. */
	curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, hs->https ? "https" : "http,https");
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, c->insecure ? 0L : 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, c->insecure ? 0L : 2L);
	if (hs->ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, hs->ca_file);
	/* One request per connection at a time, as the pool counts them. */
	curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "layerfs/" LAYERFS_VERSION);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long)(c->stall_timeout + 0.999));
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, hs);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	/* Fewer, larger writes into the chunks: a sixth less CPU in reads
	 * from loopback nginx (A/B, cpu medians 0.77-0.87 of 16 KiB's). */
	curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 256L * 1024);
	if (hs->sigv4) {
		curl_easy_setopt(h, CURLOPT_AWS_SIGV4, hs->sigv4);
		curl_easy_setopt(h, CURLOPT_USERNAME, hs->access_key);
		curl_easy_setopt(h, CURLOPT_PASSWORD, hs->secret_key);
	}
	return h;
}

/* --- one request -------------------------------------------------------- */

static int header_is(const char *line, size_t n, const char *name, const char **value)
{
	size_t k = strlen(name);

	if (n <= k || strncasecmp(line, name, k) || line[k] != ':')
		return 0;
	*value = line + k + 1;
	while (**value == ' ' || **value == '\t')
		(*value)++;
	return 1;
}

/* Length of a header value without the line end and trailing blanks. */
static size_t value_len(const char *v, const char *end)
{
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
		end--;
	return (size_t)(end - v);
}

static void parse_content_range(struct xfer *x, const char *v, size_t n)
{
	char buf[96];
	unsigned long long a, b, t;

	copy_printable(buf, sizeof(buf), v, n);
	x->have_range = 0;
	if (sscanf(buf, "bytes */%llu", &t) == 1) {
		x->range_star = 1;
		x->cr_total = t;
	} else if (sscanf(buf, "bytes %llu-%llu/%llu", &a, &b, &t) == 3 && a <= b && b < t) {
		x->have_range = 1;
		x->cr_start = a;
		x->cr_end = b;
		x->cr_total = t;
	}
}

/* Headers of every response arrive here, redirects included; a status line
 * starts the record afresh so that only the final response counts. */
static size_t on_header(char *line, size_t size, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	size_t n = size * nmemb;
	const char *end = line + n, *v;

	if (n > 5 && !strncmp(line, "HTTP/", 5)) {
		const char *sp = memchr(line, ' ', n);

		x->status = 0;
		x->reason[0] = 0;
		x->have_range = x->range_star = 0;
		x->content_length = -1;
		x->etag[0] = x->last_modified[0] = 0;
		x->multipart = x->encoded = 0;
		if (sp) {
			x->status = strtol(sp + 1, NULL, 10);
			sp = memchr(sp + 1, ' ', (size_t)(end - sp - 1));
			if (sp)
				copy_printable(x->reason, sizeof(x->reason), sp + 1,
					       value_len(sp + 1, end));
		}
	} else if (header_is(line, n, "Content-Range", &v)) {
		parse_content_range(x, v, value_len(v, end));
	} else if (header_is(line, n, "Content-Length", &v)) {
		x->content_length = strtoll(v, NULL, 10);
	} else if (header_is(line, n, "ETag", &v)) {
		copy_printable(x->etag, sizeof(x->etag), v, value_len(v, end));
	} else if (header_is(line, n, "Last-Modified", &v)) {
		copy_printable(x->last_modified, sizeof(x->last_modified), v, value_len(v, end));
	} else if (header_is(line, n, "Content-Type", &v)) {
		x->multipart = !strncasecmp(v, "multipart/", 10);
	} else if (header_is(line, n, "Content-Encoding", &v)) {
		x->encoded = strncasecmp(v, "identity", 8) != 0;
	}
	return n;
}

static enum kind refuse(struct xfer *x, enum kind k, const char *why)
{
	x->verdict = k;
	snprintf(x->why, sizeof(x->why), "%s", why);
	return k;
}

/* The response's identity against the one pinned: same ETag (when both
 * have one), else the same Last-Modified. */
static int same_version(const struct http_source *hs, const struct xfer *x)
{
	if (hs->etag[0] && x->etag[0])
		return !strcmp(hs->etag, x->etag);
	if (!hs->etag[0] && hs->last_modified[0] && x->last_modified[0])
		return !strcmp(hs->last_modified, x->last_modified);
	return 1;
}

/* Decides, before the first byte is kept, whether a 2xx response carries
 * the bytes asked for, and where in the body they start. */
static enum kind check_response(struct xfer *x)
{
	struct http_source *hs = x->hs;
	uint64_t tail_want = hs->cfg.tail_size;

	x->checked = 1;
	if (x->status < 200 || x->status >= 300)
		return K_OK;	/* an error: its body is kept for the message */
	if (x->multipart)
		return refuse(x, K_RANGE, "multipart response to a single range");
	if (x->encoded)
		return refuse(x, K_RANGE, "content-encoded response (ranges would not be the object's bytes)");
	if (x->opening) {
		uint64_t total, from;

		if (x->status == 206) {
			if (!x->have_range)
				return refuse(x, K_RANGE, "206 without a valid Content-Range");
			total = x->cr_total;
			from = total > tail_want ? total - tail_want : 0;
			if (x->cr_start > from || x->cr_end != total - 1)
				return refuse(x, K_RANGE, "Content-Range is not the tail asked for");
			x->skip = from - x->cr_start;
		} else if (x->status == 200) {
			/* The whole object: usable only if small, since the
			 * tail is at its end and every read would start over. */
			if (x->content_length < 0 ||
			    (uint64_t)x->content_length > (tail_want > RANGE_IGNORED_MAX ? tail_want : RANGE_IGNORED_MAX))
				return refuse(x, K_RANGE, "server ignores Range requests (200 for a ranged GET)");
			total = (uint64_t)x->content_length;
			from = 0;
			x->skip = 0;
		} else {
			return refuse(x, K_RANGE, "unexpected 2xx status for a ranged GET");
		}
		if (total == 0)
			return refuse(x, K_RANGE, "empty object, not a zip");
		x->start = from;
		x->len = total - from;
		x->cr_total = total;
		x->dst = malloc(x->len);
		if (!x->dst)
			return refuse(x, K_FATAL, "out of memory");
		return K_OK;
	}
	if (!same_version(hs, x))
		return refuse(x, K_STALE, "the object's ETag changed");
	if (x->status == 206) {
		if (!x->have_range)
			return refuse(x, K_RANGE, "206 without a valid Content-Range");
		if (x->cr_total != hs->src.size)
			return refuse(x, K_STALE, "the object's size changed");
		if (x->cr_start > x->start || x->cr_end < x->start + x->len - 1)
			return refuse(x, K_RANGE, "Content-Range does not cover the range asked for");
		x->skip = x->start - x->cr_start;
		return K_OK;
	}
	if (x->status == 200) {
		if (x->content_length >= 0 && (uint64_t)x->content_length != hs->src.size)
			return refuse(x, K_STALE, "the object's size changed");
		if (x->start + x->len > RANGE_IGNORED_MAX)
			return refuse(x, K_RANGE, "server ignored Range (200 with the whole object)");
		x->skip = x->start;
		return K_OK;
	}
	return refuse(x, K_RANGE, "unexpected 2xx status for a ranged GET");
}

static void put_bytes(struct xfer *x, const char *p, size_t n)
{
	uint64_t pos = x->got;

	if (x->dst) {
		memcpy(x->dst + pos, p, n);
		return;
	}
	while (n) {
		size_t cs = x->hs->cfg.chunk_size;
		struct chunk *c = x->chunks[pos / cs];
		size_t o = (size_t)(pos % cs), d = c->len - o < n ? c->len - o : n;

		memcpy(c->data + o, p, d);
		p += d;
		n -= d;
		pos += d;
	}
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	size_t n = size * nmemb;

	add(&x->hs->hc.bytes_fetched, n);
	if (!x->checked && check_response(x) != K_OK)
		return CURL_WRITEFUNC_ERROR;
	if (x->status < 200 || x->status >= 300) {
		size_t d = ERR_BODY_MAX - x->body_len < n ? ERR_BODY_MAX - x->body_len : n;

		memcpy(x->body + x->body_len, ptr, d);
		x->body_len += d;
		x->body[x->body_len] = 0;
		return n;
	}
	while (n) {
		size_t d;

		if (x->skip) {
			d = x->skip < n ? (size_t)x->skip : n;
			x->skip -= d;
		} else if (x->got < x->len) {
			d = x->len - x->got < n ? (size_t)(x->len - x->got) : n;
			put_bytes(x, ptr, d);
			x->got += d;
		} else {
			/* More than asked for (a 200, a wider 206): what was
			 * wanted is here, the rest is not worth receiving. */
			x->done = 1;
			return CURL_WRITEFUNC_ERROR;
		}
		ptr += d;
		n -= d;
	}
	if (x->got == x->len)
		x->done = 1;
	return size * nmemb;
}

static void xfer_init(struct xfer *x, struct http_source *hs)
{
	memset(x, 0, sizeof(*x));
	x->hs = hs;
	x->content_length = -1;
}

static void xfer_reset_response(struct xfer *x)
{
	struct http_source *hs = x->hs;
	int opening = x->opening;
	uint64_t start = x->start, len = x->len;
	unsigned char *dst = x->dst;
	struct chunk **chunks = x->chunks;

	if (opening)
		free(dst);
	xfer_init(x, hs);
	x->opening = opening;
	if (!opening) {
		x->start = start;
		x->len = len;
		x->dst = dst;
		x->chunks = chunks;
	}
}

/* Sets up h for x with at most `remaining` seconds to run. */
static int xfer_setup(struct xfer *x, CURL *h, double remaining)
{
	struct http_source *hs = x->hs;
	char line[320];
	struct curl_slist *l = NULL;
	long ms = (long)(remaining * 1000) > 0 ? (long)(remaining * 1000) : 1;
	long cms = (long)(hs->cfg.connect_timeout * 1000);

	if (x->opening)
		snprintf(line, sizeof(line), "Range: bytes=-%llu", (unsigned long long)hs->cfg.tail_size);
	else
		snprintf(line, sizeof(line), "Range: bytes=%llu-%llu", (unsigned long long)x->start,
			 (unsigned long long)(x->start + x->len - 1));
	l = curl_slist_append(l, line);
	if (x->opening && x->if_none_match) {
		snprintf(line, sizeof(line), "If-None-Match: %s", x->if_none_match);
		l = l ? curl_slist_append(l, line) : NULL;
	}
	if (!x->opening && hs->etag[0] && !hs->etag_weak) {
		snprintf(line, sizeof(line), "If-Match: %s", hs->etag);
		l = l ? curl_slist_append(l, line) : NULL;
	} else if (!x->opening && !hs->etag[0] && hs->last_modified[0]) {
		snprintf(line, sizeof(line), "If-Unmodified-Since: %s", hs->last_modified);
		l = l ? curl_slist_append(l, line) : NULL;
	}
	if (hs->sigv4) {
		/* S3 wants the payload hash as a header; libcurl 7.88 does not
		 * add it, and signs it (with every header set here). */
		l = l ? curl_slist_append(l, "x-amz-content-sha256: " EMPTY_SHA256) : NULL;
		if (hs->token_header)
			l = l ? curl_slist_append(l, hs->token_header) : NULL;
	}
	if (!l)
		return -ENOMEM;
	x->headers = l;
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, l);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, x->curl_err);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, ms);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, cms < ms ? cms : ms);
	add(&hs->hc.requests, 1);
	return 0;
}

/* S3's XML error: <Code> and <Message>, nothing else (other elements echo
 * the request). */
static void s3_error(const char *body, char *code, size_t codelen, char *message, size_t msglen)
{
	const char *c = strstr(body, "<Code>"), *ce = c ? strstr(c, "</Code>") : NULL;
	const char *m = strstr(body, "<Message>"), *me = m ? strstr(m, "</Message>") : NULL;

	code[0] = message[0] = 0;
	if (c && ce)
		copy_printable(code, codelen, c + 6, (size_t)(ce - c - 6));
	if (m && me)
		copy_printable(message, msglen, m + 9, (size_t)(me - m - 9));
}

static int auth_code(const char *code)
{
	static const char *const codes[] = {
		"AccessDenied", "AuthorizationHeaderMalformed", "ExpiredToken", "InvalidAccessKeyId",
		"InvalidToken", "SignatureDoesNotMatch", "TokenRefreshRequired",
		"RequestTimeTooSkewed", "InvalidSecurity", "AllAccessDisabled",
	};

	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		if (!strcmp(code, codes[i]))
			return 1;
	return 0;
}

/* Classifies the finished request: x->kind, x->rc (the errno open would
 * give) and x->msg (one line naming the object). */
static void xfer_finish(struct xfer *x, CURLcode res)
{
	struct http_source *hs = x->hs;
	struct lfs_http_counters *hc = &hs->hc;

	curl_slist_free_all(x->headers);
	x->headers = NULL;
	if (!x->checked && x->status >= 200 && x->status < 300 && res == CURLE_OK)
		(void)check_response(x); /* an empty body */
	x->msg[0] = 0;
	if (x->verdict) {
		x->kind = x->verdict;
		x->rc = x->kind == K_STALE ? -ESTALE : x->kind == K_RANGE ? -EPROTO : -EIO;
		if (x->opening && !strcmp(x->why, "empty object, not a zip"))
			x->rc = -EINVAL;
		snprintf(x->msg, sizeof(x->msg), "%s: HTTP %ld: %s", hs->name, x->status, x->why);
	} else if (x->opening && x->if_none_match && x->status == 304 && res == CURLE_OK &&
		   (!x->etag[0] || !strcmp(x->etag, x->if_none_match))) {
		/* The object is the version the disk holds. */
		x->not_modified = 1;
		x->kind = K_OK;
		x->rc = 0;
		return;
	} else if (x->done || (res == CURLE_OK && x->status / 100 == 2 && x->got == x->len &&
			       x->checked)) {
		x->kind = K_OK;
		x->rc = 0;
		return;
	} else if (res != CURLE_OK) {
		const char *what = x->curl_err[0] ? x->curl_err : curl_easy_strerror(res);

		switch (res) {
		case CURLE_OPERATION_TIMEDOUT:
			x->kind = K_TIMEOUT;
			x->rc = -ETIMEDOUT;
			break;
		case CURLE_COULDNT_CONNECT:
			x->kind = K_CONNECT;
			x->rc = -ECONNREFUSED;
			break;
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_RESOLVE_PROXY:
			/* Retried on reads only (open refuses at once, below). */
			x->kind = K_CONNECT;
			x->rc = -EHOSTUNREACH;
			break;
		case CURLE_PARTIAL_FILE:
		case CURLE_RECV_ERROR:
		case CURLE_SEND_ERROR:
		case CURLE_GOT_NOTHING:
		case CURLE_HTTP2:
		case CURLE_HTTP2_STREAM:
		case CURLE_SSL_CONNECT_ERROR:
		case CURLE_WEIRD_SERVER_REPLY:
			x->kind = K_TRANSFER;
			x->rc = -EIO;
			break;
		default:
			/* Certificate problems, redirects, protocols, our own abort. */
			x->kind = K_FATAL;
			x->rc = -EIO;
			break;
		}
		if (res == CURLE_PEER_FAILED_VERIFICATION || res == CURLE_SSL_CACERT_BADFILE)
			x->rc = -EACCES;
		if (res == CURLE_UNSUPPORTED_PROTOCOL && hs->https)
			what = "refused a redirect away from https";
		{
			char clean[CURL_ERROR_SIZE];

			copy_printable(clean, sizeof(clean), what, strlen(what));
			snprintf(x->msg, sizeof(x->msg), "%s: %.250s", hs->name, clean);
		}
	} else if (x->status / 100 == 2) {
		x->kind = K_TRANSFER;
		x->rc = -EIO;
		snprintf(x->msg, sizeof(x->msg), "%s: HTTP %ld: short body (%llu of %llu bytes)",
			 hs->name, x->status, (unsigned long long)x->got, (unsigned long long)x->len);
	} else {
		char code[64], message[160];

		s3_error(x->body, code, sizeof(code), message, sizeof(message));
		if (x->status == 412 || (x->status == 416 && !x->opening)) {
			/* 416 for a range inside the size pinned: the object
			 * is shorter now. */
			x->kind = K_STALE;
			x->rc = -ESTALE;
		} else if (x->status == 429 || x->status == 503) {
			x->kind = K_THROTTLED;
			x->rc = -EIO;
		} else if (x->status >= 500) {
			x->kind = K_5XX;
			x->rc = -EIO;
		} else {
			x->kind = K_4XX;
			x->rc = x->status == 404 ? -ENOENT
				: x->status == 401 || x->status == 403 || auth_code(code) ? -EACCES
				: x->status == 416 ? -EINVAL : -EIO;
			if (x->opening && x->status == 416 && x->range_star && x->cr_total == 0) {
				x->rc = -EINVAL;
				snprintf(x->msg, sizeof(x->msg), "%s: empty object, not a zip",
					 hs->name);
			}
		}
		if (!x->msg[0] && code[0])
			snprintf(x->msg, sizeof(x->msg), "%s: HTTP %ld%s%s (%s%s%s)", hs->name,
				 x->status, x->reason[0] ? " " : "", x->reason, code,
				 message[0] ? ": " : "", message);
		else if (!x->msg[0])
			snprintf(x->msg, sizeof(x->msg), "%s: HTTP %ld%s%s", hs->name, x->status,
				 x->reason[0] ? " " : "", x->reason);
	}
	switch (x->kind) {
	case K_TIMEOUT: add(&hc->err_timeout, 1); break;
	case K_CONNECT: add(&hc->err_connect, 1); break;
	case K_TRANSFER:
	case K_FATAL: add(&hc->err_transfer, 1); break;
	case K_THROTTLED: add(&hc->err_throttled, 1); break;
	case K_5XX: add(&hc->err_5xx, 1); break;
	case K_4XX: add(&hc->err_4xx, 1); break;
	case K_RANGE: add(&hc->err_range, 1); break;
	case K_STALE: add(&hc->err_stale, 1); break;
	case K_OK: break;
	}
	pthread_mutex_lock(&hs->lock);
	snprintf(hs->last_err, sizeof(hs->last_err), "%s", x->msg);
	pthread_mutex_unlock(&hs->lock);
}

static int retryable(const struct xfer *x)
{
	switch (x->kind) {
	case K_TIMEOUT:
	case K_TRANSFER:
	case K_THROTTLED:
	case K_5XX:
	case K_RANGE:
		return 1;
	case K_CONNECT:
		/* A name that does not resolve at open is a typo, not a fault. */
		return !(x->opening && x->rc == -EHOSTUNREACH);
	default:
		return 0;
	}
}

/* Capped exponential backoff with "equal jitter": half fixed, half random,
 * so that retries of many readers spread out but never come at once. */
static double backoff(const struct http_source *hs, unsigned attempt)
{
	double b = hs->cfg.backoff_base;

	for (unsigned i = 0; i < attempt && b < hs->cfg.backoff_max; i++)
		b *= 2;
	if (b > hs->cfg.backoff_max)
		b = hs->cfg.backoff_max;
	return b / 2 + random01() * b / 2;
}

static void mark_stale(struct http_source *hs)
{
	__atomic_store_n(&hs->stale, 1, __ATOMIC_RELEASE);
	__atomic_store_n(&hs->src.changed, 1, __ATOMIC_RELEASE);
}

static int is_stale(struct http_source *hs) { return __atomic_load_n(&hs->stale, __ATOMIC_ACQUIRE); }

static int digest_state(struct http_source *hs)
{
	return (int)__atomic_load_n(&hs->hc.digest_state, __ATOMIC_ACQUIRE);
}

/* The bytes proved not to be the listed ones: nothing more is served. */
static int untrusted(struct http_source *hs) { return digest_state(hs) == LFS_HTTP_DIGEST_MISMATCH; }

/* --- the pool ----------------------------------------------------------- */

static CURL *pool_get(struct http_source *hs, double deadline)
{
	CURL *h = NULL;
	struct timespec ts = abs_time(deadline);

	pthread_mutex_lock(&hs->lock);
	while (!hs->nfree && hs->nmade >= hs->cfg.connections)
		if (pthread_cond_timedwait(&hs->pool_cv, &hs->lock, &ts) == ETIMEDOUT)
			break;
	if (hs->nfree) {
		h = hs->free_handles[--hs->nfree];
	} else if (hs->nmade < hs->cfg.connections) {
		hs->nmade++;
		pthread_mutex_unlock(&hs->lock);
		h = make_handle(hs);
		if (h)
			return h;
		pthread_mutex_lock(&hs->lock);
		hs->nmade--;
	}
	pthread_mutex_unlock(&hs->lock);
	return h;
}

static void pool_put(struct http_source *hs, CURL *h)
{
	pthread_mutex_lock(&hs->lock);
	hs->free_handles[hs->nfree++] = h;
	pthread_cond_signal(&hs->pool_cv);
	pthread_mutex_unlock(&hs->lock);
}

/* Fetches [start, start + len) into dst or the consecutive chunks, retrying
 * transient failures until the deadline.  0, -ESTALE (final), -ETIMEDOUT
 * or -EIO. */
static int fetch(struct http_source *hs, uint64_t start, uint64_t len, unsigned char *dst,
		 struct chunk **chunks, double deadline, int readahead)
{
	struct xfer *x = malloc(sizeof(*x));
	int rc = -EIO;

	if (!x)
		return -ENOMEM;
	for (unsigned attempt = 0;; attempt++) {
		double left = deadline - now_s(), wait;
		CURL *h;

		if (left <= 0) {
			rc = -ETIMEDOUT;
			break;
		}
		h = pool_get(hs, deadline);
		if (!h) {
			rc = -ETIMEDOUT;
			break;
		}
		xfer_init(x, hs);
		x->start = start;
		x->len = len;
		x->dst = dst;
		x->chunks = chunks;
		if (xfer_setup(x, h, left)) {
			pool_put(hs, h);
			rc = -ENOMEM;
			break;
		}
		xfer_finish(x, curl_easy_perform(h));
		pool_put(hs, h);
		if (x->kind == K_OK) {
			rc = 0;
			break;
		}
		if (x->kind == K_STALE) {
			mark_stale(hs);
			rc = -ESTALE;
			break;
		}
		rc = x->kind == K_TIMEOUT ? -ETIMEDOUT : -EIO;
		if (!retryable(x) || readahead || attempt >= hs->cfg.max_retries || stopping(hs))
			break;
		wait = backoff(hs, attempt);
		if (now_s() + wait >= deadline)
			break;
		add(&hs->hc.retries, 1);
		sleep_s(wait);
	}
	free(x);
	return rc;
}

/* --- the chunk table ---------------------------------------------------- */

static struct chunk *table_find(struct http_source *hs, uint64_t idx)
{
	struct chunk *c = hs->buckets[idx % NBUCKETS];

	while (c && c->index != idx)
		c = c->hnext;
	return c;
}

static void table_remove(struct http_source *hs, struct chunk *c)
{
	struct chunk **p = &hs->buckets[c->index % NBUCKETS];

	while (*p != c)
		p = &(*p)->hnext;
	*p = c->hnext;
	c->in_table = 0;
	__atomic_sub_fetch(&hs->cached, c->len, __ATOMIC_RELAXED);
	if (c->lru_next) {
		c->lru_prev->lru_next = c->lru_next;
		c->lru_next->lru_prev = c->lru_prev;
		c->lru_next = c->lru_prev = NULL;
	}
}

static void lru_touch(struct http_source *hs, struct chunk *c)
{
	if (c->lru_next) {
		c->lru_prev->lru_next = c->lru_next;
		c->lru_next->lru_prev = c->lru_prev;
	}
	c->lru_next = hs->lru.lru_next;
	c->lru_prev = &hs->lru;
	hs->lru.lru_next->lru_prev = c;
	hs->lru.lru_next = c;
}

static void chunk_free(struct chunk *c)
{
	free(c->data);
	free(c);
}

/* Under lock.  The budget counts claimed chunks too; only ready ones
 * nobody uses can go, so a read larger than the budget still completes. */
static void evict(struct http_source *hs)
{
	struct chunk *c = hs->lru.lru_prev;

	while (hs->cached > hs->cfg.cache_bytes && c != &hs->lru) {
		struct chunk *prev = c->lru_prev;

		if (!c->refs) {
			table_remove(hs, c);
			chunk_free(c);
		}
		c = prev;
	}
}

static void chunk_unref(struct chunk *c)
{
	if (--c->refs == 0 && !c->in_table)
		chunk_free(c);
}

static size_t chunk_len(const struct http_source *hs, uint64_t idx)
{
	uint64_t start = idx * hs->cfg.chunk_size, end = start + hs->cfg.chunk_size;

	return (size_t)((end < hs->tail_off ? end : hs->tail_off) - start);
}

/* Under lock: a new chunk, claimed by the caller (FETCHING, one ref). */
static struct chunk *chunk_claim(struct http_source *hs, uint64_t idx, int readahead)
{
	struct chunk *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->index = idx;
	c->len = chunk_len(hs, idx);
	c->data = malloc(c->len);
	if (!c->data) {
		free(c);
		return NULL;
	}
	c->state = CH_FETCHING;
	c->refs = 1;
	c->in_table = 1;
	c->by_readahead = readahead;
	c->hnext = hs->buckets[idx % NBUCKETS];
	hs->buckets[idx % NBUCKETS] = c;
	__atomic_add_fetch(&hs->cached, c->len, __ATOMIC_RELAXED);
	return c;
}

static void wr_enqueue(struct http_source *hs, struct chunk *c);

/* Under lock: publishes the outcome of chunk ch, and wakes its waiters. */
static void publish(struct http_source *hs, struct chunk *ch, int rc)
{
	ch->state = rc ? CH_FAILED : CH_READY;
	ch->err = rc;
	if (rc) {
		table_remove(hs, ch);
		return;
	}
	lru_touch(hs, ch);
	/* One more chunk held once; the hasher wants to know when it is the
	 * one it needs next, or the last one. */
	if (hs->dg_seen.bits && lfs_coverage_mark(&hs->dg_seen, ch->index)) {
		__atomic_store_n(&hs->hc.digest_seen, hs->dg_seen.have, __ATOMIC_RELAXED);
		if (ch->index == hs->dg_next || lfs_coverage_complete(&hs->dg_seen))
			pthread_cond_signal(&hs->dg_cv);
	} else if (hs->dg_seen.bits && ch->index == hs->dg_next) {
		pthread_cond_signal(&hs->dg_cv);
	}
}

/* Fills the claimed chunks c[0..n) (consecutive): from the disk tier when
 * it has them, the others fetched, each run of adjacent ones in requests
 * of at most max_request bytes; publishes each outcome, and hands what was
 * fetched to the writer. */
static int fetch_claimed(struct http_source *hs, struct chunk **c, size_t n, double deadline,
			 int readahead)
{
	size_t per = hs->cfg.max_request / hs->cfg.chunk_size, i = 0;
	unsigned char stack_hit[16], *hit = stack_hit;
	int first_rc = 0, threads;

	if (per < 1)
		per = 1;
	if (hs->dobj) {
		size_t hits = 0;

		if (n > sizeof(stack_hit) && !(hit = malloc(n)))
			return -ENOMEM;
		for (size_t j = 0; j < n; j++) {
			hit[j] = lfs_disk_get_chunk(hs->dobj, hs->version_key, c[j]->index, c[j]->data,
						    c[j]->len) == 0;
			hits += hit[j];
		}
		if (hits) {
			add(&hs->hc.disk_hits, hits);
			pthread_mutex_lock(&hs->lock);
			for (size_t j = 0; j < n; j++)
				if (hit[j])
					publish(hs, c[j], 0);
			pthread_cond_broadcast(&hs->chunk_cv);
			pthread_mutex_unlock(&hs->lock);
		}
	}
	while (i < n) {
		size_t k = 0;
		uint64_t start, len = 0;
		int rc;

		if (hs->dobj && hit[i]) {
			i++;
			continue;
		}
		while (i + k < n && k < per && !(hs->dobj && hit[i + k]))
			len += c[i + k++]->len;
		start = c[i]->index * hs->cfg.chunk_size;
		rc = fetch(hs, start, len, NULL, c + i, deadline, readahead);
		if (rc && !first_rc)
			first_rc = rc;
		pthread_mutex_lock(&hs->lock);
		for (size_t j = 0; j < k; j++)
			publish(hs, c[i + j], rc);
		pthread_cond_broadcast(&hs->chunk_cv);
		threads = hs->threads_ok;
		for (size_t j = 0; j < k && !rc && hs->dobj && threads; j++)
			wr_enqueue(hs, c[i + j]);
		pthread_mutex_unlock(&hs->lock);
		/* No writer yet (a daemon about to fork): written here; our
		 * claim still holds the chunks. */
		for (size_t j = 0; j < k && !rc && hs->dobj && !threads; j++)
			if (lfs_disk_put_chunk(hs->dobj, hs->version_key, c[i + j]->index,
					       c[i + j]->data, c[i + j]->len) == 0)
				add(&hs->hc.disk_writes, 1);
		i += k;
	}
	if (hit != stack_hit)
		free(hit);
	return first_rc;
}

static void ra_enqueue(struct http_source *hs, uint64_t off, uint64_t len);

/* Under lock, after a read of [off, off + len): a read that starts where
 * an earlier one ended continues that reader's run.  Once a run is SEQ_RUN
 * bytes long (a stream through a large member, not a few small members
 * that happen to be read in the zip's order), the chunks ahead of it are
 * fetched in the background: a window as long as the run (at most
 * max_request), refilled once half of it is used.  So scattered reads
 * fetch single chunks, even where they fall next to each other, and a
 * reader in order pays a round trip per window instead of per chunk, never
 * waiting for more than it asked.  (Whether the chunks behind a read are
 * cached says nothing of the sort: readers of unrelated small members fill
 * neighbouring chunks.) */
static void sequential_ahead(struct http_source *hs, uint64_t off, uint64_t len)
{
	uint64_t cs = hs->cfg.chunk_size, end = (hs->tail_off + cs - 1) / cs;
	uint64_t max = hs->cfg.max_request / cs, last = (off + len - 1) / cs, run, from, j;
	struct seq_run *r = NULL, *oldest = &hs->seq[0];

	if (max < 2 || hs->cfg.no_sequential)
		return;
	hs->seq_clock++;
	for (size_t i = 0; i < SEQ_SLOTS && !r; i++) {
		struct seq_run *s = &hs->seq[i];

		if (s->used && off + SEQ_GAP >= s->end && off <= s->end + SEQ_GAP)
			r = s;
		else if (s->used < oldest->used)
			oldest = s;
	}
	if (!r) {
		r = oldest;
		r->end = off;
		r->run = 0;
	}
	from = off > r->end ? off : r->end;
	if (off + len > from) {
		r->run += off + len - from;
		r->end = off + len;
	}
	r->used = hs->seq_clock;
	if (r->run < SEQ_RUN)
		return;
	run = r->run / cs;
	if (run > max)
		run = max;
	for (j = last + 1; j <= last + run / 2 + 1 && j < end; j++)
		if (!table_find(hs, j))
			break;
	if (j > last + run / 2 + 1 || j >= end)
		return;
	ra_enqueue(hs, j * cs, run * cs);
}

/* Reads [off, off + len), all before the tail, through the chunks. */
static int read_chunks(struct http_source *hs, unsigned char *buf, size_t len, uint64_t off,
		       double deadline)
{
	size_t cs = hs->cfg.chunk_size;
	uint64_t first = off / cs, last = (off + len - 1) / cs;
	size_t n = (size_t)(last - first + 1);
	struct chunk *stack_c[16], **c = stack_c;
	unsigned char stack_owned[16], *owned = stack_owned;
	int rc = 0, again;

	if (n > 16) {
		c = malloc(n * (sizeof(*c) + 1));
		if (!c)
			return -ENOMEM;
		owned = (unsigned char *)(c + n);
	}
	do {
		size_t got = 0;

		again = 0;
		pthread_mutex_lock(&hs->lock);
		for (size_t i = 0; i < n; i++) {
			c[i] = table_find(hs, first + i);
			owned[i] = !c[i];
			if (c[i]) {
				c[i]->refs++;
				add(&hs->hc.chunk_hits, 1);
			} else {
				c[i] = chunk_claim(hs, first + i, 0);
				if (!c[i]) {
					rc = -ENOMEM;
					break;
				}
				add(&hs->hc.chunk_misses, 1);
			}
			got = i + 1;
		}
		if (!rc)
			sequential_ahead(hs, off, len);
		pthread_mutex_unlock(&hs->lock);
		/* Fetch what this thread claimed, each run of adjacent chunks in
		 * one request, before waiting for anyone else's (so that no two
		 * readers wait for each other).  Claimed chunks are always
		 * fetched, even after an error, since others may wait for them. */
		for (size_t i = 0; i < got;) {
			size_t j = i;

			if (!owned[i]) {
				i++;
				continue;
			}
			while (j < got && owned[j])
				j++;
			(void)fetch_claimed(hs, c + i, j - i, deadline, 0);
			i = j;
		}
		for (size_t i = 0; i < got && !rc; i++) {
			struct timespec ts = abs_time(deadline);
			int state, err, by_ra;

			pthread_mutex_lock(&hs->lock);
			while (c[i]->state == CH_FETCHING)
				if (pthread_cond_timedwait(&hs->chunk_cv, &hs->lock, &ts) == ETIMEDOUT)
					break;
			state = c[i]->state;
			err = c[i]->err;
			by_ra = c[i]->by_readahead;
			pthread_mutex_unlock(&hs->lock);
			if (state == CH_READY) {
				/* Ready chunks never change, and our reference
				 * keeps this one: copy without the lock. */
				uint64_t cstart = c[i]->index * cs, cend = cstart + c[i]->len;
				uint64_t from = off > cstart ? off : cstart;
				uint64_t to = off + len < cend ? off + len : cend;

				memcpy(buf + (from - off), c[i]->data + (from - cstart), (size_t)(to - from));
			} else if (state == CH_FETCHING) {
				rc = -ETIMEDOUT;
			} else if (by_ra && err != -ESTALE && now_s() < deadline) {
				/* Read-ahead gives up at its first failure; a
				 * reader has retries of its own. */
				again = 1;
			} else {
				rc = err;
			}
		}
		pthread_mutex_lock(&hs->lock);
		for (size_t i = 0; i < got; i++)
			chunk_unref(c[i]);
		evict(hs);
		pthread_mutex_unlock(&hs->lock);
	} while (again && !rc);
	if (c != stack_c)
		free(c);
	return rc;
}

/* --- the source's calls ------------------------------------------------- */

static int http_read(struct lfs_source *src, void *buf, size_t len, uint64_t off)
{
	struct http_source *hs = (struct http_source *)src;
	unsigned char *p = buf;

	if (is_stale(hs))
		return -ESTALE;
	if (untrusted(hs))
		return -EIO;
	if (off + len > hs->tail_off) {
		uint64_t from = off > hs->tail_off ? off : hs->tail_off;

		memcpy(p + (from - off), hs->tail + (from - hs->tail_off), (size_t)(off + len - from));
		if (off >= hs->tail_off) {
			add(&hs->hc.tail_hits, 1);
			return 0;
		}
		len = (size_t)(hs->tail_off - off);
	}
	return read_chunks(hs, p, len, off, now_s() + hs->cfg.remote_timeout);
}

static int http_check(struct lfs_source *src)
{
	return is_stale((struct http_source *)src) ? -ESTALE : 0;
}

/* The read-ahead thread: fetches the chunks of queued ranges that nobody
 * has, one attempt each (a reader that needs a chunk it failed fetches it
 * itself, with retries). */
static void *ra_main(void *arg)
{
	struct http_source *hs = arg;
	size_t cs = hs->cfg.chunk_size;
	size_t max = hs->cfg.cache_bytes / 2 / cs + 1;
	struct chunk **c = calloc(max, sizeof(*c));

	pthread_mutex_lock(&hs->lock);
	while (c && !hs->stopping) {
		struct ra_range r;
		uint64_t first, last, end;
		size_t n = 0;

		if (!hs->ra_count) {
			pthread_cond_wait(&hs->ra_cv, &hs->lock);
			continue;
		}
		r = hs->ra_queue[hs->ra_head];
		hs->ra_head = (hs->ra_head + 1) % RA_QUEUE;
		hs->ra_count--;
		if (r.off >= hs->tail_off || is_stale(hs) || untrusted(hs))
			continue;
		if (r.off + r.len > hs->tail_off)
			r.len = hs->tail_off - r.off;
		first = r.off / cs;
		last = (r.off + r.len - 1) / cs;
		if (last - first + 1 > max)
			last = first + max - 1;
		for (uint64_t i = first; i <= last; i++) {
			if (table_find(hs, i)) {
				if (n)	/* runs of missing chunks only */
					break;
				continue;
			}
			c[n] = chunk_claim(hs, i, 1);
			if (!c[n])
				break;
			n++;
		}
		if (!n)
			continue;
		pthread_mutex_unlock(&hs->lock);
		end = c[n - 1]->index;
		add(&hs->hc.readahead_chunks, n);
		(void)fetch_claimed(hs, c, n, now_s() + hs->cfg.remote_timeout, 1);
		pthread_mutex_lock(&hs->lock);
		for (size_t i = 0; i < n; i++)
			chunk_unref(c[i]);
		evict(hs);
		/* The rest of the range, past a chunk that was there. */
		if (last > end && hs->ra_count < RA_QUEUE) {
			uint64_t next = (end + 1) * cs;

			if (next < r.off + r.len) {
				hs->ra_head = (hs->ra_head + RA_QUEUE - 1) % RA_QUEUE;
				hs->ra_queue[hs->ra_head] = (struct ra_range){ next, r.off + r.len - next };
				hs->ra_count++;
			}
		}
	}
	pthread_mutex_unlock(&hs->lock);
	free(c);
	return NULL;
}

/* Under lock: queues [off, off + len) for the read-ahead thread. */
static void ra_enqueue(struct http_source *hs, uint64_t off, uint64_t len)
{
	if (!hs->ra_started && !hs->stopping && hs->threads_ok)
		hs->ra_started = pthread_create(&hs->ra_thread, NULL, ra_main, hs) == 0 ? 1 : -1;
	if (hs->ra_started == 1) {
		if (hs->ra_count == RA_QUEUE) {	/* the oldest hint is the least useful */
			hs->ra_head = (hs->ra_head + 1) % RA_QUEUE;
			hs->ra_count--;
		}
		hs->ra_queue[(hs->ra_head + hs->ra_count) % RA_QUEUE] = (struct ra_range){ off, len };
		hs->ra_count++;
		pthread_cond_signal(&hs->ra_cv);
	}
}

static void http_will_need(struct lfs_source *src, uint64_t off, uint64_t len)
{
	struct http_source *hs = (struct http_source *)src;

	if (off >= hs->tail_off || !len || is_stale(hs) || untrusted(hs))
		return;
	pthread_mutex_lock(&hs->lock);
	ra_enqueue(hs, off, len);
	pthread_mutex_unlock(&hs->lock);
}

/* The writer: puts fetched chunks on the disk, so that the read that
 * fetched them does not wait for the disk. */
static void *wr_main(void *arg)
{
	struct http_source *hs = arg;

	pthread_mutex_lock(&hs->lock);
	for (;;) {
		struct chunk *c;

		if (!hs->wr_count) {
			if (hs->stopping)
				break;
			pthread_cond_wait(&hs->wr_cv, &hs->lock);
			continue;
		}
		c = hs->wr_queue[hs->wr_head];
		hs->wr_head = (hs->wr_head + 1) % WR_QUEUE;
		hs->wr_count--;
		pthread_mutex_unlock(&hs->lock);
		/* READY chunks never change: no lock needed to read it */
		if (lfs_disk_put_chunk(hs->dobj, hs->version_key, c->index, c->data, c->len) == 0)
			add(&hs->hc.disk_writes, 1);
		__atomic_sub_fetch(&hs->wr_pending, 1, __ATOMIC_RELAXED);
		pthread_mutex_lock(&hs->lock);
		chunk_unref(c);
		evict(hs);
		/* the chunk the hasher needs may be on the disk now */
		if (hs->dg_started == 1)
			pthread_cond_signal(&hs->dg_cv);
	}
	pthread_mutex_unlock(&hs->lock);
	return NULL;
}

/* Under lock: hands ready chunk c to the writer (which takes a reference
 * until it is written).  A writer far behind drops chunks rather than
 * holding their memory: they are fetched again by a later mount. */
static void wr_enqueue(struct http_source *hs, struct chunk *c)
{
	if (untrusted(hs))
		return;	/* its records are gone and must stay gone */
	if (!hs->wr_started && !hs->stopping && hs->threads_ok)
		hs->wr_started = pthread_create(&hs->wr_thread, NULL, wr_main, hs) == 0 ? 1 : -1;
	if (hs->wr_started != 1 || hs->wr_count == WR_QUEUE || hs->stopping) {
		add(&hs->hc.disk_skipped, 1);
		return;
	}
	c->refs++;
	hs->wr_queue[(hs->wr_head + hs->wr_count) % WR_QUEUE] = c;
	hs->wr_count++;
	add(&hs->wr_pending, 1);
	pthread_cond_signal(&hs->wr_cv);
}

/* --- the listed digest ------------------------------------------------ */

/* Hashes n bytes with the lock let go (the caller keeps them alive). */
static int dg_update(struct http_source *hs, struct lfs_sha256 *md, const void *p, size_t n)
{
	int rc;

	pthread_mutex_unlock(&hs->lock);
	rc = lfs_sha256_update(md, p, n);
	pthread_mutex_lock(&hs->lock);
	return rc;
}

/* The hasher: hashes chunk after chunk in order, each as soon as it is
 * ready (lfs_hash_step), then the tail; decides, and on a mismatch makes
 * the source untrusted and removes its records before telling anyone.
 * At the lowest priority: nobody waits for it.  Leaves the state PENDING
 * when it stops first, or the object changed (then nothing is trusted
 * anyway: every read fails with ESTALE). */
static void *dg_main(void *arg)
{
	struct http_source *hs = arg;
	size_t cs = hs->cfg.chunk_size;
	struct lfs_sha256 *md = lfs_sha256_new();
	unsigned char *buf = malloc(cs), actual[LFS_DIGEST_LEN];
	struct sched_param sp = { 0 };
	int rc = 0, match;

	(void)pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
	if (!md || !buf)
		goto out;
	pthread_mutex_lock(&hs->lock);
	while (!rc && !hs->stopping && !is_stale(hs) && digest_state(hs) == LFS_HTTP_DIGEST_PENDING &&
	       hs->dg_next < hs->dg_seen.n) {
		uint64_t idx = hs->dg_next;
		struct chunk *c = table_find(hs, idx);
		size_t len = chunk_len(hs, idx);
		uint64_t writes = __atomic_load_n(&hs->hc.disk_writes, __ATOMIC_RELAXED);
		int on_disk = hs->dobj && !(hs->dg_disk_missed && hs->dg_disk_gen == writes);
		int pending = __atomic_load_n(&hs->wr_pending, __ATOMIC_RELAXED) != 0;
		int got;

		switch (lfs_hash_step(&hs->dg_seen, idx, c && c->state == CH_READY, on_disk, pending)) {
		case LFS_HASH_MEMORY:
			/* ready chunks never change; our reference keeps it */
			c->refs++;
			rc = dg_update(hs, md, c->data, c->len);
			chunk_unref(c);
			evict(hs);
			break;
		case LFS_HASH_DISK:
			pthread_mutex_unlock(&hs->lock);
			got = lfs_disk_get_chunk(hs->dobj, hs->version_key, idx, buf, len);
			pthread_mutex_lock(&hs->lock);
			if (got) {
				hs->dg_disk_missed = 1;
				hs->dg_disk_gen = writes;
				continue;
			}
			add(&hs->hc.digest_disk, 1);
			rc = dg_update(hs, md, buf, len);
			break;
		case LFS_HASH_FETCH:
			/* every byte came once, this chunk is held nowhere now */
			pthread_mutex_unlock(&hs->lock);
			got = fetch(hs, idx * cs, len, buf, NULL, now_s() + hs->cfg.remote_timeout, 0);
			pthread_mutex_lock(&hs->lock);
			if (got) {
				/* the network is down, say: try again later */
				struct timespec ts = abs_time(now_s() + 5);

				if (!hs->stopping)
					pthread_cond_timedwait(&hs->dg_cv, &hs->lock, &ts);
				continue;
			}
			add(&hs->hc.digest_refetched, 1);
			rc = dg_update(hs, md, buf, len);
			break;
		case LFS_HASH_WAIT:
			pthread_cond_wait(&hs->dg_cv, &hs->lock);
			continue;
		}
		hs->dg_next++;
		hs->dg_disk_missed = 0;
		add(&hs->hc.digest_bytes, len);
	}
	if (rc || hs->stopping || is_stale(hs) || digest_state(hs) != LFS_HTTP_DIGEST_PENDING ||
	    hs->dg_next < hs->dg_seen.n) {
		pthread_mutex_unlock(&hs->lock);
		goto out;
	}
	pthread_mutex_unlock(&hs->lock);
	/* the tail: the source's for its life */
	if (lfs_sha256_update(md, hs->tail, (size_t)(hs->src.size - hs->tail_off)) ||
	    lfs_sha256_final(md, actual))
		goto out;
	add(&hs->hc.digest_bytes, hs->src.size - hs->tail_off);
	match = !memcmp(actual, hs->dg_listed, LFS_DIGEST_LEN);
	pthread_mutex_lock(&hs->lock);
	__atomic_store_n(&hs->hc.digest_state,
			 match ? LFS_HTTP_DIGEST_VERIFIED : LFS_HTTP_DIGEST_MISMATCH, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&hs->lock);
	if (!match && hs->dobj) {
		unsigned char where[LFS_DIGEST_LEN];

		/* no later open may be served a byte of it; the writer puts
		 * nothing more there (wr_enqueue, the directory forgotten) */
		lfs_disk_object_where(hs->dobj, where);
		(void)lfs_disk_forget_object(hs->cfg.disk, where);
	}
	if (hs->cfg.on_digest)
		hs->cfg.on_digest(hs->dg_ctx, &hs->src, match, actual);
out:
	lfs_sha256_free(md);
	free(buf);
	return NULL;
}

/* Under lock: starts the hasher when threads may start and it has work. */
static void dg_start(struct http_source *hs)
{
	if (hs->threads_ok && !hs->dg_started && !hs->stopping &&
	    digest_state(hs) == LFS_HTTP_DIGEST_PENDING)
		hs->dg_started = pthread_create(&hs->dg_thread, NULL, dg_main, hs) == 0 ? 1 : -1;
}

/* After a successful open, before anything reads the source: what the
 * listed digest is, and which chunks there are to see.  A digest that does
 * not parse is the caller's to refuse; it is not checked here. */
static void dg_setup(struct http_source *hs, const char *sha256, void *ctx)
{
	uint64_t n = lfs_coverage_chunks(hs->tail_off, hs->cfg.chunk_size);

	if (!sha256 || lfs_digest_parse(sha256, hs->dg_listed) || lfs_coverage_init(&hs->dg_seen, n))
		return;
	hs->dg_ctx = ctx;
	hs->hc.digest_chunks = n;
	hs->hc.digest_state = LFS_HTTP_DIGEST_PENDING;
	pthread_mutex_lock(&hs->lock);
	dg_start(hs);
	pthread_mutex_unlock(&hs->lock);
}

void lfs_source_http_digest_known(struct lfs_source *src)
{
	struct http_source *hs = (struct http_source *)src;

	if (!src || src->ops != &http_ops)
		return;
	pthread_mutex_lock(&hs->lock);
	if (digest_state(hs) == LFS_HTTP_DIGEST_PENDING)
		__atomic_store_n(&hs->hc.digest_state, LFS_HTTP_DIGEST_VERIFIED, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&hs->dg_cv);
	pthread_mutex_unlock(&hs->lock);
}

static void source_free(struct http_source *hs)
{
	if (!hs)
		return;
	for (unsigned i = 0; i < hs->nfree; i++)
		curl_easy_cleanup(hs->free_handles[i]);
	if (hs->share)
		curl_share_cleanup(hs->share);
	for (size_t b = 0; b < NBUCKETS; b++) {
		struct chunk *c = hs->buckets[b];

		while (c) {
			struct chunk *next = c->hnext;

			chunk_free(c);
			c = next;
		}
	}
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&hs->share_locks[i]);
	pthread_mutex_destroy(&hs->lock);
	pthread_cond_destroy(&hs->chunk_cv);
	pthread_cond_destroy(&hs->pool_cv);
	pthread_cond_destroy(&hs->ra_cv);
	pthread_cond_destroy(&hs->wr_cv);
	pthread_cond_destroy(&hs->dg_cv);
	lfs_coverage_free(&hs->dg_seen);
	if (hs->secret_key)
		memset(hs->secret_key, 0, strlen(hs->secret_key));
	if (hs->token_header)
		memset(hs->token_header, 0, strlen(hs->token_header));
	free(hs->secret_key);
	free(hs->token_header);
	free(hs->access_key);
	free(hs->sigv4);
	free(hs->free_handles);
	free(hs->ca_file);
	free(hs->tail);
	free(hs->url);
	free(hs);
}

/* Once stopping is set (under lock) no thread starts any more, so the
 * started flags can be read without it here; a joined thread's flag
 * becomes 2, so that a second stop joins nothing. */
static void stop_threads(struct http_source *hs)
{
	pthread_mutex_lock(&hs->lock);
	__atomic_store_n(&hs->stopping, 1, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&hs->ra_cv);
	pthread_cond_broadcast(&hs->wr_cv);
	pthread_cond_broadcast(&hs->dg_cv);
	pthread_mutex_unlock(&hs->lock);
	if (hs->dg_started == 1) {
		pthread_join(hs->dg_thread, NULL);
		pthread_mutex_lock(&hs->lock);
		hs->dg_started = 2;
		pthread_mutex_unlock(&hs->lock);
	}
	if (hs->ra_started == 1) {
		pthread_join(hs->ra_thread, NULL);
		pthread_mutex_lock(&hs->lock);
		hs->ra_started = 2;
		pthread_mutex_unlock(&hs->lock);
	}
	/* after read-ahead and the hasher, whose chunks it may still be given;
	 * it writes what it holds, for the next mount */
	if (hs->wr_started == 1) {
		pthread_join(hs->wr_thread, NULL);
		pthread_mutex_lock(&hs->lock);
		hs->wr_started = 2;
		pthread_mutex_unlock(&hs->lock);
	}
}

static void http_close(struct lfs_source *src)
{
	struct http_source *hs = (struct http_source *)src;

	stop_threads(hs);
	source_free(hs);
}

static const struct lfs_source_ops http_ops = {
	.read = http_read,
	.will_need = http_will_need,
	.check = http_check,
	.close = http_close,
};

/* --- open --------------------------------------------------------------- */

static void fill_defaults(struct lfs_http_config *c, const struct lfs_http_config *in)
{
	static const struct lfs_http_config zero;

	*c = in ? *in : zero;
	if (!c->chunk_size)
		c->chunk_size = LFS_HTTP_CHUNK_DEFAULT;
	if (!c->cache_bytes)
		c->cache_bytes = 16u << 20; /* docs/remote.md: a cold start fetches chunks again below it */
	if (!c->tail_size)
		c->tail_size = LFS_HTTP_TAIL_DEFAULT;
	if (!c->max_request)
		c->max_request = 4u << 20;
	if (!c->connections)
		c->connections = 4;
	if (!c->max_retries)
		c->max_retries = 6;
	if (!c->max_redirects)
		c->max_redirects = 3;
	if (c->connect_timeout <= 0)
		c->connect_timeout = 5;
	if (c->remote_timeout <= 0)
		c->remote_timeout = 30;
	if (c->stall_timeout <= 0)
		c->stall_timeout = 10;
	if (c->backoff_base <= 0)
		c->backoff_base = 0.05;
	if (c->backoff_max <= 0)
		c->backoff_max = 2;
	/* Strings are not kept: the caller's may go away after open. */
	c->ca_file = NULL;
	c->s3_region = c->s3_endpoint = c->s3_profile = NULL;
	c->s3_access_key = c->s3_secret_key = c->s3_session_token = NULL;
}

static int source_new(const char *url, const struct lfs_http_config *cfg,
		      struct http_source **out, char *err, size_t errlen)
{
	struct http_source *hs;
	static const struct lfs_http_config zero;
	const struct lfs_http_config *in = cfg ? cfg : &zero;
	pthread_condattr_t ca;
	char *name;
	int rc;

	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK) {
		snprintf(err, errlen, "libcurl: %s",
			 lfs_curl_error() ? lfs_curl_error() : curl_easy_strerror(curl_init_rc));
		return -EIO;
	}
	hs = calloc(1, sizeof(*hs));
	if (!hs)
		return -ENOMEM;
	fill_defaults(&hs->cfg, cfg);
	pthread_mutex_init(&hs->lock, NULL);
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&hs->share_locks[i], NULL);
	/* Deadlines are on the monotonic clock. */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&hs->chunk_cv, &ca);
	pthread_cond_init(&hs->pool_cv, &ca);
	pthread_cond_init(&hs->ra_cv, &ca);
	pthread_cond_init(&hs->wr_cv, &ca);
	pthread_cond_init(&hs->dg_cv, &ca);
	pthread_condattr_destroy(&ca);
	hs->lru.lru_next = hs->lru.lru_prev = &hs->lru;
	hs->src.ops = &http_ops;
	hs->threads_ok = !hs->cfg.defer_threads;

	if (!strncasecmp(url, "s3://", 5)) {
		name_unparsed(hs->name, sizeof(hs->name), url);
		rc = setup_s3(hs, url, in, err, errlen);
		if (rc)
			goto fail;
	} else {
		name = redact_url(url);
		if (!name || strncasecmp(url, "http", 4)) {
			rc = -EINVAL;
			name_unparsed(hs->name, sizeof(hs->name), url);
			snprintf(err, errlen, "%s: not a valid http(s) URL", hs->name);
			free(name);
			goto fail;
		}
		copy_printable(hs->name, sizeof(hs->name), name, strlen(name));
		free(name);
		hs->url = strdup(url);
		hs->https = !strncasecmp(url, "https:", 6);
	}
	if (in->ca_file) {
		if (access(in->ca_file, R_OK)) {
			rc = -errno;
			snprintf(err, errlen, "%s: CA file %s: %s", hs->name, in->ca_file,
				 strerror(-rc));
			goto fail;
		}
		hs->ca_file = strdup(in->ca_file);
		if (!hs->ca_file) {
			rc = -ENOMEM;
			goto fail;
		}
	}
	hs->free_handles = calloc(hs->cfg.connections, sizeof(*hs->free_handles));
	hs->share = curl_share_init();
	if (!hs->url || !hs->free_handles || !hs->share) {
		rc = -ENOMEM;
		goto fail;
	}
	curl_share_setopt(hs->share, CURLSHOPT_LOCKFUNC, share_lock);
	curl_share_setopt(hs->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
	curl_share_setopt(hs->share, CURLSHOPT_USERDATA, hs);
	curl_share_setopt(hs->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
	curl_share_setopt(hs->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	curl_share_setopt(hs->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
	*out = hs;
	return 0;
fail:
	source_free(hs);
	return rc;
}

/* Pins what the open learnt (the tail [tail_off, size) is the source's
 * now) and derives the identities from it. */
static void pin(struct http_source *hs, uint64_t size, unsigned char *tail, uint64_t tail_off,
		const char *etag, const char *last_modified)
{
	char *object = redact_url(hs->url), version[1024];

	hs->src.size = size;
	hs->tail = tail;
	hs->tail_off = tail_off;
	snprintf(hs->etag, sizeof(hs->etag), "%s", etag);
	hs->etag_weak = !strncmp(hs->etag, "W/", 2);
	snprintf(hs->last_modified, sizeof(hs->last_modified), "%s", last_modified);
	if (hs->last_modified[0]) {
		time_t t = curl_getdate(hs->last_modified, NULL);

		hs->src.mtime = t > 0 ? (int64_t)t : 0;
	}
	set_id(hs->src.object, object ? object : hs->name);
	snprintf(version, sizeof(version), "%s etag %s size %llu%s%s", hs->src.object,
		 hs->etag[0] ? hs->etag : "-", (unsigned long long)hs->src.size,
		 hs->etag[0] ? "" : " modified ", hs->etag[0] ? "" : hs->last_modified);
	set_id(hs->src.version, version);
	free(object);
}

/* Takes what the tail GET learnt: size, identity, the tail bytes. */
static void finish_open(struct http_source *hs, struct xfer *x)
{
	pin(hs, x->cr_total, x->dst, x->start, x->etag, x->last_modified);
	x->dst = NULL;
}

/* What the disk tier holds of an object: the head record, as the source
 * that wrote it pinned the object (its text lines), and its tail. */
struct held {
	void *rec;		/* the record; NULL: none */
	uint64_t size, tail_off;
	char etag[256], last_modified[64];
	const unsigned char *tail; /* inside rec: [tail_off, size) */
};

/* Copies line `key VALUE` at *p (up to the newline) into buf. */
static int head_line(const char **p, const char *end, const char *key, char *buf, size_t size)
{
	size_t k = strlen(key), n;
	const char *nl = memchr(*p, '\n', (size_t)(end - *p));

	if (!nl || (size_t)(nl - *p) < k + 1 || memcmp(*p, key, k) || (*p)[k] != ' ' ||
	    (n = (size_t)(nl - *p) - k - 1) >= size)
		return -EINVAL;
	memcpy(buf, *p + k + 1, n);
	buf[n] = 0;
	*p = nl + 1;
	return 0;
}

static int parse_head(struct held *h, void *rec, size_t len)
{
	const char *p = rec, *end = p + len;
	char num[32], *e;

	if (len < sizeof(HEAD_MAGIC) - 1 || memcmp(p, HEAD_MAGIC, sizeof(HEAD_MAGIC) - 1))
		return -EINVAL;
	p += sizeof(HEAD_MAGIC) - 1;
	if (head_line(&p, end, "size", num, sizeof(num)))
		return -EINVAL;
	h->size = strtoull(num, &e, 10);
	if (*e || head_line(&p, end, "tail", num, sizeof(num)))
		return -EINVAL;
	h->tail_off = strtoull(num, &e, 10);
	if (*e || h->tail_off >= h->size ||
	    head_line(&p, end, "etag", h->etag, sizeof(h->etag)) ||
	    head_line(&p, end, "modified", h->last_modified, sizeof(h->last_modified)) ||
	    p >= end || *p++ != '\n' || (uint64_t)(end - p) != h->size - h->tail_off)
		return -EINVAL;
	h->tail = (const unsigned char *)p;
	h->rec = rec;
	return 0;
}

/* Finds what the disk holds of hs's object: its records' directory in
 * hs->dobj, the head in *h (h->rec NULL when none or unusable). */
static void disk_lookup(struct http_source *hs, struct lfs_disk *disk, const char *sha256,
			struct held *h)
{
	unsigned char where[LFS_DIGEST_LEN];
	char *object = redact_url(hs->url), *id;
	const char *what = sha256 ? sha256 : object ? object : hs->name;
	void *rec;
	size_t len;
	int rc;

	memset(h, 0, sizeof(*h));
	id = malloc(strlen(what) + 8);
	if (!id) {
		free(object);
		return;
	}
	sprintf(id, "%s %s", sha256 ? "sha256" : "url", what);
	rc = lfs_digest_bytes(id, strlen(id), where);
	free(id);
	free(object);
	if (rc)
		return; /* no key: the disk is not used */
	hs->keyed_by_sha = sha256 != NULL;
	if (sha256)
		memcpy(hs->version_key, where, LFS_DIGEST_LEN);
	hs->dobj = lfs_disk_object(disk, where, (uint32_t)hs->cfg.chunk_size);
	if (!hs->dobj || lfs_disk_get_head(hs->dobj, &rec, &len))
		return;
	if (parse_head(h, rec, len))
		free(rec);
}

/* The open's conditional: the held ETag, when it is strong and the tail it
 * holds is the one this configuration fetches. */
static const char *held_etag(const struct http_source *hs, const struct held *h)
{
	uint64_t want = h->size > hs->cfg.tail_size ? h->size - hs->cfg.tail_size : 0;

	if (!h->rec || !h->etag[0] || !strncmp(h->etag, "W/", 2) || h->tail_off != want)
		return NULL;
	return h->etag;
}

/* Writes hs's head: what it pinned and its tail. */
static void disk_put_head(struct http_source *hs)
{
	size_t tail_len = (size_t)(hs->src.size - hs->tail_off), n;
	char *rec = malloc(tail_len + 512 + sizeof(hs->etag) + sizeof(hs->last_modified));

	if (!rec)
		return;
	n = (size_t)sprintf(rec, HEAD_MAGIC "size %llu\ntail %llu\netag %s\nmodified %s\n\n",
			    (unsigned long long)hs->src.size, (unsigned long long)hs->tail_off,
			    hs->etag, hs->last_modified);
	memcpy(rec + n, hs->tail, tail_len);
	(void)lfs_disk_put_head(hs->dobj, rec, n + tail_len);
	free(rec);
}

/* After an open: the version key of the chunks, the head written when the
 * disk held none or another version, and under a listed SHA-256 the
 * tail compared with the one held. */
static void disk_after_open(struct http_source *hs, const struct held *h, int not_modified)
{
	int same;

	if (!hs->dobj)
		return;
	if (!hs->keyed_by_sha &&
	    lfs_digest_bytes(hs->src.version, strlen(hs->src.version), hs->version_key)) {
		hs->dobj = NULL; /* no key: the disk is not used */
		return;
	}
	if (not_modified)
		return;
	same = h->rec && h->size == hs->src.size && h->tail_off == hs->tail_off &&
	       !memcmp(h->tail, hs->tail, (size_t)(hs->src.size - hs->tail_off));
	if (hs->keyed_by_sha && h->rec && !same) {
		/* Two URLs, one listed digest, two contents: at least one
		 * list line is wrong, and nothing says which. */
		hs->dobj = NULL;
		hs->hc.disk_conflict = 1;
		return;
	}
	if (!same || strcmp(h->etag, hs->etag) || strcmp(h->last_modified, hs->last_modified))
		disk_put_head(hs);
}

/* Pins what the disk held, after a 304. */
static int finish_held(struct http_source *hs, const struct held *h)
{
	size_t n = (size_t)(h->size - h->tail_off);
	unsigned char *tail = malloc(n);

	if (!tail)
		return -ENOMEM;
	memcpy(tail, h->tail, n);
	pin(hs, h->size, tail, h->tail_off, h->etag, h->last_modified);
	hs->hc.not_modified = 1;
	return 0;
}

struct opening {
	struct http_source *hs;
	CURL *h;
	struct xfer x;
	unsigned attempt;
	double next_try;
	int active, done;
	struct held held;
	const char *if_none_match;
};

int lfs_source_http_open_many(struct lfs_http_open *objs, size_t n,
			      const struct lfs_http_config *cfg)
{
	struct opening *op = calloc(n ? n : 1, sizeof(*op));
	CURLM *multi = NULL;
	double deadline;
	size_t left = n;
	int first_rc = 0;

	for (size_t i = 0; i < n; i++) {
		objs[i].src = NULL;
		objs[i].rc = 0;
		objs[i].err[0] = 0;
	}
	if (!op) {
		for (size_t i = 0; i < n; i++) {
			objs[i].rc = -ENOMEM;
			snprintf(objs[i].err, sizeof(objs[i].err), "out of memory");
		}
		return n ? -ENOMEM : 0;
	}
	for (size_t i = 0; i < n; i++) {
		int rc = source_new(objs[i].url, cfg, &op[i].hs, objs[i].err, sizeof(objs[i].err));

		if (!rc) {
			xfer_init(&op[i].x, op[i].hs);
			op[i].h = make_handle(op[i].hs);
			if (!op[i].h)
				rc = -ENOMEM;
		}
		if (!rc && cfg && cfg->disk) {
			disk_lookup(op[i].hs, cfg->disk, objs[i].sha256, &op[i].held);
			op[i].if_none_match = held_etag(op[i].hs, &op[i].held);
		}
		if (rc) {
			objs[i].rc = rc;
			if (!objs[i].err[0])
				snprintf(objs[i].err, sizeof(objs[i].err), "%s: %s", objs[i].url,
					 strerror(-rc));
			op[i].done = 1;
			left--;
		}
	}
	multi = left ? curl_multi_init() : NULL;
	if (left && !multi) {
		for (size_t i = 0; i < n; i++)
			if (!op[i].done) {
				objs[i].rc = -ENOMEM;
				snprintf(objs[i].err, sizeof(objs[i].err), "%s: out of memory",
					 op[i].hs->name);
				op[i].done = 1;
			}
		left = 0;
	}
	{
		struct lfs_http_config c;

		fill_defaults(&c, cfg);
		deadline = now_s() + c.remote_timeout;
	}
	while (left) {
		double now = now_s(), wake = now + 0.1;
		int running = 0, msgs;
		CURLMsg *m;

		for (size_t i = 0; i < n; i++) {
			struct opening *o = &op[i];

			if (o->done || o->active)
				continue;
			if (now >= deadline) {
				objs[i].rc = -ETIMEDOUT;
				if (o->x.msg[0])
					snprintf(objs[i].err, sizeof(objs[i].err), "%s (gave up after %g s)",
						 o->x.msg, o->hs->cfg.remote_timeout);
				else
					snprintf(objs[i].err, sizeof(objs[i].err), "%s: timed out after %g s",
						 o->hs->name, o->hs->cfg.remote_timeout);
				o->done = 1;
				left--;
				continue;
			}
			if (now < o->next_try) {
				if (o->next_try < wake)
					wake = o->next_try;
				continue;
			}
			xfer_reset_response(&o->x);
			o->x.opening = 1;
			o->x.if_none_match = o->if_none_match;
			if (xfer_setup(&o->x, o->h, deadline - now) ||
			    curl_multi_add_handle(multi, o->h) != CURLM_OK) {
				objs[i].rc = -ENOMEM;
				snprintf(objs[i].err, sizeof(objs[i].err), "%s: out of memory", o->hs->name);
				o->done = 1;
				left--;
				continue;
			}
			o->active = 1;
		}
		if (!left)
			break;
		curl_multi_perform(multi, &running);
		while ((m = curl_multi_info_read(multi, &msgs))) {
			struct opening *o = NULL;
			size_t i;

			if (m->msg != CURLMSG_DONE)
				continue;
			for (i = 0; i < n; i++)
				if (op[i].h == m->easy_handle && op[i].active) {
					o = &op[i];
					break;
				}
			if (!o)
				continue;
			{
				CURLcode res = m->data.result;

				curl_multi_remove_handle(multi, o->h);
				o->active = 0;
				xfer_finish(&o->x, res);
			}
			if (o->x.kind == K_OK) {
				int rc = 0;

				if (o->x.not_modified)
					rc = finish_held(o->hs, &o->held);
				else
					finish_open(o->hs, &o->x);
				if (!rc)
					disk_after_open(o->hs, &o->held, o->x.not_modified);
				objs[i].rc = rc;
				if (rc)
					snprintf(objs[i].err, sizeof(objs[i].err), "%s: out of memory",
						 o->hs->name);
				o->done = 1;
				left--;
				continue;
			}
			if (retryable(&o->x) && o->attempt < o->hs->cfg.max_retries) {
				double b = backoff(o->hs, o->attempt);

				if (now_s() + b < deadline) {
					o->attempt++;
					o->next_try = now_s() + b;
					add(&o->hs->hc.retries, 1);
					continue;
				}
			}
			objs[i].rc = o->x.rc ? o->x.rc : -EIO;
			snprintf(objs[i].err, sizeof(objs[i].err), "%s", o->x.msg);
			o->done = 1;
			left--;
		}
		if (!left)
			break;
		{
			double w = wake - now_s();

			curl_multi_poll(multi, NULL, 0, w > 0 ? (int)(w * 1000) + 1 : 1, NULL);
		}
	}
	for (size_t i = 0; i < n; i++) {
		struct opening *o = &op[i];

		if (o->active)
			curl_multi_remove_handle(multi, o->h);
		if (objs[i].rc && !first_rc)
			first_rc = objs[i].rc;
		free(o->held.rec);
		if (!o->hs)
			continue;
		if (!objs[i].rc) {
			o->hs->free_handles[o->hs->nfree++] = o->h;
			o->hs->nmade = 1;
			dg_setup(o->hs, objs[i].sha256, objs[i].digest_ctx);
			objs[i].src = &o->hs->src;
		} else {
			if (o->x.opening)
				free(o->x.dst);
			curl_slist_free_all(o->x.headers);
			if (o->h)
				curl_easy_cleanup(o->h);
			source_free(o->hs);
		}
	}
	if (multi)
		curl_multi_cleanup(multi);
	free(op);
	return first_rc;
}

int lfs_source_http_open(const char *url, const struct lfs_http_config *cfg,
			 struct lfs_source **out, char *err, size_t errlen)
{
	struct lfs_http_open o = { .url = url };
	int rc = lfs_source_http_open_many(&o, 1, cfg);

	if (rc) {
		snprintf(err, errlen, "%s", o.err);
		return rc;
	}
	*out = o.src;
	return 0;
}

int lfs_source_http_counters(const struct lfs_source *src, struct lfs_http_counters *out)
{
	const struct http_source *hs = (const struct http_source *)src;
	const uint64_t *from;
	uint64_t *to = (uint64_t *)out;

	if (!src || src->ops != &http_ops)
		return -EINVAL;
	from = (const uint64_t *)&hs->hc;
	for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
		to[i] = __atomic_load_n(&from[i], __ATOMIC_RELAXED);
	out->cached_bytes = __atomic_load_n(&hs->cached, __ATOMIC_RELAXED);
	out->disk_pending = __atomic_load_n(&hs->wr_pending, __ATOMIC_RELAXED);
	return 0;
}

void lfs_source_http_start(struct lfs_source *src)
{
	struct http_source *hs = (struct http_source *)src;

	if (!src || src->ops != &http_ops)
		return;
	pthread_mutex_lock(&hs->lock);
	hs->threads_ok = 1;
	dg_start(hs);
	pthread_mutex_unlock(&hs->lock);
}

int lfs_source_http_untrusted(const struct lfs_source *src)
{
	return src && src->ops == &http_ops &&
	       __atomic_load_n(&((const struct http_source *)src)->hc.digest_state, __ATOMIC_ACQUIRE) ==
		       LFS_HTTP_DIGEST_MISMATCH;
}

void lfs_source_http_stop(struct lfs_source *src)
{
	if (src && src->ops == &http_ops)
		stop_threads((struct http_source *)src);
}

void lfs_source_http_name(const char *url, char *buf, size_t len)
{
	char *name = strncasecmp(url, "s3://", 5) ? redact_url(url) : NULL;

	if (name)
		copy_printable(buf, len, name, strlen(name));
	else
		name_unparsed(buf, len, url);
	free(name);
}

void lfs_source_http_last_error(struct lfs_source *src, char *buf, size_t len)
{
	struct http_source *hs = (struct http_source *)src;

	if (!len)
		return;
	buf[0] = 0;
	if (!src || src->ops != &http_ops)
		return;
	pthread_mutex_lock(&hs->lock);
	snprintf(buf, len, "%s", hs->last_err);
	pthread_mutex_unlock(&hs->lock);
}

int lfs_source_http_validate(struct lfs_source *src)
{
	struct http_source *hs = (struct http_source *)src;
	unsigned char byte;

	if (src->ops != &http_ops)
		return -EINVAL;
	if (is_stale(hs))
		return -ESTALE;
	return fetch(hs, 0, 1, &byte, NULL, now_s() + hs->cfg.remote_timeout, 0);
}
