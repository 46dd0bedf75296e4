/* Commands that talk to a running daemon through its mount point:
 * umount, stats, dropcache. */
#ifndef LFS_CTL_H
#define LFS_CTL_H

int lfs_ctl_umount(const char *mnt);
/* argv: [--format=text|prometheus] MOUNTPOINT */
int lfs_ctl_stats(int argc, char **argv);
int lfs_ctl_dropcache(const char *mnt);

#endif
