#include "curl_lazy.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* The stubs: what each call answers when there is no libcurl. */
static CURLcode stub_global_init(long flags)
{
	(void)flags; return CURLE_FAILED_INIT;
}
static CURL * stub_easy_init(void)
{
	return NULL;
}
static CURLcode stub_easy_setopt(CURL *h, CURLoption o, ...)
{
	(void)h; (void)o; return CURLE_FAILED_INIT;
}
static CURLcode stub_easy_perform(CURL *h)
{
	(void)h; return CURLE_FAILED_INIT;
}
static void stub_easy_cleanup(CURL *h)
{
	(void)h;
}
static const char * stub_easy_strerror(CURLcode c)
{
	(void)c; return "libcurl could not be loaded";
}
static void stub_free(void *p)
{
	(void)p;
}
static time_t stub_getdate(const char *s, const time_t *unused)
{
	(void)s; (void)unused; return -1;
}
static CURLM * stub_multi_init(void)
{
	return NULL;
}
static CURLMcode stub_multi_add_handle(CURLM *m, CURL *h)
{
	(void)m; (void)h; return CURLM_INTERNAL_ERROR;
}
static CURLMcode stub_multi_remove_handle(CURLM *m, CURL *h)
{
	(void)m; (void)h; return CURLM_INTERNAL_ERROR;
}
static CURLMcode stub_multi_perform(CURLM *m, int *running)
{
	(void)m; (void)running; return CURLM_INTERNAL_ERROR;
}
static CURLMcode stub_multi_poll(CURLM *m, struct curl_waitfd *fds, unsigned int n, int ms, int *ret)
{
	(void)m; (void)fds; (void)n; (void)ms; (void)ret; return CURLM_INTERNAL_ERROR;
}
static CURLMsg * stub_multi_info_read(CURLM *m, int *left)
{
	(void)m; (void)left; return NULL;
}
static CURLMcode stub_multi_cleanup(CURLM *m)
{
	(void)m; return CURLM_INTERNAL_ERROR;
}
static CURLSH * stub_share_init(void)
{
	return NULL;
}
static CURLSHcode stub_share_setopt(CURLSH *s, CURLSHoption o, ...)
{
	(void)s; (void)o; return CURLSHE_NOT_BUILT_IN;
}
static CURLSHcode stub_share_cleanup(CURLSH *s)
{
	(void)s; return CURLSHE_NOT_BUILT_IN;
}
static struct curl_slist * stub_slist_append(struct curl_slist *l, const char *s)
{
	(void)l; (void)s; return NULL;
}
static void stub_slist_free_all(struct curl_slist *l)
{
	(void)l;
}
static CURLU * stub_url(void)
{
	return NULL;
}
static CURLUcode stub_url_set(CURLU *u, CURLUPart p, const char *s, unsigned int f)
{
	(void)u; (void)p; (void)s; (void)f; return CURLUE_OUT_OF_MEMORY;
}
static CURLUcode stub_url_get(const CURLU *u, CURLUPart p, char **s, unsigned int f)
{
	(void)u; (void)p; (void)s; (void)f; return CURLUE_OUT_OF_MEMORY;
}
static void stub_url_cleanup(CURLU *u)
{
	(void)u;
}

static struct lfs_curl_api api;
static char why[256];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void)
{
	static const struct lfs_curl_api stubs = {
		.global_init = stub_global_init,
		.easy_init = stub_easy_init,
		.easy_setopt = stub_easy_setopt,
		.easy_perform = stub_easy_perform,
		.easy_cleanup = stub_easy_cleanup,
		.easy_strerror = stub_easy_strerror,
		.free = stub_free,
		.getdate = stub_getdate,
		.multi_init = stub_multi_init,
		.multi_add_handle = stub_multi_add_handle,
		.multi_remove_handle = stub_multi_remove_handle,
		.multi_perform = stub_multi_perform,
		.multi_poll = stub_multi_poll,
		.multi_info_read = stub_multi_info_read,
		.multi_cleanup = stub_multi_cleanup,
		.share_init = stub_share_init,
		.share_setopt = stub_share_setopt,
		.share_cleanup = stub_share_cleanup,
		.slist_append = stub_slist_append,
		.slist_free_all = stub_slist_free_all,
		.url = stub_url,
		.url_set = stub_url_set,
		.url_get = stub_url_get,
		.url_cleanup = stub_url_cleanup,
	};
	/* RTLD_LOCAL: its symbols are ours alone; libcurl.so.4 is the ABI's
	 * soname, the one the headers we built with describe. */
	void *h = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
	struct lfs_curl_api got;
	const char *missing = NULL;

	api = stubs;
	if (!h) {
		snprintf(why, sizeof(why), "cannot load libcurl.so.4: %s", dlerror());
		return;
	}
	/* dlsym's object pointers become function pointers: POSIX allows it. */
#define SYM(n)                                                                \
	do {                                                                  \
		void *p = dlsym(h, "curl_" #n);                               \
		if (!p && !missing)                                           \
			missing = "curl_" #n;                                 \
		memcpy(&got.n, &p, sizeof(p));                                \
	} while (0)
	SYM(global_init);
	SYM(easy_init);
	SYM(easy_setopt);
	SYM(easy_perform);
	SYM(easy_cleanup);
	SYM(easy_strerror);
	SYM(free);
	SYM(getdate);
	SYM(multi_init);
	SYM(multi_add_handle);
	SYM(multi_remove_handle);
	SYM(multi_perform);
	SYM(multi_poll);
	SYM(multi_info_read);
	SYM(multi_cleanup);
	SYM(share_init);
	SYM(share_setopt);
	SYM(share_cleanup);
	SYM(slist_append);
	SYM(slist_free_all);
	SYM(url);
	SYM(url_set);
	SYM(url_get);
	SYM(url_cleanup);
#undef SYM
	if (missing) {
		snprintf(why, sizeof(why), "libcurl.so.4 has no %s (too old)", missing);
		dlclose(h);
		return;
	}
	api = got;
}

const struct lfs_curl_api *lfs_curl(void)
{
	pthread_once(&once, load);
	return &api;
}

const char *lfs_curl_error(void)
{
	pthread_once(&once, load);
	return why[0] ? why : NULL;
}
