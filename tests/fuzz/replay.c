/* Runs a fuzz target over files and directories of inputs, without
 * libFuzzer: how the normal test run (gcc, sanitizers) replays the corpus.
 *   replay [--min NAME=N]... DIR_OR_FILE...
 * prints the target's counts (fuzz_common.h) and "N passed, 0 failed" (a
 * crash aborts); fails when a count is below its --min, or nothing ran. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned long ran;

static void run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	long len;

	if (!f)
		return;
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	rewind(f);
	buf = malloc(len > 0 ? (size_t)len : 1);
	if (len > 0 && fread(buf, 1, (size_t)len, f) != (size_t)len) {
		fclose(f);
		free(buf);
		return;
	}
	fclose(f);
	LLVMFuzzerTestOneInput(buf, (size_t)len);
	free(buf);
	ran++;
}

static void run_path(const char *path)
{
	struct stat st;
	DIR *d;
	struct dirent *de;

	if (stat(path, &st))
		return;
	if (!S_ISDIR(st.st_mode)) {
		run_file(path);
		return;
	}
	d = opendir(path);
	while (d && (de = readdir(d))) {
		char sub[4096];

		if (de->d_name[0] == '.')
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
		run_path(sub);
	}
	if (d)
		closedir(d);
}

static unsigned long *count_of(const char *name, size_t len)
{
	for (struct fuzz_count *c = fuzz_counts; c->name; c++)
		if (strlen(c->name) == len && !memcmp(c->name, name, len))
			return &c->n;
	return NULL;
}

int main(int argc, char **argv)
{
	const char *mins[32];
	int nmins = 0, bad = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--min") && i + 1 < argc && nmins < 32)
			mins[nmins++] = argv[++i];
		else
			run_path(argv[i]);
	}
	for (struct fuzz_count *c = fuzz_counts; c->name; c++)
		printf("%s: %s %lu\n", argv[0], c->name, c->n);
	for (int i = 0; i < nmins; i++) {
		const char *eq = strchr(mins[i], '=');
		unsigned long *n = eq ? count_of(mins[i], (size_t)(eq - mins[i])) : NULL;

		if (!n) {
			printf("%s: FAIL --min %s: no such count\n", argv[0], mins[i]);
			bad = 1;
		} else if (*n < strtoul(eq + 1, NULL, 10)) {
			printf("%s: FAIL %.*s %lu, expected at least %s\n", argv[0],
			       (int)(eq - mins[i]), mins[i], *n, eq + 1);
			bad = 1;
		}
	}
	printf("%s: %lu passed, %d failed\n", argv[0], ran, bad);
	return ran && !bad ? 0 : 1;
}
