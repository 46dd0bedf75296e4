#include "disk.h"

#include "hostdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libdeflate.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#define HEAD 80u
#define VERSION 1
#define CODEC_RAW 0
#define CODEC_ZSTD 1
#define MAX_PLAIN (64u << 20)		/* the largest block */
#define TOUCH_AFTER 60			/* seconds between mtime refreshes of a hit */
#define STRAY_AFTER 3600		/* temporary files older than this are a crash's */
#define DEFAULT_QUOTA (4ull << 30)

static const char magic_block[4] = { 'L', 'F', 'D', 'B' };
static const char magic_point[4] = { 'L', 'F', 'D', 'P' };
static const char magic_crcs[4] = { 'L', 'F', 'D', 'C' };
static const char magic_chunk[4] = { 'L', 'F', 'D', 'S' };	/* a source chunk */
static const char magic_head[4] = { 'L', 'F', 'D', 'H' };	/* an object's head */

struct lfs_disk_layer {
	struct lfs_disk *disk;
	unsigned char digest[LFS_DIGEST_LEN];
	uint32_t block_size;
	int fd;				/* v1/<digest>/<block size> */
	/* Forgotten (lfs_disk_forget_*): its records are being removed, and
	 * none may be read or written again.  busy counts the writes under
	 * way, which the removal waits for.  Both atomic. */
	int dead, busy;
	struct lfs_disk_layer *next;
};

/* A remote object's directory: the same records, under v1/objects. */
struct lfs_disk_object {
	struct lfs_disk_layer dir;	/* digest: where; block_size: the chunk size */
	struct lfs_disk_object *next;
};

struct lfs_disk {
	int dirfd, v1fd;
	struct lfs_disk_config cfg;
	pthread_mutex_t lock;		/* layers, objects */
	pthread_mutex_t prune_lock;	/* one prune at a time, and: */
	int counted;			/* usage has been measured by a walk */
	struct lfs_disk_layer *layers;
	struct lfs_disk_object *objects;
	int writing;			/* atomic */
	int prune_due;			/* atomic */
	uint64_t hits, misses, bytes_read, bytes_written, plain_written;
	uint64_t records_written, write_errors, bad_records, evictions, usage; /* atomic */
	uint64_t tmp_counter;		/* atomic */
};

static void add(uint64_t *c, uint64_t n) { __atomic_add_fetch(c, n, __ATOMIC_RELAXED); }
static uint64_t get(const uint64_t *c) { return __atomic_load_n(c, __ATOMIC_RELAXED); }

static void put16(unsigned char *p, uint16_t v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}
static void put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}
static uint16_t get16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const unsigned char *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static uint32_t crc(const void *p, size_t n) { return libdeflate_crc32(0, p, n); }

static void note(struct lfs_disk *d, enum lfs_disk_note what, const char *detail)
{
	if (d->cfg.note)
		d->cfg.note(d->cfg.note_ctx, what, detail);
}

/* Per-thread zstd contexts, freed with their threads. */
static pthread_key_t cctx_key, dctx_key;
static pthread_once_t ctx_once = PTHREAD_ONCE_INIT;
static void free_cctx(void *c) { ZSTD_freeCCtx(c); }
static void free_dctx(void *c) { ZSTD_freeDCtx(c); }
static void make_keys(void)
{
	(void)pthread_key_create(&cctx_key, free_cctx);
	(void)pthread_key_create(&dctx_key, free_dctx);
}

static ZSTD_CCtx *cctx(void)
{
	ZSTD_CCtx *c;

	pthread_once(&ctx_once, make_keys);
	c = pthread_getspecific(cctx_key);
	if (!c && (c = ZSTD_createCCtx()) && pthread_setspecific(cctx_key, c)) {
		ZSTD_freeCCtx(c);
		c = NULL;
	}
	return c;
}

static ZSTD_DCtx *dctx(void)
{
	ZSTD_DCtx *c;

	pthread_once(&ctx_once, make_keys);
	c = pthread_getspecific(dctx_key);
	if (!c && (c = ZSTD_createDCtx()) && pthread_setspecific(dctx_key, c)) {
		ZSTD_freeDCtx(c);
		c = NULL;
	}
	return c;
}

uint64_t lfs_disk_default_quota(int dirfd)
{
	struct statvfs sv;
	uint64_t quarter;

	if (fstatvfs(dirfd, &sv) < 0)
		return DEFAULT_QUOTA;
	quarter = (uint64_t)sv.f_blocks * sv.f_frsize / 4;
	return quarter && quarter < DEFAULT_QUOTA ? quarter : DEFAULT_QUOTA;
}

int lfs_disk_open(int dirfd, const struct lfs_disk_config *cfg, struct lfs_disk **out,
		  char *err, size_t errlen)
{
	struct lfs_disk *d = calloc(1, sizeof(*d));
	int rc;

	if (!d) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	d->cfg = *cfg;
	if (!d->cfg.quota)
		d->cfg.quota = lfs_disk_default_quota(dirfd);
	d->dirfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
	if (d->dirfd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cache_dir: %s", strerror(errno));
		free(d);
		return rc;
	}
	rc = lfs_hostdir_sub(d->dirfd, LFS_DISK_FORMAT, &d->v1fd, err, errlen);
	if (rc) {
		close(d->dirfd);
		free(d);
		return rc;
	}
	pthread_mutex_init(&d->lock, NULL);
	pthread_mutex_init(&d->prune_lock, NULL);
	d->writing = 1;
	d->prune_due = 1; /* the first writer counts what is there */
	*out = d;
	return 0;
}

