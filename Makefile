# layerfs: plain make, pkg-config for every library.
#   make            build build/layerfs
#   make check      unit tests, fuzz corpus replay, integration tests (root, FUSE),
#                   remote sources against real servers on loopback
#   make asan       the same under AddressSanitizer + UndefinedBehaviorSanitizer
#   make tsan       the unit tests and remote-test under ThreadSanitizer
#   make bench      benchmarks, with baselines measured in the same run
#   make fuzz       libFuzzer targets (clang)
#   make install    PREFIX=/usr/local DESTDIR=
VERSION := 0.1.0
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
UNITDIR ?= $(PREFIX)/lib/systemd/system
SBINDIR ?= /sbin
# The files in systemd/ name the default paths; install rewrites them.
SYSTEMD_SED = -e 's|/usr/local/bin/layerfs|$(BINDIR)/layerfs|g' \
	-e 's|^PATH=/usr/local/bin:|PATH=$(BINDIR):|' -e 's|/etc/layerfs|$(SYSCONFDIR)/layerfs|g'
DESTDIR ?=
BUILD ?= build

CC ?= cc
PKG_CONFIG ?= pkg-config
LIBS_PC := fuse3 zlib libisal libdeflate libcurl
TEST_PC := cmocka libzip

WARN := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	-Wformat=2 -Wundef -Wpointer-arith -Wwrite-strings -Wvla -Wcast-qual \
	-Wimplicit-fallthrough -Wnull-dereference -Wdouble-promotion
OPT ?= -O2 -g
CFLAGS ?= $(OPT)
# Name the Debian package of a missing library instead of a compiler error.
PC_DEBS := fuse3=libfuse3-dev zlib=zlib1g-dev libisal=libisal-dev libdeflate=libdeflate-dev \
	libcurl=libcurl4-openssl-dev cmocka=libcmocka-dev libzip=libzip-dev
PC_MISSING := $(if $(filter-out clean uninstall,$(or $(MAKECMDGOALS),all)),$(strip $(foreach p,$(LIBS_PC),$(if $(shell $(PKG_CONFIG) --exists $(p) && echo y),,$(p)))))
ifneq ($(PC_MISSING),)
$(error missing $(PC_MISSING): install $(foreach d,$(filter $(addsuffix =%,$(PC_MISSING)),$(PC_DEBS)),$(word 2,$(subst =, ,$(d)))) (or run tools/bootstrap deps))
endif
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE -DLAYERFS_VERSION='"$(VERSION)"' $(WARN) $(CFLAGS) \
	$(shell $(PKG_CONFIG) --cflags $(LIBS_PC))
ALL_LDLIBS := $(shell $(PKG_CONFIG) --libs $(LIBS_PC)) -lpthread $(LDLIBS)

CORE := fs/log.c fs/layerlist.c fs/zipindex.c fs/tree.c fs/stack.c fs/notify.c \
	cache/source.c cache/source_file.c cache/source_mem.c cache/source_http.c \
	cache/cache.c cache/crcpieces.c cache/reader.c
FRONT := fs/fuse_ops.c fs/inval.c fs/main.c
CORE_OBJ := $(CORE:%.c=$(BUILD)/%.o)
FRONT_OBJ := $(FRONT:%.c=$(BUILD)/%.o)
UNIT_TESTS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(wildcard tests/unit/test_*.c))

.PHONY: all check unit it hostile-test systemd-test remote-test asan tsan bench fuzz install uninstall clean demo
all: $(BUILD)/layerfs

