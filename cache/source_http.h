/* A remote source: a layer zip behind HTTP range requests (http://, https://)
 * or in an S3 bucket (s3://BUCKET/KEY), over libcurl.
 *
 * Opening fetches the object's tail in one ranged GET (a suffix range of
 * `tail_size` bytes): it gives the size (Content-Range), the ETag and
 * Last-Modified, and the bytes the zip index reads first (end records,
 * ZIP64 records and, when it fits, the central directory), which are kept
 * for the source's life and served without another request.
 *
 * Other bytes are fetched in aligned chunks of `chunk_size` by ranged GETs;
 * a read missing several adjacent chunks fetches them in one request.  A
 * chunk wanted by several threads at once is fetched once: the others wait
 * for it (never holding a lock while they wait or while a transfer runs).
 * Fetched chunks stay in a small LRU cache of `cache_bytes`.  will_need()
 * hands the range to a read-ahead thread of the source's own; so does a
 * read that finds the chunks behind it cached (a reader going in order): a
 * window as long as its run, at most `max_request`, is fetched ahead.
 *
 * Integrity: the ETag (or, without one, Last-Modified and size) is pinned at
 * open; every later GET carries If-Match (If-Unmodified-Since).  A 412, or a
 * response whose ETag or total size differs, makes the source stale: read()
 * and check() return -ESTALE from then on.  Every 206's Content-Range is
 * checked against the range asked for; a 200 (Range ignored) is used only
 * when the bytes wanted lie within its first RANGE_IGNORED_MAX bytes
 * (4 MiB), else the read fails.  No byte is served that the response did
 * not prove to be at the offset asked for.
 *
 * The host's disk tier (cfg.disk, disk.h): what a source fetched (its
 * chunks and its tail) is written there, by a thread of the source's own,
 * off the path of the read that needed it, and a chunk missing from memory
 * is looked up there before it is fetched.  Records are keyed by what the
 * object is: its SHA-256 when the list gives one (then every URL of those
 * bytes shares them), else its URL without query (every presigned URL of
 * one object shares them), and each chunk carries the object's version
 * (ETag and size, or Last-Modified and size), so a chunk of another
 * version is never served.  A mount validates what the host holds of an
 * object with the one request it makes anyway: the tail GET carries
 * If-None-Match with the ETag the host holds; a 304 means the tail and
 * every chunk on disk are the object's current bytes, and nothing but
 * headers crosses the network.  (Without a strong ETag the tail is fetched
 * and its version compared.)  That request is also what proves the mount
 * may read the object at all: nothing is served from the disk for an
 * object whose open was refused.  Under a listed SHA-256, a tail fetched
 * that differs from the one on disk means the list's digest is wrong for
 * one of the URLs: that source shares nothing with the disk (counted in
 * disk_conflict).
 *
 * The listed digest: an object opened with its SHA-256 (lfs_http_open's
 * sha256) is checked against it once every byte has been fetched.  Each
 * chunk is marked when it becomes ready (fetched, or found on the disk);
 * a hasher thread of the source's own, at the lowest priority, hashes the
 * chunks in order as they become ready, while they are still in memory
 * (a reader going in order costs no second read of anything), and a chunk
 * it finds gone once read is read back from the disk tier, or, with none
 * and only once every chunk was fetched, fetched again.  The tail, held
 * for the source's life, comes last.  A match is reported; a mismatch
 * makes every later read fail with -EIO, removes the object's records
 * from the disk tier (lfs_disk_forget_object) and is reported (on_digest)
 * so that the caller can log it and drop what it keyed by that digest.
 *
 * Faults: connect and transfer timeouts; 5xx, 429, resets, short bodies and
 * bad ranges are retried with capped exponential backoff and jitter.  A read
 * waits at most `remote_timeout` seconds in all, then fails with -ETIMEDOUT;
 * other failures are -EIO.  Both are transient: the next read tries again.
 *
 * S3: `s3://BUCKET/KEY`; region from the config, else AWS_REGION, else
 * AWS_DEFAULT_REGION, else us-east-1; endpoint from the config, else
 * AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL, else
 * https://s3.REGION.amazonaws.com.  Virtual-hosted addressing
 * (BUCKET.endpoint-host) unless `s3_path_style`, or the endpoint's host is
 * an IP address, or the bucket name cannot be a host name label.
 * Credentials from the config, else AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
 * / AWS_SESSION_TOKEN, else the shared credentials file
 * (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials, profile from the
 * config, else AWS_PROFILE, else "default"); without any, requests are
 * unsigned (public buckets).  Requests are signed by libcurl
 * (CURLOPT_AWS_SIGV4, "aws:amz:REGION:s3").
 *
 * Messages: every error is one line naming the object by its URL without
 * query string or user information (so presigned signatures and
 * credentials never appear), with the HTTP status (and S3's error Code)
 * or libcurl's error.  Nothing here logs; callers log the line.
 *
 * Thread safety: as for every source (cache/source.h).  The config and the
 * strings it points to are copied at open. */
