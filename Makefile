# layerfs: plain make, pkg-config for every library.
#   make            build build/layerfs
#   make check      unit tests, fuzz corpus replay, integration tests (root, FUSE; again
#                   over io_uring where the kernel has it),
#                   remote sources against real servers on loopback
#   make asan       the same under AddressSanitizer + UndefinedBehaviorSanitizer
#   make tsan       the unit tests, remote-test and the daemon's io_uring test under ThreadSanitizer
#   make bench      benchmarks, with baselines measured in the same run
#   make bench-vs   make bench of this tree and of commit REV (default HEAD~1), side by side
#   make remote-bench  cold starts from a store 2 and 20 ms away (docs/remote.md; root)
#   make fuzz       libFuzzer targets (clang)
#   make install    PREFIX=/usr/local DESTDIR=
#   make package    the Debian package (build/package/*.deb)
#   make package-test  that package installed into a fresh Debian root and mounted
VERSION := 0.1.0
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
UNITDIR ?= $(PREFIX)/lib/systemd/system
SBINDIR ?= /sbin
LIBEXECDIR ?= $(PREFIX)/libexec
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
# The files in systemd/ name the default paths; install rewrites them.  The
# mount helper's PATH is BINDIR, then the usual folders that are not BINDIR.
empty :=
space := $(empty) $(empty)
HELPER_PATH = $(subst $(space),:,$(strip $(BINDIR) $(filter-out $(BINDIR),/usr/sbin /usr/bin /sbin /bin)))
SYSTEMD_SED = -e 's|/usr/local/bin/layerfs|$(BINDIR)/layerfs|g' \
	-e 's|/usr/local/libexec/layerfs|$(LIBEXECDIR)/layerfs|g' \
	-e 's|^PATH=.*|PATH=$(HELPER_PATH)|' -e 's|/etc/layerfs|$(SYSCONFDIR)/layerfs|g'
DESTDIR ?=
BUILD ?= build

CC ?= cc
PKG_CONFIG ?= pkg-config
# pkg-config module:Debian package, for every library the build needs
LIBS := fuse3:libfuse3-dev zlib:zlib1g-dev libisal:libisal-dev libdeflate:libdeflate-dev \
	libcrypto:libssl-dev libzstd:libzstd-dev libcurl:libcurl4-openssl-dev
TEST_LIBS := cmocka:libcmocka-dev libzip:libzip-dev
module = $(firstword $(subst :, ,$(1)))
package = $(lastword $(subst :, ,$(1)))
# Debian packages whose pkg-config module is missing
missing = $(strip $(foreach l,$(1),$(if $(shell $(PKG_CONFIG) --exists $(call module,$(l)) && echo y),,$(call package,$(l)))))

WARN := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	-Wformat=2 -Wundef -Wpointer-arith -Wwrite-strings -Wvla -Wcast-qual \
	-Wimplicit-fallthrough -Wnull-dereference -Wdouble-promotion
OPT ?= -O2 -g
CFLAGS ?= $(OPT)
CPPFLAGS ?=

# Only goals that compile ask pkg-config, so `make clean` needs no library.
ifneq ($(filter-out clean uninstall,$(or $(MAKECMDGOALS),all)),)
MISSING := $(call missing,$(LIBS))
ifneq ($(MISSING),)
$(error missing libraries: apt-get install $(MISSING) (or run tools/bootstrap deps))
endif
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
PC_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(foreach l,$(LIBS),$(call module,$(l))))
# libcurl and libcrypto are compiled against but not linked:
# cache/curl_lazy.c loads libcurl when a remote layer needs it (linked, it
# and its 26 libraries are loaded at the start of every command), and
# cache/digest.c loads libcrypto at the first SHA-256 (docs/performance.md).
PC_LIBS := $(shell $(PKG_CONFIG) --libs $(foreach l,$(filter-out libcurl:% libcrypto:%,$(LIBS)),$(call module,$(l))))
endif
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) $(PC_CFLAGS)
ALL_LDLIBS = $(PC_LIBS) -lpthread $(LDLIBS)
TEST_FLAGS = $(shell $(PKG_CONFIG) --cflags $(foreach l,$(TEST_LIBS),$(call module,$(l))))
TEST_LDLIBS = $(shell $(PKG_CONFIG) --libs $(foreach l,$(TEST_LIBS),$(call module,$(l))))

