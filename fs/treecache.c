#include "treecache.h"

#include "../cache/hostdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libdeflate.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The file's format; files of an older one fail the check and are made
 * again.  The key's prefix stays, so such a file is found and replaced. */
#define MAGIC "LFTREE02"
#define KEY_MAGIC "LFTREE01"
#define MAX_LAYERS LFS_TREE_MAX_LAYERS

/* The file: this head, then each part (aligned to 8) where the table
 * says.  crc covers every byte after the head.  The layers' digests are
 * there for lfs_treecache_forget (the key is a hash of them). */
struct head {
	char magic[8];
	unsigned char key[LFS_DIGEST_LEN];
	unsigned char digests[MAX_LAYERS][LFS_DIGEST_LEN];
	uint64_t nlayers;
	uint64_t size;			/* of the whole file */
	uint64_t off[MAX_LAYERS + 1];	/* layer i's flat index; [nlayers]: the tree */
	uint64_t len[MAX_LAYERS + 1];
	uint32_t crc;
	uint32_t pad;
};

struct lfs_treecache {
	void *map;
	size_t size;
	const struct head *h;
};

int lfs_treecache_key(const unsigned char (*digests)[LFS_DIGEST_LEN], const int64_t *mtimes,
		       size_t n, uint64_t max_entries, uint64_t max_total, uint64_t max_name,
		       struct lfs_treecache_key *key)
{
	unsigned char buf[64 + MAX_LAYERS * (LFS_DIGEST_LEN + 8)];
	size_t len = 0;
	uint64_t layout[] = { sizeof(struct lfs_node), sizeof(struct lfs_zip_entry), max_entries,
			      max_total, max_name, n };

	memcpy(buf, KEY_MAGIC, 8);
	len = 8;
	memcpy(buf + len, layout, sizeof(layout));
	len += sizeof(layout);
	memset(key->digests, 0, sizeof(key->digests));
	key->n = n < MAX_LAYERS ? n : MAX_LAYERS;
	for (size_t i = 0; i < n && i < MAX_LAYERS; i++) {
		memcpy(key->digests[i], digests[i], LFS_DIGEST_LEN);
		memcpy(buf + len, digests[i], LFS_DIGEST_LEN);
		len += LFS_DIGEST_LEN;
		memcpy(buf + len, &mtimes[i], 8);
		len += 8;
	}
	return lfs_digest_bytes(buf, len, key->k);
}

static void name_of(const struct lfs_treecache_key *key, char name[LFS_DIGEST_HEX])
{
	lfs_digest_hex(key->k, name);
}

int lfs_treecache_load(int dirfd, const struct lfs_treecache_key *key, size_t nlayers,
		       struct lfs_treecache **out)
{
	char name[LFS_DIGEST_HEX];
	struct lfs_treecache *tc;
	const struct head *h;
	struct stat st;
	void *map;
	int fd, ok;

	name_of(key, name);
	fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -ENOENT;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size < sizeof(*h)) {
		close(fd);
		unlinkat(dirfd, name, 0);
		return -ENOENT;
	}
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (map == MAP_FAILED)
		return -ENOENT;
	h = map;
	ok = !memcmp(h->magic, MAGIC, 8) && !memcmp(h->key, key->k, LFS_DIGEST_LEN) &&
	     h->nlayers == nlayers && h->size == (uint64_t)st.st_size;
	for (size_t i = 0; ok && i <= nlayers; i++)
		ok = h->off[i] >= sizeof(*h) && h->off[i] <= h->size &&
		     h->len[i] <= h->size - h->off[i] && !(h->off[i] & 7);
	ok = ok && libdeflate_crc32(0, (const unsigned char *)map + sizeof(*h),
				    h->size - sizeof(*h)) == h->crc;
	if (!ok) {
		munmap(map, (size_t)st.st_size);
		unlinkat(dirfd, name, 0);
		return -ENOENT;
	}
	tc = malloc(sizeof(*tc));
	if (!tc) {
		munmap(map, (size_t)st.st_size);
		return -ENOMEM;
	}
	tc->map = map;
	tc->size = (size_t)st.st_size;
	tc->h = h;
	*out = tc;
	return 0;
}