$(BUILD)/%.o: %.c $(wildcard fs/*.h cache/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/layerfs: $(CORE_OBJ) $(FRONT_OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(ALL_LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c tests/unit/helpers.h $(CORE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Wno-null-dereference $(shell $(PKG_CONFIG) --cflags $(TEST_PC)) -o $@ $< $(CORE_OBJ) \
		$(LDFLAGS) $(ALL_LDLIBS) $(shell $(PKG_CONFIG) --libs $(TEST_PC))

FUZZ_TARGETS := fuzz_open fuzz_read
FUZZ_REPLAY := $(FUZZ_TARGETS:%=$(BUILD)/tests/%_replay)

$(BUILD)/tests/%_replay: tests/fuzz/%.c tests/fuzz/replay.c tests/fuzz/fuzz_common.h $(CORE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Wno-null-dereference -o $@ $< tests/fuzz/replay.c $(CORE_OBJ) \
		$(LDFLAGS) $(ALL_LDLIBS)

unit: $(UNIT_TESTS) $(FUZZ_REPLAY)
	@set -e; for t in $(UNIT_TESTS); do echo "== $$t"; $$t; done
	@set -e; for t in $(FUZZ_TARGETS); do $(BUILD)/tests/$${t}_replay tests/fuzz/corpus; done

# libFuzzer builds (clang, libclang-rt-14-dev): build-fuzz/fuzz_open, fuzz_read.
# Run e.g.: build-fuzz/fuzz_read -max_total_time=600 build-fuzz/corpus-read tests/fuzz/corpus
FUZZ_CC ?= clang
FUZZ_FLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -fno-omit-frame-pointer
fuzz:
	@mkdir -p build-fuzz
	set -e; for t in $(FUZZ_TARGETS); do \
		$(FUZZ_CC) -std=c11 -D_GNU_SOURCE $(FUZZ_FLAGS) $(shell $(PKG_CONFIG) --cflags $(LIBS_PC)) \
			-o build-fuzz/$$t tests/fuzz/$$t.c $(CORE) $(ALL_LDLIBS); done

it: $(BUILD)/layerfs
	LAYERFS=$(abspath $(BUILD)/layerfs) bash tests/it/run.sh

systemd-test: $(BUILD)/layerfs
	LAYERFS=$(abspath $(BUILD)/layerfs) bash tests/systemd/run.sh

hostile-test: $(BUILD)/layerfs
	LAYERFS=$(abspath $(BUILD)/layerfs) bash tests/hostile/run.sh

# Remote sources (cache/source_http.c) against nginx, a SigV4-checking S3
# endpoint and a fault-injecting proxy, all started on loopback by the test.
$(BUILD)/tests/test_source_http: tests/remote/test_source_http.c tests/unit/helpers.h $(CORE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Wno-null-dereference $(shell $(PKG_CONFIG) --cflags cmocka) -o $@ $< $(CORE_OBJ) \
		$(LDFLAGS) $(ALL_LDLIBS) $(shell $(PKG_CONFIG) --libs cmocka)

$(BUILD)/tests/chunk_bench: tests/remote/chunk_bench.c $(CORE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(CORE_OBJ) $(LDFLAGS) $(ALL_LDLIBS)

remote-test: $(BUILD)/tests/test_source_http
	TEST_SOURCE_HTTP=$(abspath $(BUILD)/tests/test_source_http) bash tests/remote/run.sh

check: all unit it hostile-test systemd-test remote-test

# Sanitizer reports go to files, because a background daemon has no stderr;
# any report fails the target.  The test that boots a real systemd is left
# out: the unit's system call filter forbids the ptrace LeakSanitizer needs.
ASAN_REPORTS := $(abspath build-asan/reports)
asan:
	rm -rf $(ASAN_REPORTS) && mkdir -p $(ASAN_REPORTS)
	LFS_SD_BOOT=0 ASAN_OPTIONS=log_path=$(ASAN_REPORTS)/asan:detect_leaks=1 \
	UBSAN_OPTIONS=log_path=$(ASAN_REPORTS)/ubsan:print_stacktrace=1:halt_on_error=1 \
	$(MAKE) BUILD=build-asan OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
		LDFLAGS="-fsanitize=address,undefined" check
	@if ls $(ASAN_REPORTS)/* >/dev/null 2>&1; then cat $(ASAN_REPORTS)/*; echo "asan: sanitizer reports above"; exit 1; fi
	@echo "asan: no sanitizer reports"

# The cache and the read path are where threads meet (claims, parked
# streams, read-ahead jobs); their unit tests run many threads at once, as
# does the remote source's test (single-flight chunks, the connection pool).
tsan:
	TSAN_OPTIONS=halt_on_error=1 $(MAKE) BUILD=build-tsan OPT="-O1 -g -fsanitize=thread" \
		LDFLAGS="-fsanitize=thread" unit remote-test
	@echo "tsan: no data races reported"

$(BUILD)/tests/inflate_speed: tests/bench/inflate_speed.c $(CORE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(CORE_OBJ) $(LDFLAGS) $(ALL_LDLIBS)

bench: $(BUILD)/layerfs $(BUILD)/tests/inflate_speed
	LAYERFS=$(abspath $(BUILD)/layerfs) bash tests/bench/run.sh

demo: $(BUILD)/layerfs
	LAYERFS=$(abspath $(BUILD)/layerfs) bash examples/demo.sh

# Also installs systemd/ (see systemd/README.md): the layerfs@.service
# template to UNITDIR, the mount.fuse.layerfs helper to SBINDIR, and
# example.conf/example.list to SYSCONFDIR/layerfs unless they exist there.
# uninstall removes those two only while they are unmodified.
install: $(BUILD)/layerfs
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(SBINDIR) $(DESTDIR)$(SYSCONFDIR)/layerfs
	install -m 755 $(BUILD)/layerfs $(DESTDIR)$(BINDIR)/layerfs
	install -m 644 docs/layerfs.1 $(DESTDIR)$(MANDIR)/man1/layerfs.1
	sed $(SYSTEMD_SED) systemd/layerfs@.service >$(DESTDIR)$(UNITDIR)/layerfs@.service
	chmod 644 $(DESTDIR)$(UNITDIR)/layerfs@.service
	sed $(SYSTEMD_SED) systemd/mount.fuse.layerfs >$(DESTDIR)$(SBINDIR)/mount.fuse.layerfs
	chmod 755 $(DESTDIR)$(SBINDIR)/mount.fuse.layerfs
	@set -e; for f in example.conf example.list; do \
		dst=$(DESTDIR)$(SYSCONFDIR)/layerfs/$$f; \
		if [ -e "$$dst" ]; then echo "keeping existing $$dst"; \
		else echo "installing $$dst"; sed $(SYSTEMD_SED) systemd/$$f >"$$dst"; chmod 644 "$$dst"; fi; \
	done

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/layerfs $(DESTDIR)$(MANDIR)/man1/layerfs.1 \
		$(DESTDIR)$(UNITDIR)/layerfs@.service $(DESTDIR)$(SBINDIR)/mount.fuse.layerfs
	@for f in example.conf example.list; do \
		dst=$(DESTDIR)$(SYSCONFDIR)/layerfs/$$f; \
		if sed $(SYSTEMD_SED) systemd/$$f | cmp -s - "$$dst"; then rm -f "$$dst"; \
		elif [ -e "$$dst" ]; then echo "keeping modified $$dst"; fi; \
	done
	@rmdir $(DESTDIR)$(SYSCONFDIR)/layerfs 2>/dev/null || :

clean:
	rm -rf build build-asan build-tsan build-fuzz
