#include "trace.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_TRACE_BYTES (64u << 20) /* a trace is a few thousand lines */
#define MAX_FILE_BYTES (1ull << 48)  /* no member is larger */

int lfs_trace_init(struct lfs_trace *t, uint32_t block_size, size_t nlayers)
{
	memset(t, 0, sizeof(*t));
	if (nlayers > LFS_TRACE_MAX_LAYERS)
		return -E2BIG;
	t->block_size = block_size;
	t->nlayers = nlayers;
	return 0;
}

void lfs_trace_free(struct lfs_trace *t)
{
	for (size_t i = 0; i < t->nlayers; i++) {
		free(t->layer_id[i]);
		free(t->layer_label[i]);
	}
	for (size_t i = 0; i < t->nranges; i++)
		free(t->ranges[i].path);
	free(t->ranges);
	memset(t, 0, sizeof(*t));
}

int lfs_trace_set_layer(struct lfs_trace *t, size_t i, const char *id, const char *label)
{
	free(t->layer_id[i]);
	free(t->layer_label[i]);
	t->layer_id[i] = strdup(id);
	t->layer_label[i] = strdup(label);
	return t->layer_id[i] && t->layer_label[i] ? 0 : -ENOMEM;
}

static int add_record(struct lfs_trace *t, enum lfs_trace_kind kind, uint32_t layer,
		      uint64_t first, uint64_t last, const char *path, size_t path_len)
{
	struct lfs_trace_range *r;

	if (t->nranges == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 256;
		struct lfs_trace_range *n = realloc(t->ranges, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		t->ranges = n;
		t->cap = cap;
	}
	r = &t->ranges[t->nranges];
	r->path = malloc(path_len + 1);
	if (!r->path)
		return -ENOMEM;
	memcpy(r->path, path, path_len);
	r->path[path_len] = '\0';
	r->kind = kind;
	r->layer = layer;
	r->first = first;
	r->last = last;
	t->nranges++;
	return 0;
}

int lfs_trace_add(struct lfs_trace *t, uint32_t layer, uint64_t first, uint64_t last,
		  const char *path, size_t path_len)
{
	return add_record(t, LFS_TRACE_RANGE, layer, first, last, path, path_len);
}

int lfs_trace_add_name(struct lfs_trace *t, enum lfs_trace_kind kind, const char *path,
		       size_t path_len)
{
	return add_record(t, kind, 0, 0, 0, path, path_len);
}

static int must_escape(unsigned char c) { return c <= 0x20 || c >= 0x7f || c == '%'; }

static void put_escaped(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (must_escape((unsigned char)*s))
			fprintf(f, "%%%02X", (unsigned char)*s);
		else
			fputc(*s, f);
	}
}

int lfs_trace_write(const struct lfs_trace *t, int dirfd, const char *name)
{
	size_t n = strlen(name);
	char *tmp = malloc(n + 32);
	FILE *f;
	int fd, rc = 0;

	if (!tmp)
		return -ENOMEM;
	snprintf(tmp, n + 32, ".%s.tmp.%ld", name, (long)getpid());
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f) {
		rc = -errno;
		if (fd >= 0)
			close(fd);
		free(tmp);
		return rc;
	}
	fprintf(f, "layerfs-trace %d\nblock_size %u\n", LFS_TRACE_VERSION, t->block_size);
	for (size_t i = 0; i < t->nlayers; i++) {
		fprintf(f, "layer %zu %s ", i, t->layer_id[i] ? t->layer_id[i] : "unknown");
		put_escaped(f, t->layer_label[i] ? t->layer_label[i] : "");
		fputc('\n', f);
	}
	for (size_t i = 0; i < t->nranges; i++) {
		const struct lfs_trace_range *r = &t->ranges[i];

		if (r->kind == LFS_TRACE_RANGE)
			fprintf(f, "range %u %llu %llu ", r->layer, (unsigned long long)r->first,
				(unsigned long long)r->last);
		else
			fputs(r->kind == LFS_TRACE_ABSENT ? "absent " : "list ", f);
		put_escaped(f, r->path);
		fputc('\n', f);
	}
	fprintf(f, "end %zu\n", t->nranges);
	if (fflush(f) || ferror(f))
		rc = -EIO;
	if (fsync(fileno(f)) && !rc)
		rc = -errno;
	if (fclose(f) && !rc)
		rc = -errno;
	if (!rc && renameat(dirfd, tmp, dirfd, name))
		rc = -errno;
	if (rc)
		unlinkat(dirfd, tmp, 0);
	free(tmp);
	return rc;
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
		: c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decodes s in place; -1 on a bad escape or a NUL. */