#ifndef LFS_SOURCE_HTTP_H
#define LFS_SOURCE_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "digest.h"
#include "source.h"

struct lfs_disk;

/* Every field's zero (or NULL) means its default, so `{0}` or a NULL
 * config is the default configuration. */
struct lfs_http_config {
	size_t chunk_size;	/* read granularity, bytes; default LFS_HTTP_CHUNK_DEFAULT */
	size_t cache_bytes;	/* fetched chunks kept in memory; default 16 MiB */
	size_t tail_size;	/* bytes fetched at open; default LFS_HTTP_TAIL_DEFAULT */
	size_t max_request;	/* largest ranged GET of coalesced chunks; default 4 MiB */
	unsigned connections;	/* transfers at once, each a kept-alive connection; default 4 */
	int no_sequential;	/* 1: do not fetch ahead of a reader going in order
				 * (will_need still does) */
	int defer_threads;	/* 1: start no thread (read-ahead, the disk writer)
				 * before lfs_source_http_start(): for a daemon
				 * that forks after opening its layers.  Until
				 * then there is no read-ahead and fetched chunks
				 * are written to the disk by the thread that
				 * fetched them. */
	unsigned max_retries;	/* retries of one request; default 6 */
	unsigned max_redirects;	/* default 3; redirects never go from https to http */
	double connect_timeout;	/* seconds; default 5 */
	double remote_timeout;	/* seconds a read (or an open) may take in all; default 30 */
	double stall_timeout;	/* seconds without a byte before a transfer is dropped; default 10 */
	double backoff_base;	/* seconds of the first retry's backoff; default 0.05 */
	double backoff_max;	/* cap of the backoff; default 2 */
	int insecure;		/* 1: do not verify https certificates (never the default) */
	const char *ca_file;	/* PEM bundle to verify https against instead of the system's */
	/* S3 */
	const char *s3_region;
	const char *s3_endpoint;	/* "https://host[:port]" */
	int s3_path_style;		/* 1: BUCKET in the path, not the host */
	const char *s3_profile;		/* profile in the shared credentials file */
	const char *s3_access_key;	/* explicit credentials (tests, options) */
	const char *s3_secret_key;
	const char *s3_session_token;
	/* The host's disk tier (see above); NULL: none.  The caller keeps it
	 * open until every source opened with it is closed. */
	struct lfs_disk *disk;
	/* Called once for a source opened with a SHA-256, when every byte of
	 * it has been fetched and hashed, from the hasher thread with no lock
	 * held: match is 1 when the digest is the listed one, actual is the
	 * one the bytes have; ctx is the object's digest_ctx.  On a mismatch
	 * the source already fails every read (-EIO) and its records are gone
	 * from the disk tier.  NULL: nobody is told (the state is still in
	 * the counters). */
	void (*on_digest)(void *ctx, struct lfs_source *src, int match,
			  const unsigned char actual[LFS_DIGEST_LEN]);
};

/* The listed SHA-256 of a source (lfs_http_counters.digest_state). */
enum lfs_http_digest {
	LFS_HTTP_DIGEST_UNLISTED,	/* none listed: nothing to check */
	LFS_HTTP_DIGEST_PENDING,	/* not every byte fetched and hashed yet */
	LFS_HTTP_DIGEST_VERIFIED,	/* every byte hashed (or known before): the listed one */
	LFS_HTTP_DIGEST_MISMATCH,	/* every byte hashed: another; reads fail with -EIO */
};

#define LFS_HTTP_CHUNK_DEFAULT (256u * 1024)
/* The end record with the longest comment, the ZIP64 locator and record. */
#define LFS_HTTP_TAIL_DEFAULT (65536u + 22 + 20 + 56)

/* 1 when `name` is a URL this source opens (http://, https://, s3://). */
int lfs_source_http_is_url(const char *name);

/* Opens one object: one ranged GET of its tail.  0, or a negative errno
 * with a one-line reason in err: -ENOENT (404, NoSuchKey), -EACCES (401,
 * 403, S3 authorization errors), -ECONNREFUSED / -EHOSTUNREACH (no
 * connection), -ETIMEDOUT, -EPROTO (the server does not serve ranges
 * properly), -EINVAL (a bad URL, an empty object), -EIO (anything else,
 * after retries).  cfg may be NULL. */
int lfs_source_http_open(const char *url, const struct lfs_http_config *cfg,
			 struct lfs_source **out, char *err, size_t errlen);

