#include "layerlist.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LIST_MAX_BYTES (16u << 20) /* a list is a few lines; refuse absurd files */

static int is_space(char c) { return c == ' ' || c == '\t'; }

/* Copies the next field of line[*pos..end) into a new string; handles the
 * quoted form.  Returns NULL with *bad set on a syntax error. */
static char *next_field(const char *line, size_t end, size_t *pos, int *bad)
{
	size_t i = *pos, o = 0;
	char *out = malloc(end - i + 1);

	*bad = 0;
	if (!out)
		return NULL;
	if (line[i] == '"') {
		for (i++; i < end && line[i] != '"'; i++) {
			if (line[i] == '\\' && i + 1 < end)
				i++;
			out[o++] = line[i];
		}
		if (i >= end) {
			*bad = 1;
			free(out);
			return NULL;
		}
		i++;
		if (i < end && !is_space(line[i])) {
			*bad = 1;
			free(out);
			return NULL;
		}
	} else {
		while (i < end && !is_space(line[i]))
			out[o++] = line[i++];
	}
	out[o] = '\0';
	*pos = i;
	return out;
}

static void spec_free(struct lfs_layer_spec *s)
{
	free(s->path);
	free(s->name);
	free(s->version);
	free(s->sha256);
}

void lfs_layerlist_free(struct lfs_layer_list *list)
{
	if (!list)
		return;
	for (size_t i = 0; i < list->count; i++)
		spec_free(&list->layers[i]);
	free(list->layers);
	list->layers = NULL;
	list->count = 0;
}

static char *join_path(const char *basedir, const char *path)
{
	size_t bl, pl;
	char *out;

	if (path[0] == '/' || !basedir || !basedir[0] || strstr(path, "://"))
		return strdup(path); /* absolute, or a URL */
	bl = strlen(basedir);
	pl = strlen(path);
	out = malloc(bl + pl + 2);
	if (!out)
		return NULL;
	memcpy(out, basedir, bl);
	out[bl] = '/';
	memcpy(out + bl + 1, path, pl + 1);
	return out;
}

static int valid_value(const char *v)
{
	if (!v[0])
		return 0;
	for (; *v; v++)
		if ((unsigned char)*v < 0x21 || *v == 0x7f || *v == ':')
			return 0;
	return 1;
}

static int valid_sha256(const char *v)
{
	size_t n = 0;

	for (; v[n]; n++)
		if (!((v[n] >= '0' && v[n] <= '9') || (v[n] >= 'a' && v[n] <= 'f') ||
		      (v[n] >= 'A' && v[n] <= 'F')))
			return 0;
	return n == 64;
}

/* Parses one non-empty, non-comment line into *spec. */
static int parse_line(const char *line, size_t end, const char *basedir,
		      const char *listname, unsigned lineno,
		      struct lfs_layer_spec *spec, char *err, size_t errlen)
{
	size_t pos = 0;
	int bad;
	char *path;

	memset(spec, 0, sizeof(*spec));
	spec->line = lineno;
	path = next_field(line, end, &pos, &bad);
	if (!path)
		return bad ? lfs_errf(err, errlen, -EINVAL,
				  "%s:%u: unterminated or malformed quoted path",
				  listname, lineno)
			   : -ENOMEM;
	if (!path[0]) {
		free(path);
		return lfs_errf(err, errlen, -EINVAL, "%s:%u: empty path", listname, lineno);
	}
	spec->path = join_path(basedir, path);
	free(path);
	if (!spec->path)
		return -ENOMEM;

	for (;;) {
		char *field, *eq, **slot;

		while (pos < end && is_space(line[pos]))
			pos++;
		if (pos >= end || line[pos] == '#')
			break;
		field = next_field(line, end, &pos, &bad);
		if (!field)
			return bad ? lfs_errf(err, errlen, -EINVAL, "%s:%u: malformed field",
					  listname, lineno)
				   : -ENOMEM;
		eq = strchr(field, '=');
		if (!eq) {
			lfs_errf(err, errlen, -EINVAL,
			     "%s:%u: expected key=value after the path, got '%.64s'",
			     listname, lineno, field);
			free(field);
			return -EINVAL;
		}
		*eq = '\0';
		if (!strcmp(field, "name"))
			slot = &spec->name;
		else if (!strcmp(field, "version"))
			slot = &spec->version;
		else if (!strcmp(field, "sha256"))
			slot = &spec->sha256;
		else {
			lfs_errf(err, errlen, -EINVAL,
			     "%s:%u: unknown key '%.64s' (known: name, version, sha256)",
			     listname, lineno, field);
			free(field);
			return -EINVAL;
		}
		if (*slot || !valid_value(eq + 1)) {
			lfs_errf(err, errlen, -EINVAL, "%s:%u: %s '%.64s'", listname, lineno,
			     *slot ? "repeated key" : "bad value for key", field);
			free(field);
			return -EINVAL;
		}
		if (slot == &spec->sha256 && !valid_sha256(eq + 1)) {
			free(field);
			return lfs_errf(err, errlen, -EINVAL,
					"%s:%u: sha256= takes 64 hexadecimal digits", listname, lineno);
		}
		*slot = strdup(eq + 1);
		free(field);
		if (!*slot)
			return -ENOMEM;
		if (slot == &spec->sha256)
			for (char *c = *slot; *c; c++)
				*c = (char)(*c >= 'A' && *c <= 'F' ? *c - 'A' + 'a' : *c);
	}
	if (spec->version && !spec->name)
		return lfs_errf(err, errlen, -EINVAL, "%s:%u: version= needs name=",
			    listname, lineno);
	return 0;
}

