# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# make              BPF objects, skeletons, libdirtytrace (.a, .so, .pc) and tools, into .output/
# make demo         a demo VM watched by dirtytop
# make check        install missing Debian packages, build, run every test (also under ASan/UBSan)
# make bench        benchmarks (capture throughput, guest overhead, list vs bitmap, checkpoints)
#                   BENCH_ARGS=--quick: every benchmark at a size that only checks it still works
# make vmlinux      regenerate vmlinux.h from this kernel's BTF
# make install      tools, library, headers, dirtytrace.pc, man pages, bash completion
#                   (PREFIX=/usr/local, DESTDIR for staging); make uninstall removes exactly those
# V=1               show full commands
OUTPUT ?= .output
CLANG ?= clang
BPFTOOL ?= bpftool
CC ?= gcc
SCDOC ?= scdoc
VERSION := 0.1.0
SOVERSION := 0

# make install: where each kind of file goes (DESTDIR is prepended to all, for staging)
PREFIX ?= /usr/local
SBINDIR ?= $(PREFIX)/sbin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
MANDIR ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
INSTALL ?= install
ARCH := $(shell uname -m | sed 's/x86_64/x86/;s/aarch64/arm64/;s/ppc64le/powerpc/;s/s390x/s390/')

WARN := -Wall -Wextra -Werror -Wno-unused-parameter
CFLAGS ?= -O2 -g
ALL_CFLAGS := -std=gnu11 $(CFLAGS) $(WARN) -fPIC -D_GNU_SOURCE -Iinclude -Ibpf -I$(OUTPUT)
ifeq ($(SANITIZE),1)
ALL_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDSAN := -fsanitize=address,undefined
endif
LIBS := $(shell pkg-config --libs libbpf 2>/dev/null || echo -lbpf) -lelf -lz -lm
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null || echo -lcheck -lsubunit -lm -lrt) -pthread

# BPF objects find asm/types.h through clang's own system include dirs (as libbpf-bootstrap does).
CLANG_BPF_SYS_INCLUDES := $(shell $(CLANG) -v -E - </dev/null 2>&1 \
	| sed -n '/<...> search starts here:/,/End of search list./{ s| \(/.*\)|-idirafter \1|p }')
BPF_CFLAGS := -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_$(ARCH) -Wall -Werror -I. -Ibpf \
	$(CLANG_BPF_SYS_INCLUDES)

ifeq ($(V),1)
Q :=
msg :=
else
Q := @
msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

