/* Bytes in memory: a source for tests and fuzzers. */
#include "source.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mem_source {
	struct lfs_source src;	/* first: the public part */
	const unsigned char *data;
	unsigned char *owned;
};

static int mem_read(struct lfs_source *src, void *buf, size_t len, uint64_t off)
{
	struct mem_source *m = (struct mem_source *)src;

	memcpy(buf, m->data + off, len);
	return 0;
}

static void mem_close(struct lfs_source *src)
{
	struct mem_source *m = (struct mem_source *)src;

	free(m->owned);
	free(m);
}

static const struct lfs_source_ops mem_ops = {
	.read = mem_read,
	.close = mem_close,
};

struct lfs_source *lfs_source_mem_new(const void *data, size_t len, int copy)
{
	struct mem_source *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	if (copy) {
		m->owned = malloc(len ? len : 1);
		if (!m->owned) {
			free(m);
			return NULL;
		}
		memcpy(m->owned, data, len);
		data = m->owned;
	}
	m->data = data;
	m->src.ops = &mem_ops;
	m->src.size = len;
	snprintf(m->src.object, sizeof(m->src.object), "memory %p", (const void *)m);
	snprintf(m->src.version, sizeof(m->src.version), "%s", m->src.object);
	return &m->src;
}
