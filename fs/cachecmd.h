/* `layerfs cache stats|verify|prune|clear`: the host's cache directory,
 * looked at and kept by hand (like ccache -s, -c, -C). */
#ifndef LFS_CACHECMD_H
#define LFS_CACHECMD_H

/* The cache directory used when no -o cache_dir= is given. */
#define LFS_DEFAULT_CACHE_DIR "/var/cache/layerfs"

/* argv[0] is "cache".  Exit status 0, 1 on an error, 2 on a usage error. */
int lfs_cache_command(int argc, char **argv);

#endif
