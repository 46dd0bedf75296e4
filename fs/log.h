/* Logging to stderr (the journal under systemd) with levels.
 *
 * Every message is one line.  Callers name the layer, entry and reason;
 * nothing on the read path logs per request, only per failure, and each
 * failing member logs once (see zipindex/reader). */
#ifndef LFS_LOG_H
#define LFS_LOG_H

#include <stddef.h>

enum lfs_log_level { LFS_LOG_SILENT = -1, LFS_LOG_ERR, LFS_LOG_WARN, LFS_LOG_INFO, LFS_LOG_DEBUG };

/* Messages above this level are dropped; default LFS_LOG_INFO. */
void lfs_log_set_level(enum lfs_log_level level);
enum lfs_log_level lfs_log_get_level(void);

/* When set, lines carry the systemd "<N>" priority prefix instead of a
 * program-name prefix (journald parses it). */
void lfs_log_set_journal(int on);

/* Sends lines to syslog(3) instead of stderr: for a daemon in the
 * background, whose stderr is gone (journald collects syslog too). */
void lfs_log_use_syslog(void);

void lfs_log(enum lfs_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* While held, warning and info lines are kept instead of printed; release
 * prints them (emit != 0) or drops them.  For mount: warnings about a layer
 * that is then refused must not turn the refusal into several lines. */
void lfs_log_hold(void);
void lfs_log_release(int emit);

/* Lines kept for later, in the order they were said. */
struct lfs_log_lines {
	char *buf;
	size_t len;
};

/* While a thread captures into `lines`, every line it logs (at a level
 * printed) is kept there instead, and nothing else is touched: a helper
 * thread doing part of a job whose messages must come out in the job's
 * order.  lfs_log_capture(NULL) ends it.  lfs_log_replay() then logs the
 * lines as if said at that moment, by the calling thread (held if it
 * holds), and frees them; lfs_log_lines_free() drops them. */
void lfs_log_capture(struct lfs_log_lines *lines);
void lfs_log_replay(struct lfs_log_lines *lines);
void lfs_log_lines_free(struct lfs_log_lines *lines);

/* Copies name[0..len) into buf for a log line, with control bytes, '\\'
 * and bytes >= 0x7f escaped as \xNN (names come from untrusted zips and
 * must not forge log lines or drive terminals).  Truncates to fit. */
const char *lfs_log_name(char *buf, size_t size, const char *name, size_t len);

/* Formats a one-line error into err (when err is not NULL) and returns rc:
 * `return lfs_errf(err, errlen, -EINVAL, "%s: ...", path);` */
int lfs_errf(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#define lfs_err(...) lfs_log(LFS_LOG_ERR, __VA_ARGS__)
#define lfs_warn(...) lfs_log(LFS_LOG_WARN, __VA_ARGS__)
#define lfs_info(...) lfs_log(LFS_LOG_INFO, __VA_ARGS__)
#define lfs_debug(...)                                        \
	do {                                                  \
		if (lfs_log_get_level() >= LFS_LOG_DEBUG)     \
			lfs_log(LFS_LOG_DEBUG, __VA_ARGS__);  \
	} while (0)

#endif
