#include "codec.h"

#include <errno.h>
#include <libdeflate.h>
#include <pthread.h>
#include <string.h>

static int stored_whole(const unsigned char *in, size_t in_len, unsigned char *out, size_t size,
			const char **why)
{
	if (in_len != size) {
		*why = "stored member whose sizes differ";
		return -EBADMSG;
	}
	memcpy(out, in, size);
	return 0;
}

/* One libdeflate decompressor per thread, freed with the thread. */
static pthread_key_t decompressor_key;
static pthread_once_t decompressor_once = PTHREAD_ONCE_INIT;

static void free_decompressor(void *d) { libdeflate_free_decompressor(d); }
static void make_key(void) { (void)pthread_key_create(&decompressor_key, free_decompressor); }

static struct libdeflate_decompressor *decompressor(void)
{
	struct libdeflate_decompressor *d;

	pthread_once(&decompressor_once, make_key);
	d = pthread_getspecific(decompressor_key);
	if (!d) {
		d = libdeflate_alloc_decompressor();
		if (d && pthread_setspecific(decompressor_key, d)) {
			libdeflate_free_decompressor(d);
			d = NULL;
		}
	}
	return d;
}

/* Members of at most one block: libdeflate in one call is the fastest
 * inflater here for them (docs/performance.md). */
static int deflate_whole(const unsigned char *in, size_t in_len, unsigned char *out,
			 size_t size, const char **why)
{
	struct libdeflate_decompressor *d = decompressor();
	size_t in_used = 0, out_len = 0;
	enum libdeflate_result res;

	if (!d)
		return -ENOMEM;
	res = libdeflate_deflate_decompress_ex(d, in, in_len, out, size + 1, &in_used, &out_len);
	if (res == LIBDEFLATE_BAD_DATA)
		*why = "corrupt deflate data";
	else if (res == LIBDEFLATE_INSUFFICIENT_SPACE || (res == LIBDEFLATE_SUCCESS && out_len > size))
		*why = "stream runs past its declared size";
	else if (res != LIBDEFLATE_SUCCESS || out_len < size)
		*why = "stream ends before its declared size";
	else
		return 0;
	return -EBADMSG;
}

static const struct lfs_codec codecs[] = {
	{ 0, "stored", 0, stored_whole },
	{ 8, "deflate", 1, deflate_whole },
};

const struct lfs_codec *lfs_codec_for(uint16_t method)
{
	for (size_t i = 0; i < sizeof(codecs) / sizeof(codecs[0]); i++)
		if (codecs[i].method == method)
			return &codecs[i];
	return NULL;
}
