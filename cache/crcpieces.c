#include "crcpieces.h"

#include <libdeflate.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define MAX_PIECES 64

struct piece {
	uint64_t off, len;
	uint32_t crc;
};

struct slot {
	uint64_t layer, member, size;
	uint64_t used_at;	/* 0: free */
	unsigned n;
	struct piece *p;	/* sorted by offset, disjoint, never touching */
};

struct lfs_crc_pieces {
	pthread_mutex_t lock;
	unsigned nslots, max_pieces;
	uint64_t clock;
	struct slot *slots;
	struct piece *storage;
};

struct lfs_crc_pieces *lfs_crc_pieces_new(unsigned slots, unsigned max_pieces)
{
	struct lfs_crc_pieces *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	if (max_pieces > MAX_PIECES)
		max_pieces = MAX_PIECES;
	t->nslots = slots ? slots : 1;
	t->max_pieces = max_pieces ? max_pieces : 1;
	t->slots = calloc(t->nslots, sizeof(*t->slots));
	t->storage = calloc((size_t)t->nslots * t->max_pieces, sizeof(*t->storage));
	if (!t->slots || !t->storage) {
		lfs_crc_pieces_free(t);
		return NULL;
	}
	for (unsigned i = 0; i < t->nslots; i++)
		t->slots[i].p = t->storage + (size_t)i * t->max_pieces;
	pthread_mutex_init(&t->lock, NULL);
	return t;
}

void lfs_crc_pieces_free(struct lfs_crc_pieces *t)
{
	if (!t)
		return;
	if (t->slots && t->storage)
		pthread_mutex_destroy(&t->lock);
	free(t->slots);
	free(t->storage);
	free(t);
}

/* The member's slot, or a free one, or the one read least recently. */
static struct slot *slot_for(struct lfs_crc_pieces *t, uint64_t layer, uint64_t member,
			     uint64_t size)
{
	struct slot *victim = &t->slots[0];

	for (unsigned i = 0; i < t->nslots; i++) {
		struct slot *s = &t->slots[i];

		if (s->used_at && s->layer == layer && s->member == member && s->size == size)
			return s;
		if (s->used_at < victim->used_at)
			victim = s;
	}
	victim->layer = layer;
	victim->member = member;
	victim->size = size;
	victim->n = 0;
	return victim;
}

int lfs_crc_pieces_add(struct lfs_crc_pieces *t, uint64_t layer, uint64_t member,
		       uint64_t size, uint64_t off, const void *buf, size_t len,
		       uint32_t *crc)
{
	const unsigned char *bytes = buf;
	struct piece merged[2 * MAX_PIECES + 1];
	uint64_t pos = off, end = off + len;
	unsigned n = 0;
	struct slot *s;
	int done = 0;

	if (len == 0 || end > size)
		return 0;
	pthread_mutex_lock(&t->lock);
	s = slot_for(t, layer, member, size);
	s->used_at = ++t->clock;
	/* The pieces so far, with the parts of this read not yet recorded
	 * slotted in between them, in order. */
	for (unsigned i = 0; i <= s->n; i++) {
		uint64_t until = i < s->n && s->p[i].off < end ? s->p[i].off : end;

		if (pos < until) {
			merged[n].off = pos;
			merged[n].len = until - pos;
			merged[n++].crc = (uint32_t)libdeflate_crc32(0, bytes + (pos - off),
								     (size_t)(until - pos));
		}
		if (i < s->n) {
			merged[n++] = s->p[i];
			if (s->p[i].off + s->p[i].len > pos)
				pos = s->p[i].off + s->p[i].len;
		}
	}
	/* Pieces that meet become one. */
	s->n = 0;
	for (unsigned i = 0; i < n; i++) {
		struct piece *last = s->n ? &s->p[s->n - 1] : NULL;

		if (last && last->off + last->len == merged[i].off) {
			last->crc = (uint32_t)crc32_combine(last->crc, merged[i].crc,
							    (z_off_t)merged[i].len);
			last->len += merged[i].len;
		} else if (s->n == t->max_pieces) {
			s->used_at = 0; /* read all over the place: stop tracking */
			s->n = 0;
			done = -1;
			break;
		} else {
			s->p[s->n++] = merged[i];
		}
	}
	if (s->n == 1 && s->p[0].off == 0 && s->p[0].len == size) {
		*crc = s->p[0].crc;
		s->used_at = 0;
		s->n = 0;
		done = 1;
	}
	pthread_mutex_unlock(&t->lock);
	return done;
}

unsigned lfs_crc_pieces_tracked(struct lfs_crc_pieces *t)
{
	unsigned n = 0;

	pthread_mutex_lock(&t->lock);
	for (unsigned i = 0; i < t->nslots; i++)
		n += t->slots[i].used_at != 0;
	pthread_mutex_unlock(&t->lock);
	return n;
}
