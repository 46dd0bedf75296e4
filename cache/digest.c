#include "digest.h"

#include "hostdir.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHUNK (1u << 20)
#define MEMO_MAGIC "layerfs-digest 1\n"

int lfs_digest_source(struct lfs_source *src, unsigned char out[LFS_DIGEST_LEN])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char *buf = malloc(CHUNK);
	unsigned int len = 0;
	int rc = 0;

	if (!ctx || !buf || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		rc = -ENOMEM;
		goto out;
	}
	for (uint64_t off = 0; off < src->size && !rc; off += CHUNK) {
		size_t n = src->size - off < CHUNK ? (size_t)(src->size - off) : CHUNK;

		rc = lfs_source_read(src, buf, n, off);
		if (!rc && !EVP_DigestUpdate(ctx, buf, n))
			rc = -ENOMEM;
	}
	if (!rc && !EVP_DigestFinal_ex(ctx, out, &len))
		rc = -ENOMEM;
out:
	EVP_MD_CTX_free(ctx);
	free(buf);
	return rc;
}

void lfs_digest_bytes(const void *data, size_t len, unsigned char out[LFS_DIGEST_LEN])
{
	unsigned int n = 0;

	if (!EVP_Digest(data, len, out, &n, EVP_sha256(), NULL))
		memset(out, 0, LFS_DIGEST_LEN); /* only when libcrypto cannot run at all */
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

static void memo_name(const char *version, char name[LFS_DIGEST_HEX])
{
	unsigned char d[LFS_DIGEST_LEN];

	lfs_digest_bytes(version, strlen(version), d);
	lfs_digest_hex(d, name);
}

int lfs_digest_memo_get(int dirfd, const char *version, unsigned char out[LFS_DIGEST_LEN])
{
	char name[LFS_DIGEST_HEX], buf[512 + LFS_SOURCE_ID_MAX], want[64 + LFS_SOURCE_ID_MAX];
	ssize_t n;
	int fd, len;

	memo_name(version, name);
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

	memo_name(version, name);
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
