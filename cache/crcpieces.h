/* Piecewise CRC-32 of members that are read in any order.
 *
 * A large stored member is never read whole at once (a program maps it and
 * faults pages in; the kernel reads ahead in pieces, not always in order),
 * so its CRC-32 is checked as it is read.  The CRC of each read is kept as
 * a piece.  Pieces that meet are combined (zlib's crc32_combine).  When one
 * piece spans the member, its CRC is the member's.  Parts already recorded
 * are skipped, so rereads cost nothing but a lookup.
 *
 * Checking is best effort with a fixed cost: a member read in too many
 * separate places is no longer tracked, and when every slot is taken the
 * member read least recently gives up its slot.  Thread-safe. */
#ifndef LFS_CRCPIECES_H
#define LFS_CRCPIECES_H

#include <stddef.h>
#include <stdint.h>

struct lfs_crc_pieces;

/* slots: members tracked at once; max_pieces: separate pieces per member. */
struct lfs_crc_pieces *lfs_crc_pieces_new(unsigned slots, unsigned max_pieces);
void lfs_crc_pieces_free(struct lfs_crc_pieces *t);

/* Records bytes [off, off + len) of member (layer, member) whose size is
 * `size`.  Returns 1 with *crc set to the member's CRC-32 when this read
 * completes it, -1 when the member is read in too many places to track
 * (callers then stop offering it), 0 otherwise.  A member is forgotten
 * once it returns 1 or -1. */
int lfs_crc_pieces_add(struct lfs_crc_pieces *t, uint64_t layer, uint64_t member,
		       uint64_t size, uint64_t off, const void *buf, size_t len,
		       uint32_t *crc);

/* Members being tracked now (for tests). */
unsigned lfs_crc_pieces_tracked(struct lfs_crc_pieces *t);

#endif
