#include "source.h"

#include <errno.h>

static void count(uint64_t *c, uint64_t n) { __atomic_add_fetch(c, n, __ATOMIC_RELAXED); }

static int note(struct lfs_source *src, int rc)
{
	if (rc == -ESTALE)
		__atomic_store_n(&src->changed, 1, __ATOMIC_RELEASE);
	return rc;
}

int lfs_source_read(struct lfs_source *src, void *buf, size_t len, uint64_t off)
{
	int rc;

	if (lfs_source_changed(src))
		return -ESTALE;
	if (off > src->size || len > src->size - off)
		return -EINVAL;
	if (len == 0)
		return 0;
	rc = note(src, src->ops->read(src, buf, len, off));
	if (rc) {
		count(&src->counters.errors, 1);
		return rc;
	}
	count(&src->counters.reads, 1);
	count(&src->counters.bytes, len);
	return 0;
}

void lfs_source_will_need(struct lfs_source *src, uint64_t off, uint64_t len)
{
	if (src->ops->will_need && off < src->size)
		src->ops->will_need(src, off, len > src->size - off ? src->size - off : len);
}

int lfs_source_check(struct lfs_source *src)
{
	if (lfs_source_changed(src))
		return -ESTALE;
	return src->ops->check ? note(src, src->ops->check(src)) : 0;
}

int lfs_source_changed(const struct lfs_source *src)
{
	return __atomic_load_n(&src->changed, __ATOMIC_ACQUIRE);
}

void lfs_source_close(struct lfs_source *src)
{
	if (src)
		src->ops->close(src);
}
