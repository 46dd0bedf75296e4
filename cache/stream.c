/* Deflate streams over ISA-L, with portable resume points.
 *
 * ISA-L inflates fast, but cannot be told to stop where a deflate block
 * ends, and its own state (Huffman tables, buffers) means nothing to
 * another build.  Its decode loop ends the stream at the end of any block
 * whose BFINAL flag is set, and reads that flag from its state: so once a
 * mark is passed, the flag of the block being decoded is set by hand, the
 * inflater stops exactly at that block's end, a portable record is made
 * there (bit position, window, CRC), and the inflater starts afresh from
 * that record, like any later reader of it will.  The cost is one restart
 * (32 KiB copied) per resume point.
 *
 * What this relies on in ISA-L, beyond its documented calls: the public
 * fields of struct inflate_state that say where the input stands
 * (next_in, avail_in, read_in, read_in_length), which block is decoded
 * (block_state, bfinal) and the running CRC (crc).  The assertions below
 * pin their types; the unit tests resume from every point a stream makes
 * and check the bytes against the whole member's inflation. */
#include "stream.h"

#include <errno.h>
#include <isa-l.h>
#include <isa-l/igzip_lib.h>
#include <stdlib.h>
#include <string.h>

#define IN_CHUNK (64u << 10)
#define DISCARD_CHUNK (16u << 10)
#define W LFS_RESUME_WINDOW

_Static_assert(ISAL_MAJOR_VERSION == 2, "stopping at block ends was checked against ISA-L 2.x");
_Static_assert(ISAL_DEF_HIST_SIZE == W, "deflate's window is 32 KiB");
_Static_assert(sizeof(((struct inflate_state *)0)->read_in) == 8, "read_in: a 64-bit bit buffer");
_Static_assert(sizeof(((struct inflate_state *)0)->read_in_length) == 4 &&
		       (__typeof__(((struct inflate_state *)0)->read_in_length))-1 < 0,
	       "read_in_length: a signed bit count");
_Static_assert(sizeof(((struct inflate_state *)0)->bfinal) == 4, "bfinal: a 32-bit flag");
_Static_assert(sizeof(((struct inflate_state *)0)->crc) == 4, "crc: the running CRC-32");

struct lfs_stream {
	uint64_t in_pos;	/* compressed offset of in[0] */
	uint32_t in_len;
	uint64_t out_pos;
	uint64_t mark;		/* next resume point at or after this (UINT64_MAX: none) */
	int forced;		/* the current block's BFINAL was set by hand */
	uint32_t win_len, win_head; /* ring of the last bytes produced */
	struct inflate_state st;
	unsigned char window[W];
	unsigned char in[IN_CHUNK];
	unsigned char scratch[DISCARD_CHUNK];
};

size_t lfs_stream_footprint(void) { return sizeof(struct lfs_stream); }

static uint64_t next_in_pos(const struct lfs_stream *s)
{
	return s->in_pos + (uint64_t)(s->st.next_in - s->in);
}

static void next_mark(struct lfs_stream *s, const struct lfs_stream_io *io)
{
	s->mark = io->spacing ? (s->out_pos / io->spacing + 1) * io->spacing : UINT64_MAX;
}

/* Keeps the last W bytes produced, from shortly before a mark on (a
 * point's window is the W bytes before it). */
static void window_push(struct lfs_stream *s, const unsigned char *p, size_t n)
{
	size_t first;

	if (n >= W) {
		memcpy(s->window, p + n - W, W);
		s->win_head = 0;
		s->win_len = W;
		return;
	}
	first = n < W - s->win_head ? n : W - s->win_head;
	memcpy(s->window + s->win_head, p, first);
	memcpy(s->window, p + first, n - first);
	s->win_head = (uint32_t)((s->win_head + n) % W);
	s->win_len = s->win_len + n > W ? W : (uint32_t)(s->win_len + n);
}

static void window_copy(const struct lfs_stream *s, unsigned char *dst)
{
	uint32_t start = (s->win_head + W - s->win_len) % W;
	uint32_t first = s->win_len < W - start ? s->win_len : W - start;

	memcpy(dst, s->window + start, first);
	memcpy(dst + first, s->window, s->win_len - first);
}

/* Points the inflater at compressed byte `pos` (fetching input when it
 * is not in the buffer). */
