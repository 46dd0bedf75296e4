/* The command line of `layerfs mount` and `layerfs check`: one table of
 * options (fuse_opt_parse), each with its range, its default and its line
 * in --help.
 *
 * A value out of range, or one that does not parse, is refused with one
 * line naming the option; nothing is silently replaced by a default.  -o
 * options that are not layerfs's own are passed on to FUSE. */
#ifndef LFS_OPTIONS_H
#define LFS_OPTIONS_H

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 312
#endif
#include <fuse_lowlevel.h>
#include <stdio.h>

#include "stack.h"

/* -o sched=, in the order of its choices. */
enum lfs_sched { LFS_SCHED_AUTO, LFS_SCHED_NORMAL, LFS_SCHED_BATCH };
/* -o uring=, in the order of its choices. */
enum lfs_uring_mode { LFS_URING_AUTO, LFS_URING_ON, LFS_URING_OFF };
/* -o readdirplus=, in the order of its choices. */
enum lfs_dirplus { LFS_DIRPLUS_AUTO, LFS_DIRPLUS_ALWAYS, LFS_DIRPLUS_NEVER };

struct lfs_options {
	struct lfs_stack_config stack;
	double entry_timeout;	/* seconds the kernel caches names */
	double attr_timeout;	/* ... and attributes */
	unsigned max_read;	/* largest read request asked of the kernel */
	int foreground, debug, journal;
	enum lfs_sched sched;	/* the serving threads' scheduling policy */
	enum lfs_dirplus dirplus; /* which listings carry attributes */
	enum lfs_uring_mode uring; /* FUSE over io_uring, when the kernel offers it */
	unsigned uring_threads;	/* threads per CPU queue (0: the default) */
	int uring_idle;		/* enum lfs_uring_idle: ring threads as SCHED_IDLE */
	const char *pos[2];	/* LIST, MOUNTPOINT */
	int npos;
	struct fuse_args fuse_args; /* what goes to FUSE, argv[0] first */
	char *cache_dir;	/* owned; stack.cache_dir points here */
	char *trace;		/* owned: record the start-up trace here */
	char *prefetch;		/* owned: replay this trace ("auto": see README) */
	int prefetch_push;	/* 1: push what a replay made into the page cache */
	double trace_seconds;	/* how long a recording lasts */
	char *user;		/* -o user= (NULL: the default, layerfs) */
	int seccomp;		/* enum lfs_seccomp_mode */
	char *admin_group;	/* may read stats besides root; NULL: nobody */
	int provenance;		/* 0 name, 1 path, 2 off */
	char *metrics_file;	/* NULL: none */
	double metrics_interval; /* seconds */
	int strict;		/* check --strict */
	int fdstore;		/* keep the connection in systemd's fd store */
	char *s3_region, *s3_endpoint, *s3_profile, *ca_file; /* owned; stack.http's */
};

/* Parses argv (argv[0] is the command's name) into o, with the defaults
 * for what is not given.  0, or -1 after one line on stderr. */
int lfs_options_parse(int argc, char **argv, struct lfs_options *o);
void lfs_options_free(struct lfs_options *o);

/* The usage text, --help. */
void lfs_options_usage(FILE *out);

#endif
