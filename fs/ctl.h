/* Commands that talk to a running daemon through its mount point:
 * umount, stats, dropcache, trace stop. */
#ifndef LFS_CTL_H
#define LFS_CTL_H

int lfs_ctl_umount(const char *mnt);
/* argv: [--format=text|prometheus] MOUNTPOINT */
int lfs_ctl_stats(int argc, char **argv);
int lfs_ctl_dropcache(const char *mnt);
/* Ends the daemon's trace recording; the daemon writes the trace. */
int lfs_ctl_trace_stop(const char *mnt);

#endif
