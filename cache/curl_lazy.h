/* libcurl, loaded when the first remote source needs it.
 *
 * Linked in, libcurl and the 26 libraries Debian builds it against (GnuTLS,
 * Kerberos, LDAP, SSH, ...) are mapped and relocated at the start of every
 * layerfs command, remote or not: most of the time `layerfs --version` takes
 * and a large part of a mount's set-up (docs/performance.md).  Loaded with
 * dlopen() at the first call instead, a stack of local layers never pays.
 *
 * source_http.c includes this instead of <curl/curl.h> and calls curl_* as
 * usual: each name below is a macro for an entry of one table, filled on
 * first use (thread safe).  When libcurl.so.4 cannot be loaded, every entry
 * is a stub that fails as libcurl itself would (CURLE_FAILED_INIT, a NULL
 * handle) and lfs_curl_error() says why.  The type checks of
 * curl_easy_setopt's arguments (curl/typecheck-gcc.h) are given up. */
#ifndef LFS_CURL_LAZY_H
#define LFS_CURL_LAZY_H

#define CURL_DISABLE_TYPECHECK
#include <curl/curl.h>
#include <time.h>

struct lfs_curl_api {
	CURLcode (*global_init)(long flags);
	CURL * (*easy_init)(void);
	CURLcode (*easy_setopt)(CURL *h, CURLoption o, ...);
	CURLcode (*easy_perform)(CURL *h);
	void (*easy_cleanup)(CURL *h);
	const char * (*easy_strerror)(CURLcode c);
	void (*free)(void *p);
	time_t (*getdate)(const char *s, const time_t *unused);
	CURLM * (*multi_init)(void);
	CURLMcode (*multi_add_handle)(CURLM *m, CURL *h);
	CURLMcode (*multi_remove_handle)(CURLM *m, CURL *h);
	CURLMcode (*multi_perform)(CURLM *m, int *running);
	CURLMcode (*multi_poll)(CURLM *m, struct curl_waitfd *fds, unsigned int n, int ms, int *ret);
	CURLMsg * (*multi_info_read)(CURLM *m, int *left);
	CURLMcode (*multi_cleanup)(CURLM *m);
	CURLSH * (*share_init)(void);
	CURLSHcode (*share_setopt)(CURLSH *s, CURLSHoption o, ...);
	CURLSHcode (*share_cleanup)(CURLSH *s);
	struct curl_slist * (*slist_append)(struct curl_slist *l, const char *s);
	void (*slist_free_all)(struct curl_slist *l);
	CURLU * (*url)(void);
	CURLUcode (*url_set)(CURLU *u, CURLUPart p, const char *s, unsigned int f);
	CURLUcode (*url_get)(const CURLU *u, CURLUPart p, char **s, unsigned int f);
	void (*url_cleanup)(CURLU *u);
};

/* The table, loading libcurl at the first call; never NULL. */
const struct lfs_curl_api *lfs_curl(void);
/* Why libcurl could not be loaded, or NULL when it was. */
const char *lfs_curl_error(void);

#define curl_global_init (*lfs_curl()->global_init)
#define curl_easy_init (*lfs_curl()->easy_init)
/* curl.h makes these two macros that check the argument count */
#undef curl_easy_setopt
#undef curl_share_setopt
#define curl_easy_setopt (*lfs_curl()->easy_setopt)
#define curl_easy_perform (*lfs_curl()->easy_perform)
#define curl_easy_cleanup (*lfs_curl()->easy_cleanup)
#define curl_easy_strerror (*lfs_curl()->easy_strerror)
#define curl_free (*lfs_curl()->free)
#define curl_getdate (*lfs_curl()->getdate)
#define curl_multi_init (*lfs_curl()->multi_init)
#define curl_multi_add_handle (*lfs_curl()->multi_add_handle)
#define curl_multi_remove_handle (*lfs_curl()->multi_remove_handle)
#define curl_multi_perform (*lfs_curl()->multi_perform)
#define curl_multi_poll (*lfs_curl()->multi_poll)
#define curl_multi_info_read (*lfs_curl()->multi_info_read)
#define curl_multi_cleanup (*lfs_curl()->multi_cleanup)
#define curl_share_init (*lfs_curl()->share_init)
#define curl_share_setopt (*lfs_curl()->share_setopt)
#define curl_share_cleanup (*lfs_curl()->share_cleanup)
#define curl_slist_append (*lfs_curl()->slist_append)
#define curl_slist_free_all (*lfs_curl()->slist_free_all)
#define curl_url (*lfs_curl()->url)
#define curl_url_set (*lfs_curl()->url_set)
#define curl_url_get (*lfs_curl()->url_get)
#define curl_url_cleanup (*lfs_curl()->url_cleanup)

#endif