BPF_PROGS := capture discover
SKELS := $(patsubst %,$(OUTPUT)/%.skel.h,$(BPF_PROGS))
LIB_SRCS := $(wildcard src/*.c)
LIB_OBJS := $(patsubst src/%.c,$(OUTPUT)/lib/%.o,$(LIB_SRCS))
LIB_A := $(OUTPUT)/libdirtytrace.a
LIB_SO := $(OUTPUT)/libdirtytrace.so
LIB_SO_REAL := $(OUTPUT)/libdirtytrace.so.$(VERSION)
PC := $(OUTPUT)/dirtytrace.pc
HEADERS := $(wildcard include/dirtytrace/*.h)
TOOLS := dirtytrace dirtytop dirtydemo dtcheckpoint dirtyplan
# Built, not installed: an example to copy (tools/dtstream-client.c).
EXAMPLES := dtstream-client
TOOL_BINS := $(patsubst %,$(OUTPUT)/bin/%,$(TOOLS))
# Man pages: scdoc sources (tools/man/NAME.SECTION.scd), roff generated at build time.
MAN_NAMES := $(patsubst tools/man/%.scd,%,$(wildcard tools/man/*.scd))
MAN_PAGES := $(patsubst %,$(OUTPUT)/man/%,$(MAN_NAMES))

# Tests: Check suites, each one binary, tagged by what they need (see tests/run-tests).
TEST_NAMES := check_gfnset check_window check_plan check_top check_trace check_install check_discover check_bpf check_exact check_tools check_dirtytop check_checkpoint check_trigger check_qemu check_exporter check_plan_tool check_migrate
TEST_BINS := $(patsubst %,$(OUTPUT)/tests/%,$(TEST_NAMES))
TEST_COMMON := $(OUTPUT)/tests/testlib.o $(OUTPUT)/tests/vmm.o
# Benchmarks in C (tests/bench/*.c): built with the tests, run by tests/bench/run (make bench,
# and with --quick by make check).
BENCH_BINS := $(OUTPUT)/tests/bench/list-vs-bitmap $(OUTPUT)/tests/bench/guest \
	$(OUTPUT)/tests/bench/capture-throughput

.DELETE_ON_ERROR:
.SECONDARY:
.PHONY: all lib tools man tests check check-build check-sanitize deps vmlinux clean bench demo fuzz \
	install uninstall

all: lib tools man

lib: $(LIB_A) $(LIB_SO_REAL) $(LIB_SO) $(PC)
tools: $(TOOL_BINS) $(patsubst %,$(OUTPUT)/bin/%,$(EXAMPLES))
man: $(MAN_PAGES)
tests: $(TEST_BINS) $(OUTPUT)/tests/vmm_selftest $(OUTPUT)/tests/qemu-guest.elf \
       $(OUTPUT)/tests/migrate-guest.elf $(OUTPUT)/tests/fuzz_trace $(BENCH_BINS)

$(OUTPUT) $(OUTPUT)/lib $(OUTPUT)/bin $(OUTPUT)/tests $(OUTPUT)/man $(OUTPUT)/tests/bench:
	$(Q)mkdir -p $@

$(OUTPUT)/%.bpf.o: bpf/%.bpf.c bpf/capture.h vmlinux.h | $(OUTPUT)
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@.tmp
	$(Q)$(BPFTOOL) gen object $@ $@.tmp
	$(Q)rm -f $@.tmp

$(OUTPUT)/%.skel.h: $(OUTPUT)/%.bpf.o
	$(call msg,GEN-SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name $* > $@

$(OUTPUT)/lib/%.o: src/%.c $(wildcard src/*.h) $(wildcard include/dirtytrace/*.h) bpf/capture.h \
		   $(SKELS) | $(OUTPUT)/lib
	$(call msg,CC,$@)
	$(Q)$(CC) $(ALL_CFLAGS) -fvisibility=hidden -c $< -o $@

$(LIB_A): $(LIB_OBJS)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

# libdirtytrace.so.0.1.0 with soname libdirtytrace.so.0; .so.0 and .so are links, as installed.
# (The links are made with the library: .SECONDARY would leave an older tree's plain .so.)
$(LIB_SO_REAL): $(LIB_OBJS)
	$(call msg,LD,$@)
	$(Q)$(CC) -shared -Wl,-soname,libdirtytrace.so.$(SOVERSION) $(LDSAN) -o $@ $^ $(LIBS)
	$(Q)ln -sf $(notdir $@) $(OUTPUT)/libdirtytrace.so.$(SOVERSION)
	$(Q)ln -sf libdirtytrace.so.$(SOVERSION) $(LIB_SO)

$(LIB_SO): $(LIB_SO_REAL)
	$(Q)ln -sf $(notdir $<) $(OUTPUT)/libdirtytrace.so.$(SOVERSION)
	$(Q)ln -sf libdirtytrace.so.$(SOVERSION) $@

# pkg-config file for a prefix, libdir and includedir ($(call pc_text,PREFIX,LIBDIR,INCLUDEDIR));
# make install writes it again for the directories it installs into.
pc_text = printf '%s\n' 'prefix=$(1)' 'libdir=$(patsubst $(1)/%,$${prefix}/%,$(2))' \
	'includedir=$(patsubst $(1)/%,$${prefix}/%,$(3))' '' \
	'Name: dirtytrace' 'Description: which guest pages KVM VMs dirty, from eBPF' \
	'Version: $(VERSION)' 'Requires.private: libbpf' 'Libs: -L$${libdir} -ldirtytrace' \
	'Libs.private: -lelf -lz -lm' 'Cflags: -I$${includedir}'

$(PC): Makefile | $(OUTPUT)
	$(call msg,GEN,$@)
	$(Q)$(call pc_text,$(PREFIX),$(LIBDIR),$(INCLUDEDIR)) > $@

# scdoc: a small, maintained man-page source format; pages are dated by their last commit.
$(OUTPUT)/man/%: tools/man/%.scd | $(OUTPUT)/man
	$(call msg,MAN,$@)
	$(Q)command -v $(SCDOC) >/dev/null || \
		{ echo "make: $(SCDOC) not found (man pages): apt-get install scdoc" >&2; exit 1; }
	$(Q)d=$$(git log -1 --format=%ct -- $< 2>/dev/null); \
		sed 's/@VERSION@/$(VERSION)/g' $< | SOURCE_DATE_EPOCH=$${d:-$$(date +%s)} $(SCDOC) > $@

$(OUTPUT)/bin/%: tools/%.c tools/common.h $(LIB_A) $(wildcard include/dirtytrace/*.h) | $(OUTPUT)/bin
	$(call msg,BINARY,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $< $(TOOL_SRCS) -o $@ $(LIB_A) $(LIBS) $(TOOL_LIBS) $(LDSAN)

# The demo VM runs on the project's test VMM.
$(OUTPUT)/bin/dirtydemo: tools/dirtydemo.c tests/vmm.c tests/vmm.h | $(OUTPUT)/bin
	$(call msg,BINARY,$@)
	$(Q)$(CC) $(ALL_CFLAGS) -Itests tools/dirtydemo.c tests/vmm.c -o $@ -pthread $(LDSAN)

# The stream client example needs only libc and zlib (the trace format's crc32): copy it anywhere.
$(OUTPUT)/bin/dtstream-client: tools/dtstream-client.c | $(OUTPUT)/bin
	$(call msg,BINARY,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $< -o $@ -lz $(LDSAN)

# dirtytrace's exporter command lives in its own file, with its HTTP thread.
$(OUTPUT)/bin/dirtytrace: tools/exporter.c tools/exporter.h
$(OUTPUT)/bin/dirtytrace: TOOL_SRCS = tools/exporter.c
$(OUTPUT)/bin/dirtytrace: TOOL_LIBS = -pthread

# ncurses draws dirtytop's screen: terminal handling, resize and restore are its job, not ours.
$(OUTPUT)/bin/dirtytop: TOOL_LIBS = $(shell pkg-config --libs ncursesw 2>/dev/null || echo -lncursesw)

$(OUTPUT)/tests/%.o: tests/%.c $(wildcard tests/*.h) $(wildcard include/dirtytrace/*.h) \
		     bpf/capture.h $(SKELS) | $(OUTPUT)/tests
	$(call msg,CC,$@)
	$(Q)$(CC) $(ALL_CFLAGS) -Itests -c $< -o $@

$(OUTPUT)/tests/check_%: $(OUTPUT)/tests/check_%.o $(TEST_COMMON) $(LIB_A)
	$(call msg,BINARY,$@)
	$(Q)$(CC) $^ -o $@ $(LIB_A) $(LIBS) $(CHECK_LIBS) $(LDSAN)

# The packaging test is a script (make install, pkg-config, man, bash completion).
$(OUTPUT)/tests/check_install: tests/check_install.sh | $(OUTPUT)/tests
	$(call msg,SCRIPT,$@)
	$(Q)$(INSTALL) -m 0755 $< $@

# The exporter's test drives its own functions (exposition text, HTTP routing, address parsing).
$(OUTPUT)/tests/check_exporter.o: tools/exporter.c tools/exporter.h tools/common.h

# The checkpointer's test drives the example's own functions.
$(OUTPUT)/tests/check_checkpoint.o: tools/dtcheckpoint.c tools/common.h

# The QEMU test's guest: a multiboot ELF of our own (-n: one LOAD segment at 1 MiB).
$(OUTPUT)/tests/qemu-guest.elf: tests/qemu-guest.S | $(OUTPUT)/tests
	$(call msg,GUEST,$@)
	$(Q)$(CC) -m32 -c $< -o $(OUTPUT)/tests/qemu-guest.o
	$(Q)ld -m elf_i386 -n -Ttext=0x100000 -nostdlib $(OUTPUT)/tests/qemu-guest.o -o $@

# check_migrate's guest: pages and rate from QEMU's -append (tests/migrate-guest.S).
$(OUTPUT)/tests/migrate-guest.elf: tests/migrate-guest.S | $(OUTPUT)/tests
	$(call msg,GUEST,$@)
	$(Q)$(CC) -m32 -c $< -o $(OUTPUT)/tests/migrate-guest.o
	$(Q)ld -m elf_i386 -n -Ttext=0x100000 -nostdlib $(OUTPUT)/tests/migrate-guest.o -o $@

$(OUTPUT)/tests/vmm_selftest: $(OUTPUT)/tests/vmm_selftest.o $(OUTPUT)/tests/vmm.o
	$(call msg,BINARY,$@)
	$(Q)$(CC) $^ -o $@ -pthread $(LDSAN)

# list vs bitmap reads the tracer's maps through the library's internal header (src/tracer.h).
$(OUTPUT)/tests/bench/list-vs-bitmap: tests/bench/list-vs-bitmap.c $(OUTPUT)/tests/vmm.o $(LIB_A) \
				      tests/vmm.h src/tracer.h src/internal.h | $(OUTPUT)/tests/bench
	$(call msg,BINARY,$@)
	$(Q)$(CC) $(ALL_CFLAGS) -Itests -Isrc $< $(OUTPUT)/tests/vmm.o -o $@ $(LIB_A) $(LIBS) \
		-pthread $(LDSAN)

# Capture throughput: drives the capture program through the library's internal synthetic open
# (src/internal.h) and compares it with a bare ring buffer (bpf/rbbench.bpf.c).
$(OUTPUT)/tests/bench/capture-throughput: tests/bench/capture-throughput.c $(OUTPUT)/rbbench.skel.h \
				    $(OUTPUT)/tests/vmm.o $(LIB_A) src/internal.h | $(OUTPUT)/tests/bench
	$(call msg,BINARY,$@)
	$(Q)$(CC) $(ALL_CFLAGS) -Isrc -Itests $< $(OUTPUT)/tests/vmm.o -o $@ $(LIB_A) $(LIBS) \
		-pthread $(LDSAN)

# The trace reader under libFuzzer (clang), built from the sources so they are instrumented.
FUZZ_SRCS := tests/fuzz_trace.c src/trace.c src/util.c
$(OUTPUT)/tests/fuzz_trace: $(FUZZ_SRCS) src/internal.h include/dirtytrace/dirtytrace.h | $(OUTPUT)/tests
	$(call msg,FUZZ,$@)
	$(Q)$(CLANG) -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iinclude -Ibpf \
		$(FUZZ_SRCS) -o $@ $(LIBS)

# make fuzz: longer than make check's bounded run (FUZZ_SECONDS, default 300)
FUZZ_SECONDS ?= 300
fuzz: $(OUTPUT)/tests/fuzz_trace
	$(Q)mkdir -p $(OUTPUT)/fuzz-corpus && cp tests/corpus/trace/* $(OUTPUT)/fuzz-corpus/
	$(Q)$< -max_total_time=$(FUZZ_SECONDS) $(OUTPUT)/fuzz-corpus

# The test command: one summary line "N passed, N failed, N skipped" over both builds.
check: deps
	$(Q)$(MAKE) --no-print-directory all tests
	$(Q)$(MAKE) --no-print-directory OUTPUT=.output-san SANITIZE=1 all tests
	$(Q)tests/run-tests .output .output-san

check-sanitize: deps
	$(Q)$(MAKE) --no-print-directory OUTPUT=.output-san SANITIZE=1 all tests
	$(Q)tests/run-tests .output-san

# The main job on a built-in default: a demo VM watched by dirtytop (q quits both).
demo: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)tools/demo

# Benchmarks that run a guest of the test VMM (tests/bench/run drives them).
$(OUTPUT)/tests/bench/guest: tests/bench/guest.c $(OUTPUT)/tests/vmm.o $(LIB_A) | $(OUTPUT)/tests/bench
	$(call msg,BINARY,$@)
	$(Q)$(CC) $(ALL_CFLAGS) -Itests $< $(OUTPUT)/tests/vmm.o -o $@ $(LIB_A) $(LIBS) -pthread $(LDSAN)

# Speed and memory, measured side by side in one run (never by timed unit tests).
bench: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)$(MAKE) --no-print-directory tests
	$(Q)tests/bench/run $(BENCH_ARGS) $(OUTPUT)

deps:
	$(Q)tools/install-deps

# Installed files, relative to DESTDIR: uninstall removes exactly these.
INSTALLED := $(addprefix $(SBINDIR)/,$(TOOLS)) \
	$(addprefix $(LIBDIR)/libdirtytrace.,a so so.$(SOVERSION) so.$(VERSION)) \
	$(addprefix $(INCLUDEDIR)/dirtytrace/,$(notdir $(HEADERS))) $(PKGCONFIGDIR)/dirtytrace.pc \
	$(foreach m,$(MAN_NAMES),$(MANDIR)/man$(subst .,,$(suffix $(m)))/$(m)) \
	$(addprefix $(BASHCOMPDIR)/,$(TOOLS)) $(SYSTEMDUNITDIR)/dirtytrace-exporter.service

install: all
	$(call msg,INSTALL,$(DESTDIR)$(PREFIX))
	$(Q)$(INSTALL) -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR) \
		$(DESTDIR)$(INCLUDEDIR)/dirtytrace $(DESTDIR)$(BASHCOMPDIR)
	$(Q)$(INSTALL) -m 0755 $(TOOL_BINS) $(DESTDIR)$(SBINDIR)/
	$(Q)$(INSTALL) -m 0644 $(LIB_A) $(DESTDIR)$(LIBDIR)/
	$(Q)$(INSTALL) -m 0755 $(LIB_SO_REAL) $(DESTDIR)$(LIBDIR)/
	$(Q)ln -sf libdirtytrace.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libdirtytrace.so.$(SOVERSION)
	$(Q)ln -sf libdirtytrace.so.$(SOVERSION) $(DESTDIR)$(LIBDIR)/libdirtytrace.so
	$(Q)$(INSTALL) -m 0644 $(HEADERS) $(DESTDIR)$(INCLUDEDIR)/dirtytrace/
	$(Q)$(call pc_text,$(PREFIX),$(LIBDIR),$(INCLUDEDIR)) > $(DESTDIR)$(PKGCONFIGDIR)/dirtytrace.pc
	$(Q)for m in $(MAN_NAMES); do \
		$(INSTALL) -D -m 0644 $(OUTPUT)/man/$$m $(DESTDIR)$(MANDIR)/man$${m##*.}/$$m || exit; \
	done
	$(Q)$(INSTALL) -m 0644 tools/completion/dirtytrace.bash $(DESTDIR)$(BASHCOMPDIR)/dirtytrace
	$(Q)for t in $(filter-out dirtytrace,$(TOOLS)); do \
		ln -sf dirtytrace $(DESTDIR)$(BASHCOMPDIR)/$$t || exit; \
	done
	$(Q)$(INSTALL) -d $(DESTDIR)$(SYSTEMDUNITDIR)
	$(Q)sed 's|@SBINDIR@|$(SBINDIR)|g' tools/dirtytrace-exporter.service \
		> $(DESTDIR)$(SYSTEMDUNITDIR)/dirtytrace-exporter.service
	$(Q)chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/dirtytrace-exporter.service
	$(Q)if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then ldconfig; fi

uninstall:
	$(call msg,UNINSTALL,$(DESTDIR)$(PREFIX))
	$(Q)rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	$(Q)rmdir $(DESTDIR)$(INCLUDEDIR)/dirtytrace 2>/dev/null || true

vmlinux:
	$(call msg,GEN,vmlinux.h)
	$(Q)$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > vmlinux.h

clean:
	$(call msg,CLEAN,)
	$(Q)rm -rf .output .output-san
