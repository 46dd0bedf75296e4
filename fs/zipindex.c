#include "zipindex.h"

#include "../cache/source_http.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_LOC64 0x07064b50u

#define EOCD_LEN 22
#define LOC64_LEN 20
#define EOCD64_LEN 56
#define CENTRAL_LEN 46
#define LOCAL_LEN 30
#define MAX_COMMENT 0xffff
#define MAX_CD_BYTES (1ull << 31) /* name offsets are 32-bit */
/* The longest central record: name, extra field and comment at 65535. */
#define MAX_CENTRAL_RECORD (CENTRAL_LEN + 3 * 0xffffull)
#define WALK_CHUNK (1u << 20)

#define HOST_UNIX 3
#define DATA_OFF_FAILED UINT64_MAX
#define MAX_DEFLATE_RATIO 1032

#define EXTRA_ZIP64 0x0001
#define EXTRA_NTFS 0x000a
#define EXTRA_UT 0x5455
#define EXTRA_UPATH 0x7075

static uint16_t get16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}
static uint64_t get64(const unsigned char *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

const char *lfs_zip_bad_reason(enum lfs_zip_bad bad)
{
	switch (bad) {
	case LFS_ZIP_OK: return "ok";
	case LFS_ZIP_ENCRYPTED: return "encrypted entries are not supported; reads will fail with EIO";
	case LFS_ZIP_UNSUPPORTED_METHOD: return "compression method not supported; reads will fail with EIO";
	case LFS_ZIP_BAD_SIZES: return "sizes are inconsistent; reads will fail with EIO";
	case LFS_ZIP_TOO_LARGE: return "declares 2^63 bytes or more, which no stat can show; skipped";
	case LFS_ZIP_TOO_MANY_VARIANTS:
		return "its local header is declared 256 other ways already; reads will fail with EIO";
	}
	return "unknown";
}

/* One entry's problem found at mount: logged for the first
 * LFS_ZIP_MAX_LOGGED of the layer, counted for all (lfs_zip_open_source
 * sums up the rest in one line). */
static void entry_problem(struct lfs_zip_index *zi, const struct lfs_zip_entry *e)
{
	char name[256];

	if (zi->bad_entries++ < LFS_ZIP_MAX_LOGGED)
		lfs_warn("%s: entry '%s': %s", zi->path,
			 lfs_log_name(name, sizeof(name), lfs_zip_name(zi, e), e->name_len),
			 lfs_zip_bad_reason((enum lfs_zip_bad)e->bad));
}

/* Days since the epoch of a proleptic Gregorian date (Howard Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m + (m > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

/* DOS times are local time; unzip reads them with mktime() too.  mktime()
 * consults the time zone file on every call, which dominated mounting a
 * 100,000-entry layer, so the zone offset is looked up once per distinct
 * date: a thread keeps the offsets in DOS_DATES slots by date (a layer of
 * files made over months has thousands of dates, in no order). */
#define DOS_DATES 1024
struct dos_zone {
	uint16_t date;		/* 0 (month 0) is never valid: an empty slot */
	int32_t offset;		/* seconds east of UTC on that date */
};

static int64_t dos_time(uint16_t time, uint16_t date)
{
	static __thread struct dos_zone zones[DOS_DATES];
	int64_t y = ((date >> 9) & 0x7f) + 1980;
	unsigned mon = (date >> 5) & 0x0f, day = date & 0x1f;
	struct dos_zone *zone = &zones[date % DOS_DATES];
	int64_t midnight;

	if (mon < 1 || mon > 12 || day < 1)
		return 0;
	midnight = days_from_civil(y, mon, day) * 86400;
	if (zone->date != date) {
		struct tm tm = { .tm_year = (int)y - 1900, .tm_mon = (int)mon - 1,
				 .tm_mday = (int)day, .tm_hour = 12, .tm_isdst = -1 };
		time_t local_noon = mktime(&tm);
		int64_t off = local_noon == (time_t)-1 ? 0
						       : midnight + 12 * 3600 - (int64_t)local_noon;

		/* zone offsets are within a day */
		zone->offset = off > 86400 || off < -86400 ? 0 : (int32_t)off;
		zone->date = date;
	}
	return midnight + ((time >> 11) & 0x1f) * 3600 + ((time >> 5) & 0x3f) * 60 +
	       (time & 0x1f) * 2 - zone->offset;
}

/* Where the end of central directory record is, what it says, and where the
 * archive really starts. */
struct zip_end {
	uint64_t count;
	uint64_t cd_off;	/* real file offset */
	uint64_t cd_size;
	uint64_t junk;
	int zip64;
};

static int find_end(struct lfs_zip_index *zi, struct zip_end *end, char *err,
		    size_t errlen)
{
	size_t tail_len = (size_t)(zi->file_size < EOCD_LEN + MAX_COMMENT
					   ? zi->file_size
					   : EOCD_LEN + MAX_COMMENT);
	uint64_t tail_off = zi->file_size - tail_len, eocd_pos = 0, cd_end;
	unsigned char *tail = malloc(tail_len);
	const unsigned char *eocd = NULL;
	unsigned char loc[LOC64_LEN], rec[EOCD64_LEN];
	uint16_t disk, cd_disk, n_disk, n_total;
	uint64_t declared_off;
	int rc;

	if (!tail)
		return -ENOMEM;
	rc = lfs_source_read(zi->src, tail, tail_len, tail_off);
	if (rc) {
		free(tail);
		return lfs_errf(err, errlen, rc, "%s: cannot read: %s", zi->path, strerror(-rc));
	}
	/* The last signature with room for a record after it, whatever its
	 * comment length says: unzip, Python's zipfile and bsdtar all take
	 * that one, so a record forged inside the comment (whose own comment
	 * length cannot fit) is the record they see, and a comment running
	 * past the end of the file does not stop them. */
	for (size_t i = tail_len - EOCD_LEN + 1; i-- > 0;) {
		if (get32(tail + i) == SIG_EOCD) {
			eocd = tail + i;
			eocd_pos = tail_off + i;
			break;
		}
	}
	if (!eocd) {
		free(tail);
		return lfs_errf(err, errlen, -EINVAL,
			    "%s: not a zip file (no end of central directory record)",
			    zi->path);
	}
	disk = get16(eocd + 4);
	cd_disk = get16(eocd + 6);
	n_disk = get16(eocd + 8);
	n_total = get16(eocd + 10);
	end->count = n_total;
	end->cd_size = get32(eocd + 12);
	declared_off = get32(eocd + 16);
	cd_end = eocd_pos;
	end->zip64 = 0;
	free(tail); /* the fields are copied; eocd points nowhere from here on */

	/* A ZIP64 locator sits right before the end record. */
	if (eocd_pos >= LOC64_LEN &&
	    !lfs_source_read(zi->src, loc, sizeof(loc), eocd_pos - LOC64_LEN) &&
	    get32(loc) == SIG_LOC64) {
		/* The locator holds the record's offset as written, before any
		 * junk prefix; the record sits right before it, unless it has
		 * an extensible data sector: trust the locator then.  Neither
		 * may reach past the locator. */
		uint64_t room = eocd_pos - LOC64_LEN, rec_pos = 0;
		int found = room >= EOCD64_LEN &&
			    !lfs_source_read(zi->src, rec, sizeof(rec), room - EOCD64_LEN) &&
			    get32(rec) == SIG_EOCD64;

		if (found) {
			rec_pos = room - EOCD64_LEN;
		} else if (room >= EOCD64_LEN && get64(loc + 8) <= room - EOCD64_LEN &&
			   !lfs_source_read(zi->src, rec, sizeof(rec), get64(loc + 8)) &&
			   get32(rec) == SIG_EOCD64) {
			rec_pos = get64(loc + 8);
			found = 1;
		}
		if (!found)
			return lfs_errf(err, errlen, -EINVAL, "%s: ZIP64 end record is missing or corrupt",
				    zi->path);
		/* Multi-disk markers the classic record may not repeat: the
		 * disk holding the ZIP64 record, the number of disks (counted
		 * from 1; some writers store 0), this disk, the directory's
		 * first disk, entries on this disk against all. */
		if (get32(loc + 4) != 0 || get32(loc + 16) > 1 || get32(rec + 16) != 0 ||
		    get32(rec + 20) != 0 || get64(rec + 24) != get64(rec + 32))
			return lfs_errf(err, errlen, -EINVAL,
				    "%s: multi-disk (split) zips are not supported (ZIP64 end records)",
				    zi->path);
		end->count = get64(rec + 32);
		end->cd_size = get64(rec + 40);
		declared_off = get64(rec + 48);
		cd_end = rec_pos;
		end->zip64 = 1;
	}
	/* The classic record's disk fields; with ZIP64 records, all-ones is
	 * the placeholder that defers to them. */
	if ((disk != 0 && !(end->zip64 && disk == 0xffff)) ||
	    (cd_disk != 0 && !(end->zip64 && cd_disk == 0xffff)) ||
	    (n_disk != n_total && !(end->zip64 && (n_disk == 0xffff || n_total == 0xffff))))
		return lfs_errf(err, errlen, -EINVAL, "%s: multi-disk (split) zips are not supported",
			    zi->path);
	if (end->cd_size > cd_end)
		return lfs_errf(err, errlen, -EINVAL,
			    "%s: truncated or corrupt: central directory size %llu is past the start of the file",
			    zi->path, (unsigned long long)end->cd_size);
	end->cd_off = cd_end - end->cd_size;
	if (declared_off > end->cd_off)
		return lfs_errf(err, errlen, -EINVAL,
			    "%s: truncated or corrupt: central directory offset %llu is past its end record",
			    zi->path, (unsigned long long)declared_off);
	/* Bytes in front of the archive (self-extractor stub): shift every
	 * offset, as unzip does. */
	end->junk = end->cd_off - declared_off;
	return 0;
}

/* Applies the extra fields of one central record to e. */
static void parse_extra(const unsigned char *x, size_t len, struct lfs_zip_entry *e,
			const unsigned char *name, uint32_t *name_off,
			const unsigned char *cd_base, int *zip64_bad)
{
	int have_ut = 0;

	while (len >= 4) {
		uint16_t id = get16(x), sz = get16(x + 2);
		const unsigned char *d = x + 4;

		if ((size_t)sz + 4 > len)
			break;
		if (id == EXTRA_ZIP64) {
			size_t p = 0;

			/* Only the fields saturated in the fixed record are here. */
			if (e->size == 0xffffffffu) {
				if (p + 8 > sz) { *zip64_bad = 1; break; }
				e->size = get64(d + p);
				p += 8;
			}
			if (e->comp_size == 0xffffffffu) {
				if (p + 8 > sz) { *zip64_bad = 1; break; }
				e->comp_size = get64(d + p);
				p += 8;
			}
			if (e->lho == 0xffffffffu) {
				if (p + 8 > sz) { *zip64_bad = 1; break; }
				e->lho = get64(d + p);
			}
		} else if (id == EXTRA_UT && sz >= 5 && (d[0] & 1)) {
			e->mtime = (int32_t)get32(d + 1);
			have_ut = 1;
		} else if (id == EXTRA_NTFS && sz >= 32 && !have_ut) {
			/* reserved(4), then tag 1 of size 24: mtime, atime, ctime */
			if (get16(d + 4) == 1 && get16(d + 6) >= 24) {
				uint64_t ft = get64(d + 8);

				e->mtime = (int64_t)(ft / 10000000ull) - 11644473600ll;
			}
		} else if (id == EXTRA_UPATH && sz > 5 && d[0] == 1) {
			/* Info-ZIP Unicode path: valid only while the name it was
			 * made for is unchanged (CRC of that name). */
			if (get32(d + 1) == (uint32_t)crc32(0, name, e->name_len) &&
			    sz - 5 <= 0xffff) {
				*name_off = (uint32_t)(d + 5 - cd_base);
				e->name_len = (uint16_t)(sz - 5);
			}
		}
		x += 4 + sz;
		len -= 4 + (size_t)sz;
	}
}

/* Type and permissions, following unzip: Unix attributes when the high
 * half of the external attributes holds any (whatever the host, since 7-Zip
 * and others store them under a FAT host), DOS attributes otherwise. */
static void set_type_mode(struct lfs_zip_entry *e, uint32_t ext_attr, unsigned host,
			  const unsigned char *name, size_t name_len)
{
	uint32_t unix_mode = ext_attr >> 16;
	int slash = name_len && (name[name_len - 1] == '/' || name[name_len - 1] == '\\');

	(void)host;
	if (unix_mode) {
		switch (unix_mode & 0170000) {
		case 0040000: e->kind = LFS_ZIP_DIR; break;
		case 0120000: e->kind = slash ? LFS_ZIP_DIR : LFS_ZIP_SYMLINK; break;
		default: e->kind = slash ? LFS_ZIP_DIR : LFS_ZIP_FILE; break;
		}
		/* setuid, setgid and sticky never reach the mount */
		e->mode = (uint16_t)(unix_mode & 0777);
	} else {
		int dir = slash || (ext_attr & 0x10);

		e->kind = dir ? LFS_ZIP_DIR : LFS_ZIP_FILE;
		e->mode = dir ? 0755 : ((ext_attr & 0x01) ? 0444 : 0644);
	}
}

/* Sets *shared unless the readable entries' local header offsets only grow
 * in central directory order (then none shares one: see assign_variants). */
static int parse_cd(struct lfs_zip_index *zi, const struct zip_end *end,
		    const struct lfs_zip_limits *lim, int *shared, char *err, size_t errlen)
{
	const uint64_t declared_cd = end->cd_off - end->junk;
	uint64_t n = 0, cap = zi->count, pos = 0, last_lho = 0;
	int any = 0;

	/* Bounds are compared as lengths left: a pointer past the end of the
	 * buffer is undefined behaviour even when only compared. */
	while (zi->cd_size - pos >= CENTRAL_LEN && get32(zi->cd + pos) == SIG_CENTRAL) {
		const unsigned char *p = zi->cd + pos;
		struct lfs_zip_entry *e;
		uint16_t nlen, xlen, clen, flags;
		uint32_t name_off;
		int zip64_bad = 0;

		nlen = get16(p + 28);
		xlen = get16(p + 30);
		clen = get16(p + 32);
		if ((uint64_t)CENTRAL_LEN + nlen + xlen + clen > zi->cd_size - pos)
			return lfs_errf(err, errlen, -EINVAL,
				    "%s: corrupt central directory: entry %llu runs past its end",
				    zi->path, (unsigned long long)n);
		if (lim && lim->max_entries && n >= lim->max_entries)
			return lfs_errf(err, errlen, -E2BIG,
				    "%s: more than max_entries=%llu entries", zi->path,
				    (unsigned long long)lim->max_entries);
		if (n == cap) {
			/* Only writers that wrapped the 16-bit count get here. */
			uint64_t ncap = cap * 2 + 1024;
			struct lfs_zip_entry *ne;

			if (end->zip64 || n >= (zi->cd_size / CENTRAL_LEN) + 1)
				return lfs_errf(err, errlen, -EINVAL,
					    "%s: corrupt: the central directory holds more entries than the %llu its end record declares",
					    zi->path, (unsigned long long)end->count);
			ne = realloc(zi->entries, ncap * sizeof(*ne));
			if (!ne)
				return -ENOMEM;
			zi->entries = ne;
			cap = ncap;
		}
		e = &zi->entries[n];
		e->variant = 0; /* see assign_variants */
		flags = get16(p + 8);
		e->method = get16(p + 10);
		e->mtime = dos_time(get16(p + 12), get16(p + 14));
		e->crc = get32(p + 16);
		e->comp_size = get32(p + 20);
		e->size = get32(p + 24);
		e->lho = get32(p + 42);
		e->name_len = nlen;
		name_off = (uint32_t)(p + CENTRAL_LEN - zi->cd);
		set_type_mode(e, get32(p + 38), p[5], p + CENTRAL_LEN, nlen);
		parse_extra(p + CENTRAL_LEN + nlen, xlen, e, p + CENTRAL_LEN, &name_off,
			    zi->cd, &zip64_bad);
		e->name_off = name_off;
		/* after the extra fields: a Unicode path replaces the name */
		if (lim && lim->max_name && e->name_len > lim->max_name)
			return lfs_errf(err, errlen, -ENAMETOOLONG,
				    "%s: entry %llu has a %u-byte name, more than max_name=%zu",
				    zi->path, (unsigned long long)n, e->name_len, lim->max_name);
		e->bad = LFS_ZIP_OK;
		if (flags & 1)
			e->bad = LFS_ZIP_ENCRYPTED;
		else if (e->kind != LFS_ZIP_DIR && e->method != LFS_ZIP_STORED &&
			 e->method != LFS_ZIP_DEFLATED)
			e->bad = LFS_ZIP_UNSUPPORTED_METHOD;
		else if (e->size > INT64_MAX)
			e->bad = LFS_ZIP_TOO_LARGE;
		else if (zip64_bad ||
			 (e->method == LFS_ZIP_STORED && e->comp_size != e->size) ||
			 /* deflate cannot expand more than 1032:1; a size that
			  * claims more is a lie (and would send reads far) */
			 (e->method == LFS_ZIP_DEFLATED &&
			  e->size / MAX_DEFLATE_RATIO > e->comp_size + 1) ||
			 /* member data must lie before the central directory;
			  * compared without wrapping, so that a ZIP64 offset
			  * near 2^64 cannot pass as a small one */
			 e->lho > declared_cd || declared_cd - e->lho < LOCAL_LEN ||
			 e->comp_size > declared_cd - e->lho - LOCAL_LEN)
			e->bad = LFS_ZIP_BAD_SIZES;
		/* an offset past the directory stays as declared (the entry is
		 * bad, never read): shifted, it could wrap into the file */
		if (e->lho <= declared_cd)
			e->lho += end->junk;
		if (e->bad && e->kind != LFS_ZIP_DIR)
			entry_problem(zi, e);
		if (!e->bad && e->kind != LFS_ZIP_DIR) {
			*shared |= any && e->lho <= last_lho;
			last_lho = e->lho;
			any = 1;
		}
		pos += CENTRAL_LEN + (uint64_t)nlen + xlen + clen;
		n++;
	}
	/* Writers without ZIP64 support store the count modulo 65536. */
	if (n != end->count &&
	    !(!end->zip64 && (n & 0xffff) == end->count && pos == zi->cd_size))
		return lfs_errf(err, errlen, -EINVAL,
			    "%s: corrupt: end record declares %llu entries, central directory holds %llu",
			    zi->path, (unsigned long long)end->count, (unsigned long long)n);
	zi->count = n;
	return 0;
}

/* A central directory larger than its declared count can need: a writer
 * without ZIP64 that stores the count modulo 65536 makes one, and so does a
 * liar declaring 2 GiB for one entry.  Only the records can tell which, so
 * they are walked in chunks (their sizes only, nothing kept) before the
 * whole directory is allocated and read: a lie costs one chunk, not what it
 * declares.  On success *count is the number of records and *cd_size the
 * bytes they take. */
static int walk_cd(struct lfs_zip_index *zi, const struct zip_end *end,
		   const struct lfs_zip_limits *lim, uint64_t *count, uint64_t *cd_size,
		   char *err, size_t errlen)
{
	unsigned char *buf = malloc(WALK_CHUNK);
	uint64_t at = 0, buf_at = 0, have = 0, n = 0;
	int rc = 0, overrun = 0;

	if (!buf)
		return -ENOMEM;
	while (end->cd_size - at >= CENTRAL_LEN) {
		const unsigned char *p;
		uint64_t rec;

		/* at >= buf_at: records only move on */
		if (have < CENTRAL_LEN || at - buf_at > have - CENTRAL_LEN) {
			have = end->cd_size - at < WALK_CHUNK ? end->cd_size - at : WALK_CHUNK;
			buf_at = at;
			rc = lfs_source_read(zi->src, buf, have, end->cd_off + at);
			if (rc) {
				rc = lfs_errf(err, errlen, rc,
					      "%s: cannot read the central directory: %s",
					      zi->path, strerror(-rc));
				goto out;
			}
		}
		p = buf + (at - buf_at);
		if (get32(p) != SIG_CENTRAL)
			break;
		rec = CENTRAL_LEN + (uint64_t)get16(p + 28) + get16(p + 30) + get16(p + 32);
		if (rec > end->cd_size - at) {
			overrun = 1;
			break;
		}
		if (lim && lim->max_entries && n >= lim->max_entries) {
			rc = lfs_errf(err, errlen, -E2BIG, "%s: more than max_entries=%llu entries",
				      zi->path, (unsigned long long)lim->max_entries);
			goto out;
		}
		at += rec;
		n++;
	}
	if (overrun)
		rc = lfs_errf(err, errlen, -EINVAL,
			      "%s: corrupt central directory: entry %llu runs past its end",
			      zi->path, (unsigned long long)n);
	else if (n == end->count)
		*cd_size = at; /* bytes after the records are ignored, as parse_cd does */
	else if (at != end->cd_size || (n & 0xffff) != end->count)
		rc = lfs_errf(err, errlen, -EINVAL,
			      "%s: corrupt: end record declares %llu entries, central directory holds %llu",
			      zi->path, (unsigned long long)end->count, (unsigned long long)n);
	else
		*count = n;
out:
	free(buf);
	return rc;
}

#define HASH_K 0x9e3779b97f4a7c15ull

static int same_declaration(const struct lfs_zip_entry *a, const struct lfs_zip_entry *b)
{
	return a->lho == b->lho && a->method == b->method && a->comp_size == b->comp_size &&
	       a->size == b->size && a->crc == b->crc;
}

static uint64_t declaration_hash(const struct lfs_zip_entry *e)
{
	uint64_t h = e->lho * HASH_K;

	h = (h ^ e->comp_size) * HASH_K;
	h = (h ^ e->size) * HASH_K;
	return (h ^ ((uint64_t)e->crc << 16 | e->method)) * HASH_K;
}

/* Numbers the different declarations of each local header offset (see
 * struct lfs_zip_entry.variant; parse_cd set them all to 0).  Writers put
 * the central records in the order of the local ones, and offsets that
 * only grow share nothing: parse_cd tells, and then this is not called.
 * A hash table maps an lho to its first entry (one probe for an lho seen
 * once, and for one repeated as it was first declared, as in a bomb); only
 * for an lho declared another way, a second table maps whole declarations
 * to their first entry: at most two probes an entry, however many ways an
 * lho is declared. */
static int assign_variants(struct lfs_zip_index *zi)
{
	struct lfs_zip_entry *es = zi->entries;
	struct lho_slot {
		uint32_t entry;		/* first entry at that lho + 1; 0: free */
		uint32_t tag;		/* 32 bits of the lho, to skip most misses */
	} *by_lho;
	uint32_t *by_decl = NULL;	/* first entry of a declaration + 1; 0: free */
	uint16_t *ways = NULL;		/* by lho slot: declarations so far, 0: the first
					 * entry is not in by_decl yet */
	uint64_t cap = 64, mask;
	unsigned shift = 58;
	int rc = 0;

	/* count <= MAX_CD_BYTES / CENTRAL_LEN: entry numbers fit 32 bits */
	while (cap < 2 * zi->count) {
		cap <<= 1;
		shift--;
	}
	mask = cap - 1;
	by_lho = calloc(cap, sizeof(*by_lho));
	if (!by_lho)
		return -ENOMEM;
	for (uint64_t i = 0; i < zi->count; i++) {
		struct lfs_zip_entry *e = &es[i];
		uint32_t tag = (uint32_t)(e->lho ^ e->lho >> 32), first;
		uint64_t h, d = 0;

		if (e->bad || e->kind == LFS_ZIP_DIR)
			continue;
		h = (e->lho * HASH_K) >> shift;
		while (by_lho[h].entry &&
		       (by_lho[h].tag != tag || es[by_lho[h].entry - 1].lho != e->lho))
			h = (h + 1) & mask;
		if (!by_lho[h].entry) {
			by_lho[h].entry = (uint32_t)i + 1;
			by_lho[h].tag = tag;
			continue;
		}
		first = by_lho[h].entry - 1;
		if (same_declaration(&es[first], e))
			continue; /* variant 0, as the first */
		if (!by_decl) {
			by_decl = calloc(cap, sizeof(*by_decl));
			ways = calloc(cap, sizeof(*ways));
			if (!by_decl || !ways) {
				rc = -ENOMEM;
				break;
			}
		}
		for (int pass = ways[h] ? 1 : 0; pass < 2; pass++) {
			/* pass 0 enters the lho's first entry, pass 1 looks up e */
			const struct lfs_zip_entry *x = pass ? e : &es[first];

			d = declaration_hash(x) >> shift;
			while (by_decl[d] && !same_declaration(&es[by_decl[d] - 1], x))
				d = (d + 1) & mask;
			if (!pass) {
				by_decl[d] = first + 1;
				ways[h] = 1;
			}
		}
		if (by_decl[d]) {
			e->variant = es[by_decl[d] - 1].variant; /* and so its blocks */
			continue;
		}
		if (ways[h] >= LFS_ZIP_MAX_VARIANTS) {
			e->bad = LFS_ZIP_TOO_MANY_VARIANTS;
			entry_problem(zi, e);
			continue;
		}
		e->variant = (uint8_t)ways[h]++;
		by_decl[d] = (uint32_t)i + 1;
	}
	free(by_lho);
	free(by_decl);
	free(ways);
	return rc;
}

/* Once parsed, only the entries' names are needed of the central
 * directory (not its extra fields and comments): they are kept packed in
 * a buffer of their own, a third to a half of the directory's size, since
 * every byte of it is the mount's for its whole life. */
static int keep_names_only(struct lfs_zip_index *zi)
{
	uint64_t total = 0, off = 0;
	unsigned char *names;

	for (uint64_t i = 0; i < zi->count; i++)
		total += zi->entries[i].name_len;
	names = malloc(total ? total : 1);
	if (!names)
		return -ENOMEM;
	for (uint64_t i = 0; i < zi->count; i++) {
		struct lfs_zip_entry *e = &zi->entries[i];

		memcpy(names + off, zi->cd + e->name_off, e->name_len);
		e->name_off = (uint32_t)off;
		off += e->name_len;
	}
	free(zi->cd);
	zi->cd = names;
	zi->cd_size = total;
	return 0;
}

int lfs_zip_open_source(struct lfs_source *src, const char *name,
			const struct lfs_zip_limits *limits, struct lfs_zip_index **out, char *err,
			size_t errlen)
{
	struct lfs_zip_index *zi;
	struct zip_end end = { 0 };
	int shared = 0;
	const char *path = name;
	int rc;

	zi = calloc(1, sizeof(*zi));
	if (!zi)
		return -ENOMEM;
	zi->path = strdup(name);
	if (!zi->path) {
		rc = -ENOMEM;
		goto fail;
	}
	zi->file_size = src->size;
	zi->file_mtime = src->mtime;
	zi->src = src;
	if (zi->file_size < EOCD_LEN) {
		rc = lfs_errf(err, errlen, -EINVAL, "%s: too short to be a zip file (%llu bytes)",
			  path, (unsigned long long)zi->file_size);
		goto fail;
	}
	rc = find_end(zi, &end, err, errlen);
	if (rc)
		goto fail;
	if (limits && limits->max_entries && end.count > limits->max_entries) {
		rc = lfs_errf(err, errlen, -E2BIG, "%s: %llu entries, more than max_entries=%llu",
			  path, (unsigned long long)end.count,
			  (unsigned long long)limits->max_entries);
		goto fail;
	}
	if (end.cd_size > MAX_CD_BYTES || end.count > end.cd_size / CENTRAL_LEN + 1) {
		rc = lfs_errf(err, errlen, -EINVAL,
			  "%s: corrupt: %llu entries cannot fit a %llu-byte central directory",
			  path, (unsigned long long)end.count, (unsigned long long)end.cd_size);
		goto fail;
	}
	/* The directory is allocated whole: bound it by what the declared
	 * count can need (a ZIP64 count is never wrapped), or by the records
	 * that are really there (see walk_cd).  The end record already bounds
	 * it by the file. */
	if (end.cd_size > end.count * MAX_CENTRAL_RECORD) {
		if (end.zip64) {
			rc = lfs_errf(err, errlen, -EINVAL,
				  "%s: corrupt: a %llu-byte central directory for %llu entries (they need at most %llu bytes)",
				  path, (unsigned long long)end.cd_size,
				  (unsigned long long)end.count,
				  (unsigned long long)(end.count * MAX_CENTRAL_RECORD));
			goto fail;
		}
		rc = walk_cd(zi, &end, limits, &end.count, &end.cd_size, err, errlen);
		if (rc)
			goto fail;
	}
	zi->junk_prefix = end.junk;
	zi->cd_size = end.cd_size;
	zi->cd_off = end.cd_off;
	/* +1 so that an empty directory still gets a valid pointer */
	zi->cd = malloc(end.cd_size + 1);
	zi->count = end.count ? end.count : 1;
	zi->entries = calloc(zi->count, sizeof(*zi->entries));
	if (!zi->cd || !zi->entries) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = lfs_source_read(zi->src, zi->cd, end.cd_size, end.cd_off);
	if (rc) {
		rc = lfs_errf(err, errlen, rc, "%s: cannot read the central directory: %s", path,
			  strerror(-rc));
		goto fail;
	}
	rc = parse_cd(zi, &end, limits, &shared, err, errlen);
	if (!rc && shared)
		rc = assign_variants(zi);
	if (rc)
		goto fail;
	zi->data_off = calloc(zi->count ? zi->count : 1, sizeof(*zi->data_off));
	if (!zi->data_off) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = keep_names_only(zi);
	if (rc)
		goto fail;
	if (zi->bad_entries > LFS_ZIP_MAX_LOGGED)
		lfs_warn("%s: %llu more %s with problems like those above (the first %d are logged)",
			 path, (unsigned long long)(zi->bad_entries - LFS_ZIP_MAX_LOGGED),
			 zi->bad_entries - LFS_ZIP_MAX_LOGGED == 1 ? "entry" : "entries",
			 LFS_ZIP_MAX_LOGGED);
	*out = zi;
	return 0;
fail:
	zi->src = NULL; /* still the caller's */
	lfs_zip_close(zi);
	return rc;
}

void lfs_zip_will_need_end(struct lfs_source *src)
{
	uint64_t tail = src->size < EOCD_LEN + MAX_COMMENT ? src->size : EOCD_LEN + MAX_COMMENT;

	lfs_source_will_need(src, src->size - tail, tail);
}

void lfs_zip_will_need(struct lfs_source *src)
{
	char unnamed[] = "";
	struct lfs_zip_index zi = { .src = src, .path = unnamed, .file_size = src->size };
	struct zip_end end;

	/* only a directory the open would read whole: a lie about its size
	 * must not fill the page cache */
	if (zi.file_size >= EOCD_LEN && find_end(&zi, &end, NULL, 0) == 0 &&
	    end.cd_size <= MAX_CD_BYTES && end.cd_size <= end.count * MAX_CENTRAL_RECORD)
		lfs_source_will_need(src, end.cd_off, end.cd_size);
}

int lfs_zip_open(const char *path, const struct lfs_zip_limits *limits,
		 struct lfs_zip_index **out, char *err, size_t errlen)
{
	struct lfs_source *src;
	int rc = lfs_source_file_open(path, &src, err, errlen);

	if (rc)
		return rc;
	rc = lfs_zip_open_source(src, path, limits, out, err, errlen);
	if (rc)
		lfs_source_close(src);
	return rc;
}

void lfs_zip_close(struct lfs_zip_index *zi)
{
	if (!zi)
		return;
	lfs_source_close(zi->src);
	free(zi->path);
	if (!zi->borrowed) {
		free(zi->cd);
		free(zi->entries);
	}
	free(zi->data_off);
	free(zi);
}

/* The flat form: this head, the entries (name_off into the names that
 * follow), the names. */
struct flat_zip {
	uint64_t magic;
	uint64_t entry_size;	/* sizeof(struct lfs_zip_entry) when written */
	uint64_t count, names_len, file_size, junk_prefix, cd_off, bad_entries;
	int64_t file_mtime;
};

#define FLAT_ZIP_MAGIC 0x317069737a7366ull /* "fszip1" */

size_t lfs_zip_flat_size(const struct lfs_zip_index *zi)
{
	size_t names = 0;

	for (uint64_t i = 0; i < zi->count; i++)
		names += zi->entries[i].name_len;
	/* names padded to 8, so what follows a flat index stays aligned */
	return sizeof(struct flat_zip) + zi->count * sizeof(struct lfs_zip_entry) +
	       ((names + 7) & ~(size_t)7);
}

void lfs_zip_flatten(const struct lfs_zip_index *zi, void *buf)
{
	struct flat_zip h = { FLAT_ZIP_MAGIC, sizeof(struct lfs_zip_entry), zi->count, 0,
			      zi->file_size, zi->junk_prefix, zi->cd_off, zi->bad_entries,
			      zi->file_mtime };
	unsigned char *p = buf;
	struct lfs_zip_entry *out = (struct lfs_zip_entry *)(void *)(p + sizeof(h));
	unsigned char *names = p + sizeof(h) + zi->count * sizeof(*out);

	for (uint64_t i = 0; i < zi->count; i++) {
		out[i] = zi->entries[i];
		out[i].name_off = (uint32_t)h.names_len;
		memcpy(names + h.names_len, lfs_zip_name(zi, &zi->entries[i]), zi->entries[i].name_len);
		h.names_len += zi->entries[i].name_len;
	}
	memset(names + h.names_len, 0, ((h.names_len + 7) & ~7ull) - h.names_len);
	memcpy(p, &h, sizeof(h));
}

int lfs_zip_from_flat(struct lfs_source *src, const char *name, const void *buf, size_t len,
		      struct lfs_zip_index **out)
{
	const unsigned char *p = buf;
	const struct lfs_zip_entry *e;
	struct lfs_zip_index *zi;
	struct flat_zip h;
	uint64_t need;

	if (len < sizeof(h) || ((uintptr_t)buf & 7))
		return -EINVAL;
	memcpy(&h, p, sizeof(h));
	if (h.magic != FLAT_ZIP_MAGIC || h.entry_size != sizeof(*e) || h.file_size != src->size ||
	    h.count > (len - sizeof(h)) / sizeof(*e))
		return -EINVAL;
	need = sizeof(h) + h.count * sizeof(*e);
	if (h.names_len > len - need || h.cd_off > h.file_size)
		return -EINVAL;
	e = (const struct lfs_zip_entry *)(const void *)(p + sizeof(h));
	for (uint64_t i = 0; i < h.count; i++)
		if ((uint64_t)e[i].name_off + e[i].name_len > h.names_len ||
		    e[i].kind > LFS_ZIP_SYMLINK || (!e[i].bad && e[i].lho >= h.file_size))
			return -EINVAL;
	zi = calloc(1, sizeof(*zi));
	if (!zi)
		return -ENOMEM;
	zi->path = strdup(name);
	zi->data_off = calloc(h.count ? h.count : 1, sizeof(*zi->data_off));
	if (!zi->path || !zi->data_off) {
		free(zi->path);
		free(zi->data_off);
		free(zi);
		return -ENOMEM;
	}
	zi->src = src;
	zi->file_size = h.file_size;
	zi->junk_prefix = h.junk_prefix;
	zi->count = h.count;
	zi->bad_entries = h.bad_entries;
	zi->entries = (struct lfs_zip_entry *)(uintptr_t)e;
	zi->cd = (unsigned char *)(uintptr_t)(p + need);
	zi->cd_size = h.names_len;
	zi->cd_off = h.cd_off;
	zi->file_mtime = h.file_mtime;
	zi->borrowed = 1;
	*out = zi;
	return 0;
}

int lfs_zip_data_offset(struct lfs_zip_index *zi, uint64_t i, uint64_t *off)
{
	const struct lfs_zip_entry *e = &zi->entries[i];
	unsigned char hdr[LOCAL_LEN];
	uint64_t cached = __atomic_load_n(&zi->data_off[i], __ATOMIC_ACQUIRE);
	uint64_t data;
	const char *why = NULL;
	char name[256];
	uint16_t nlen;
	int rc;

	if (cached == DATA_OFF_FAILED)
		return -EIO; /* logged once, when it first failed */
	if (cached) {
		*off = cached;
		return 0;
	}
	if (e->bad)
		return -EIO; /* already logged at mount */
	if (zi->file_size < LOCAL_LEN || e->lho > zi->file_size - LOCAL_LEN) {
		why = "local header is past the end of the file";
	} else {
		rc = lfs_source_read(zi->src, hdr, LOCAL_LEN, e->lho);
		if (rc == -ESTALE)
			return rc; /* the layer changed: the caller says so, once a layer */
		if (rc && lfs_source_http_untrusted(zi->src))
			return -EIO; /* its digest proved wrong: logged once, by the stack */
		if (rc) {
			/* a source error: nothing is remembered, the next read
			 * tries again */
			lfs_err("%s: entry '%s': cannot read its local header: %s; EIO for this read",
				zi->path,
				lfs_log_name(name, sizeof(name), lfs_zip_name(zi, e), e->name_len),
				strerror(-rc));
			return -EIO;
		}
		if (get32(hdr) != SIG_LOCAL)
			why = "no local header where the central directory points";
		else if (get16(hdr + 8) != e->method)
			why = "local header names another compression method";
		else if (get16(hdr + 6) & 1)
			why = "local header says encrypted";
	}
	if (!why) {
		nlen = get16(hdr + 26);
		data = e->lho + LOCAL_LEN + nlen + get16(hdr + 28);
		/* Not just inside the file: a local header's name and extra
		 * lengths can move the data onto the central directory or the
		 * end records, whose bytes a partial read would then serve. */
		if (data > zi->cd_off || e->comp_size > zi->cd_off - data)
			why = "compressed data runs into the central directory";
	}
	if (why) {
		uint64_t expect = 0;

		if (__atomic_compare_exchange_n(&zi->data_off[i], &expect, DATA_OFF_FAILED, 0,
						__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			lfs_err("%s: entry '%s': %s", zi->path,
				lfs_log_name(name, sizeof(name), lfs_zip_name(zi, e), e->name_len),
				why);
		return -EIO;
	}
	__atomic_store_n(&zi->data_off[i], data, __ATOMIC_RELEASE);
	*off = data;
	return 0;
}
