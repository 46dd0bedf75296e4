/* Spare block buffers.
 *
 * Full-size block buffers come from a small pool, and evicted blocks go
 * back to it: a full cache evicts one block for every block it makes, and
 * handing the same memory back avoids the allocator's fragmentation (which
 * let RSS drift far past the budget).  While the cache is still filling, a
 * refill thread keeps the pool stocked with buffers whose pages it has
 * already faulted in, on whichever core is free: writing into fresh pages
 * made inflation about a quarter slower when the inflating thread took the
 * page faults itself.  The thread starts on first use, so after the daemon
 * has forked.
 *
 * Buffers of any other length are plain malloc/free.  Thread-safe. */
#ifndef LFS_BUFPOOL_H
#define LFS_BUFPOOL_H

#include <stddef.h>

struct lfs_bufpool;

/* Pools buffers of `block_size` bytes, at most `max_bytes` of them. */
struct lfs_bufpool *lfs_bufpool_new(size_t block_size, size_t max_bytes);
/* Stops the refill thread and frees every pooled buffer.  NULL is ignored. */
void lfs_bufpool_free(struct lfs_bufpool *p);

/* The bytes a buffer of len bytes takes: small ones (under 64 KiB, which
 * live in the heap) are rounded up to one of four size classes per power
 * of two, so that the holes freed ones leave are taken by the next buffers
 * of their class (freed and made again in no order, buffers of every size
 * left a fifth of the heap in holes no page of which could go back). */
size_t lfs_bufpool_class(size_t len);

/* A buffer of at least len bytes (lfs_bufpool_class(len); NULL when memory
 * ran out). */
void *lfs_bufpool_get(struct lfs_bufpool *p, size_t len);
/* Gives back a buffer of len bytes from lfs_bufpool_get (NULL ignored). */
void lfs_bufpool_put(struct lfs_bufpool *p, void *buf, size_t len);
/* Tells the pool that len bytes of other buffers were freed.  Small
 * buffers live in the heap, and the holes they leave are kept by the
 * allocator; after every few MiB of them the refill thread hands the free
 * pages back to the system (malloc_trim), off the path of any read. */
void lfs_bufpool_freed(struct lfs_bufpool *p, size_t len);
/* Frees the spare buffers (for dropcache). */
void lfs_bufpool_trim(struct lfs_bufpool *p);
/* Bytes held in spare buffers now. */
size_t lfs_bufpool_bytes(struct lfs_bufpool *p);

#endif
