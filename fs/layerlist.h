/* The layer list: which zips to stack, lowest first.
 *
 * Format (one layer per line, later lines win):
 *
 *     # comment                       blank lines and '#' lines are ignored
 *     base.zip                        a path, relative to the list's folder
 *     /srv/layers/numpy.zip name=numpy version=7
 *     "dir with spaces/x.zip" name=x  double quotes, with \" and \\ escapes
 *
 * After the path come whitespace-separated key=value fields.  Known keys are
 * `name` and `version` (a layer version is immutable on the platform, so
 * name:version identifies content) and `sha256` (the zip's SHA-256, as the
 * platform's CodeSha256 gives it: the stack checks the bytes against it).  An unknown key is an error rather than
 * being ignored, so a typo never silently changes what is mounted and new
 * keys can be added later without changing the meaning of old lists.
 * CRLF line endings are accepted.  No parsing function touches the zips. */
#ifndef LFS_LAYERLIST_H
#define LFS_LAYERLIST_H

#include <stddef.h>

#define LFS_LIST_MAX_LINE 8192	/* longer lines are refused */

struct lfs_layer_spec {
	char *path;	/* absolute or relative to the cwd, resolved */
	char *name;	/* NULL when not given */
	char *version;	/* NULL when not given */
	char *sha256;	/* the zip's SHA-256, 64 lowercase hex digits; NULL when not given */
	unsigned line;	/* line number in the list, for messages */
};

struct lfs_layer_list {
	struct lfs_layer_spec *layers;
	size_t count;
};

/* Parses `text` (len bytes, need not be NUL-terminated).  Relative paths
 * are joined to `basedir`.  `listname` is used in messages.  At most
 * `max_layers` layers are accepted (0: no limit).  Returns 0, or a
 * negative errno with a one-line reason in err ("LIST:LINE: reason"). */
int lfs_layerlist_parse(const char *text, size_t len, const char *basedir,
			const char *listname, size_t max_layers,
			struct lfs_layer_list *out, char *err, size_t errlen);

/* Reads and parses the list file at `path`. */
int lfs_layerlist_load(const char *path, size_t max_layers,
		       struct lfs_layer_list *out, char *err, size_t errlen);

/* The provenance label: "name:version", "name", or the path. */
const char *lfs_layer_spec_label(const struct lfs_layer_spec *spec, char *buf,
				 size_t buflen);

void lfs_layerlist_free(struct lfs_layer_list *list);

#endif
