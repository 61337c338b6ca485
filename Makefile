# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# make              BPF objects, skeletons, libdirtytrace (.a, .so, .pc) and tools, into .output/
# make demo         a demo VM watched by dirtytop
# make check        install missing Debian packages, build, run every test (also under ASan/UBSan)
# make bench        benchmarks (capture throughput, dirtytop's CPU, capture cost per event)
# make vmlinux      regenerate vmlinux.h from this kernel's BTF
# V=1               show full commands
OUTPUT ?= .output
CLANG ?= clang
BPFTOOL ?= bpftool
CC ?= gcc
PREFIX ?= /usr/local
VERSION := 0.1.0
ARCH := $(shell uname -m | sed 's/x86_64/x86/;s/aarch64/arm64/;s/ppc64le/powerpc/;s/s390x/s390/')

WARN := -Wall -Wextra -Werror -Wno-unused-parameter
CFLAGS ?= -O2 -g
ALL_CFLAGS := -std=gnu11 $(CFLAGS) $(WARN) -fPIC -D_GNU_SOURCE -Iinclude -Ibpf -I$(OUTPUT)
ifeq ($(SANITIZE),1)
ALL_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDSAN := -fsanitize=address,undefined
endif
LIBS := $(shell pkg-config --libs libbpf 2>/dev/null || echo -lbpf) -lelf -lz
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
PC := $(OUTPUT)/dirtytrace.pc
TOOLS := dirtytrace dirtytop dirtydemo dtcheckpoint
TOOL_BINS := $(patsubst %,$(OUTPUT)/bin/%,$(TOOLS))

# Tests: Check suites, each one binary, tagged by what they need (see tests/run-tests).
TEST_NAMES := check_gfnset check_window check_top check_trace check_discover check_bpf check_exact check_tools check_dirtytop check_checkpoint check_trigger check_qemu
TEST_BINS := $(patsubst %,$(OUTPUT)/tests/%,$(TEST_NAMES))
TEST_COMMON := $(OUTPUT)/tests/testlib.o $(OUTPUT)/tests/vmm.o
# Benchmarks built from C (tests/bench/*.c); run by make bench, and with --quick by run-tests.
BENCH_BINS := $(OUTPUT)/bench/capture-throughput

.DELETE_ON_ERROR:
.SECONDARY:
.PHONY: all lib tools tests check check-build check-sanitize deps vmlinux clean bench demo fuzz

all: lib tools

lib: $(LIB_A) $(LIB_SO) $(PC)
tools: $(TOOL_BINS)
tests: $(TEST_BINS) $(OUTPUT)/tests/vmm_selftest $(OUTPUT)/tests/qemu-guest.elf \
       $(OUTPUT)/tests/fuzz_trace $(BENCH_BINS)

$(OUTPUT) $(OUTPUT)/lib $(OUTPUT)/bin $(OUTPUT)/tests $(OUTPUT)/bench:
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

$(LIB_SO): $(LIB_OBJS)
	$(call msg,LD,$@)
	$(Q)$(CC) -shared -Wl,-soname,libdirtytrace.so.0 $(LDSAN) -o $@ $^ $(LIBS)

$(PC): Makefile | $(OUTPUT)
	$(call msg,GEN,$@)
	$(Q)printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$${prefix}/lib' 'includedir=$${prefix}/include' '' \
		'Name: dirtytrace' 'Description: which guest pages KVM VMs dirty, from eBPF' \
		'Version: $(VERSION)' 'Requires.private: libbpf' 'Libs: -L$${libdir} -ldirtytrace' \
		'Libs.private: -lelf -lz' 'Cflags: -I$${includedir}' > $@

$(OUTPUT)/bin/%: tools/%.c tools/common.h $(LIB_A) $(wildcard include/dirtytrace/*.h) | $(OUTPUT)/bin
	$(call msg,BINARY,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $< -o $@ $(LIB_A) $(LIBS) $(TOOL_LIBS) $(LDSAN)

# The demo VM runs on the project's test VMM.
$(OUTPUT)/bin/dirtydemo: tools/dirtydemo.c tests/vmm.c tests/vmm.h | $(OUTPUT)/bin
	$(call msg,BINARY,$@)
	$(Q)$(CC) $(ALL_CFLAGS) -Itests tools/dirtydemo.c tests/vmm.c -o $@ -pthread $(LDSAN)

# ncurses draws dirtytop's screen: terminal handling, resize and restore are its job, not ours.
$(OUTPUT)/bin/dirtytop: TOOL_LIBS = $(shell pkg-config --libs ncursesw 2>/dev/null || echo -lncursesw)

$(OUTPUT)/tests/%.o: tests/%.c $(wildcard tests/*.h) $(wildcard include/dirtytrace/*.h) \
		     bpf/capture.h $(SKELS) | $(OUTPUT)/tests
	$(call msg,CC,$@)
	$(Q)$(CC) $(ALL_CFLAGS) -Itests -c $< -o $@

$(OUTPUT)/tests/check_%: $(OUTPUT)/tests/check_%.o $(TEST_COMMON) $(LIB_A)
	$(call msg,BINARY,$@)
	$(Q)$(CC) $^ -o $@ $(LIB_A) $(LIBS) $(CHECK_LIBS) $(LDSAN)

# The checkpointer's test drives the example's own functions.
$(OUTPUT)/tests/check_checkpoint.o: tools/dtcheckpoint.c tools/common.h

# The QEMU test's guest: a multiboot ELF of our own (-n: one LOAD segment at 1 MiB).
$(OUTPUT)/tests/qemu-guest.elf: tests/qemu-guest.S | $(OUTPUT)/tests
	$(call msg,GUEST,$@)
	$(Q)$(CC) -m32 -c $< -o $(OUTPUT)/tests/qemu-guest.o
	$(Q)ld -m elf_i386 -n -Ttext=0x100000 -nostdlib $(OUTPUT)/tests/qemu-guest.o -o $@

$(OUTPUT)/tests/vmm_selftest: $(OUTPUT)/tests/vmm_selftest.o $(OUTPUT)/tests/vmm.o
	$(call msg,BINARY,$@)
	$(Q)$(CC) $^ -o $@ -pthread $(LDSAN)

# Capture throughput: drives the capture program through the library's internal synthetic open
# (src/internal.h) and compares it with a bare ring buffer (bpf/rbbench.bpf.c).
$(OUTPUT)/bench/capture-throughput: tests/bench/capture-throughput.c $(OUTPUT)/rbbench.skel.h \
				    $(OUTPUT)/tests/vmm.o $(LIB_A) src/internal.h | $(OUTPUT)/bench
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

# Speed and memory, measured side by side in one run (never by timed unit tests).
bench: deps
	$(Q)$(MAKE) --no-print-directory all $(BENCH_BINS)
	$(Q)$(OUTPUT)/bench/capture-throughput
	$(Q)tests/bench/dirtytop-cpu
	$(Q)tests/bench/checkpoint-cycles $(OUTPUT)

deps:
	$(Q)tools/install-deps

vmlinux:
	$(call msg,GEN,vmlinux.h)
	$(Q)$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > vmlinux.h

clean:
	$(call msg,CLEAN,)
	$(Q)rm -rf .output .output-san