const void *lfs_treecache_zip(const struct lfs_treecache *tc, size_t i, size_t *len)
{
	*len = tc->h->len[i];
	return (const unsigned char *)tc->map + tc->h->off[i];
}

const void *lfs_treecache_tree(const struct lfs_treecache *tc, size_t *len)
{
	*len = tc->h->len[tc->h->nlayers];
	return (const unsigned char *)tc->map + tc->h->off[tc->h->nlayers];
}

void lfs_treecache_free(struct lfs_treecache *tc)
{
	if (!tc)
		return;
	munmap(tc->map, tc->size);
	free(tc);
}

static uint64_t align8(uint64_t n) { return (n + 7) & ~7ull; }

int lfs_treecache_save(int dirfd, const struct lfs_treecache_key *key,
		       struct lfs_zip_index *const *zips, size_t n, const struct lfs_tree *tree)
{
	struct head h;
	uint64_t size = sizeof(h);
	unsigned char *buf;
	char name[LFS_DIGEST_HEX], tmp[LFS_DIGEST_HEX + 32];
	int fd, rc = 0;

	if (n > MAX_LAYERS)
		return -E2BIG;
	memset(&h, 0, sizeof(h));
	memcpy(h.magic, MAGIC, 8);
	memcpy(h.key, key->k, LFS_DIGEST_LEN);
	memcpy(h.digests, key->digests, sizeof(h.digests));
	h.nlayers = n;
	for (size_t i = 0; i <= n; i++) {
		h.off[i] = size;
		h.len[i] = i < n ? lfs_zip_flat_size(zips[i]) : lfs_tree_flat_size(tree);
		size = align8(size + h.len[i]);
	}
	h.size = size;
	buf = calloc(1, size);
	if (!buf)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		lfs_zip_flatten(zips[i], buf + h.off[i]);
	lfs_tree_flatten(tree, buf + h.off[n]);
	h.crc = libdeflate_crc32(0, buf + sizeof(h), size - sizeof(h));
	memcpy(buf, &h, sizeof(h));
	name_of(key, name);
	snprintf(tmp, sizeof(tmp), ".%.16s.%ld", name, (long)getpid());
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		free(buf);
		return -errno;
	}
	rc = lfs_hostdir_own(fd);
	for (uint64_t done = 0; done < size && !rc;) {
		ssize_t w = write(fd, buf + done, size - done);

		if (w < 0 && errno != EINTR)
			rc = -errno;
		else if (w > 0)
			done += (uint64_t)w;
	}
	if (close(fd) && !rc)
		rc = -errno;
	if (!rc && renameat(dirfd, tmp, dirfd, name))
		rc = -errno;
	if (rc)
		unlinkat(dirfd, tmp, 0);
	free(buf);
	return rc;
}

int lfs_treecache_forget(int dirfd, const unsigned char digest[LFS_DIGEST_LEN])
{
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	int removed = 0;

	if (!dir) {
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	while ((de = readdir(dir))) {
		struct head h;
		int f, hit = 0;

		if (de->d_name[0] == '.')
			continue;	/* ".", "..", a writer's temporary file */
		f = openat(dirfd, de->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
		if (f < 0)
			continue;
		if (pread(f, &h, sizeof(h), 0) == (ssize_t)sizeof(h) && !memcmp(h.magic, MAGIC, 8) &&
		    h.nlayers <= MAX_LAYERS)
			for (uint64_t i = 0; i < h.nlayers && !hit; i++)
				hit = !memcmp(h.digests[i], digest, LFS_DIGEST_LEN);
		close(f);
		if (hit && unlinkat(dirfd, de->d_name, 0) == 0)
			removed++;
	}
	closedir(dir);
	return removed;
}
