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

/* SHA-256 of every byte of src.  0, or a negative errno (source errors). */
int lfs_digest_source(struct lfs_source *src, unsigned char out[LFS_DIGEST_LEN]);

/* SHA-256 of len bytes. */
void lfs_digest_bytes(const void *data, size_t len, unsigned char out[LFS_DIGEST_LEN]);

void lfs_digest_hex(const unsigned char d[LFS_DIGEST_LEN], char hex[LFS_DIGEST_HEX]);
/* 0, or -EINVAL when hex is not 64 hexadecimal digits. */
int lfs_digest_parse(const char *hex, unsigned char out[LFS_DIGEST_LEN]);

/* The digest remembered for `version` in directory dirfd: 0, or -ENOENT
 * (none, or a record that does not check out). */
int lfs_digest_memo_get(int dirfd, const char *version, unsigned char out[LFS_DIGEST_LEN]);
/* Remembers it.  0 or a negative errno. */
int lfs_digest_memo_put(int dirfd, const char *version, const unsigned char d[LFS_DIGEST_LEN]);

#endif
