#include "resume.h"

#include <errno.h>
#include <string.h>
#include <zlib.h>

static const unsigned char magic[4] = { 'L', 'F', 'R', 'P' };

static void put16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
}
static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}
static void put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}
static uint16_t get16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const unsigned char *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

void lfs_resume_encode(const struct lfs_resume *p, unsigned char *buf)
{
	size_t body = LFS_RESUME_HEAD + p->window_len;

	memcpy(buf, magic, 4);
	put16(buf + 4, LFS_RESUME_VERSION);
	buf[6] = p->codec;
	buf[7] = p->bit;
	put64(buf + 8, p->in_byte);
	put64(buf + 16, p->out_pos);
	put32(buf + 24, p->crc);
	put32(buf + 28, p->window_len);
	memmove(buf + LFS_RESUME_HEAD, p->window, p->window_len);
	put32(buf + body, (uint32_t)crc32(0, buf, (uInt)body));
}

int lfs_resume_parse(const unsigned char *buf, size_t len, uint64_t comp_size,
		     uint64_t size, struct lfs_resume *p)
{
	size_t body;

	if (len < LFS_RESUME_HEAD + 4 || memcmp(buf, magic, 4) ||
	    get16(buf + 4) != LFS_RESUME_VERSION)
		return -EINVAL;
	p->codec = buf[6];
	p->bit = buf[7];
	p->in_byte = get64(buf + 8);
	p->out_pos = get64(buf + 16);
	p->crc = get32(buf + 24);
	p->window_len = get32(buf + 28);
	p->window = buf + LFS_RESUME_HEAD;
	body = LFS_RESUME_HEAD + (size_t)p->window_len;
	if (p->codec != 8 || p->bit > 7 || p->window_len > LFS_RESUME_WINDOW ||
	    len != body + 4 || p->in_byte >= comp_size || p->out_pos > size ||
	    p->window_len != (p->out_pos < LFS_RESUME_WINDOW ? p->out_pos : LFS_RESUME_WINDOW) ||
	    get32(buf + body) != (uint32_t)crc32(0, buf, (uInt)body))
		return -EINVAL;
	return 0;
}
