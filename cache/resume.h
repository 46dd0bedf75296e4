/* Resume points: where a member's compressed stream can be taken up again,
 * by any inflater, in another process or another build.
 *
 * Deflate can be resumed only where a block starts: there the decoder holds
 * no Huffman tables, only the 32 KiB of output before the point (its
 * window) that back-references may reach.  So a point names the codec, the
 * bit where the next block starts, the output offset, the window and the
 * running CRC-32: the record zran, erofs-utils' lib/gzran.c and SOCI's zTOC
 * keep.  Nothing in it belongs to the process or to the inflater that made
 * it, so points can go to disk and come back.
 *
 * The record is its own serialization (little-endian, versioned):
 *
 *   offset  size  field
 *        0     4  magic "LFRP"
 *        4     2  format version (LFS_RESUME_VERSION)
 *        6     1  codec (zip method number: 8, deflate)
 *        7     1  bit (0-7) within in_byte where the block starts
 *        8     8  in_byte: compressed offset from the member's data start
 *       16     8  out_pos: uncompressed offset of the point
 *       24     4  crc: CRC-32 of the member's bytes [0, out_pos)
 *       28     4  window_len: min(out_pos, 32768)
 *       32     W  window: the window_len bytes before out_pos
 *     32+W     4  CRC-32 of bytes [0, 32 + W) of the record
 *
 * A record read back is checked whole (lfs_resume_parse) before any byte
 * of it is used. */
#ifndef LFS_RESUME_H
#define LFS_RESUME_H

#include <stddef.h>
#include <stdint.h>

#define LFS_RESUME_VERSION 1
#define LFS_RESUME_WINDOW 32768u
#define LFS_RESUME_HEAD 32u
#define LFS_RESUME_MAX (LFS_RESUME_HEAD + LFS_RESUME_WINDOW + 4u)

/* A parsed record; window points into the record's bytes. */
struct lfs_resume {
	uint8_t codec;
	uint8_t bit;
	uint64_t in_byte;
	uint64_t out_pos;
	uint32_t crc;
	uint32_t window_len;
	const unsigned char *window;
};

/* Bytes a record with this window takes. */
static inline size_t lfs_resume_size(uint32_t window_len)
{
	return LFS_RESUME_HEAD + window_len + 4;
}

/* Writes the record for p (p->window: its window_len bytes) into buf of
 * lfs_resume_size(p->window_len) bytes. */
void lfs_resume_encode(const struct lfs_resume *p, unsigned char *buf);

/* Checks buf[0..len) as a record of a member with comp_size compressed
 * and size uncompressed bytes, and fills p.  0, or -EINVAL when it is not a
 * valid record (wrong magic, version, codec, sizes, positions or check). */
int lfs_resume_parse(const unsigned char *buf, size_t len, uint64_t comp_size,
		     uint64_t size, struct lfs_resume *p);

#endif
