#include "inval.h"

#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define QUEUE 64

struct lfs_inval {
	struct fuse_session *se;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	pthread_cond_t room;		/* the thread took one off the queue */
	fuse_ino_t queue[QUEUE];	/* lock */
	unsigned n;			/* lock */
	int stopping;			/* lock */
	pthread_t thread;
};

static void *inval_main(void *arg)
{
	struct lfs_inval *iv = arg;

	pthread_mutex_lock(&iv->lock);
	for (;;) {
		fuse_ino_t ino;
		int rc;

		while (!iv->n && !iv->stopping)
			pthread_cond_wait(&iv->wake, &iv->lock);
		if (!iv->n)
			break;
		ino = iv->queue[0];
		memmove(iv->queue, iv->queue + 1, --iv->n * sizeof(iv->queue[0]));
		pthread_cond_broadcast(&iv->room);
		pthread_mutex_unlock(&iv->lock);
		/* offset 0, length 0: every cached page of the file */
		rc = fuse_lowlevel_notify_inval_inode(iv->se, ino, 0, 0);
		if (rc && rc != -ENOENT)
			lfs_warn("cannot drop the page cache of inode %lu: %s",
				 (unsigned long)ino, strerror(-rc));
		pthread_mutex_lock(&iv->lock);
	}
	pthread_mutex_unlock(&iv->lock);
	return NULL;
}

struct lfs_inval *lfs_inval_start(struct fuse_session *se)
{
	struct lfs_inval *iv = calloc(1, sizeof(*iv));

	if (!iv)
		return NULL;
	iv->se = se;
	pthread_mutex_init(&iv->lock, NULL);
	pthread_cond_init(&iv->wake, NULL);
	pthread_cond_init(&iv->room, NULL);
	if (pthread_create(&iv->thread, NULL, inval_main, iv)) {
		pthread_mutex_destroy(&iv->lock);
		pthread_cond_destroy(&iv->wake);
		pthread_cond_destroy(&iv->room);
		free(iv);
		return NULL;
	}
	return iv;
}

/* Queues ino once (lock held); a full queue drops it. */
static void enqueue(struct lfs_inval *iv, fuse_ino_t ino)
{
	for (unsigned i = 0; i < iv->n; i++)
		if (iv->queue[i] == ino)
			return;
	if (iv->n < QUEUE) {
		iv->queue[iv->n++] = ino;
		pthread_cond_signal(&iv->wake);
	}
}

void lfs_inval_push(struct lfs_inval *iv, fuse_ino_t ino)
{
	if (!iv)
		return;
	pthread_mutex_lock(&iv->lock);
	enqueue(iv, ino);
	pthread_mutex_unlock(&iv->lock);
}

void lfs_inval_push_wait(struct lfs_inval *iv, fuse_ino_t ino)
{
	if (!iv)
		return;
	pthread_mutex_lock(&iv->lock);
	while (iv->n == QUEUE && !iv->stopping)
		pthread_cond_wait(&iv->room, &iv->lock);
	enqueue(iv, ino);
	pthread_mutex_unlock(&iv->lock);
}

void lfs_inval_stop(struct lfs_inval *iv)
{
	if (!iv)
		return;
	pthread_mutex_lock(&iv->lock);
	iv->stopping = 1;
	pthread_cond_signal(&iv->wake);
	pthread_cond_broadcast(&iv->room);
	pthread_mutex_unlock(&iv->lock);
	pthread_join(iv->thread, NULL);
	pthread_mutex_destroy(&iv->lock);
	pthread_cond_destroy(&iv->wake);
	pthread_cond_destroy(&iv->room);
	free(iv);
}
