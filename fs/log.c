#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>

static enum lfs_log_level max_level = LFS_LOG_INFO;
static int journal_prefix;
static int to_syslog;

void lfs_log_set_level(enum lfs_log_level level) { max_level = level; }
enum lfs_log_level lfs_log_get_level(void) { return max_level; }
void lfs_log_set_journal(int on) { journal_prefix = on; }

void lfs_log_use_syslog(void)
{
	openlog("layerfs", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	to_syslog = 1;
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
