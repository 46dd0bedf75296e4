/* The remote source against real servers on loopback (started by
 * tests/remote/run.sh, which passes their URLs in LFS_* variables): nginx
 * over http and https, a fault-injecting proxy before it, and an S3
 * endpoint that checks every SigV4 signature with botocore.  Every byte
 * read through the source is compared with the local file. */
#include "../unit/helpers.h"

#include "../../cache/digest.h"
#include "../../cache/disk.h"
#include "../../cache/source_http.h"
#include "../../fs/zipindex.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>

static const char *need(const char *name)
{
	const char *v = getenv(name);

	if (!v)
		fail_msg("%s is not set: run this through tests/remote/run.sh", name);
	return v;
}

static char *url_of(const char *base, const char *path)
{
	char *u = malloc(strlen(base) + strlen(path) + 2);

	sprintf(u, "%s/%s", base, path);
	return u;
}

/* A fault of the proxy (see faultproxy.py) on one of nginx's files. */
static char *fault_url(const char *spec, const char *file)
{
	const char *base = need("LFS_PROXY");
	char *u = malloc(strlen(base) + strlen(spec) + strlen(file) + 8);

	sprintf(u, "%s/_f/%s/%s", base, spec, file);
	return u;
}

static unsigned char *load(const char *name, size_t *len)
{
	char path[4096];
	FILE *f;
	unsigned char *p;
	long n;

	snprintf(path, sizeof(path), "%s/%s", need("LFS_DATA"), name);
	f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	p = malloc((size_t)n + 1);
	assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return p;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct lfs_http_counters counters(const struct lfs_source *src)
{
	struct lfs_http_counters c;

	assert_int_equal(lfs_source_http_counters(src, &c), 0);
	return c;
}

static struct lfs_source *open_ok(const char *url, const struct lfs_http_config *cfg)
{
	struct lfs_source *src = NULL;
	char err[512] = "";
	int rc = lfs_source_http_open(url, cfg, &src, err, sizeof(err));

	if (rc)
		fail_msg("open %s: %d %s", url, rc, err);
	return src;
}

/* A refusal: rc, one line naming the object, with `want` in it, and none of
 * the secrets. */
static void expect_refused(const char *url, const struct lfs_http_config *cfg, int rc,
			   const char *want)
{
	struct lfs_source *src = NULL;
	char err[512] = "";
	int got = lfs_source_http_open(url, cfg, &src, err, sizeof(err));

	print_message("    refused: %s\n", err);
	if (got != rc)
		fail_msg("open %s: %d (%s), wanted %d", url, got, err, rc);
	assert_null(src);
	assert_null(strchr(err, '\n'));
	assert_true(strlen(err) > 10);
	if (!strstr(err, want))
		fail_msg("'%s' lacks '%s'", err, want);
	assert_null(strstr(err, "secret"));
	assert_null(strstr(err, "Signature="));
	assert_null(strchr(err, '?'));
}

/* Reads all of src in pieces of changing sizes, then at random offsets,
 * comparing with want. */
static void read_compare(struct lfs_source *src, const unsigned char *want, size_t len)
{
	size_t piece = 1, off = 0, max = 700000;
	unsigned char *buf = malloc(max);
	uint32_t x = 12345;

	assert_int_equal(src->size, len);
	while (off < len) {
		size_t n = piece < len - off ? piece : len - off;
		int rc = lfs_source_read(src, buf, n, off);

		if (rc)
			fail_msg("read %zu at %zu: %d", n, off, rc);
		assert_memory_equal(buf, want + off, n);
		off += n;
		piece = piece * 7 % max + 1;
	}
	for (int i = 0; i < 200; i++) {
		size_t o, n;

		x = x * 1103515245 + 12345;
		o = x % len;
		x = x * 1103515245 + 12345;
		n = 1 + x % 200000;
		if (n > len - o)
			n = len - o;
		assert_int_equal(lfs_source_read(src, buf, n, o), 0);
		assert_memory_equal(buf, want + o, n);
	}
	free(buf);
}

static void read_file_compare(struct lfs_source *src, const char *name)
{
	size_t len;
	unsigned char *want = load(name, &len);

	read_compare(src, want, len);
	free(want);
}

/* Reads the first `chunks` chunks of the default size and the tail. */
static void read_part_compare(struct lfs_source *src, const char *name, size_t chunks)
{
	size_t len, n = chunks * LFS_HTTP_CHUNK_DEFAULT;
	unsigned char *want = load(name, &len), *buf = malloc(len);

	assert_true(n + LFS_HTTP_TAIL_DEFAULT < len);
	assert_int_equal(lfs_source_read(src, buf, n, 0), 0);
	assert_memory_equal(buf, want, n);
	assert_int_equal(lfs_source_read(src, buf, 1000, len - 1000), 0);
	assert_memory_equal(buf, want + len - 1000, 1000);
	free(buf);
	free(want);
}

/* --- plain http -------------------------------------------------------- */

static void test_open_reads_tail_once(void **state)
{
	char *u = url_of(need("LFS_HTTP"), "small.zip");
	struct lfs_source *src = open_ok(u, NULL);
	struct lfs_http_counters c = counters(src);
	char path[4096];
	struct stat st;
	unsigned char buf[100];

	(void)state;
	snprintf(path, sizeof(path), "%s/small.zip", need("LFS_DATA"));
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(c.requests, 1);
	assert_int_equal(src->size, (uint64_t)st.st_size);
	assert_int_equal(src->mtime, st.st_mtime);
	assert_string_equal(src->object, u);
	assert_non_null(strstr(src->version, "etag \""));
	/* The tail is served from what open fetched. */
	assert_int_equal(lfs_source_read(src, buf, sizeof(buf), src->size - sizeof(buf)), 0);
	assert_int_equal(counters(src).requests, 1);
	assert_int_equal(counters(src).tail_hits, 1);
	read_file_compare(src, "small.zip");
	assert_int_equal(lfs_source_check(src), 0);
	assert_int_equal(lfs_source_http_validate(src), 0);
	lfs_source_close(src);
	free(u);
}

/* The zip index opens a remote layer with one request when its central
 * directory fits the tail, two when it does not. */
static void test_index_requests(void **state)
{
	static const struct { const char *file; uint64_t entries, requests; } cases[] = {
		{ "small.zip", 8, 1 },
		{ "many.zip", 3000, 2 },
		{ "zip64.zip", 66000, 2 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *u = url_of(need("LFS_HTTP"), cases[i].file), err[512];
		struct lfs_source *src = open_ok(u, NULL);
		struct lfs_zip_index *zi;
		struct lfs_http_counters c;

		assert_int_equal(lfs_zip_open_source(src, u, NULL, &zi, err, sizeof(err)), 0);
		c = counters(src);
		print_message("    %s: %llu entries, %llu requests, %llu bytes fetched of %llu\n",
			      cases[i].file, (unsigned long long)zi->count,
			      (unsigned long long)c.requests, (unsigned long long)c.bytes_fetched,
			      (unsigned long long)src->size);
		assert_int_equal(zi->count, cases[i].entries);
		assert_int_equal(c.requests, cases[i].requests);
		lfs_zip_close(zi);
		free(u);
	}
}

static void test_open_many_at_once(void **state)
{
	struct lfs_http_open o[6] = { 0 };
	char *urls[6];
	double t0;
	int rc;

	(void)state;
	/* 400 ms per request: five in turn would take two seconds. */
	for (int i = 0; i < 5; i++) {
		char spec[64], file[32];

		snprintf(spec, sizeof(spec), "lat=400,tag=many%d", i);
		snprintf(file, sizeof(file), "layer%d.zip", i + 1);
		urls[i] = fault_url(spec, file);
		o[i].url = urls[i];
	}
	urls[5] = fault_url("lat=400,tag=many5", "absent.zip");
	o[5].url = urls[5];
	t0 = now();
	rc = lfs_source_http_open_many(o, 6, NULL);
	print_message("    6 opens in %.2f s\n", now() - t0);
	assert_true(now() - t0 < 1.2);
	assert_int_equal(rc, -ENOENT);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(o[i].rc, 0);
		assert_int_equal(counters(o[i].src).requests, 1);
		read_file_compare(o[i].src, "small.zip");
		lfs_source_close(o[i].src);
	}
	assert_int_equal(o[5].rc, -ENOENT);
	assert_null(o[5].src);
	assert_non_null(strstr(o[5].err, "absent.zip: HTTP 404"));
	for (int i = 0; i < 6; i++)
		free(urls[i]);
}

static void test_refusals(void **state)
{
	const char *http = need("LFS_HTTP");
	struct lfs_http_config quick = { .max_retries = 1, .remote_timeout = 5 };
	char u[1024];

	(void)state;
	snprintf(u, sizeof(u), "%s/absent.zip?X-Amz-Signature=secretsig&X-Amz-Credential=AKID", http);
	expect_refused(u, NULL, -ENOENT, "/absent.zip: HTTP 404 Not Found");
	snprintf(u, sizeof(u), "http://user:secretpw@%s/absent.zip", http + 7);
	expect_refused(u, NULL, -ENOENT, "HTTP 404");
	expect_refused("http://127.0.0.1:1/x.zip", &quick, -ECONNREFUSED, "http://127.0.0.1:1/x.zip: ");
	expect_refused("http://no-such-host.invalid/x.zip", &quick, -EHOSTUNREACH, "no-such-host.invalid");
	snprintf(u, sizeof(u), "%s/empty.zip", http);
	expect_refused(u, NULL, -EINVAL, "empty object");
	snprintf(u, sizeof(u), "%s/loop.zip", http);
	expect_refused(u, NULL, -EIO, "redirects");
	expect_refused("http://", NULL, -EINVAL, "not a valid");
	expect_refused("http://user:secretpw@[bad/x.zip", NULL, -EINVAL, "http://[bad/x.zip");
	/* A redirect within http is followed. */
	snprintf(u, sizeof(u), "%s/moved.zip", http);
	lfs_source_close(open_ok(u, NULL));
}

static void test_https(void **state)
{
	struct lfs_http_config ca = { .ca_file = need("LFS_CA") };
	struct lfs_http_config insecure = { .insecure = 1 };
	char *u = url_of(need("LFS_HTTPS_NAME"), "small.zip");
	char *ip = url_of(need("LFS_HTTPS"), "small.zip");
	char *down = url_of(need("LFS_HTTPS"), "to-http.zip");
	struct lfs_source *src;

	(void)state;
	src = open_ok(u, &ca);
	read_file_compare(src, "small.zip");
	lfs_source_close(src);
	lfs_source_close(open_ok(ip, &ca));
	/* The test's own certificate is not trusted by default. */
	expect_refused(u, NULL, -EACCES, "certificate");
	lfs_source_close(open_ok(u, &insecure));
	/* Never from https to http. */
	expect_refused(down, &ca, -EIO, "to-http.zip: refused a redirect away from https");
	free(u);
	free(ip);
	free(down);
}

/* --- faults ------------------------------------------------------------ */

/* Opens through a fault that spares the open (skip=1), reads everything,
 * and checks what was retried. */
static void fault_case(const char *spec, const char *file, uint64_t retries_min,
		       size_t kind_off)
{
	struct lfs_http_config cfg = { .backoff_base = 0.01, .backoff_max = 0.05 };
	char *u = fault_url(spec, file);
	struct lfs_source *src = open_ok(u, &cfg);
	struct lfs_http_counters c;

	read_file_compare(src, file);
	c = counters(src);
	print_message("    %-28s requests %3llu retries %2llu\n", spec,
		      (unsigned long long)c.requests, (unsigned long long)c.retries);
	assert_true(c.retries >= retries_min);
	if (kind_off != (size_t)-1)
		assert_true(*(uint64_t *)((char *)&c + kind_off) >= retries_min);
	assert_int_equal(lfs_source_check(src), 0);
	lfs_source_close(src);
	free(u);
}

#define KIND(f) offsetof(struct lfs_http_counters, f)

static void test_faults_retried(void **state)
{
	(void)state;
	fault_case("skip=1,503=3", "small.zip", 3, KIND(err_throttled));
	fault_case("skip=1,slowdown=2", "small.zip", 2, KIND(err_throttled));
	fault_case("skip=1,429=2", "small.zip", 2, KIND(err_throttled));
	fault_case("skip=1,500=2", "small.zip", 2, KIND(err_5xx));
	fault_case("skip=1,reset=3", "small.zip", 3, KIND(err_transfer));
	fault_case("skip=1,trunc=3", "small.zip", 3, KIND(err_transfer));
	fault_case("skip=1,shift=2", "small.zip", 2, KIND(err_range));
	fault_case("skip=1,norange=2", "small.zip", 0, (size_t)-1);
	/* Faults on the open itself. */
	fault_case("503=2", "many.zip", 2, KIND(err_throttled));
	fault_case("reset=2", "many.zip", 2, KIND(err_transfer));
}

static void test_bad_servers_never_give_wrong_bytes(void **state)
{
	struct lfs_http_config cfg = { .backoff_base = 0.01, .backoff_max = 0.02, .max_retries = 2 };
	unsigned char *buf = malloc(1 << 20);
	size_t len;
	unsigned char *want = load("big.bin", &len);
	struct lfs_source *src;
	char *u;

	(void)state;
	/* Always a 206 for other bytes than asked. */
	u = fault_url("skip=1,shift=0", "big.bin");
	src = open_ok(u, &cfg);
	memset(buf, 0, 1 << 20);
	assert_int_equal(lfs_source_read(src, buf, 4096, 8192), -EIO);
	assert_true(counters(src).err_range >= 3);
	{
		char line[512];

		lfs_source_http_last_error(src, line, sizeof(line));
		print_message("    %s\n", line);
		assert_non_null(strstr(line, "Content-Range"));
	}
	lfs_source_close(src);
	free(u);

	/* Range ignored: the start of the object is taken from the 200... */
	u = fault_url("skip=1,norange=0", "big.bin");
	src = open_ok(u, &cfg);
	assert_int_equal(lfs_source_read(src, buf, 100000, 5000), 0);
	assert_memory_equal(buf, want + 5000, 100000);
	/* ...but the far part is not worth the whole object. */
	assert_int_equal(lfs_source_read(src, buf, 4096, 20 << 20), -EIO);
	lfs_source_close(src);
	free(u);

	/* A server that ignores ranges from the start: a small object comes
	 * whole, a large one is refused at open. */
	u = fault_url("norange=0", "small.zip");
	src = open_ok(u, &cfg);
	read_file_compare(src, "small.zip");
	assert_int_equal(counters(src).requests, 1);
	lfs_source_close(src);
	free(u);
	u = fault_url("norange=0", "big.bin");
	expect_refused(u, &cfg, -EPROTO, "ignores Range");
	free(u);
	free(want);
	free(buf);
}

static void test_timeouts(void **state)
{
	struct lfs_http_config cfg = { .remote_timeout = 1, .backoff_base = 0.01 };
	unsigned char buf[4096];
	size_t len;
	unsigned char *want = load("small.zip", &len);
	struct lfs_source *src;
	double t0;
	char *u;

	(void)state;
	u = fault_url("skip=1,stall=1", "small.zip");
	src = open_ok(u, &cfg);
	t0 = now();
	assert_int_equal(lfs_source_read(src, buf, sizeof(buf), 0), -ETIMEDOUT);
	print_message("    read gave up after %.2f s\n", now() - t0);
	assert_true(now() - t0 < 1.6);
	assert_true(counters(src).err_timeout >= 1);
	/* The next read tries again. */
	assert_int_equal(lfs_source_read(src, buf, sizeof(buf), 0), 0);
	assert_memory_equal(buf, want, sizeof(buf));
	lfs_source_close(src);
	free(u);

	u = fault_url("stall=0", "small.zip");
	t0 = now();
	expect_refused(u, &cfg, -ETIMEDOUT, "small.zip");
	assert_true(now() - t0 < 1.6);
	free(u);
	free(want);
}

static void replace_file(const char *name, const char *with)
{
	char cmd[8192];

	/* A new file renamed over the old: a new ETag (nginx: mtime and size). */
	snprintf(cmd, sizeof(cmd), "cp '%s/%s' '%s/%s.new' && touch -d '+1 hour' '%s/%s.new' && mv '%s/%s.new' '%s/%s'",
		 need("LFS_DATA"), with, need("LFS_DATA"), name, need("LFS_DATA"), name,
		 need("LFS_DATA"), name, need("LFS_DATA"), name);
	assert_int_equal(system(cmd), 0);
}

static void stale_case(const char *url, const char *name, const struct lfs_http_config *cfg)
{
	struct lfs_source *src;
	unsigned char buf[4096];
	size_t len;
	unsigned char *want;

	replace_file(name, "small.zip");
	want = load(name, &len);
	src = open_ok(url, cfg);
	assert_int_equal(lfs_source_read(src, buf, sizeof(buf), 0), 0);
	assert_memory_equal(buf, want, sizeof(buf));
	replace_file(name, "many.zip");
	/* Cached bytes are still those of the version opened; bytes not yet
	 * fetched cannot be, so the source is stale from then on. */
	assert_int_equal(lfs_source_read(src, buf, sizeof(buf), 0), 0);
	assert_int_equal(lfs_source_read(src, buf, sizeof(buf), 2 << 20), -ESTALE);
	assert_int_equal(lfs_source_check(src), -ESTALE);
	assert_int_equal(lfs_source_read(src, buf, sizeof(buf), 0), -ESTALE);
	assert_int_equal(lfs_source_changed(src), 1);
	assert_true(counters(src).err_stale >= 1);
	lfs_source_close(src);
	/* A fresh open of the new version validates; an old one does not. */
	free(want);
}

static void test_replaced_object_is_stale(void **state)
{
	char *u = url_of(need("LFS_HTTP"), "replace.zip");
	struct lfs_source *a, *b;

	(void)state;
	stale_case(u, "replace.zip", NULL);
	a = open_ok(u, NULL);
	assert_int_equal(lfs_source_http_validate(a), 0);
	replace_file("replace.zip", "small.zip");
	assert_int_equal(lfs_source_http_validate(a), -ESTALE);
	assert_int_equal(lfs_source_check(a), -ESTALE);
	b = open_ok(u, NULL);
	assert_string_not_equal(a->version, b->version);
	assert_string_equal(a->object, b->object);
	lfs_source_close(a);
	lfs_source_close(b);
	free(u);
}

/* Without an ETag the source pins Last-Modified (If-Unmodified-Since). */
static void test_no_etag(void **state)
{
	char *u = fault_url("noetag=0", "replace.zip");
	struct lfs_source *src;
	unsigned char buf[4096];
	char line[512];
	int rc;

	(void)state;
	replace_file("replace.zip", "small.zip");
	src = open_ok(u, NULL);
	assert_null(strstr(src->version, "etag \""));
	assert_non_null(strstr(src->version, "modified "));
	assert_int_equal(lfs_source_read(src, buf, sizeof(buf), 0), 0);
	replace_file("replace.zip", "many.zip");
	rc = lfs_source_read(src, buf, sizeof(buf), 2 << 20);
	lfs_source_http_last_error(src, line, sizeof(line));
	print_message("    %s\n", line);
	assert_int_equal(rc, -ESTALE);
	lfs_source_close(src);
	free(u);
}

/* --- concurrency ------------------------------------------------------- */

/* All of one source's requests, its open's included, on one kept-alive
 * connection when one reader reads in turn. */
static void test_keep_alive(void **state)
{
	struct lfs_http_config cfg = { .chunk_size = 64 << 10, .no_sequential = 1 };
	char *u = url_of(need("LFS_HTTP"), "other.zip");
	struct lfs_source *src = open_ok(u, &cfg);
	unsigned char *buf = malloc(1 << 20);
	char line[512], conn[64] = "";
	int requests = 0, conns = 0;
	FILE *f;

	(void)state;
	for (int i = 0; i < 20; i++)
		assert_int_equal(lfs_source_read(src, buf, 100, (uint64_t)i << 16), 0);
	assert_int_equal(counters(src).requests, 21);
	lfs_source_close(src);
	/* nginx logs a request once it is answered: all are by now. */
	f = fopen(need("LFS_NGINX_LOG"), "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		char c[64];

		if (!strstr(line, "GET /other.zip ") || sscanf(line, "%63s", c) != 1)
			continue;
		requests++;
		if (strcmp(c, conn)) {
			conns++;
			snprintf(conn, sizeof(conn), "%s", c);
		}
	}
	fclose(f);
	print_message("    %d requests on %d connection(s)\n", requests, conns);
	assert_int_equal(requests, 21);
	assert_int_equal(conns, 1);
	free(buf);
	free(u);
}


struct same_arg {
	struct lfs_source *src;
	const unsigned char *want;
	pthread_barrier_t *go;
	int rc;
};

static void *read_same(void *p)
{
	struct same_arg *a = p;
	unsigned char buf[4096];

	pthread_barrier_wait(a->go);
	a->rc = lfs_source_read(a->src, buf, sizeof(buf), 1 << 20);
	if (!a->rc && memcmp(buf, a->want + (1 << 20), sizeof(buf)))
		a->rc = -100;
	return NULL;
}

/* Eight threads wanting one chunk at once: one request. */
static void test_single_flight(void **state)
{
	char *u = fault_url("lat=300,tag=sf", "small.zip");
	struct lfs_source *src = open_ok(u, NULL);
	struct same_arg a[8];
	pthread_t t[8];
	pthread_barrier_t go;
	size_t len;
	unsigned char *want = load("small.zip", &len);
	struct lfs_http_counters c;

	(void)state;
	pthread_barrier_init(&go, NULL, 8);
	for (int i = 0; i < 8; i++) {
		a[i] = (struct same_arg){ src, want, &go, 0 };
		pthread_create(&t[i], NULL, read_same, &a[i]);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(a[i].rc, 0);
	}
	c = counters(src);
	assert_int_equal(c.requests, 2);
	assert_int_equal(c.chunk_misses, 1);
	assert_int_equal(c.chunk_hits, 7);
	pthread_barrier_destroy(&go);
	lfs_source_close(src);
	free(want);
	free(u);
}

/* Adjacent missing chunks in one request; cached ones not again. */
static void test_coalescing(void **state)
{
	struct lfs_http_config cfg = { .chunk_size = 128 << 10, .max_request = 1 << 20,
				       .no_sequential = 1 };
	char *u = url_of(need("LFS_HTTP"), "big.bin");
	struct lfs_source *src = open_ok(u, &cfg);
	unsigned char *buf = malloc(4 << 20);
	size_t len;
	unsigned char *want = load("big.bin", &len);

	(void)state;
	assert_int_equal(lfs_source_read(src, buf, 100, 5 << 17), 0); /* chunk 5 */
	assert_int_equal(counters(src).requests, 2);
	/* chunks 2-4 missing, 5 cached, 6-9 missing: two requests */
	assert_int_equal(lfs_source_read(src, buf, 8 << 17, 2 << 17), 0);
	assert_memory_equal(buf, want + (2 << 17), 8 << 17);
	assert_int_equal(counters(src).requests, 4);
	assert_int_equal(lfs_source_read(src, buf, 8 << 17, 2 << 17), 0);
	assert_int_equal(counters(src).requests, 4);
	/* 3 MiB: split at max_request */
	assert_int_equal(lfs_source_read(src, buf, 3 << 20, 4 << 20), 0);
	assert_memory_equal(buf, want + (4 << 20), 3 << 20);
	assert_int_equal(counters(src).requests, 7);
	lfs_source_close(src);
	free(want);
	free(buf);
	free(u);
}

struct random_arg {
	struct lfs_source *src;
	const unsigned char *want;
	size_t len;
	uint32_t seed;
	int bad;
};

static void *read_random(void *p)
{
	struct random_arg *a = p;
	unsigned char *buf = malloc(300000);
	uint32_t x = a->seed;

	for (int i = 0; i < 150; i++) {
		size_t o, n;

		x = x * 1103515245 + 12345;
		o = x % a->len;
		x = x * 1103515245 + 12345;
		n = 1 + x % 300000;
		if (n > a->len - o)
			n = a->len - o;
		if (lfs_source_read(a->src, buf, n, o) || memcmp(buf, a->want + o, n))
			a->bad++;
	}
	free(buf);
	return NULL;
}

/* Many threads, random ranges, a cache far smaller than the object and
 * fewer connections than threads: every byte right, the cache within its
 * budget after. */
static void test_parallel_small_cache(void **state)
{
	struct lfs_http_config cfg = { .chunk_size = 64 << 10, .cache_bytes = 1 << 20,
				       .connections = 3, .backoff_base = 0.01 };
	char *u = fault_url("lat=2,tag=par", "big.bin");
	struct lfs_source *src;
	struct random_arg a[8];
	pthread_t t[8];
	size_t len;
	unsigned char *want = load("big.bin", &len);
	struct lfs_http_counters c;

	(void)state;
	src = open_ok(u, &cfg);
	for (int i = 0; i < 8; i++) {
		a[i] = (struct random_arg){ src, want, len, (uint32_t)i * 7919u + 1, 0 };
		pthread_create(&t[i], NULL, read_random, &a[i]);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(a[i].bad, 0);
	}
	/* Chunks read-ahead still has in flight count until they land (and
	 * the budget is enforced then): wait for that, a few seconds at most. */
	for (int i = 0; i < 100 && counters(src).cached_bytes > cfg.cache_bytes; i++)
		usleep(50000);
	c = counters(src);
	print_message("    %llu requests, %llu MB fetched, cache %llu KiB\n",
		      (unsigned long long)c.requests, (unsigned long long)c.bytes_fetched >> 20,
		      (unsigned long long)c.cached_bytes >> 10);
	assert_true(c.cached_bytes <= cfg.cache_bytes);
	lfs_source_close(src);
	free(want);
	free(u);
}

/* A reader going in order pays a round trip per window, not per chunk. */
static void test_sequential_ahead(void **state)
{
	struct lfs_http_config cfg = { .chunk_size = 64 << 10 };
	char *u = fault_url("lat=20,tag=seq", "big.bin");
	struct lfs_source *src = open_ok(u, &cfg);
	unsigned char *buf = malloc(64 << 10);
	size_t len;
	unsigned char *want = load("big.bin", &len);
	uint64_t chunks = (len - LFS_HTTP_TAIL_DEFAULT) / (64 << 10);
	struct lfs_http_counters c;

	(void)state;
	for (size_t off = 0; off < len; off += 64 << 10) {
		size_t n = len - off < (64 << 10) ? len - off : 64 << 10;

		assert_int_equal(lfs_source_read(src, buf, n, off), 0);
		assert_memory_equal(buf, want + off, n);
	}
	c = counters(src);
	print_message("    %llu chunks read in order: %llu requests, %llu ahead\n",
		      (unsigned long long)chunks, (unsigned long long)c.requests,
		      (unsigned long long)c.readahead_chunks);
	/* how far ahead the background gets depends on the machine's speed
	 * (a sanitizer build is several times slower): that it reads ahead at
	 * all, and saves requests, is what is checked */
	assert_true(c.requests < chunks);
	assert_true(c.readahead_chunks > 0);
	lfs_source_close(src);
	free(want);
	free(buf);
	free(u);
}

static void test_will_need(void **state)
{
	struct lfs_http_config cfg = { .chunk_size = 128 << 10, .no_sequential = 1 };
	char *u = fault_url("lat=50,tag=ra", "other.zip");
	struct lfs_source *src = open_ok(u, &cfg);
	unsigned char *buf = malloc(1 << 20);
	size_t len;
	unsigned char *want = load("other.zip", &len);
	uint64_t before;

	(void)state;
	lfs_source_will_need(src, 0, 1 << 20);
	for (int i = 0; i < 100; i++) {
		struct lfs_http_counters c = counters(src);

		if (c.readahead_chunks >= 8 && c.cached_bytes >= (1 << 20))
			break;
		usleep(20000);
	}
	before = counters(src).requests;
	assert_true(before >= 2);
	assert_int_equal(lfs_source_read(src, buf, 1 << 20, 0), 0);
	assert_memory_equal(buf, want, 1 << 20);
	assert_int_equal(counters(src).requests, before);
	/* A hint for what a reader then wants at once: the reader waits for
	 * the chunks in flight rather than asking again. */
	lfs_source_will_need(src, 1 << 20, 512 << 10);
	assert_int_equal(lfs_source_read(src, buf, 512 << 10, 1 << 20), 0);
	assert_memory_equal(buf, want + (1 << 20), 512 << 10);
	assert_true(counters(src).requests <= before + 4);
	/* Closing with read-ahead in flight. */
	lfs_source_will_need(src, 0, len);
	lfs_source_close(src);
	free(want);
	free(buf);
	free(u);
}

/* --- S3 ---------------------------------------------------------------- */

static struct lfs_http_config s3cfg(const char *secret, const char *region)
{
	return (struct lfs_http_config){
		.s3_endpoint = need("LFS_S3"),
		.s3_region = region ? region : need("LFS_S3_REGION"),
		.s3_access_key = "AKIDTEST",
		.s3_secret_key = secret,
	};
}

static void test_s3_signed_reads(void **state)
{
	struct lfs_http_config cfg = s3cfg("secrettest", NULL);
	struct lfs_source *src = open_ok("s3://layers/small.zip", &cfg);
	struct lfs_zip_index *zi;
	char err[512];

	(void)state;
	print_message("    object %s\n", src->object);
	assert_non_null(strstr(src->object, "/layers/small.zip")); /* path-style: an IP */
	read_file_compare(src, "small.zip");
	lfs_source_close(src);

	src = open_ok("s3://layers/small.zip", &cfg);
	assert_int_equal(lfs_zip_open_source(src, "s3://layers/small.zip", NULL, &zi, err,
					     sizeof(err)), 0);
	assert_int_equal(counters(src).requests, 1);
	lfs_zip_close(zi);

	/* A key that needs encoding, signed as S3 computes it. */
	src = open_ok("s3://layers/odd dir/a+b=c&d.zip", &cfg);
	read_file_compare(src, "small.zip");
	lfs_source_close(src);
}

static void test_s3_environment_and_files(void **state)
{
	char path[4096];
	struct lfs_source *src;

	(void)state;
	/* Virtual-hosted (BUCKET.s3.localhost), everything from the environment. */
	setenv("AWS_ENDPOINT_URL", need("LFS_S3_VHOST"), 1);
	setenv("AWS_REGION", need("LFS_S3_REGION"), 1);
	setenv("AWS_ACCESS_KEY_ID", "AKIDTEST", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "secrettest", 1);
	src = open_ok("s3://layers/many.zip", NULL);
	print_message("    object %s\n", src->object);
	assert_non_null(strstr(src->object, "://layers.s3.localhost:"));
	read_file_compare(src, "many.zip");
	lfs_source_close(src);
	/* Temporary credentials: the session token is sent, and checked. */
	setenv("AWS_ACCESS_KEY_ID", "ASIATEMP", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "secrettemp", 1);
	setenv("AWS_SESSION_TOKEN", "goodtoken", 1);
	lfs_source_close(open_ok("s3://layers/many.zip", NULL));
	setenv("AWS_SESSION_TOKEN", "oldtoken", 1);
	expect_refused("s3://layers/many.zip", NULL, -EACCES, "HTTP 400 Bad Request (ExpiredToken: ");
	unsetenv("AWS_SESSION_TOKEN");
	expect_refused("s3://layers/many.zip", NULL, -EACCES, "InvalidToken");
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	/* The shared credentials file: [default] has a wrong secret,
	 * [layers] the right one. */
	snprintf(path, sizeof(path), "%s/credentials", need("LFS_AWS_DIR"));
	setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
	expect_refused("s3://layers/many.zip", NULL, -EACCES, "SignatureDoesNotMatch");
	setenv("AWS_PROFILE", "layers", 1);
	lfs_source_close(open_ok("s3://layers/many.zip", NULL));
	unsetenv("AWS_PROFILE");
	unsetenv("AWS_SHARED_CREDENTIALS_FILE");
	/* ~/.aws/credentials (HOME is the test's own) is absent: unsigned. */
	expect_refused("s3://layers/many.zip", NULL, -EACCES, "AccessDenied");
	unsetenv("AWS_ENDPOINT_URL");
	unsetenv("AWS_REGION");
}

static void test_s3_refusals(void **state)
{
	struct lfs_http_config bad_secret = s3cfg("secretwrong", NULL);
	struct lfs_http_config bad_region = s3cfg("secrettest", "us-west-2");
	struct lfs_http_config good = s3cfg("secrettest", NULL);
	struct lfs_http_config bad_key = good;

	(void)state;
	bad_key.s3_access_key = "AKIDNOBODY";
	expect_refused("s3://layers/small.zip", &bad_secret, -EACCES,
		       "s3://layers/small.zip: HTTP 403 Forbidden (SignatureDoesNotMatch: ");
	expect_refused("s3://layers/small.zip", &bad_region, -EACCES,
		       "AuthorizationHeaderMalformed: The authorization header is malformed; the region 'us-west-2' is wrong");
	expect_refused("s3://layers/small.zip", &bad_key, -EACCES, "InvalidAccessKeyId");
	expect_refused("s3://layers/absent.zip", &good, -ENOENT, "HTTP 404 Not Found (NoSuchKey: ");
	expect_refused("s3://nobucket/small.zip", &good, -ENOENT, "NoSuchBucket");
	expect_refused("s3://layers", &good, -EINVAL, "not an S3 URL");
}

static void test_s3_replaced_object_is_stale(void **state)
{
	struct lfs_http_config cfg = s3cfg("secrettest", NULL);

	(void)state;
	stale_case("s3://layers/replace.zip", "layers/replace.zip", &cfg);
}


/* --- the host's disk tier ---------------------------------------------- */

struct host {
	char *dir;
	int fd;
	struct lfs_disk *disk;
};

static void host_open(struct host *h)
{
	struct lfs_disk_config dc = { 0 };
	char err[256];

	h->dir = tmpdir_new();
	chmod(h->dir, 0700);
	h->fd = open(h->dir, O_RDONLY | O_DIRECTORY);
	assert_true(h->fd >= 0);
	assert_int_equal(lfs_disk_open(h->fd, &dc, &h->disk, err, sizeof(err)), 0);
}

static void host_close(struct host *h)
{
	lfs_disk_close(h->disk);
	close(h->fd);
	tmpdir_free(h->dir);
}

static struct lfs_source *open_sha(const char *url, const char *sha256,
				   const struct lfs_http_config *cfg)
{
	struct lfs_http_open o = { .url = url, .sha256 = sha256 };

	if (lfs_source_http_open_many(&o, 1, cfg))
		fail_msg("open %s: %d %s", url, o.rc, o.err);
	return o.src;
}

static void sha_of(const char *name, char hex[LFS_DIGEST_HEX])
{
	unsigned char d[LFS_DIGEST_LEN];
	size_t len;
	unsigned char *p = load(name, &len);

	lfs_digest_bytes(p, len, d);
	lfs_digest_hex(d, hex);
	free(p);
}

/* A second open of an object the host read, through another presigned URL
 * of it: one request (answered 304), no byte of body, every read from the
 * disk. */
static void test_disk_second_open_fetches_nothing(void **state)
{
	struct host h;
	struct lfs_http_config cfg = { 0 };
	char *a = url_of(need("LFS_HTTP"), "many.zip?X-Amz-Signature=first");
	char *b = url_of(need("LFS_HTTP"), "many.zip?X-Amz-Signature=second");
	struct lfs_source *src;
	struct lfs_http_counters c;

	(void)state;
	host_open(&h);
	cfg.disk = h.disk;
	src = open_ok(a, &cfg);
	assert_int_equal(counters(src).not_modified, 0);
	read_file_compare(src, "many.zip");
	c = counters(src);
	assert_int_equal(c.disk_hits, 0);
	lfs_source_close(src); /* the writer drains first */
	assert_true(c.disk_writes + c.disk_skipped >= 1);

	src = open_ok(b, &cfg);
	c = counters(src);
	assert_int_equal(c.requests, 1);
	assert_int_equal(c.not_modified, 1);
	assert_int_equal(c.bytes_fetched, 0);
	read_file_compare(src, "many.zip");
	c = counters(src);
	print_message("    second open: %llu requests, %llu bytes fetched, %llu chunks from disk\n",
		      (unsigned long long)c.requests, (unsigned long long)c.bytes_fetched,
		      (unsigned long long)c.disk_hits);
	assert_int_equal(c.requests, 1);
	assert_int_equal(c.bytes_fetched, 0);
	assert_true(c.disk_hits >= 3);
	lfs_source_close(src);
	host_close(&h);
	free(a);
	free(b);
}

/* An object replaced between two opens: the second gets the new version
 * (206, the new tail) and none of the old chunks. */
static void test_disk_replaced_object(void **state)
{
	struct host h;
	struct lfs_http_config cfg = { 0 };
	char *u = url_of(need("LFS_HTTP"), "replace.zip");
	struct lfs_source *src;
	struct lfs_http_counters c;

	(void)state;
	host_open(&h);
	cfg.disk = h.disk;
	replace_file("replace.zip", "small.zip");
	src = open_ok(u, &cfg);
	read_file_compare(src, "replace.zip");
	lfs_source_close(src);
	replace_file("replace.zip", "other.zip");
	src = open_ok(u, &cfg);
	read_file_compare(src, "replace.zip");
	c = counters(src);
	assert_int_equal(c.not_modified, 0);
	assert_int_equal(c.disk_hits, 0);
	lfs_source_close(src);
	/* and the new version is what the next open finds */
	src = open_ok(u, &cfg);
	assert_int_equal(counters(src).not_modified, 1);
	read_file_compare(src, "replace.zip");
	assert_int_equal(counters(src).requests, 1);
	lfs_source_close(src);
	host_close(&h);
	free(u);
}

/* Under a listed SHA-256 the records are the bytes', whatever URL: nginx
 * then S3 (another ETag) share them.  A URL whose tail differs from the
 * one held under the same digest shares nothing. */
static void test_disk_shared_by_sha256(void **state)
{
	struct host h;
	struct lfs_http_config cfg = s3cfg("secrettest", NULL);
	char *u = url_of(need("LFS_HTTP"), "small.zip"), *m = url_of(need("LFS_HTTP"), "many.zip");
	char sha[LFS_DIGEST_HEX];
	struct lfs_source *src;
	struct lfs_http_counters c;

	(void)state;
	host_open(&h);
	cfg.disk = h.disk;
	sha_of("small.zip", sha);
	src = open_sha(u, sha, &cfg);
	read_file_compare(src, "small.zip");
	lfs_source_close(src);

	src = open_sha("s3://layers/small.zip", sha, &cfg);
	assert_int_equal(counters(src).not_modified, 0); /* S3's ETag is another */
	read_file_compare(src, "layers/small.zip");
	c = counters(src);
	assert_int_equal(c.requests, 1);
	assert_true(c.disk_hits >= 3);
	assert_int_equal(c.disk_conflict, 0);
	lfs_source_close(src);
	/* S3 again: its own ETag held now, 304 (If-None-Match signed) */
	src = open_sha("s3://layers/small.zip", sha, &cfg);
	assert_int_equal(counters(src).not_modified, 1);
	lfs_source_close(src);

	src = open_sha(m, sha, &cfg); /* many.zip under small.zip's digest */
	c = counters(src);
	assert_int_equal(c.disk_conflict, 1);
	/* not all of it: once every byte was fetched, the digest says it is
	 * not small.zip (test_digest_mismatch) */
	read_part_compare(src, "many.zip", 3);
	assert_int_equal(counters(src).disk_hits, 0);
	lfs_source_close(src);
	host_close(&h);
	free(u);
	free(m);
}


/* --- the listed digest -------------------------------------------------- */

struct told {
	pthread_mutex_t lock;
	int calls, match;
	unsigned char actual[LFS_DIGEST_LEN];
	struct lfs_source *src;
};

static void on_digest(void *ctx, struct lfs_source *src, int match,
		      const unsigned char actual[LFS_DIGEST_LEN])
{
	struct told *t = ctx;

	pthread_mutex_lock(&t->lock);
	t->calls++;
	t->match = match;
	t->src = src;
	memcpy(t->actual, actual, LFS_DIGEST_LEN);
	pthread_mutex_unlock(&t->lock);
}

static struct lfs_source *open_told(const char *url, const char *sha256,
				    const struct lfs_http_config *cfg, struct told *t)
{
	struct lfs_http_open o = { .url = url, .sha256 = sha256, .digest_ctx = t };

	if (lfs_source_http_open_many(&o, 1, cfg))
		fail_msg("open %s: %d %s", url, o.rc, o.err);
	return o.src;
}

/* The hasher runs in the background at the lowest priority: waits for it
 * to decide (a bound against a hang, not a timing). */
static struct lfs_http_counters decided(struct lfs_source *src)
{
	struct lfs_http_counters c = counters(src);

	for (int i = 0; i < 3000 && c.digest_state == LFS_HTTP_DIGEST_PENDING; i++) {
		struct timespec ts = { 0, 20000000 };

		nanosleep(&ts, NULL);
		c = counters(src);
	}
	return c;
}

/* The call comes after the state is set (and, on a mismatch, after the
 * records are gone): waits for it, as decided() does. */
static void wait_told(struct told *t, int calls)
{
	for (int i = 0; i < 3000; i++) {
		struct timespec ts = { 0, 20000000 };
		int n;

		pthread_mutex_lock(&t->lock);
		n = t->calls;
		pthread_mutex_unlock(&t->lock);
		if (n >= calls)
			return;
		nanosleep(&ts, NULL);
	}
}

static void hex_of(const unsigned char d[LFS_DIGEST_LEN], char hex[LFS_DIGEST_HEX])
{
	lfs_digest_hex(d, hex);
}

/* Reads all of it once, in order or from the end back, in pieces of
 * `piece`; with `tolerant`, a read may fail with EIO once the digest was
 * found wrong (the hasher may finish before the last pieces are read). */
static void read_all(struct lfs_source *src, const char *name, size_t piece, int backwards,
		     int tolerant)
{
	size_t len;
	unsigned char *want = load(name, &len), *buf = malloc(piece);
	size_t pieces = (len + piece - 1) / piece;

	for (size_t k = 0; k < pieces; k++) {
		size_t i = backwards ? pieces - 1 - k : k, off = i * piece;
		size_t n = len - off < piece ? len - off : piece;
		int rc = lfs_source_read(src, buf, n, off);

		if (rc == -EIO && tolerant &&
		    counters(src).digest_state == LFS_HTTP_DIGEST_MISMATCH)
			continue;
		if (rc)
			fail_msg("read %zu at %zu: %d", n, off, rc);
		assert_memory_equal(buf, want + off, n);
	}
	free(buf);
	free(want);
}

/* The listed digest is the bytes': read in order, every chunk is hashed
 * from memory as it arrives (nothing read twice), and the source says so
 * once, with the digest. */
static void test_digest_verified_in_order(void **state)
{
	struct lfs_http_config cfg = { .on_digest = on_digest };
	struct told t = { PTHREAD_MUTEX_INITIALIZER, 0, 0, { 0 }, NULL };
	char *u = url_of(need("LFS_HTTP"), "small.zip"), sha[LFS_DIGEST_HEX], got[LFS_DIGEST_HEX];
	struct lfs_source *src;
	struct lfs_http_counters c;

	(void)state;
	sha_of("small.zip", sha);
	src = open_told(u, sha, &cfg, &t);
	c = counters(src);
	assert_int_equal(c.digest_state, LFS_HTTP_DIGEST_PENDING);
	assert_true(c.digest_chunks >= 10);
	read_all(src, "small.zip", 100000, 0, 0);
	c = decided(src);
	assert_int_equal(c.digest_state, LFS_HTTP_DIGEST_VERIFIED);
	assert_int_equal(c.digest_seen, c.digest_chunks);
	assert_int_equal(c.digest_bytes, src->size);
	assert_int_equal(c.digest_refetched, 0);
	assert_int_equal(c.digest_disk, 0);
	wait_told(&t, 1);
	pthread_mutex_lock(&t.lock);
	assert_int_equal(t.calls, 1);
	assert_int_equal(t.match, 1);
	assert_ptr_equal(t.src, src);
	hex_of(t.actual, got);
	assert_string_equal(got, sha);
	pthread_mutex_unlock(&t.lock);
	/* and it goes on serving */
	read_file_compare(src, "small.zip");
	lfs_source_close(src);

	/* without a listed digest there is nothing to check */
	src = open_told(u, NULL, &cfg, &t);
	read_all(src, "small.zip", 1 << 20, 0, 0);
	c = counters(src);
	assert_int_equal(c.digest_state, LFS_HTTP_DIGEST_UNLISTED);
	assert_int_equal(c.digest_chunks, 0);
	lfs_source_close(src);
	/* known to be right before (the stack's memo): nothing hashed */
	src = open_told(u, sha, &cfg, &t);
	lfs_source_http_digest_known(src);
	c = counters(src);
	assert_int_equal(c.digest_state, LFS_HTTP_DIGEST_VERIFIED);
	read_all(src, "small.zip", 1 << 20, 0, 0);
	assert_int_equal(counters(src).digest_bytes, 0);
	lfs_source_close(src);
	pthread_mutex_lock(&t.lock);
	assert_int_equal(t.calls, 1);
	pthread_mutex_unlock(&t.lock);
	free(u);
}

/* Read from the end back through a cache far smaller than the object:
 * the hasher cannot go in order while chunks arrive, and what it needs is
 * gone from memory by the time it could.  Without a disk tier those
 * chunks are fetched again, once every byte was fetched once; with one,
 * they are read back from the disk. */
static void test_digest_out_of_order(void **state)
{
	struct lfs_http_config cfg = { .chunk_size = 64 << 10, .cache_bytes = 1 << 20,
				       .no_sequential = 1 };
	char *u = url_of(need("LFS_HTTP"), "big.bin"), sha[LFS_DIGEST_HEX];
	struct lfs_source *src;
	struct lfs_http_counters c;
	struct host h;

	(void)state;
	sha_of("big.bin", sha);
	src = open_sha(u, sha, &cfg);
	read_all(src, "big.bin", 64 << 10, 1, 0);
	c = decided(src);
	print_message("    no disk: %llu chunks, %llu fetched again\n",
		      (unsigned long long)c.digest_chunks, (unsigned long long)c.digest_refetched);
	assert_int_equal(c.digest_state, LFS_HTTP_DIGEST_VERIFIED);
	assert_true(c.digest_refetched > 0);
	assert_int_equal(c.digest_disk, 0);
	assert_int_equal(c.digest_bytes, src->size);
	lfs_source_close(src);

	host_open(&h);
	cfg.disk = h.disk;
	src = open_sha(u, sha, &cfg);
	read_all(src, "big.bin", 64 << 10, 1, 0);
	c = decided(src);
	print_message("    disk: %llu chunks, %llu from disk, %llu fetched again (%llu not written)\n",
		      (unsigned long long)c.digest_chunks, (unsigned long long)c.digest_disk,
		      (unsigned long long)c.digest_refetched, (unsigned long long)c.disk_skipped);
	assert_int_equal(c.digest_state, LFS_HTTP_DIGEST_VERIFIED);
	assert_true(c.digest_disk > 0);
	/* only what the writer could not keep up with is fetched again */
	assert_true(c.digest_refetched <= c.disk_skipped);
	assert_int_equal(c.digest_bytes, src->size);
	lfs_source_close(src);
	host_close(&h);
	free(u);
}

/* A listed digest that is not the bytes' (a valid zip, the wrong line):
 * once every byte was fetched, the source says so with the real digest,
 * fails every read from then on, and the host holds no record of the
 * object any more; a second open under the same digest starts afresh. */
static void test_digest_mismatch(void **state)
{
	struct host h;
	struct lfs_http_config cfg = { .on_digest = on_digest };
	struct told t = { PTHREAD_MUTEX_INITIALIZER, 0, 0, { 0 }, NULL };
	char *u = url_of(need("LFS_HTTP"), "small.zip");
	char wrong[LFS_DIGEST_HEX], right[LFS_DIGEST_HEX], got[LFS_DIGEST_HEX], id[128], rel[256];
	unsigned char where[LFS_DIGEST_LEN], byte;
	struct lfs_source *src;
	struct lfs_http_counters c;
	struct stat st;
	char *p;

	(void)state;
	host_open(&h);
	cfg.disk = h.disk;
	sha_of("many.zip", wrong);
	sha_of("small.zip", right);
	snprintf(id, sizeof(id), "sha256 %s", wrong);
	lfs_digest_bytes(id, strlen(id), where);
	lfs_digest_hex(where, got);
	snprintf(rel, sizeof(rel), "v1/objects/%s", got);
	p = path_in(h.dir, rel);

	src = open_told(u, wrong, &cfg, &t);
	read_all(src, "small.zip", 100000, 0, 1);
	c = decided(src);
	assert_int_equal(c.digest_state, LFS_HTTP_DIGEST_MISMATCH);
	assert_int_equal(c.digest_bytes, src->size);
	wait_told(&t, 1);
	pthread_mutex_lock(&t.lock);
	assert_int_equal(t.calls, 1);
	assert_int_equal(t.match, 0);
	hex_of(t.actual, got);
	assert_string_equal(got, right);
	pthread_mutex_unlock(&t.lock);
	/* every read fails now, even of what is in memory or the tail */
	assert_int_equal(lfs_source_read(src, &byte, 1, 0), -EIO);
	assert_int_equal(lfs_source_read(src, &byte, 1, src->size - 1), -EIO);
	assert_int_equal(lfs_source_changed(src), 0); /* not stale: untrusted */
	/* the records are gone, and stay gone */
	assert_int_equal(stat(p, &st), -1);
	lfs_source_close(src);
	assert_int_equal(stat(p, &st), -1);

	/* another open under the same digest: nothing held, the tail again */
	src = open_told(u, wrong, &cfg, &t);
	c = counters(src);
	assert_int_equal(c.not_modified, 0);
	assert_int_equal(c.digest_state, LFS_HTTP_DIGEST_PENDING);
	assert_int_equal(lfs_source_read(src, &byte, 1, 0), 0);
	assert_int_equal(counters(src).disk_hits, 0);
	lfs_source_close(src);
	host_close(&h);
	free(p);
	free(u);
}

/* defer_threads (a daemon that forks after opening): no thread before
 * lfs_source_http_start, fetched chunks written by the fetching thread
 * itself, read-ahead only after the start. */
static void test_disk_deferred_threads(void **state)
{
	struct host h;
	struct lfs_http_config cfg = { .chunk_size = 64 << 10, .defer_threads = 1 };
	char *u = url_of(need("LFS_HTTP"), "big.bin");
	struct lfs_source *src;
	struct lfs_http_counters c;
	unsigned char *buf = malloc(64 << 10);

	(void)state;
	host_open(&h);
	cfg.disk = h.disk;
	src = open_ok(u, &cfg);
	for (uint64_t off = 0; off < (4 << 20); off += 64 << 10)
		assert_int_equal(lfs_source_read(src, buf, 64 << 10, off), 0);
	c = counters(src);
	assert_int_equal(c.readahead_chunks, 0);
	assert_int_equal(c.disk_writes, 64);
	assert_int_equal(c.disk_pending, 0);
	lfs_source_http_start(src);
	for (uint64_t off = 4 << 20; off < (8 << 20); off += 64 << 10)
		assert_int_equal(lfs_source_read(src, buf, 64 << 10, off), 0);
	assert_true(counters(src).readahead_chunks > 0);
	lfs_source_close(src);
	host_close(&h);
	free(buf);
	free(u);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_reads_tail_once),
		cmocka_unit_test(test_index_requests),
		cmocka_unit_test(test_open_many_at_once),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_https),
		cmocka_unit_test(test_faults_retried),
		cmocka_unit_test(test_bad_servers_never_give_wrong_bytes),
		cmocka_unit_test(test_timeouts),
		cmocka_unit_test(test_replaced_object_is_stale),
		cmocka_unit_test(test_no_etag),
		cmocka_unit_test(test_keep_alive),
		cmocka_unit_test(test_single_flight),
		cmocka_unit_test(test_coalescing),
		cmocka_unit_test(test_parallel_small_cache),
		cmocka_unit_test(test_sequential_ahead),
		cmocka_unit_test(test_will_need),
		cmocka_unit_test(test_s3_signed_reads),
		cmocka_unit_test(test_s3_environment_and_files),
		cmocka_unit_test(test_s3_refusals),
		cmocka_unit_test(test_s3_replaced_object_is_stale),
		cmocka_unit_test(test_disk_second_open_fetches_nothing),
		cmocka_unit_test(test_disk_replaced_object),
		cmocka_unit_test(test_disk_shared_by_sha256),
		cmocka_unit_test(test_disk_deferred_threads),
		cmocka_unit_test(test_digest_verified_in_order),
		cmocka_unit_test(test_digest_out_of_order),
		cmocka_unit_test(test_digest_mismatch),
	};

	if (getenv("CMOCKA_TEST_FILTER"))
		cmocka_set_test_filter(getenv("CMOCKA_TEST_FILTER"));
	return cmocka_run_group_tests_name("source_http", tests, NULL, NULL);
}
