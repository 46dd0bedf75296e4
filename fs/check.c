#include "check.h"

#include "log.h"

#include <stdio.h>
#include <stdlib.h>

/* The platform's limits: warned about, never enforced. */
#define PLATFORM_MAX_LAYERS 5
#define PLATFORM_MAX_UNZIPPED 262144000ull
#define PLATFORM_MAX_ZIP (50ull * 1000 * 1000)

/* One line for a layer's entry problems: how many, and why. */
static void print_problems(const struct lfs_stack_layer_stats *l, const char *path,
			   uint64_t total)
{
	const char *sep = " (";

	printf("warning: %s: %llu %s not served as the zip declares", path,
	       (unsigned long long)total, total == 1 ? "entry" : "entries");
	for (int p = 0; p < LFS_PROBLEM_COUNT; p++) {
		if (!l->problems[p])
			continue;
		printf("%s%llu %s", sep, (unsigned long long)l->problems[p],
		       lfs_problem_name((enum lfs_problem)p));
		sep = ", ";
	}
	printf(")\n");
}

int lfs_check_run(struct lfs_options *o)
{
	struct lfs_stack *s = NULL;
	struct lfs_stack_stats *st = NULL;
	char err[1024] = "";
	uint64_t warnings = 0;
	int rc;

	if (o->npos != 1) {
		fprintf(stderr, "usage: layerfs check [--strict] [-o OPTIONS] LIST\n");
		return 1;
	}
	lfs_log_set_level(LFS_LOG_WARN);
	/* more layers than the platform allows is a warning here, not a refusal */
	if (o->stack.max_layers == PLATFORM_MAX_LAYERS)
		o->stack.max_layers = LFS_TREE_MAX_LAYERS;
	o->stack.list_path = o->pos[0];
	if (lfs_stack_open(&o->stack, &s, err, sizeof(err))) {
		lfs_err("%s", err);
		return 1;
	}
	st = malloc(sizeof(*st));
	if (!st) {
		lfs_err("%s: out of memory", o->pos[0]);
		lfs_stack_free(s);
		return 1;
	}
	lfs_stack_get_stats(s, st);
	printf("%-40s %10s %14s %14s\n", "layer", "entries", "zip bytes", "unzipped bytes");
	for (size_t i = 0; i < st->nlayers; i++) {
		const struct lfs_stack_layer_stats *l = &st->layers[i];

		printf("%-40s %10llu %14llu %14llu\n", l->label, (unsigned long long)l->entries,
		       (unsigned long long)l->zip_bytes, (unsigned long long)l->unzipped_bytes);
	}
	for (size_t i = 0; i < st->nlayers; i++) {
		const struct lfs_stack_layer_stats *l = &st->layers[i];
		struct lfs_stack_layer_info li;
		uint64_t problems = 0;

		lfs_stack_layer_info(s, i, &li);
		for (int p = 0; p < LFS_PROBLEM_COUNT; p++)
			problems += l->problems[p];
		if (problems)
			print_problems(l, li.path, problems);
		if (l->zip_bytes > PLATFORM_MAX_ZIP) {
			printf("warning: %s: %llu bytes, more than the %llu a direct upload may have\n",
			       li.path, (unsigned long long)l->zip_bytes, PLATFORM_MAX_ZIP);
			warnings++;
		}
	}
	printf("merged tree: %u inodes, %llu bytes of files\n", st->inodes,
	       (unsigned long long)lfs_tree_total_bytes(lfs_stack_tree(s)));
	if (st->nlayers > PLATFORM_MAX_LAYERS) {
		printf("warning: %zu layers, the platform allows %d per function\n", st->nlayers,
		       PLATFORM_MAX_LAYERS);
		warnings++;
	}
	if (st->unzipped_bytes > PLATFORM_MAX_UNZIPPED) {
		printf("warning: %llu bytes unzipped, more than the platform's %llu for a function and its layers\n",
		       (unsigned long long)st->unzipped_bytes, PLATFORM_MAX_UNZIPPED);
		warnings++;
	}
	printf("%s: mountable, %llu warning%s, %llu %s with problems%s\n", o->pos[0],
	       (unsigned long long)warnings, warnings == 1 ? "" : "s",
	       (unsigned long long)st->problems, st->problems == 1 ? "entry" : "entries",
	       o->strict && (warnings || st->problems) ? " (--strict: failing)" : "");
	rc = o->strict && (warnings || st->problems) ? 1 : 0;
	free(st);
	lfs_stack_free(s);
	return rc;
}