static int same_layer(const struct lfs_layer_spec *a, const struct lfs_layer_spec *b)
{
	if (!strcmp(a->path, b->path))
		return 1;
	return a->name && b->name && !strcmp(a->name, b->name) &&
	       ((!a->version && !b->version) ||
		(a->version && b->version && !strcmp(a->version, b->version)));
}

int lfs_layerlist_parse(const char *text, size_t len, const char *basedir,
			const char *listname, size_t max_layers,
			struct lfs_layer_list *out, char *err, size_t errlen)
{
	struct lfs_layer_list list = { 0 };
	size_t cap = 0, start = 0;
	unsigned lineno = 0;
	int rc;

	if (memchr(text, '\0', len))
		return lfs_errf(err, errlen, -EINVAL, "%s: contains NUL bytes, not a text list",
			    listname);
	while (start < len) {
		const char *nl = memchr(text + start, '\n', len - start);
		size_t end = nl ? (size_t)(nl - text) : len;
		size_t b = start, e = end;

		lineno++;
		if (e - b > LFS_LIST_MAX_LINE) {
			rc = lfs_errf(err, errlen, -EINVAL, "%s:%u: line longer than %u bytes",
				  listname, lineno, LFS_LIST_MAX_LINE);
			goto out_free;
		}
		if (e > b && text[e - 1] == '\r')
			e--;
		while (b < e && is_space(text[b]))
			b++;
		while (e > b && is_space(text[e - 1]))
			e--;
		start = end + 1;
		if (b == e || text[b] == '#')
			continue;

		if (max_layers && list.count >= max_layers) {
			rc = lfs_errf(err, errlen, -E2BIG,
				  "%s:%u: more than %zu layers (raise -o max_layers=)",
				  listname, lineno, max_layers);
			goto out_free;
		}
		if (list.count == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			struct lfs_layer_spec *n = realloc(list.layers, ncap * sizeof(*n));

			if (!n) {
				rc = -ENOMEM;
				goto out_free;
			}
			list.layers = n;
			cap = ncap;
		}
		rc = parse_line(text + b, e - b, basedir, listname, lineno,
				&list.layers[list.count], err, errlen);
		if (rc) {
			spec_free(&list.layers[list.count]);
			goto out_free;
		}
		list.count++;
		for (size_t i = 0; i + 1 < list.count; i++) {
			if (same_layer(&list.layers[i], &list.layers[list.count - 1])) {
				rc = lfs_errf(err, errlen, -EINVAL,
					  "%s:%u: the same layer as line %u is listed twice",
					  listname, lineno, list.layers[i].line);
				goto out_free;
			}
		}
	}
	if (list.count == 0) {
		rc = lfs_errf(err, errlen, -EINVAL, "%s: no layers listed", listname);
		goto out_free;
	}
	*out = list;
	return 0;

out_free:
	lfs_layerlist_free(&list);
	return rc;
}

int lfs_layerlist_load(const char *path, size_t max_layers,
		       struct lfs_layer_list *out, char *err, size_t errlen)
{
	struct stat st;
	char *text = NULL, *basedir = NULL;
	size_t len = 0;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a fifo must not hang us */
	if (fd < 0)
		return lfs_errf(err, errlen, -errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0) {
		rc = lfs_errf(err, errlen, -errno, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		rc = lfs_errf(err, errlen, -EISDIR, "%s: is a directory, not a layer list", path);
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > LIST_MAX_BYTES) {
		rc = lfs_errf(err, errlen, -EINVAL, "%s: not a regular file of at most %u bytes",
			  path, LIST_MAX_BYTES);
		goto out;
	}
	text = malloc((size_t)st.st_size + 1);
	if (!text) {
		rc = -ENOMEM;
		goto out;
	}
	while (len < (size_t)st.st_size) {
		ssize_t n = read(fd, text + len, (size_t)st.st_size - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = lfs_errf(err, errlen, -errno, "%s: %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	/* Layer paths are made absolute against the list's real folder, so
	 * provenance and messages name files unambiguously. */
	{
		char *dir = strdup(path), *slash;

		if (!dir) {
			rc = -ENOMEM;
			goto out;
		}
		slash = strrchr(dir, '/');
		if (slash == dir)
			slash[1] = '\0';
		else if (slash)
			*slash = '\0';
		basedir = realpath(slash ? dir : ".", NULL);
		free(dir);
		if (!basedir) {
			rc = lfs_errf(err, errlen, -errno, "%s: cannot resolve its folder: %s", path,
				  strerror(errno));
			goto out;
		}
	}
	rc = lfs_layerlist_parse(text, len, basedir, path, max_layers, out, err, errlen);
out:
	free(basedir);
	free(text);
	close(fd);
	return rc;
}

const char *lfs_layer_spec_label(const struct lfs_layer_spec *spec, char *buf,
				 size_t buflen)
{
	if (spec->name && spec->version)
		snprintf(buf, buflen, "%s:%s", spec->name, spec->version);
	else if (spec->name)
		snprintf(buf, buflen, "%s", spec->name);
	else
		snprintf(buf, buflen, "%s", spec->path);
	return buf;
}
