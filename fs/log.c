#include "log.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <syslog.h>

static enum lfs_log_level max_level = LFS_LOG_INFO;
static int journal_prefix;
static int to_syslog;
static int holding;
static struct lfs_log_lines held;
static _Thread_local struct lfs_log_lines *capturing;

void lfs_log_set_level(enum lfs_log_level level) { max_level = level; }
enum lfs_log_level lfs_log_get_level(void) { return max_level; }
void lfs_log_set_journal(int on) { journal_prefix = on; }

void lfs_log_use_syslog(void)
{
	openlog("layerfs", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	to_syslog = 1;
}

/* Each kept line is its level as one digit, then the line and its NUL. */
static void keep(struct lfs_log_lines *l, enum lfs_log_level level, const char *line)
{
	size_t n = strlen(line) + 1;
	char *grown = realloc(l->buf, l->len + n + 1);

	if (!grown)
		return;
	l->buf = grown;
	l->buf[l->len++] = (char)('0' + level);
	memcpy(l->buf + l->len, line, n);
	l->len += n;
}

void lfs_log(enum lfs_log_level level, const char *fmt, ...)
{
	/* syslog priorities: err=3 warning=4 info=6 debug=7 */
	static const int prio[] = { 3, 4, 6, 7 };
	static const char *const name[] = { "error", "warning", "info", "debug" };
	char line[2048];
	va_list ap;

	if (level > max_level)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (capturing) {
		keep(capturing, level, line);
		return;
	}
	if (holding && level >= LFS_LOG_WARN) {
		keep(&held, level, line);
		return;
	}
	/* One write per line so concurrent threads do not interleave. */
	if (to_syslog)
		syslog(prio[level], "%s", line);
	else if (journal_prefix)
		fprintf(stderr, "<%d>%s\n", prio[level], line);
	else
		fprintf(stderr, "layerfs: %s: %s\n", name[level], line);
}

int lfs_errf(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

void lfs_log_hold(void) { holding = 1; }

void lfs_log_lines_free(struct lfs_log_lines *lines)
{
	free(lines->buf);
	lines->buf = NULL;
	lines->len = 0;
}

void lfs_log_replay(struct lfs_log_lines *lines)
{
	for (size_t i = 0; i < lines->len; i += strlen(lines->buf + i + 1) + 2)
		lfs_log((enum lfs_log_level)(lines->buf[i] - '0'), "%s", lines->buf + i + 1);
	lfs_log_lines_free(lines);
}

void lfs_log_capture(struct lfs_log_lines *lines) { capturing = lines; }

void lfs_log_release(int emit)
{
	struct lfs_log_lines lines = held;

	holding = 0;
	held = (struct lfs_log_lines){ NULL, 0 };
	if (emit)
		lfs_log_replay(&lines);
	else
		lfs_log_lines_free(&lines);
}

const char *lfs_log_name(char *buf, size_t size, const char *name, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	for (size_t i = 0; i < len && o + 5 < size; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c < 0x20 || c >= 0x7f || c == '\\') {
			buf[o++] = '\\';
			buf[o++] = 'x';
			buf[o++] = hex[c >> 4];
			buf[o++] = hex[c & 15];
		} else {
			buf[o++] = (char)c;
		}
	}
	if (size)
		buf[o < size ? o : size - 1] = '\0';
	return buf;
}