# cache/ is a library of its own: it includes nothing from fs/.
CACHE := cache/source.c cache/source_file.c cache/source_mem.c cache/cache.c cache/crcpieces.c \
	cache/bufpool.c cache/codec.c cache/resume.c cache/stream.c cache/pool.c cache/reader.c \
	cache/streams.c cache/tier.c \
	cache/digest.c cache/hostdir.c cache/disk.c cache/coverage.c cache/source_http.c cache/curl_lazy.c
CORE := fs/log.c fs/layerlist.c fs/zipindex.c fs/tree.c fs/treecache.c fs/stack.c fs/notify.c \
	fs/trace.c fs/prefetch.c \
	$(CACHE)
FRONT := fs/fuse_ops.c fs/uring.c fs/inval.c fs/push.c fs/options.c fs/metrics.c fs/privs.c fs/daemon.c fs/check.c \
	fs/ctl.c fs/cachecmd.c \
	fs/main.c
CORE_OBJ := $(CORE:%.c=$(BUILD)/%.o)
FRONT_OBJ := $(FRONT:%.c=$(BUILD)/%.o)
UNIT_TESTS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(wildcard tests/unit/test_*.c))

.PHONY: all check unit it hostile-test systemd-test root-tests asan tsan bench fuzz install \
	uninstall clean demo test-libs layering remote-test remote-bench bench-vs test-user install-examples it-uring \
	package package-test
all: $(BUILD)/layerfs

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

