#include "digest.h"

#include "hostdir.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHUNK (1u << 20)
#define MEMO_MAGIC "layerfs-digest 1\n"
#define STR(x) #x
#define SONAME(major) "libcrypto.so." STR(major)

/* libcrypto, loaded at the first digest (see digest.h): the functions
 * used, NULL until then or when it cannot be loaded. */
static struct {
	EVP_MD_CTX *(*ctx_new)(void);
	void (*ctx_free)(EVP_MD_CTX *);
	int (*init)(EVP_MD_CTX *, const EVP_MD *, ENGINE *);
	int (*update)(EVP_MD_CTX *, const void *, size_t);
	int (*final)(EVP_MD_CTX *, unsigned char *, unsigned int *);
	const EVP_MD *(*sha256)(void);
	const char *(*version)(int);
} crypto;
static char crypto_why[256];
static pthread_once_t crypto_once = PTHREAD_ONCE_INIT;

static void crypto_load(void)
{
	/* the soname of the OpenSSL whose headers this was built with */
	void *h = dlopen(SONAME(OPENSSL_VERSION_MAJOR), RTLD_NOW | RTLD_LOCAL);
	const char *missing = NULL;
	void *p;

	if (!h) {
		snprintf(crypto_why, sizeof(crypto_why), "cannot load %s: %s",
			 SONAME(OPENSSL_VERSION_MAJOR), dlerror());
		return;
	}
	/* dlsym's object pointers become function pointers: POSIX allows it */
#define SYM(field, name)                                      \
	do {                                                  \
		p = dlsym(h, name);                           \
		if (!p && !missing)                           \
			missing = name;                       \
		memcpy(&crypto.field, &p, sizeof(p));         \
	} while (0)
	SYM(ctx_new, "EVP_MD_CTX_new");
	SYM(ctx_free, "EVP_MD_CTX_free");
	SYM(init, "EVP_DigestInit_ex");
	SYM(update, "EVP_DigestUpdate");
	SYM(final, "EVP_DigestFinal_ex");
	SYM(sha256, "EVP_sha256");
	SYM(version, "OpenSSL_version");
#undef SYM
	if (missing) {
		snprintf(crypto_why, sizeof(crypto_why), "%s has no %s",
			 SONAME(OPENSSL_VERSION_MAJOR), missing);
		memset(&crypto, 0, sizeof(crypto));
		dlclose(h);
	}
}

int lfs_crypto_load(const char **why)
{
	pthread_once(&crypto_once, crypto_load);
	if (why)
		*why = crypto.sha256 ? NULL : crypto_why;
	return crypto.sha256 ? 0 : -ENOSYS;
}

const char *lfs_crypto_version(void)
{
	const char *why;

	return lfs_crypto_load(&why) ? why : crypto.version(OPENSSL_VERSION);
}

struct lfs_sha256 {
	EVP_MD_CTX *md;
};

/* 0, -ENOSYS without libcrypto, or -ENOMEM. */
static int sha256_start(struct lfs_sha256 **out)
{
	struct lfs_sha256 *h;

	*out = NULL;
	if (lfs_crypto_load(NULL))
		return -ENOSYS;
	h = calloc(1, sizeof(*h));
	if (!h || !(h->md = crypto.ctx_new()) || !crypto.init(h->md, crypto.sha256(), NULL)) {
		lfs_sha256_free(h);
		return -ENOMEM;
	}
	*out = h;
	return 0;
}

struct lfs_sha256 *lfs_sha256_new(void)
{
	struct lfs_sha256 *h;

	return sha256_start(&h) ? NULL : h;
}

int lfs_sha256_update(struct lfs_sha256 *h, const void *data, size_t len)
{
	return crypto.update(h->md, data, len) ? 0 : -ENOMEM;
}

int lfs_sha256_final(struct lfs_sha256 *h, unsigned char out[LFS_DIGEST_LEN])
{
	unsigned int len = 0;

	return crypto.final(h->md, out, &len) && len == LFS_DIGEST_LEN ? 0 : -ENOMEM;
}

void lfs_sha256_free(struct lfs_sha256 *h)
{
	if (!h)
		return;
	if (h->md)
		crypto.ctx_free(h->md);
	free(h);
}

