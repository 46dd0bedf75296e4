#include "check.h"

#include "log.h"

#include <stdio.h>

/* The platform's limits (LAYERS.md): warned about, never enforced. */
#define PLATFORM_MAX_LAYERS 5
#define PLATFORM_MAX_UNZIPPED 262144000ull
#define PLATFORM_MAX_ZIP (50ull * 1000 * 1000)

int lfs_check_run(struct lfs_options *o)
{
	struct lfs_stack *s = NULL;
	char err[1024] = "";
	uint64_t unzipped = 0, warnings = 0;

	if (o->npos != 1) {
		fprintf(stderr, "usage: layerfs check [-o OPTIONS] LIST\n");
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
	printf("%-40s %10s %14s %14s\n", "layer", "entries", "zip bytes", "unzipped bytes");
	for (size_t i = 0; i < lfs_stack_layer_count(s); i++) {
		struct lfs_stack_layer_info li;

		lfs_stack_layer_info(s, i, &li);
		unzipped += li.unzipped_bytes;
		printf("%-40s %10llu %14llu %14llu\n", li.label, (unsigned long long)li.entries,
		       (unsigned long long)li.zip_bytes, (unsigned long long)li.unzipped_bytes);
		if (li.zip_bytes > PLATFORM_MAX_ZIP) {
			printf("warning: %s: %llu bytes, more than the %llu a direct upload may have\n",
			       li.path, (unsigned long long)li.zip_bytes, PLATFORM_MAX_ZIP);
			warnings++;
		}
	}
	printf("merged tree: %u inodes, %llu bytes of files\n", lfs_tree_count(lfs_stack_tree(s)),
	       (unsigned long long)lfs_tree_total_bytes(lfs_stack_tree(s)));
	if (lfs_stack_layer_count(s) > PLATFORM_MAX_LAYERS) {
		printf("warning: %zu layers, the platform allows %d per function\n",
		       lfs_stack_layer_count(s), PLATFORM_MAX_LAYERS);
		warnings++;
	}
	if (unzipped > PLATFORM_MAX_UNZIPPED) {
		printf("warning: %llu bytes unzipped, more than the platform's %llu for a function and its layers\n",
		       (unsigned long long)unzipped, PLATFORM_MAX_UNZIPPED);
		warnings++;
	}
	printf("%s: mountable, %llu warning%s\n", o->pos[0], (unsigned long long)warnings,
	       warnings == 1 ? "" : "s");
	lfs_stack_free(s);
	return 0;
}