static int seek_input(struct lfs_stream *s, const struct lfs_stream_io *io, uint64_t pos)
{
	uint32_t n;
	int rc;

	if (pos >= s->in_pos && pos < s->in_pos + s->in_len) {
		s->st.next_in = s->in + (pos - s->in_pos);
		s->st.avail_in = (uint32_t)(s->in_pos + s->in_len - pos);
		return 0;
	}
	n = io->comp_size - pos > IN_CHUNK ? IN_CHUNK : (uint32_t)(io->comp_size - pos);
	s->st.next_in = s->in;
	s->st.avail_in = 0;
	s->in_pos = pos;
	s->in_len = 0;
	if (n == 0)
		return 0;
	rc = io->fetch(io->ctx, s->in, n, pos);
	if (rc)
		return rc;
	s->in_len = n;
	s->st.avail_in = n;
	return 0;
}

/* Restarts the inflater at a block boundary: the state a resume point
 * describes. */
static int restart(struct lfs_stream *s, const struct lfs_stream_io *io, uint64_t in_byte,
		   unsigned bit, uint32_t crc, const unsigned char *window, uint32_t window_len)
{
	int rc;

	isal_inflate_init(&s->st);
	s->st.crc_flag = ISAL_GZIP_NO_HDR; /* raw deflate, with the zip's CRC-32 */
	if (window_len && isal_inflate_set_dict(&s->st, (uint8_t *)(uintptr_t)window, window_len))
		return -EINVAL;
	s->st.crc = crc;
	s->forced = 0;
	next_mark(s, io);
	rc = seek_input(s, io, in_byte);
	if (rc)
		return rc;
	if (bit) {
		if (s->st.avail_in == 0)
			return -EBADMSG;
		/* the block starts inside this byte: its upper bits go first */
		s->st.read_in = (uint64_t)(*s->st.next_in >> bit);
		s->st.read_in_length = (int32_t)(8 - bit);
		s->st.next_in++;
		s->st.avail_in--;
	}
	return 0;
}

struct lfs_stream *lfs_stream_new(const struct lfs_stream_io *io)
{
	struct lfs_stream *s = malloc(sizeof(*s));

	if (!s)
		return NULL;
	s->in_pos = 0;
	s->in_len = 0;
	s->out_pos = 0;
	s->win_len = 0;
	s->win_head = 0;
	isal_inflate_init(&s->st);
	s->st.crc_flag = ISAL_GZIP_NO_HDR;
	s->st.next_in = s->in;
	s->st.avail_in = 0;
	s->forced = 0;
	next_mark(s, io);
	return s;
}

int lfs_stream_resume(const struct lfs_resume *rp, const struct lfs_stream_io *io,
		      struct lfs_stream **out)
{
	struct lfs_stream *s = lfs_stream_new(io);
	int rc;

	if (!s)
		return -ENOMEM;
	s->out_pos = rp->out_pos;
	s->in_len = 0; /* nothing buffered: seek_input fetches */
	rc = restart(s, io, rp->in_byte, rp->bit, rp->crc, rp->window, rp->window_len);
	if (rc) {
		free(s);
		return rc;
	}
	window_push(s, rp->window, rp->window_len);
	*out = s;
	return 0;
}

void lfs_stream_free(struct lfs_stream *s) { free(s); }
uint64_t lfs_stream_pos(const struct lfs_stream *s) { return s->out_pos; }
uint32_t lfs_stream_crc(const struct lfs_stream *s) { return s->st.crc; }

static int refill(struct lfs_stream *s, const struct lfs_stream_io *io)
{
	uint64_t pos = next_in_pos(s);
	int rc;

	if (pos >= io->comp_size)
		return 0;
	rc = seek_input(s, io, pos);
	return rc ? rc : 1;
}

/* Past a mark, in the middle of a block: have the inflater stop at its
 * end.  A block that really is the last one makes no point. */
static void stop_at_block_end(struct lfs_stream *s, const struct lfs_stream_io *io)
{
	if (s->forced || s->out_pos < s->mark ||
	    (s->st.block_state != ISAL_BLOCK_CODED && s->st.block_state != ISAL_BLOCK_TYPE0))
		return;
	if (s->st.bfinal || (io->want_point && !io->want_point(io->ctx, s->out_pos / io->spacing))) {
		next_mark(s, io);
		return;
	}
	s->st.bfinal = 1;
	s->forced = 1;
}

