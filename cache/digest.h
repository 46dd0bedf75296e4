/* Content identity: the SHA-256 of a layer's bytes, as the platform names a
 * layer version (its CodeSha256), and a memo of digests already made.
 *
 * Anything shared between mounts (and so between tenants) is keyed by this
 * digest, never by a checksum a zip's author could forge.  Hashing a layer
 * means reading all of it (0.14 s for 200 MB from the page cache here, 0.44 s
 * from disk: docs/performance.md), so digests are remembered by the
 * source's version (for a file: device, inode, size, mtime, ctime), and a
 * layer this host hashed before costs nothing at its next mount.
 *
 * The memo is one small file per version in a directory only the daemon's
 * owner can write (the caller checks that): a file's name is the SHA-256 of
 * the version string, its content the version string and the digest, and
 * both are checked on reading.  Files are written to a temporary name and
 * renamed, so a reader sees a whole record or none.  Links are never
 * followed. */
#ifndef LFS_DIGEST_H
#define LFS_DIGEST_H

#include <stddef.h>

#include "source.h"

#define LFS_DIGEST_LEN 32
#define LFS_DIGEST_HEX (2 * LFS_DIGEST_LEN + 1)

/* libcrypto is not linked: loaded with dlopen() at the first digest (or
 * lfs_crypto_load), so that a mount of local layers without a host cache,
 * which never hashes, does not map and relocate it at its start (13 ms of
 * a cold mount: docs/performance.md).  A caller that will need digests
 * later, under a system-call filter, loads it first with lfs_crypto_load.
 * When it cannot be loaded, every call below fails with -ENOSYS: no digest
 * is ever made up. */
/* Loads it (once; thread safe): 0, or -ENOSYS and *why (if why) says why. */
int lfs_crypto_load(const char **why);
/* OpenSSL's version line, or why it could not be loaded. */
const char *lfs_crypto_version(void);

/* A SHA-256 made piece by piece.  new: NULL when out of memory or without
 * libcrypto (lfs_crypto_load says which); update and final: 0 or -ENOMEM.
 * One thread at a time per object. */
struct lfs_sha256;
struct lfs_sha256 *lfs_sha256_new(void);
int lfs_sha256_update(struct lfs_sha256 *h, const void *data, size_t len);
int lfs_sha256_final(struct lfs_sha256 *h, unsigned char out[LFS_DIGEST_LEN]);
void lfs_sha256_free(struct lfs_sha256 *h);

/* SHA-256 of every byte of src.  0, or a negative errno (source errors,
 * -ENOSYS without libcrypto). */
int lfs_digest_source(struct lfs_source *src, unsigned char out[LFS_DIGEST_LEN]);

/* SHA-256 of len bytes: 0, -ENOMEM, or -ENOSYS without libcrypto. */
int lfs_digest_bytes(const void *data, size_t len, unsigned char out[LFS_DIGEST_LEN]);

void lfs_digest_hex(const unsigned char d[LFS_DIGEST_LEN], char hex[LFS_DIGEST_HEX]);
/* 0, or -EINVAL when hex is not 64 hexadecimal digits. */
int lfs_digest_parse(const char *hex, unsigned char out[LFS_DIGEST_LEN]);

/* The digest remembered for `version` in directory dirfd: 0, or -ENOENT
 * (none, or a record that does not check out). */
int lfs_digest_memo_get(int dirfd, const char *version, unsigned char out[LFS_DIGEST_LEN]);
/* Remembers it.  0 or a negative errno. */
int lfs_digest_memo_put(int dirfd, const char *version, const unsigned char d[LFS_DIGEST_LEN]);

#endif