/* Adds this daemon's lookups to v1/stats, under an exclusive lock, so
 * `layerfs cache stats` can show every daemon's hit rate. */
static void save_stats(struct lfs_disk *d)
{
	int fd = openat(d->v1fd, "stats", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	unsigned long long hits = 0, misses = 0;

	if (fd >= 0)
		(void)lfs_hostdir_own(fd);
	char buf[128];
	ssize_t n;
	int len;

	if (fd < 0)
		return;
	if (flock(fd, LOCK_EX) == 0) {
		n = pread(fd, buf, sizeof(buf) - 1, 0);
		if (n > 0) {
			buf[n] = '\0';
			if (sscanf(buf, "hits %llu misses %llu", &hits, &misses) != 2)
				hits = misses = 0;
		}
		hits += get(&d->hits);
		misses += get(&d->misses);
		len = snprintf(buf, sizeof(buf), "hits %llu misses %llu\n", hits, misses);
		if (len > 0 && pwrite(fd, buf, (size_t)len, 0) == len)
			(void)ftruncate(fd, len);
		flock(fd, LOCK_UN);
	}
	close(fd);
}

void lfs_disk_close(struct lfs_disk *d)
{
	if (!d)
		return;
	if (get(&d->hits) || get(&d->misses))
		save_stats(d);
	for (struct lfs_disk_layer *l = d->layers, *next; l; l = next) {
		next = l->next;
		close(l->fd);
		free(l);
	}
	for (struct lfs_disk_object *o = d->objects, *next; o; o = next) {
		next = o->next;
		close(o->dir.fd);
		free(o);
	}
	close(d->v1fd);
	close(d->dirfd);
	pthread_mutex_destroy(&d->lock);
	pthread_mutex_destroy(&d->prune_lock);
	free(d);
}

struct lfs_disk_layer *lfs_disk_layer(struct lfs_disk *d, const unsigned char digest[LFS_DIGEST_LEN],
				      uint32_t block_size)
{
	struct lfs_disk_layer *l;
	char hex[LFS_DIGEST_HEX], bs[16], err[256];
	int layer_fd, fd;

	pthread_mutex_lock(&d->lock);
	for (l = d->layers; l; l = l->next)
		if (l->block_size == block_size && !memcmp(l->digest, digest, LFS_DIGEST_LEN))
			break;
	if (!l) {
		lfs_digest_hex(digest, hex);
		snprintf(bs, sizeof(bs), "%u", block_size);
		if (lfs_hostdir_sub(d->v1fd, hex, &layer_fd, err, sizeof(err)) == 0) {
			if (lfs_hostdir_sub(layer_fd, bs, &fd, err, sizeof(err)) == 0 &&
			    (l = calloc(1, sizeof(*l)))) {
				l->disk = d;
				memcpy(l->digest, digest, LFS_DIGEST_LEN);
				l->block_size = block_size;
				l->fd = fd;
				l->next = d->layers;
				d->layers = l;
			} else if (!l) {
				note(d, LFS_DISK_WRITES_OFF, err);
			}
			close(layer_fd);
		} else {
			note(d, LFS_DISK_WRITES_OFF, err);
		}
	}
	pthread_mutex_unlock(&d->lock);
	return l;
}

/* ---- records ---- */

struct head {
	const char *magic;
	uint8_t codec;
	uint64_t member, index;
	uint32_t block_size, plain_len, aux, plain_crc, payload_len;
};

static void encode_head(const unsigned char *digest, const struct head *h, unsigned char *p)
{
	memcpy(p, h->magic, 4);
	put16(p + 4, VERSION);
	p[6] = h->codec;
	p[7] = 0;
	memcpy(p + 8, digest, LFS_DIGEST_LEN);
	put64(p + 40, h->member);
	put64(p + 48, h->index);
	put32(p + 56, h->block_size);
	put32(p + 60, h->plain_len);
	put32(p + 64, h->aux);
	put32(p + 68, h->plain_crc);
	put32(p + 72, h->payload_len);
	put32(p + 76, crc(p, 76));
}

/* Parses a record's head, checking it against its own check and its
 * length; 0 or -EBADMSG. */
static int decode_head(const unsigned char *p, size_t len, struct head *h, unsigned char *digest)
{
	if (len < HEAD || get16(p + 4) != VERSION || get32(p + 76) != crc(p, 76))
		return -EBADMSG;
	h->magic = (const char *)p;
	h->codec = p[6];
	memcpy(digest, p + 8, LFS_DIGEST_LEN);
	h->member = get64(p + 40);
	h->index = get64(p + 48);
	h->block_size = get32(p + 56);
	h->plain_len = get32(p + 60);
	h->aux = get32(p + 64);
	h->plain_crc = get32(p + 68);
	h->payload_len = get32(p + 72);
	if ((uint64_t)h->payload_len + HEAD != len || h->plain_len > MAX_PLAIN ||
	    (h->codec != CODEC_RAW && h->codec != CODEC_ZSTD) ||
	    (h->codec == CODEC_RAW && h->payload_len != h->plain_len))
		return -EBADMSG;
	return 0;
}

/* The payload into plain (plain_len bytes), checked against plain_crc. */
static int decode_payload(const struct head *h, const unsigned char *payload, void *plain)
{
	if (h->codec == CODEC_RAW) {
		memcpy(plain, payload, h->plain_len);
	} else {
		ZSTD_DCtx *c = dctx();
		size_t n;

		if (!c)
			return -ENOMEM;
		n = ZSTD_decompressDCtx(c, plain, h->plain_len, payload, h->payload_len);
		if (ZSTD_isError(n) || n != h->plain_len)
			return -EBADMSG;
	}
	return crc(plain, h->plain_len) == h->plain_crc ? 0 : -EBADMSG;
}

/* Reads record `name` of l whole into a malloc'd buffer.  Refreshes its
 * mtime (the LRU's clock) when that is old. */
static int read_record(struct lfs_disk_layer *l, const char *name, unsigned char **out,
		       size_t *len)
{
	int fd = __atomic_load_n(&l->dead, __ATOMIC_ACQUIRE)
		 ? -1 : openat(l->fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	struct stat st;
	unsigned char *buf;
	size_t done = 0;

	if (fd < 0)
		return -ENOENT;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size > HEAD + (uint64_t)MAX_PLAIN + (MAX_PLAIN >> 6) + 4096) {
		close(fd);
		return -EBADMSG;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	while (done < (size_t)st.st_size) {
		ssize_t n = pread(fd, buf + done, (size_t)st.st_size - done, (off_t)done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	if (done == (size_t)st.st_size && st.st_mtime < time(NULL) - TOUCH_AFTER)
		(void)futimens(fd, NULL);
	close(fd);
	add(&l->disk->bytes_read, done);
	*out = buf;
	*len = done;
	return 0;
}

/* A record that failed its checks goes, once, with one note. */
static void drop(struct lfs_disk_layer *l, const char *name)
{
	char hex[LFS_DIGEST_HEX], detail[300];

	if (unlinkat(l->fd, name, 0) == 0) {
		add(&l->disk->bad_records, 1);
		lfs_digest_hex(l->digest, hex);
		snprintf(detail, sizeof(detail), "%.16s.../%u/%s", hex, l->block_size, name);
		note(l->disk, LFS_DISK_BAD_RECORD, detail);
	}
}

/* Reads and checks record `name` against the key it must have (its
 * digest field: `want`); the plain bytes into a malloc'd *plain (or into
 * fixed, of fixed_len bytes).  With `other_version`, a sound record of
 * another digest is a record of an older version of the same thing: it
 * goes without a note. */
static int get_record_of(struct lfs_disk_layer *l, const unsigned char *want, int other_version,
			 const char *name, const char *magic, uint64_t member, uint64_t index,
			 void *fixed, size_t fixed_len, void **plain, size_t *plain_len,
			 uint32_t *aux)
{
	unsigned char *buf, digest[LFS_DIGEST_LEN];
	struct head h;
	size_t len;
	void *dst;
	int rc = read_record(l, name, &buf, &len);

	if (rc)
		return rc == -EBADMSG ? (drop(l, name), -ENOENT) : rc;
	rc = decode_head(buf, len, &h, digest);
	if (!rc && other_version && !memcmp(h.magic, magic, 4) &&
	    memcmp(digest, want, LFS_DIGEST_LEN)) {
		free(buf);
		(void)unlinkat(l->fd, name, 0);
		return -ENOENT;
	}
	if (!rc && (memcmp(h.magic, magic, 4) || memcmp(digest, want, LFS_DIGEST_LEN) ||
		    h.member != member || h.index != index || h.block_size != l->block_size ||
		    (fixed && h.plain_len != fixed_len)))
		rc = -EBADMSG;
	dst = fixed;
	if (!rc && !fixed && !(dst = malloc(h.plain_len ? h.plain_len : 1)))
		rc = -ENOMEM;
	if (!rc)
		rc = decode_payload(&h, buf + HEAD, dst);
	free(buf);
	if (rc) {
		if (dst != fixed)
			free(dst);
		if (rc == -EBADMSG) {
			drop(l, name);
			return -ENOENT;
		}
		return rc;
	}
	if (plain)
		*plain = dst;
	if (plain_len)
		*plain_len = h.plain_len;
	if (aux)
		*aux = h.aux;
	return 0;
}

static int get_record(struct lfs_disk_layer *l, const char *name, const char *magic,
		      uint64_t member, uint64_t index, void *fixed, size_t fixed_len,
		      void **plain, size_t *plain_len, uint32_t *aux)
{
	return get_record_of(l, l->digest, 0, name, magic, member, index, fixed, fixed_len, plain,
			     plain_len, aux);
}

/* Usage is counted as the prune measures it (st_blocks): a record takes
 * whole 4 KiB blocks. */
static uint64_t add_usage(struct lfs_disk *d, uint64_t n)
{
	return __atomic_add_fetch(&d->usage, (n + 4095) / 4096 * 4096, __ATOMIC_RELAXED);
}

static int disk_full(int err)
{
	return err == ENOSPC || err == EDQUOT || err == EIO || err == EROFS || err == EACCES ||
	       err == EPERM;
}

/* Writes a record (its digest field: `digest`) under a temporary name and
 * renames it into place. */
static int write_record(struct lfs_disk_layer *l, const unsigned char *digest, const char *name,
			const struct head *h0, const void *plain)
{
	struct lfs_disk *d = l->disk;
	struct head h = *h0;
	unsigned char *buf;
	size_t cap = HEAD + (h.codec == CODEC_ZSTD ? ZSTD_compressBound(h.plain_len) : h.plain_len);
	char tmp[96];
	int fd, rc = 0;

	if (!__atomic_load_n(&d->writing, __ATOMIC_RELAXED))
		return -EROFS;
	buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	h.plain_crc = crc(plain, h.plain_len);
	h.payload_len = h.plain_len;
	if (h.codec == CODEC_ZSTD) {
		ZSTD_CCtx *c = cctx();
		size_t n = c ? ZSTD_compressCCtx(c, buf + HEAD, cap - HEAD, plain, h.plain_len,
						 d->cfg.level)
			     : 0;

		if (c && !ZSTD_isError(n) && n < h.plain_len)
			h.payload_len = (uint32_t)n;
		else
			h.codec = CODEC_RAW; /* incompressible: kept as it is */
	}
	if (h.codec == CODEC_RAW)
		memcpy(buf + HEAD, plain, h.plain_len);
	encode_head(digest, &h, buf);
	snprintf(tmp, sizeof(tmp), ".tmp.%ld.%llu", (long)getpid(),
		 (unsigned long long)__atomic_add_fetch(&d->tmp_counter, 1, __ATOMIC_RELAXED));
	fd = openat(l->fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
	} else if ((rc = lfs_hostdir_own(fd)) != 0) {
		close(fd);
		unlinkat(l->fd, tmp, 0);
	} else {
		size_t len = HEAD + h.payload_len, done = 0;

		while (!rc && done < len) {
			ssize_t n = write(fd, buf + done, len - done);

			if (n < 0 && errno != EINTR)
				rc = -errno;
			else if (n > 0)
				done += (size_t)n;
		}
		if (close(fd) && !rc)
			rc = -errno;
		if (!rc && renameat(l->fd, tmp, l->fd, name))
			rc = -errno;
		if (rc)
			unlinkat(l->fd, tmp, 0);
	}
	free(buf);
	if (rc) {
		add(&d->write_errors, 1);
		if (disk_full(-rc) && __atomic_exchange_n(&d->writing, 0, __ATOMIC_ACQ_REL)) {
			char detail[128];

			snprintf(detail, sizeof(detail), "%s", strerror(-rc));
			note(d, LFS_DISK_WRITES_OFF, detail);
		}
		return rc;
	}
	add(&d->records_written, 1);
	add(&d->bytes_written, HEAD + h.payload_len);
	add(&d->plain_written, h.plain_len);
	if (add_usage(d, HEAD + h.payload_len) > d->cfg.quota)
		__atomic_store_n(&d->prune_due, 1, __ATOMIC_RELAXED);
	return 0;
}

/* write_record, unless l is forgotten.  busy is raised before dead is
 * looked at, and the forgetting thread sets dead before it looks at busy
 * (both sequentially consistent): either this write sees dead, or the
 * removal waits for it. */
static int put_record_of(struct lfs_disk_layer *l, const unsigned char *digest, const char *name,
			 const struct head *h, const void *plain)
{
	int rc;

	__atomic_add_fetch(&l->busy, 1, __ATOMIC_SEQ_CST);
	rc = __atomic_load_n(&l->dead, __ATOMIC_SEQ_CST) ? -ENOENT
							  : write_record(l, digest, name, h, plain);
	__atomic_sub_fetch(&l->busy, 1, __ATOMIC_SEQ_CST);
	return rc;
}

static int put_record(struct lfs_disk_layer *l, const char *name, const struct head *h,
		      const void *plain)
{
	return put_record_of(l, l->digest, name, h, plain);
}

/* ---- blocks, points, CRC tables ---- */

static void block_name(char *buf, size_t size, uint64_t member, uint64_t index)
{
	snprintf(buf, size, "%016llx.%llx", (unsigned long long)member, (unsigned long long)index);
}

int lfs_disk_get(struct lfs_disk_layer *l, uint64_t member, uint64_t index, void *buf,
		 size_t len, uint32_t *cum_crc)
{
	char name[64];
	int rc;

	block_name(name, sizeof(name), member, index);
	rc = get_record(l, name, magic_block, member, index, buf, len, NULL, NULL, cum_crc);
	add(rc ? &l->disk->misses : &l->disk->hits, 1);
	return rc ? -ENOENT : 0;
}

void lfs_disk_will_need(struct lfs_disk_layer *l, uint64_t member, uint64_t first, uint64_t last)
{
	char name[64];

	for (uint64_t b = first; b <= last; b++) {
		int fd;

		block_name(name, sizeof(name), member, b);
		fd = openat(l->fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
		if (fd < 0)
			continue;
		(void)posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);
		close(fd);
	}
}

int lfs_disk_put(struct lfs_disk_layer *l, uint64_t member, uint64_t index, const void *buf,
		 size_t len, uint32_t cum_crc)
{
	struct head h = { magic_block, l->disk->cfg.level > 0 ? CODEC_ZSTD : CODEC_RAW, member,
			  index, l->block_size, (uint32_t)len, cum_crc, 0, 0 };
	char name[64];

	block_name(name, sizeof(name), member, index);
	return put_record(l, name, &h, buf);
}

int lfs_disk_get_point(struct lfs_disk_layer *l, uint64_t member, uint64_t mark, void **rec,
		       size_t *len)
{
	char name[64];

	snprintf(name, sizeof(name), "%016llx.p%llx", (unsigned long long)member,
		 (unsigned long long)mark);
	return get_record(l, name, magic_point, member, mark, NULL, 0, rec, len, NULL) ? -ENOENT
										: 0;
}

int lfs_disk_put_point(struct lfs_disk_layer *l, uint64_t member, uint64_t mark, const void *rec,
		       size_t len)
{
	struct head h = { magic_point, CODEC_RAW, member, mark, l->block_size, (uint32_t)len, 0, 0, 0 };
	char name[64];

	snprintf(name, sizeof(name), "%016llx.p%llx", (unsigned long long)member,
		 (unsigned long long)mark);
	return put_record(l, name, &h, rec);
}

int lfs_disk_get_crcs(struct lfs_disk_layer *l, uint64_t member, uint64_t nblocks, uint32_t *crcs)
{
	char name[64];
	unsigned char *raw;
	int rc;

	if (nblocks > MAX_PLAIN / 4)
		return -ENOENT;
	raw = malloc(nblocks * 4 + 1);
	if (!raw)
		return -ENOMEM;
	snprintf(name, sizeof(name), "%016llx.crc", (unsigned long long)member);
	rc = get_record(l, name, magic_crcs, member, nblocks, raw, nblocks * 4, NULL, NULL, NULL);
	for (uint64_t i = 0; !rc && i < nblocks; i++)
		crcs[i] = get32(raw + 4 * i);
	free(raw);
	return rc ? -ENOENT : 0;
}

int lfs_disk_put_crcs(struct lfs_disk_layer *l, uint64_t member, uint64_t nblocks,
		      const uint32_t *crcs)
{
	struct head h = { magic_crcs, CODEC_RAW, member, nblocks, l->block_size,
			  (uint32_t)(nblocks * 4), 0, 0, 0 };
	unsigned char *raw;
	char name[64];
	int rc;

	if (nblocks > MAX_PLAIN / 4)
		return -EFBIG;
	raw = malloc(nblocks * 4 + 1);
	if (!raw)
		return -ENOMEM;
	for (uint64_t i = 0; i < nblocks; i++)
		put32(raw + 4 * i, crcs[i]);
	snprintf(name, sizeof(name), "%016llx.crc", (unsigned long long)member);
	rc = put_record(l, name, &h, raw);
	free(raw);
	return rc;
}

/* ---- source chunks ---- */

struct lfs_disk_object *lfs_disk_object(struct lfs_disk *d, const unsigned char where[LFS_DIGEST_LEN],
					uint32_t chunk_size)
{
	struct lfs_disk_object *o;
	char hex[LFS_DIGEST_HEX], cs[16], err[256];
	int objects_fd = -1, where_fd = -1, fd;

	pthread_mutex_lock(&d->lock);
	for (o = d->objects; o; o = o->next)
		if (o->dir.block_size == chunk_size && !memcmp(o->dir.digest, where, LFS_DIGEST_LEN))
			break;
	if (!o) {
		lfs_digest_hex(where, hex);
		snprintf(cs, sizeof(cs), "%u", chunk_size);
		if (lfs_hostdir_sub(d->v1fd, "objects", &objects_fd, err, sizeof(err)) == 0 &&
		    lfs_hostdir_sub(objects_fd, hex, &where_fd, err, sizeof(err)) == 0 &&
		    lfs_hostdir_sub(where_fd, cs, &fd, err, sizeof(err)) == 0) {
			o = calloc(1, sizeof(*o));
			if (o) {
				o->dir.disk = d;
				memcpy(o->dir.digest, where, LFS_DIGEST_LEN);
				o->dir.block_size = chunk_size;
				o->dir.fd = fd;
				o->next = d->objects;
				d->objects = o;
			} else {
				close(fd);
			}
		} else {
			note(d, LFS_DISK_WRITES_OFF, err);
		}
		if (where_fd >= 0)
			close(where_fd);
		if (objects_fd >= 0)
			close(objects_fd);
	}
	pthread_mutex_unlock(&d->lock);
	return o;
}

int lfs_disk_get_chunk(struct lfs_disk_object *o, const unsigned char version[LFS_DIGEST_LEN],
		       uint64_t index, void *buf, size_t len)
{
	char name[32];

	snprintf(name, sizeof(name), "%llx", (unsigned long long)index);
	return get_record_of(&o->dir, version, 1, name, magic_chunk, 0, index, buf, len, NULL, NULL,
			     NULL)
		       ? -ENOENT
		       : 0;
}

int lfs_disk_put_chunk(struct lfs_disk_object *o, const unsigned char version[LFS_DIGEST_LEN],
		       uint64_t index, const void *buf, size_t len)
{
	struct head h = { magic_chunk, CODEC_RAW, 0, index, o->dir.block_size, (uint32_t)len, 0, 0,
			  0 };
	char name[32];

	if (len > MAX_PLAIN)
		return -EFBIG;
	snprintf(name, sizeof(name), "%llx", (unsigned long long)index);
	return put_record_of(&o->dir, version, name, &h, buf);
}

int lfs_disk_get_head(struct lfs_disk_object *o, void **rec, size_t *len)
{
	return get_record(&o->dir, "head", magic_head, 0, 0, NULL, 0, rec, len, NULL) ? -ENOENT : 0;
}

int lfs_disk_put_head(struct lfs_disk_object *o, const void *rec, size_t len)
{
	struct head h = { magic_head, CODEC_RAW, 0, 0, o->dir.block_size, (uint32_t)len, 0, 0, 0 };

	if (len > MAX_PLAIN)
		return -EFBIG;
	return put_record(&o->dir, "head", &h, rec);
}

int lfs_disk_prune_due(struct lfs_disk *d)
{
	return __atomic_exchange_n(&d->prune_due, 0, __ATOMIC_ACQ_REL);
}

void lfs_disk_get_stats(struct lfs_disk *d, struct lfs_disk_stats *out)
{
	out->hits = get(&d->hits);
	out->misses = get(&d->misses);
	out->bytes_read = get(&d->bytes_read);
	out->bytes_written = get(&d->bytes_written);
	out->plain_written = get(&d->plain_written);
	out->records_written = get(&d->records_written);
	out->write_errors = get(&d->write_errors);
	out->bad_records = get(&d->bad_records);
	out->evictions = get(&d->evictions);
	out->usage = get(&d->usage);
	out->quota = d->cfg.quota;
	out->writing = __atomic_load_n(&d->writing, __ATOMIC_RELAXED);
}

/* ---- walking the directory ---- */

/* Calls fn for every regular file in v1/<digest>/<size>/ and
 * v1/objects/<where>/<size>/, with the directory fd it is in; never
 * follows a link. */
struct walk {
	void *ctx;
	uint64_t layers, objects;
	int in_objects;			/* walking v1/objects */
};

static int each_dir(int fd, int (*fn)(struct walk *, int, const char *, const char *, const char *,
				      const struct stat *),
		    struct walk *w, int depth, const char *digest, const char *bs)
{
	DIR *dir;
	struct dirent *de;
	int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);

	if (dup_fd < 0 || !(dir = fdopendir(dup_fd))) {
		if (dup_fd >= 0)
			close(dup_fd);
		return -errno;
	}
	rewinddir(dir); /* a dup shares the offset an earlier walk left at the end */
	while ((de = readdir(dir))) {
		struct stat st;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (depth == 0 && !w->in_objects && !strcmp(de->d_name, "objects") &&
		    S_ISDIR(st.st_mode)) {
			int sub = openat(fd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

			if (sub < 0)
				continue;
			w->in_objects = 1;
			each_dir(sub, fn, w, 0, NULL, NULL);
			w->in_objects = 0;
			close(sub);
			continue;
		}
		if (depth < 2 && S_ISDIR(st.st_mode)) {
			int sub = openat(fd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

			if (sub < 0)
				continue;
			if (depth == 0)
				(*(w->in_objects ? &w->objects : &w->layers))++;
			each_dir(sub, fn, w, depth + 1, depth == 0 ? de->d_name : digest,
				 depth == 1 ? de->d_name : bs);
			close(sub);
		} else if (depth == 2 && S_ISREG(st.st_mode)) {
			fn(w, fd, digest, bs, de->d_name, &st);
		}
	}
	closedir(dir);
	return 0;
}

struct victim {
	time_t mtime;
	uint64_t size;
	int dirfd;
	char name[64];
};

struct prune_ctx {
	struct victim *v;
	size_t n, cap;
	uint64_t total;
	int fds[4096];
	size_t nfds;
};

static int collect(struct walk *w, int dirfd, const char *digest, const char *bs, const char *name,
		   const struct stat *st)
{
	struct prune_ctx *p = w->ctx;
	uint64_t size = (uint64_t)st->st_blocks * 512;

	(void)digest;
	(void)bs;
	if (name[0] == '.' && st->st_mtime < time(NULL) - STRAY_AFTER) {
		unlinkat(dirfd, name, 0); /* a crashed writer's */
		return 0;
	}
	p->total += size;
	if (name[0] == '.' || strlen(name) >= sizeof(p->v[0].name))
		return 0;
	if (p->n == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 1024;
		struct victim *v = realloc(p->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		p->v = v;
		p->cap = cap;
	}
	/* the directory is kept open for the deletions (dup'ed once per dir) */
	if (!p->nfds || p->fds[p->nfds - 1] != dirfd) {
		if (p->nfds == sizeof(p->fds) / sizeof(p->fds[0]))
			return 0;
		p->fds[p->nfds++] = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
	}
	p->v[p->n].mtime = st->st_mtime;
	p->v[p->n].size = size;
	p->v[p->n].dirfd = p->fds[p->nfds - 1];
	snprintf(p->v[p->n].name, sizeof(p->v[p->n].name), "%s", name);
	p->n++;
	return 0;
}

static int by_mtime(const void *a, const void *b)
{
	const struct victim *x = a, *y = b;

	return (x->mtime > y->mtime) - (x->mtime < y->mtime);
}

/* Drops least recently used records of the tree at v1fd down to target. */
static uint64_t prune_tree(int v1fd, uint64_t quota, uint64_t *total, uint64_t *evicted)
{
	struct prune_ctx p = { 0 };
	struct walk w = { .ctx = &p };
	uint64_t target = quota / 10 * 9, dropped = 0;

	each_dir(v1fd, collect, &w, 0, NULL, NULL);
	if (p.total > quota) {
		qsort(p.v, p.n, sizeof(*p.v), by_mtime);
		for (size_t i = 0; i < p.n && p.total - dropped > target; i++) {
			if (unlinkat(p.v[i].dirfd, p.v[i].name, 0) == 0) {
				dropped += p.v[i].size;
				(*evicted)++;
			}
		}
	}
	*total = p.total - dropped;
	for (size_t i = 0; i < p.nfds; i++)
		if (p.fds[i] >= 0)
			close(p.fds[i]);
	free(p.v);
	return dropped;
}

uint64_t lfs_disk_prune(struct lfs_disk *d)
{
	uint64_t total = 0, evicted = 0, dropped, before;

	/* One prune at a time; a writer that crossed the quota while another
	 * pruned waits for it and prunes again only if still over (the other's
	 * walk may have missed its record). */
	pthread_mutex_lock(&d->prune_lock);
	before = get(&d->usage);
	if (d->counted && before <= d->cfg.quota) {
		pthread_mutex_unlock(&d->prune_lock);
		return 0;
	}
	d->counted = 1;
	dropped = prune_tree(d->v1fd, d->cfg.quota, &total, &evicted);
	/* usage becomes total plus what was written since `before`, the
	 * records written while the tree was walked counted again if the walk
	 * saw them (a usage too high only prunes sooner; one too low, as when
	 * it was set to the walk's total, let the quota be passed).  Only
	 * writes add to it meanwhile, so the sum never wraps below total. */
	__atomic_add_fetch(&d->usage, total - before, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&d->prune_lock);
	if (evicted) {
		char detail[128];

		add(&d->evictions, evicted);
		snprintf(detail, sizeof(detail), "%llu records, %llu bytes, to keep cache_dir_size=%llu",
			 (unsigned long long)evicted, (unsigned long long)dropped,
			 (unsigned long long)d->cfg.quota);
		note(d, LFS_DISK_PRUNED, detail);
	}
	return dropped;
}

/* ---- `layerfs cache` ---- */

static int open_v1(int dirfd)
{
	return openat(dirfd, LFS_DISK_FORMAT, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

static int count(struct walk *w, int dirfd, const char *digest, const char *bs, const char *name,
		 const struct stat *st)
{
	struct lfs_disk_census *c = w->ctx;
	const char *dot = strchr(name, '.');
	struct lfs_disk_census_layer *l = NULL;
	uint64_t bytes = (uint64_t)st->st_blocks * 512;

	(void)bs;
	c->bytes += bytes;
	if (!w->in_objects && digest) {
		for (size_t i = c->nper_layer; i-- > 0 && !l;)
			if (!strcmp(c->per_layer[i].digest, digest))
				l = &c->per_layer[i];
		if (!l && c->nper_layer < LFS_CENSUS_LAYERS) {
			l = &c->per_layer[c->nper_layer++];
			snprintf(l->digest, sizeof(l->digest), "%s", digest);
		}
		if (l)
			l->bytes += bytes;
	}
	if (w->in_objects && name[0] != '.') {
		c->records++;
		if (strcmp(name, "head"))
			c->chunks++;
		return 0;
	}
	if (name[0] == '.' || !dot) {
		c->stray++;
		return 0;
	}
	c->records++;
	if (dot[1] == 'p') {
		c->points++;
	} else if (!strcmp(dot, ".crc")) {
		c->crc_tables++;
	} else {
		/* the block bytes a record holds, from its head (unchecked
		 * payload: `cache verify` checks records whole) */
		unsigned char p[HEAD], dg[LFS_DIGEST_LEN];
		struct head h;
		int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		uint32_t plain = 0;

		if (fd >= 0) {
			if (pread(fd, p, HEAD, 0) == HEAD &&
			    !decode_head(p, (size_t)st->st_size, &h, dg))
				plain = h.plain_len;
			close(fd);
		}
		c->blocks++;
		c->block_bytes += bytes;
		c->block_plain += plain;
		if (l) {
			l->blocks++;
			l->block_bytes += bytes;
			l->block_plain += plain;
		}
	}
	return 0;
}

int lfs_disk_census(int dirfd, struct lfs_disk_census *out)
{
	struct walk w = { .ctx = out };
	int v1 = open_v1(dirfd), fd;

	memset(out, 0, sizeof(*out));
	if (v1 < 0)
		return errno == ENOENT ? 0 : -errno;
	each_dir(v1, count, &w, 0, NULL, NULL);
	out->layers = w.layers;
	out->objects = w.objects;
	fd = openat(v1, "stats", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0) {
		char buf[128];
		ssize_t n = read(fd, buf, sizeof(buf) - 1);
		unsigned long long h, m;

		if (n > 0) {
			buf[n] = '\0';
			if (sscanf(buf, "hits %llu misses %llu", &h, &m) == 2) {
				out->hits = h;
				out->misses = m;
			}
		}
		close(fd);
	}
	close(v1);
	return 0;
}

struct verify_ctx {
	uint64_t checked, bad;
};

/* A record is checked against everything its place says: the directory
 * names its digest and block size, its name its member and index. */
static int check_one(struct walk *w, int dirfd, const char *digest, const char *bs, const char *name,
		     const struct stat *st)
{
	struct verify_ctx *v = w->ctx;
	struct lfs_disk_layer l = { 0 };
	unsigned char *buf = NULL, got[LFS_DIGEST_LEN];
	unsigned long long member, index = 0;
	char kind[8] = "";
	struct head h;
	size_t len = 0;
	void *plain = NULL;
	int ok;

	(void)st;
	if (name[0] == '.')
		return 0; /* a writer's temporary file */
	v->checked++;
	l.fd = dirfd;
	ok = lfs_digest_parse(digest, l.digest) == 0 && sscanf(bs, "%u", &l.block_size) == 1;
	member = 0;
	if (w->in_objects) {
		/* a chunk's digest field is its version, which its place does
		 * not name: checked against everything else */
		char end;

		if (ok && !strcmp(name, "head"))
			strcpy(kind, "LFDH");
		else if (ok && sscanf(name, "%llx%c", &index, &end) == 1)
			strcpy(kind, "LFDS");
		else
			ok = 0;
	} else if (ok && sscanf(name, "%16llx.p%llx", &member, &index) == 2)
		strcpy(kind, "LFDP");
	else if (ok && strlen(name) == 20 && sscanf(name, "%16llx.crc", &member) == 1 &&
		 !strcmp(name + 16, ".crc"))
		strcpy(kind, "LFDC");
	else if (ok && sscanf(name, "%16llx.%llx", &member, &index) == 2)
		strcpy(kind, "LFDB");
	else
		ok = 0;
	if (ok) {
		int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

		ok = 0;
		if (fd >= 0) {
			struct stat fst;

			if (fstat(fd, &fst) == 0 && (size_t)fst.st_size < HEAD + 2 * (size_t)MAX_PLAIN &&
			    (buf = malloc((size_t)fst.st_size + 1)) &&
			    pread(fd, buf, (size_t)fst.st_size, 0) == fst.st_size) {
				len = (size_t)fst.st_size;
				ok = 1;
			}
			close(fd);
		}
	}
	ok = ok && decode_head(buf, len, &h, got) == 0 && !memcmp(h.magic, kind, 4) &&
	     (!strcmp(kind, "LFDS") || !memcmp(got, l.digest, LFS_DIGEST_LEN)) &&
	     h.member == member &&
	     h.block_size == l.block_size &&
	     (!strcmp(kind, "LFDC") ? h.plain_len == h.index * 4 : h.index == index) &&
	     (plain = malloc(h.plain_len + 1)) && decode_payload(&h, buf + HEAD, plain) == 0;
	free(buf);
	free(plain);
	if (!ok && unlinkat(dirfd, name, 0) == 0)
		v->bad++;
	return 0;
}

int lfs_disk_verify(int dirfd, uint64_t *checked, uint64_t *bad)
{
	struct verify_ctx v = { 0, 0 };
	struct walk w = { .ctx = &v };
	int v1 = open_v1(dirfd);

	*checked = *bad = 0;
	if (v1 < 0)
		return errno == ENOENT ? 0 : -errno;
	each_dir(v1, check_one, &w, 0, NULL, NULL);
	close(v1);
	*checked = v.checked;
	*bad = v.bad;
	return 0;
}

/* Removes everything below fd (never following a link), then fd's name. */
static int remove_tree(int parent, const char *name)
{
	int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *dir;
	struct dirent *de;

	if (fd < 0)
		return unlinkat(parent, name, 0) ? -errno : 0;
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(dir))) {
		struct stat st;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))
			remove_tree(fd, de->d_name);
		else
			unlinkat(fd, de->d_name, 0);
	}
	closedir(dir);
	return unlinkat(parent, name, AT_REMOVEDIR) ? -errno : 0;
}

int lfs_disk_clear(int dirfd)
{
	int rc = remove_tree(dirfd, LFS_DISK_FORMAT);

	return rc == -ENOENT ? 0 : rc;
}

/* ---- forgetting what a digest names ---- */

/* Under d->lock: marks the directories of list whose digest is `digest`
 * dead, then waits for the writes under way in them (a write is a few
 * syscalls; nothing it does takes d->lock). */
static void kill_dirs(struct lfs_disk_layer *(*next_of)(struct lfs_disk_layer *),
		      struct lfs_disk_layer *first, const unsigned char *digest)
{
	struct timespec ms = { 0, 1000000 };

	for (struct lfs_disk_layer *l = first; l; l = next_of(l))
		if (!memcmp(l->digest, digest, LFS_DIGEST_LEN))
			__atomic_store_n(&l->dead, 1, __ATOMIC_SEQ_CST);
	for (struct lfs_disk_layer *l = first; l; l = next_of(l))
		while (!memcmp(l->digest, digest, LFS_DIGEST_LEN) &&
		       __atomic_load_n(&l->busy, __ATOMIC_SEQ_CST))
			nanosleep(&ms, NULL);
}

static struct lfs_disk_layer *next_layer(struct lfs_disk_layer *l) { return l->next; }

static struct lfs_disk_layer *next_object(struct lfs_disk_layer *l)
{
	struct lfs_disk_object *o = ((struct lfs_disk_object *)(void *)l)->next;

	return o ? &o->dir : NULL;
}

int lfs_disk_forget_layer(struct lfs_disk *d, const unsigned char digest[LFS_DIGEST_LEN])
{
	char hex[LFS_DIGEST_HEX];
	int rc;

	pthread_mutex_lock(&d->lock);
	kill_dirs(next_layer, d->layers, digest);
	pthread_mutex_unlock(&d->lock);
	lfs_digest_hex(digest, hex);
	rc = remove_tree(d->v1fd, hex);
	return rc == -ENOENT ? 0 : rc;
}

int lfs_disk_forget_object(struct lfs_disk *d, const unsigned char where[LFS_DIGEST_LEN])
{
	char hex[LFS_DIGEST_HEX];
	int fd, rc;

	pthread_mutex_lock(&d->lock);
	kill_dirs(next_object, d->objects ? &d->objects->dir : NULL, where);
	pthread_mutex_unlock(&d->lock);
	lfs_digest_hex(where, hex);
	fd = openat(d->v1fd, "objects", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	rc = remove_tree(fd, hex);
	close(fd);
	return rc == -ENOENT ? 0 : rc;
}

void lfs_disk_object_where(const struct lfs_disk_object *o, unsigned char where[LFS_DIGEST_LEN])
{
	memcpy(where, o->dir.digest, LFS_DIGEST_LEN);
}