/* One object of lfs_source_http_open_many(). */
struct lfs_http_open {
	const char *url;	/* in */
	const char *sha256;	/* in: the object's SHA-256 in hex as listed, or NULL:
				 * names its records in the disk tier, and is
				 * checked once every byte was fetched */
	void *digest_ctx;	/* in: handed to cfg->on_digest */
	struct lfs_source *src;	/* out: the source, or NULL */
	int rc;			/* out: 0 or a negative errno, as lfs_source_http_open */
	char err[512];		/* out: the one-line reason when rc != 0 */
};

/* Opens n objects at once (their tail GETs run concurrently, in one curl
 * multi), each with its own result.  Returns 0 when all opened, else the
 * first failure's rc; the caller closes the sources that opened. */
int lfs_source_http_open_many(struct lfs_http_open *objs, size_t n,
			      const struct lfs_http_config *cfg);

/* What one remote source did, on top of src->counters.  Snapshot. */
struct lfs_http_counters {
	uint64_t requests;	/* HTTP requests sent, retries included */
	uint64_t bytes_fetched;	/* body bytes received (of any status) */
	uint64_t retries;	/* requests repeated after a transient failure */
	uint64_t chunk_hits;	/* chunks a read found cached or being fetched */
	uint64_t chunk_misses;	/* chunks a read had to fetch */
	uint64_t tail_hits;	/* reads served wholly from the tail kept at open */
	uint64_t readahead_chunks; /* chunks fetched by will_need */
	uint64_t cached_bytes;	/* chunk bytes in memory now */
	/* failed requests, by kind */
	uint64_t err_timeout;	/* connect or transfer timeout */
	uint64_t err_connect;	/* no connection, name not resolved */
	uint64_t err_transfer;	/* reset, short body, TLS, other libcurl errors */
	uint64_t err_throttled;	/* 429, 503 (S3 SlowDown) */
	uint64_t err_5xx;	/* other 5xx */
	uint64_t err_4xx;	/* 4xx but 412 and 429 */
	uint64_t err_range;	/* Range ignored or a wrong Content-Range */
	uint64_t err_stale;	/* 412, or the ETag or size changed */
	/* the disk tier */
	uint64_t not_modified;	/* 1: the open's answer was 304, the tail came from disk */
	uint64_t disk_hits;	/* chunks read from the disk instead of fetched */
	uint64_t disk_writes;	/* chunks written to it */
	uint64_t disk_skipped;	/* chunks not written (the writer was behind) */
	uint64_t disk_pending;	/* chunks waiting for the writer now */
	uint64_t disk_conflict;	/* 1: the tail differs from the one on disk under
				 * the same SHA-256: nothing shared */
	/* the listed SHA-256 */
	uint64_t digest_state;	/* enum lfs_http_digest */
	uint64_t digest_chunks;	/* chunks before the tail (0 when nothing is listed) */
	uint64_t digest_seen;	/* of them, ready at least once (fetched or found on disk) */
	uint64_t digest_bytes;	/* bytes hashed so far */
	uint64_t digest_disk;	/* chunks hashed from the disk (gone from memory) */
	uint64_t digest_refetched; /* chunks fetched again to be hashed (gone from both) */
};

/* Fails (-EINVAL) when src is not a remote source. */
int lfs_source_http_counters(const struct lfs_source *src, struct lfs_http_counters *out);

/* Lets a source opened with defer_threads start its threads, in the
 * process that will serve it.  Not a remote source: ignored. */
void lfs_source_http_start(struct lfs_source *src);

/* The source's listed SHA-256 is known to be its bytes' (this host
 * hashed this version of the object before): nothing is hashed.  Not a
 * remote source, or nothing listed: ignored. */
void lfs_source_http_digest_known(struct lfs_source *src);

/* 1 once the source's bytes proved not to be its listed SHA-256 (every
 * read fails with -EIO from then on; on_digest follows).  An atomic load:
 * cheap enough for every read. */
int lfs_source_http_untrusted(const struct lfs_source *src);

/* Stops the source's threads: read-ahead, the hasher, and the disk writer
 * once it has written what it holds.  Once it returns, no on_digest call
 * is made or under way, and nothing more is written to the disk tier.  For
 * closing: reads after it fail.  lfs_source_close does it too.  Not a
 * remote source: ignored. */
void lfs_source_http_stop(struct lfs_source *src);

/* How messages name `url`: without query string or user information. */
void lfs_source_http_name(const char *url, char *buf, size_t len);

/* The last failure of any request of src, one line (empty when none). */
void lfs_source_http_last_error(struct lfs_source *src, char *buf, size_t len);

/* One conditional request (a 1-byte ranged GET with If-Match): 0 while the
 * object is the one opened, -ESTALE once it is not, another negative errno
 * when that cannot be told now.  For validating cached bytes of the object
 * without reading it; check() itself never makes a request. */
int lfs_source_http_validate(struct lfs_source *src);

#endif