static int unescape(char *s, size_t *len)
{
	char *o = s;

	for (const char *p = s; *p; p++) {
		if (*p == '%') {
			int hi = hexval(p[1]), lo = hi < 0 ? -1 : hexval(p[2]);

			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				return -1;
			*o++ = (char)(hi << 4 | lo);
			p += 2;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
	*len = (size_t)(o - s);
	return 0;
}

/* A decimal number without sign or leading junk, at most max, then one
 * space or the line's end; *p moves past it.  -1 when it is not. */
static int take_num(char **p, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	char *q = *p;

	if (*q < '0' || *q > '9')
		return -1;
	for (; *q >= '0' && *q <= '9'; q++) {
		if (v > (max - (uint64_t)(*q - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*q - '0');
	}
	if (*q == ' ')
		q++;
	else if (*q)
		return -1;
	*p = q;
	*out = v;
	return 0;
}

/* A token of non-space bytes, then one space; NUL-terminated in place. */
static char *take_word(char **p)
{
	char *w = *p, *sp = strchr(w, ' ');

	if (!sp || sp == w)
		return NULL;
	*sp = '\0';
	*p = sp + 1;
	return w;
}

/* One line of the body (layers, ranges, the end): 0, 1 at the end line,
 * -1 when it does not parse. */
static int parse_line(struct lfs_trace *t, char *line, size_t *nlayers, int version, int *rc)
{
	uint64_t layer, first, last, count;
	size_t len;
	char *p, *id;

	if (!strncmp(line, "layer ", 6)) {
		p = line + 6;
		if (take_num(&p, LFS_TRACE_MAX_LAYERS - 1, &layer) || layer != *nlayers ||
		    !(id = take_word(&p)) || strlen(id) > 511 || unescape(p, &len))
			return -1;
		t->nlayers = ++*nlayers;
		*rc = lfs_trace_set_layer(t, (size_t)layer, id, p);
		return 0;
	}
	if (!strncmp(line, "range ", 6)) {
		p = line + 6;
		if (take_num(&p, *nlayers ? *nlayers - 1 : 0, &layer) || !*nlayers ||
		    take_num(&p, MAX_FILE_BYTES / t->block_size, &first) ||
		    take_num(&p, MAX_FILE_BYTES / t->block_size, &last) || last < first || !*p ||
		    unescape(p, &len))
			return -1;
		*rc = lfs_trace_add(t, (uint32_t)layer, first, last, p, len);
		return 0;
	}
	if (version >= 2 && (!strncmp(line, "absent ", 7) || !strncmp(line, "list ", 5))) {
		int absent = line[0] == 'a';

		p = line + (absent ? 7 : 5);
		if (!*p || unescape(p, &len))
			return -1;
		*rc = lfs_trace_add_name(t, absent ? LFS_TRACE_ABSENT : LFS_TRACE_LIST, p, len);
		return 0;
	}
	if (!strncmp(line, "end ", 4)) {
		p = line + 4;
		if (take_num(&p, SIZE_MAX, &count) || *p || count != t->nranges)
			return -1;
		return 1;
	}
	return -1;
}

int lfs_trace_read(const char *path, struct lfs_trace *t, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	char *line = NULL, *p;
	size_t cap = 0, lineno = 0, nlayers = 0;
	const char *why = "malformed line";
	uint64_t v;
	ssize_t n;
	int rc = 0, ended = 0, version = 0;

	memset(t, 0, sizeof(*t));
	if (!f) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return rc;
	}
	while (!rc && (n = getline(&line, &cap, f)) > 0) {
		lineno++;
		if (ended) {
			why = "lines after its end";
			rc = -EINVAL;
		} else if (line[n - 1] != '\n' || strlen(line) != (size_t)n) {
			why = "truncated or not text";
			rc = -EINVAL;
		} else {
			line[n - 1] = '\0';
			p = line + 14;
			if (lineno == 1) {
				if (strncmp(line, "layerfs-trace ", 14) || take_num(&p, 1000, &v) || *p ||
				    v < 1 || v > LFS_TRACE_VERSION) {
					why = "not a layerfs trace of a version this build reads";
					rc = -EINVAL;
				}
				version = (int)v;
			} else if (lineno == 2) {
				p = line + 11;
				if (strncmp(line, "block_size ", 11) ||
				    take_num(&p, 1u << 30, &v) || *p || v < 4096 || (v & (v - 1)) ||
				    lfs_trace_init(t, (uint32_t)v, 0))
					rc = -EINVAL;
			} else {
				int r = parse_line(t, line, &nlayers, version, &rc);

				if (r < 0)
					rc = -EINVAL;
				ended = r == 1;
			}
		}
		if (!rc && ftell(f) > (long)MAX_TRACE_BYTES)
			rc = -EFBIG;
	}
	if (!rc && !ended) {
		why = lineno ? "truncated: no end line" : "empty";
		rc = -EINVAL;
	}
	if (rc) {
		snprintf(err, errlen, "%s:%zu: %s", path, lineno,
			 rc == -EINVAL ? why : strerror(-rc));
		lfs_trace_free(t);
	}
	free(line);
	fclose(f);
	return rc;
}
