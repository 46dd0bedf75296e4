/* The codecs a member may use, behind one small table.
 *
 * Every codec decodes a whole member in one call (members of at most one
 * block, and stored members, go this way).  A codec that streams is
 * inflated through lfs_stream (stream.h) when a member is larger than a
 * block; stored members need no stream, their bytes are read in place.
 * Adding a codec (zstd, method 93) means one entry here and, for members
 * larger than a block, a stream of its own. */
#ifndef LFS_CODEC_H
#define LFS_CODEC_H

#include <stddef.h>
#include <stdint.h>

struct lfs_codec {
	uint16_t method;	/* the zip method number */
	const char *name;
	int streams;		/* 1: members over one block go through lfs_stream */
	/* Decodes in[0..in_len) into exactly size bytes at out, which has
	 * room for size + 1 (the spare byte tells a stream that runs long).
	 * 0, -ENOMEM, or -EBADMSG with the reason in *why. */
	int (*whole)(const unsigned char *in, size_t in_len, unsigned char *out, size_t size,
		     const char **why);
};

/* The codec of zip method `method`, or NULL when it is not supported. */
const struct lfs_codec *lfs_codec_for(uint16_t method);

#endif