/* The inflater stopped where a block ends: make the point (unless the
 * member's output is complete) and go on from there. */
static int at_boundary(struct lfs_stream *s, const struct lfs_stream_io *io, int make_point)
{
	uint64_t bitpos = next_in_pos(s) * 8 - (uint64_t)s->st.read_in_length;
	struct lfs_resume p = {
		.codec = 8,
		.bit = (uint8_t)(bitpos & 7),
		.in_byte = bitpos >> 3,
		.out_pos = s->out_pos,
		.crc = s->st.crc,
		.window_len = s->win_len,
	};
	size_t len = lfs_resume_size(p.window_len);
	unsigned char *rec = malloc(len);
	int rc;

	if (!rec)
		return -ENOMEM;
	window_copy(s, rec + LFS_RESUME_HEAD);
	p.window = rec + LFS_RESUME_HEAD;
	rc = restart(s, io, p.in_byte, p.bit, p.crc, p.window, p.window_len);
	if (make_point && rc != -EBADMSG && rc != -EINVAL) {
		lfs_resume_encode(&p, rec);
		io->point(io->ctx, rec, len, p.out_pos / io->spacing);
	} else {
		free(rec);
	}
	return rc;
}

int lfs_stream_produce(struct lfs_stream *s, const struct lfs_stream_io *io,
		       unsigned char *out, size_t len, const char **why)
{
	size_t done = 0;

	while (done < len) {
		unsigned char *dst = out ? out + done : s->scratch;
		size_t left = len - done;
		uint32_t want = out ? (left > UINT32_MAX ? UINT32_MAX : (uint32_t)left)
				    : (left > DISCARD_CHUNK ? DISCARD_CHUNK : (uint32_t)left);
		uint32_t before_in, got;
		int rc, fed = 0;

		if (s->st.block_state == ISAL_BLOCK_FINISH) {
			if (!s->forced) {
				*why = "stream ends before its declared size";
				return -EBADMSG;
			}
			rc = at_boundary(s, io, 1);
			if (rc)
				return rc;
			continue;
		}
		if (s->st.avail_in == 0) {
			rc = refill(s, io);
			if (rc < 0)
				return rc;
			fed = rc;
		}
		stop_at_block_end(s, io);
		before_in = s->st.avail_in;
		s->st.next_out = dst;
		s->st.avail_out = want;
		rc = isal_inflate(&s->st);
		got = want - s->st.avail_out;
		if (rc < 0) {
			*why = "corrupt deflate data";
			return -EBADMSG;
		}
		if (got && (s->forced || s->out_pos + got + W >= s->mark))
			window_push(s, dst, got);
		s->out_pos += got;
		done += got;
		if (!got && s->st.avail_in == before_in && !fed &&
		    s->st.block_state != ISAL_BLOCK_FINISH) {
			*why = "compressed data ends before the stream does";
			return -EBADMSG;
		}
	}
	return 0;
}

int lfs_stream_finish(struct lfs_stream *s, const struct lfs_stream_io *io, uint32_t crc,
		      const char **why)
{
	unsigned char spare[64];

	for (;;) {
		uint32_t before_in;
		int rc, fed = 0;

		if (s->st.block_state == ISAL_BLOCK_FINISH) {
			if (!s->forced)
				break;
			/* stopped by hand at the end of a block that was not the
			 * last: empty blocks may follow */
			rc = at_boundary(s, io, 0);
			if (rc)
				return rc;
			continue;
		}
		if (s->st.avail_in == 0) {
			rc = refill(s, io);
			if (rc < 0)
				return rc;
			fed = rc;
		}
		before_in = s->st.avail_in;
		s->st.next_out = spare;
		s->st.avail_out = sizeof(spare);
		rc = isal_inflate(&s->st);
		if (rc < 0) {
			*why = "corrupt deflate data";
			return -EBADMSG;
		}
		if (s->st.avail_out != sizeof(spare)) {
			*why = "stream runs past its declared size";
			return -EBADMSG;
		}
		if (s->st.avail_in == before_in && !fed && s->st.block_state != ISAL_BLOCK_FINISH) {
			*why = "compressed data ends before the stream does";
			return -EBADMSG;
		}
	}
	if (s->st.crc != crc) {
		*why = "CRC-32 mismatch";
		return -EBADMSG;
	}
	return 0;
}