int lfs_digest_source(struct lfs_source *src, unsigned char out[LFS_DIGEST_LEN])
{
	struct lfs_sha256 *h;
	unsigned char *buf = malloc(CHUNK);
	int rc = sha256_start(&h);

	if (!rc && !buf)
		rc = -ENOMEM;
	for (uint64_t off = 0; off < src->size && !rc; off += CHUNK) {
		size_t n = src->size - off < CHUNK ? (size_t)(src->size - off) : CHUNK;

		rc = lfs_source_read(src, buf, n, off);
		if (!rc)
			rc = lfs_sha256_update(h, buf, n);
	}
	if (!rc)
		rc = lfs_sha256_final(h, out);
	lfs_sha256_free(h);
	free(buf);
	return rc;
}

int lfs_digest_bytes(const void *data, size_t len, unsigned char out[LFS_DIGEST_LEN])
{
	struct lfs_sha256 *h;
	int rc = sha256_start(&h);

	if (!rc)
		rc = lfs_sha256_update(h, data, len);
	if (!rc)
		rc = lfs_sha256_final(h, out);
	lfs_sha256_free(h);
	return rc;
}

void lfs_digest_hex(const unsigned char d[LFS_DIGEST_LEN], char hex[LFS_DIGEST_HEX])
{
	static const char digits[] = "0123456789abcdef";

	for (int i = 0; i < LFS_DIGEST_LEN; i++) {
		hex[2 * i] = digits[d[i] >> 4];
		hex[2 * i + 1] = digits[d[i] & 15];
	}
	hex[2 * LFS_DIGEST_LEN] = '\0';
}

static int nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int lfs_digest_parse(const char *hex, unsigned char out[LFS_DIGEST_LEN])
{
	for (int i = 0; i < LFS_DIGEST_LEN; i++) {
		int hi = nibble(hex[2 * i]), lo = hi < 0 ? -1 : nibble(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return hex[2 * LFS_DIGEST_LEN] ? -EINVAL : 0;
}

static int memo_name(const char *version, char name[LFS_DIGEST_HEX])
{
	unsigned char d[LFS_DIGEST_LEN];
	int rc = lfs_digest_bytes(version, strlen(version), d);

	if (!rc)
		lfs_digest_hex(d, name);
	return rc;
}

int lfs_digest_memo_get(int dirfd, const char *version, unsigned char out[LFS_DIGEST_LEN])
{
	char name[LFS_DIGEST_HEX], buf[512 + LFS_SOURCE_ID_MAX], want[64 + LFS_SOURCE_ID_MAX];
	ssize_t n;
	int fd, len;

	if (memo_name(version, name))
		return -ENOENT;
	fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -ENOENT;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	len = snprintf(want, sizeof(want), MEMO_MAGIC "%s\n", version);
	if (n < 0 || len < 0 || (size_t)len >= sizeof(want) ||
	    (size_t)n != (size_t)len + 2 * LFS_DIGEST_LEN + 1 || memcmp(buf, want, (size_t)len) ||
	    buf[n - 1] != '\n')
		return -ENOENT;
	buf[n - 1] = '\0';
	return lfs_digest_parse(buf + len, out) ? -ENOENT : 0;
}

int lfs_digest_memo_put(int dirfd, const char *version, const unsigned char d[LFS_DIGEST_LEN])
{
	char name[LFS_DIGEST_HEX], tmp[LFS_DIGEST_HEX + 32], hex[LFS_DIGEST_HEX];
	char text[64 + LFS_SOURCE_ID_MAX + LFS_DIGEST_HEX];
	int fd, len, rc = 0;

	rc = memo_name(version, name);
	if (rc)
		return rc;
	lfs_digest_hex(d, hex);
	len = snprintf(text, sizeof(text), MEMO_MAGIC "%s\n%s\n", version, hex);
	if (len < 0 || (size_t)len >= sizeof(text))
		return -ENAMETOOLONG;
	snprintf(tmp, sizeof(tmp), ".%s.%ld", name, (long)getpid());
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	rc = lfs_hostdir_own(fd);
	if (!rc && write(fd, text, (size_t)len) != len)
		rc = errno ? -errno : -EIO;
	if (close(fd) && !rc)
		rc = -errno;
	if (!rc && renameat(dirfd, tmp, dirfd, name))
		rc = -errno;
	if (rc)
		unlinkat(dirfd, tmp, 0);
	return rc;
}