-include $(wildcard $(BUILD)/fs/*.d $(BUILD)/cache/*.d $(BUILD)/tests/*.d)

# The version and commit, for --version: rewritten only when they change,
# so a commit rebuilds main.o alone.
$(BUILD)/version.h: FORCE
	@mkdir -p $(BUILD)
	@printf '#define LAYERFS_VERSION "%s"\n#define LAYERFS_COMMIT "%s"\n' '$(VERSION)' '$(COMMIT)' >$@.tmp
	@cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@
$(BUILD)/fs/main.o $(BUILD)/fs/daemon.o: $(BUILD)/version.h
$(BUILD)/fs/main.o $(BUILD)/fs/daemon.o: CPPFLAGS += -I$(BUILD)
FORCE:

$(BUILD)/layerfs: $(CORE_OBJ) $(FRONT_OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(ALL_LDLIBS)

test-libs:
	@m="$(call missing,$(TEST_LIBS))"; if [ -n "$$m" ]; then \
		echo "missing test libraries: apt-get install $$m (or run tools/bootstrap deps)" >&2; exit 1; fi

layering:
	@if grep -n '#include "\.\./fs/' cache/*.c cache/*.h; then \
		echo "cache/ must include nothing from fs/" >&2; exit 1; fi

$(BUILD)/tests/%: tests/unit/%.c $(CORE_OBJ) | test-libs
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -Wno-null-dereference $(TEST_FLAGS) -MMD -MP -o $@ $< \
		$(CORE_OBJ) $(LDFLAGS) $(ALL_LDLIBS) $(TEST_LDLIBS)

FUZZ_TARGETS := fuzz_open fuzz_read
FUZZ_REPLAY := $(FUZZ_TARGETS:%=$(BUILD)/tests/%_replay)

$(BUILD)/tests/%_replay: tests/fuzz/%.c tests/fuzz/replay.c $(CORE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -Wno-null-dereference -MMD -MP -o $@ $< tests/fuzz/replay.c \
		$(CORE_OBJ) $(LDFLAGS) $(ALL_LDLIBS)

# What the corpus reaches (the targets' counts, fuzz_common.h): a change
# that makes the index refuse inputs it opened, or the reads reach fewer
# members with reference bytes, fails here instead of passing with fewer
# checks made.  Raise them when the corpus grows.
FUZZ_MIN_fuzz_open := --min opened=417 --min trees=417 --min nodes=3249
FUZZ_MIN_fuzz_read := --min opened=417 --min members=575 --min referenced=439 --min reference_reads=2634

unit: layering $(UNIT_TESTS) $(FUZZ_REPLAY)
	@set -e; for t in $(UNIT_TESTS); do echo "== $$t"; $$t; done
	@$(BUILD)/tests/fuzz_open_replay $(FUZZ_MIN_fuzz_open) tests/fuzz/corpus
	@$(BUILD)/tests/fuzz_read_replay $(FUZZ_MIN_fuzz_read) tests/fuzz/corpus

# libFuzzer builds (clang, libclang-rt-14-dev): build-fuzz/fuzz_open, fuzz_read.
# Run e.g.: build-fuzz/fuzz_read -max_total_time=600 build-fuzz/corpus-read tests/fuzz/corpus
FUZZ_CC ?= clang
FUZZ_FLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -fno-omit-frame-pointer
fuzz:
	@mkdir -p build-fuzz
	set -e; for t in $(FUZZ_TARGETS); do \
		$(FUZZ_CC) -std=c11 -D_GNU_SOURCE $(FUZZ_FLAGS) $(PC_CFLAGS) \
			-o build-fuzz/$$t tests/fuzz/$$t.c $(CORE) $(ALL_LDLIBS); done

it: $(BUILD)/layerfs
	LAYERFS=$(abspath $(BUILD)/layerfs) bash tests/it/run.sh

# The same suites with every mount over FUSE's io_uring queues (fs/uring.c),
# where the kernel has them; nothing to run where it has not.
it-uring: $(BUILD)/layerfs
	LFS_URING=1 LAYERFS=$(abspath $(BUILD)/layerfs) bash tests/it/run.sh

systemd-test: $(BUILD)/layerfs
	LAYERFS=$(abspath $(BUILD)/layerfs) bash tests/systemd/run.sh

hostile-test: $(BUILD)/layerfs
	LAYERFS=$(abspath $(BUILD)/layerfs) bash tests/hostile/run.sh

# Remote sources (cache/source_http.c) against nginx, a SigV4-checking S3
# endpoint and a fault-injecting proxy, all started on loopback by the test.
$(BUILD)/tests/test_source_http: tests/remote/test_source_http.c $(CORE_OBJ) | test-libs
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -Wno-null-dereference $(TEST_FLAGS) -MMD -MP -o $@ $< \
		$(CORE_OBJ) $(LDFLAGS) $(ALL_LDLIBS) $(TEST_LDLIBS)

$(BUILD)/tests/chunk_bench: tests/remote/chunk_bench.c $(CORE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -MMD -MP -o $@ $< $(CORE_OBJ) $(LDFLAGS) $(ALL_LDLIBS)

remote-test: $(BUILD)/tests/test_source_http
	TEST_SOURCE_HTTP=$(abspath $(BUILD)/tests/test_source_http) bash tests/remote/run.sh

remote-bench: $(BUILD)/layerfs
	LAYERFS=$(abspath $(BUILD)/layerfs) bash tests/remote/coldstart.sh


# What needs no root runs first; the rest mounts (FUSE) and needs root.
check: all unit
	@if [ "$$(id -u)" != 0 ]; then \
		echo "make check: unit tests passed; the integration, hostile and systemd tests mount file systems and need root (sudo make root-tests)" >&2; \
		exit 1; fi
	$(MAKE) root-tests

root-tests: all test-user it it-uring hostile-test systemd-test remote-test

# Mounts drop to the daemon's user (-o user=, default layerfs): created as
# make install creates it, from the sysusers.d file.
test-user:
	@id -u layerfs >/dev/null 2>&1 || systemd-sysusers $(abspath systemd/layerfs.sysusers)

# Sanitizer reports go to files, because a background daemon has no stderr;
# any report fails the target.  Their folder is writable by the daemon's
# user, which the daemon is by the time it could report.  The test that boots a real systemd is left
# out: the unit's system call filter forbids the ptrace LeakSanitizer needs.
ASAN_REPORTS := $(abspath build-asan/reports)
asan:
	rm -rf $(ASAN_REPORTS) && mkdir -p $(ASAN_REPORTS) && chmod 1777 $(ASAN_REPORTS)
	LFS_SD_BOOT=0 ASAN_OPTIONS=log_path=$(ASAN_REPORTS)/asan:detect_leaks=1 \
	UBSAN_OPTIONS=log_path=$(ASAN_REPORTS)/ubsan:print_stacktrace=1:halt_on_error=1 \
	$(MAKE) BUILD=build-asan OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
		LDFLAGS="-fsanitize=address,undefined" check
	@if ls $(ASAN_REPORTS)/* >/dev/null 2>&1; then cat $(ASAN_REPORTS)/*; echo "asan: sanitizer reports above"; exit 1; fi
	@echo "asan: no sanitizer reports"

# The cache and the read path are where threads meet (claims, parked
# streams, read-ahead jobs); their unit tests run many threads at once, as
# does the remote source's test (single-flight chunks, the connection pool).
# The daemon too, where its threads meet those of FUSE over io_uring
# (fs/uring.c: the rings' threads, libfuse's, the teardown): test_uring.sh
# mounts with a ThreadSanitizer build, whose reports go to files.
TSAN_REPORTS := $(abspath build-tsan/reports)
tsan:
	TSAN_OPTIONS=halt_on_error=1 $(MAKE) BUILD=build-tsan OPT="-O1 -g -fsanitize=thread" \
		LDFLAGS="-fsanitize=thread" unit remote-test build-tsan/layerfs
	rm -rf $(TSAN_REPORTS) && mkdir -p $(TSAN_REPORTS) && chmod 1777 $(TSAN_REPORTS)
	@if [ "$$(id -u)" = 0 ]; then \
		TSAN_OPTIONS=log_path=$(TSAN_REPORTS)/tsan LAYERFS=$(abspath build-tsan/layerfs) \
			bash tests/it/run.sh tests/it/test_uring.sh || exit 1; \
		if ls $(TSAN_REPORTS)/* >/dev/null 2>&1; then cat $(TSAN_REPORTS)/*; \
			echo "tsan: the daemon's reports above"; exit 1; fi; \
	else echo "tsan: not root: the daemon's run (test_uring.sh) left out"; fi
	@echo "tsan: no data races reported"

$(BUILD)/tests/inflate_speed: tests/bench/inflate_speed.c $(CORE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -MMD -MP -o $@ $< $(CORE_OBJ) $(LDFLAGS) $(ALL_LDLIBS)

bench: $(BUILD)/layerfs $(BUILD)/tests/inflate_speed
	LAYERFS=$(abspath $(BUILD)/layerfs) bash tests/bench/run.sh

# make bench for this tree and for commit REV (default HEAD~1), side by side
bench-vs: $(BUILD)/layerfs $(BUILD)/tests/inflate_speed
	LAYERFS=$(abspath $(BUILD)/layerfs) REV=$(or $(REV),HEAD~1) bash tests/bench/vs.sh

demo: $(BUILD)/layerfs
	LAYERFS=$(abspath $(BUILD)/layerfs) bash examples/demo.sh

# Also installs systemd/ (see systemd/README.md): the layerfs@.service
# template to UNITDIR and its helper script to LIBEXECDIR/layerfs/unit,
# the sysusers.d file for the daemon's user to SYSUSERSDIR (and, without
# DESTDIR, creates the user), the mount.fuse.layerfs helper to SBINDIR,
# and example.conf/example.list to SYSCONFDIR/layerfs unless they exist
# there.  uninstall removes those two only while they are unmodified, and
# never the user.
install: $(BUILD)/layerfs
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(SBINDIR) $(DESTDIR)$(SYSCONFDIR)/layerfs $(DESTDIR)$(LIBEXECDIR)/layerfs \
		$(DESTDIR)$(SYSUSERSDIR)
	install -m 755 $(BUILD)/layerfs $(DESTDIR)$(BINDIR)/layerfs
	install -m 644 docs/layerfs.1 $(DESTDIR)$(MANDIR)/man1/layerfs.1
	install -m 644 docs/mount.fuse.layerfs.8 $(DESTDIR)$(MANDIR)/man8/mount.fuse.layerfs.8
	sed $(SYSTEMD_SED) systemd/layerfs@.service >$(DESTDIR)$(UNITDIR)/layerfs@.service
	chmod 644 $(DESTDIR)$(UNITDIR)/layerfs@.service
	sed $(SYSTEMD_SED) systemd/layerfs-unit >$(DESTDIR)$(LIBEXECDIR)/layerfs/unit
	chmod 755 $(DESTDIR)$(LIBEXECDIR)/layerfs/unit
	install -m 644 systemd/layerfs.sysusers $(DESTDIR)$(SYSUSERSDIR)/layerfs.conf
	@if [ -z "$(DESTDIR)" ] && command -v systemd-sysusers >/dev/null; then \
		systemd-sysusers $(SYSUSERSDIR)/layerfs.conf; \
	else echo "the daemon's user: systemd-sysusers $(SYSUSERSDIR)/layerfs.conf (once installed)"; fi
	sed $(SYSTEMD_SED) systemd/mount.fuse.layerfs >$(DESTDIR)$(SBINDIR)/mount.fuse.layerfs
	chmod 755 $(DESTDIR)$(SBINDIR)/mount.fuse.layerfs
	@set -e; for f in example.conf example.list; do \
		dst=$(DESTDIR)$(SYSCONFDIR)/layerfs/$$f; \
		if [ -e "$$dst" ]; then echo "keeping existing $$dst"; \
		else echo "installing $$dst"; sed $(SYSTEMD_SED) systemd/$$f >"$$dst"; chmod 644 "$$dst"; fi; \
	done

# The demo stack of examples/layers as zips and a list, for a first mount
# (the Debian package ships it): layerfs mount DATADIR/layerfs/examples/demo.list MNT
DATADIR ?= $(PREFIX)/share
install-examples:
	install -d $(DESTDIR)$(DATADIR)/layerfs/examples
	@set -e; for l in base patch config; do \
		rm -f $(DESTDIR)$(DATADIR)/layerfs/examples/$$l.zip; \
		(cd examples/layers/$$l && zip -q -r -y -X $(abspath $(DESTDIR)$(DATADIR))/layerfs/examples/$$l.zip .); \
	done
	printf '# lowest first; later layers win\nbase.zip name=demo-base version=1\npatch.zip name=demo-patch version=3\nconfig.zip name=demo-config version=1\n' \
		>$(DESTDIR)$(DATADIR)/layerfs/examples/demo.list
	chmod 644 $(DESTDIR)$(DATADIR)/layerfs/examples/*

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/layerfs $(DESTDIR)$(MANDIR)/man1/layerfs.1 \
		$(DESTDIR)$(MANDIR)/man8/mount.fuse.layerfs.8 \
		$(DESTDIR)$(UNITDIR)/layerfs@.service $(DESTDIR)$(SBINDIR)/mount.fuse.layerfs \
		$(DESTDIR)$(LIBEXECDIR)/layerfs/unit $(DESTDIR)$(SYSUSERSDIR)/layerfs.conf
	@rmdir $(DESTDIR)$(LIBEXECDIR)/layerfs 2>/dev/null || :
	@for f in example.conf example.list; do \
		dst=$(DESTDIR)$(SYSCONFDIR)/layerfs/$$f; \
		if sed $(SYSTEMD_SED) systemd/$$f | cmp -s - "$$dst"; then rm -f "$$dst"; \
		elif [ -e "$$dst" ]; then echo "keeping modified $$dst"; fi; \
	done
	@rmdir $(DESTDIR)$(SYSCONFDIR)/layerfs 2>/dev/null || :

# The Debian package: dpkg-buildpackage in a copy of the tree, the .deb in
# build/package/ (needs debhelper; tools/ensure-debs.sh debhelper).
package:
	bash tests/package/run.sh --build-only

# Builds the package, runs lintian, installs it into a fresh Debian root
# (debootstrap) and mounts the example stack there; minutes, root, network
# to the Debian archive.  Not part of make check.
package-test:
	bash tests/package/run.sh

clean:
	rm -rf build build-asan build-tsan build-fuzz
