# mpitrain — build, test, bench, install.
#   make            build build/mpitrain and build/mpitrain-bench (CPU backend)
#   make test       install deps if missing, build, run unit, MPI and end-to-end tests
#   make train      install deps, build, import Fashion-MNIST, train the default job
#   make bench      benchmarks -> results/
#   make docs       regenerate docs/config.md from the config table (build/mpitrain)
#   make install PREFIX=/usr/local
#   make test-san   unit, MPI and end-to-end tests built with ASan+UBSan (build-san/)
#   make fuzz       libFuzzer harnesses (tests/fuzz, clang) for FUZZ_SECONDS each (build-fuzz/)
#   SAN=address,undefined   sanitizer build into build-san/ (used by `make test-san`)
SHELL := /bin/bash
PREFIX ?= /usr/local
BUILD  ?= build
PYTHON ?= /usr/bin/python3
CC     ?= gcc
ifeq ($(origin CC),default)
CC     := gcc
endif
PKG_CONFIG ?= pkg-config
VERSION := $(shell cat VERSION)
PKGS   := hdf5-openmpi ompi-c inih libxxhash
BENCH_PKGS := openblas
TEST_PKGS := cmocka
ALL_PKGS := $(PKGS) $(BENCH_PKGS) $(TEST_PKGS)

# Without the dependencies nothing compiles: say which pkg-config modules are missing and
# how to install them, before any compiler runs.  `make deps`, `make test`, `make train`
# and `make bench` install them first (scripts/install-deps.sh); `make clean` needs none.
NEED_PKGS := $(filter-out deps clean docs-check,$(or $(MAKECMDGOALS),all))
ifneq ($(NEED_PKGS),)
ifeq ($(filter deps test train bench,$(MAKECMDGOALS)),)
MISSING_PKGS := $(shell for p in $(ALL_PKGS); do $(PKG_CONFIG) --exists $$p 2>/dev/null || echo $$p; done)
ifneq ($(strip $(MISSING_PKGS)),)
$(error missing pkg-config modules: $(strip $(MISSING_PKGS)). Install the dependencies with `make deps` (Debian 12: scripts/install-deps.sh runs apt-get), or run `make train` / `make test`, which install them first)
endif
$(info mpitrain $(VERSION): $(foreach p,$(ALL_PKGS),$(p)-$(shell $(PKG_CONFIG) --modversion $(p))))
endif
endif

WERROR := $(if $(CI),-Werror,)
CFLAGS ?= -O2 -g
CFLAGS += -std=c11 -ffp-contract=off -D_GNU_SOURCE -Wall -Wextra $(WERROR) -pthread -MMD -MP -Isrc
CFLAGS += -DMPITRAIN_VERSION='"$(VERSION)"'
CFLAGS += $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
LDLIBS := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null) -lz -lm -pthread
BENCH_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(BENCH_PKGS) 2>/dev/null)
BENCH_LDLIBS := $(shell $(PKG_CONFIG) --libs $(BENCH_PKGS) 2>/dev/null)
TEST_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(TEST_PKGS) 2>/dev/null)
TEST_LDLIBS := $(shell $(PKG_CONFIG) --libs $(TEST_PKGS) 2>/dev/null)
ifdef SAN
CFLAGS  += -fsanitize=$(SAN) -fno-sanitize-recover=all -fno-omit-frame-pointer
LDFLAGS += -fsanitize=$(SAN)
BUILD   := build-san
endif
# FUZZ=1: the library and tests/fuzz compiled by clang with libFuzzer's coverage
# instrumentation, ASan and UBSan, into build-fuzz/ (only the harnesses are linked there)
FUZZ_CC ?= $(or $(shell command -v clang 2>/dev/null),$(shell command -v clang-14 2>/dev/null),clang)
FUZZ_SECONDS ?= 60
ifdef FUZZ
CC      := $(FUZZ_CC)
CFLAGS  := $(filter-out -O2,$(CFLAGS)) -O1
CFLAGS  += -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined \
           -fno-omit-frame-pointer
BUILD   := build-fuzz
endif

LIB_SRC  := $(sort $(wildcard src/core/*.c src/parallel/*.c src/io/*.c src/train/*.c))
ifdef FUZZ
LIB_SRC  := $(sort $(wildcard src/core/*.c src/io/*.c)) # what the harnesses call (no MPI)
# The GEMM kernels parse nothing, and clang needs over 10 minutes for gemm.c's intrinsics
# under ASan+UBSan (under a second without): they get coverage instrumentation only.
$(BUILD)/src/core/gemm.o: CFLAGS := $(filter-out -fsanitize=% -fno-sanitize-recover=%,$(CFLAGS)) -fsanitize=fuzzer-no-link
endif
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
LIB      := $(BUILD)/libmpitrain.a
# the product: the command line (src/main.c, src/cli) over the library
CLI_OBJ  := $(patsubst %.c,$(BUILD)/%.o,$(sort $(wildcard src/cli/*.c)))
CLI_LIB  := $(BUILD)/libmpitrain-cli.a
BIN      := $(BUILD)/mpitrain
# the benchmarks (src/bench): a second binary, the only one linked with OpenBLAS (the
# GEMM reference); `mpitrain bench ...` runs it from beside the mpitrain binary
BENCH_OBJ := $(sort $(wildcard src/bench/*.c))
BENCH_OBJ := $(BENCH_OBJ:%.c=$(BUILD)/%.o)
BENCH_BIN := $(BUILD)/mpitrain-bench
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:%.c=$(BUILD)/%)
MPI_SRC  := $(sort $(wildcard tests/mpi/test_*.c))
MPI_BIN  := $(MPI_SRC:%.c=$(BUILD)/%)
TESTLIB_SRC := $(sort $(wildcard tests/common/*.c))
TESTLIB_OBJ := $(TESTLIB_SRC:%.c=$(BUILD)/%.o)
# the fuzz harnesses: tests/fuzz/fuzz_NAME.c -> build-fuzz/tests/fuzz/fuzz_NAME
FUZZ_NAMES := $(filter-out util,$(patsubst tests/fuzz/fuzz_%.c,%,$(sort $(wildcard tests/fuzz/fuzz_*.c))))
FUZZ_BIN := $(FUZZ_NAMES:%=$(BUILD)/tests/fuzz/fuzz_%)

.PHONY: all deps test test-unit test-mpi test-e2e test-san train bench install clean tests docs \
        fuzz fuzz-build fuzz-seeds
all: $(BIN) $(BENCH_BIN)

deps:
	@bash scripts/install-deps.sh

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/tests/%.o: tests/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(TEST_CFLAGS) -Itests -c $< -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/src/bench/%.o: src/bench/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(BENCH_CFLAGS) -c $< -o $@

$(CLI_LIB): $(CLI_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN): $(BUILD)/src/main.o $(CLI_LIB) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BENCH_BIN): $(BENCH_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(BENCH_LDLIBS) $(LDLIBS)

$(BUILD)/tests/unit/%: $(BUILD)/tests/unit/%.o $(TESTLIB_OBJ) $(CLI_LIB) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(TEST_LDLIBS) $(LDLIBS)

$(BUILD)/tests/mpi/%: $(BUILD)/tests/mpi/%.o $(TESTLIB_OBJ) $(CLI_LIB) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(TEST_LDLIBS) $(LDLIBS)

$(BUILD)/tests/fuzz/fuzz_%: $(BUILD)/tests/fuzz/fuzz_%.o $(BUILD)/tests/fuzz/fuzz_util.o $(LIB)
	$(CC) $(LDFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $^ $(LDLIBS)

$(BUILD)/tests/fuzz/gen_seeds: $(BUILD)/tests/fuzz/gen_seeds.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
.SECONDARY: $(FUZZ_BIN:%=%.o) $(BUILD)/tests/fuzz/fuzz_util.o $(BUILD)/tests/fuzz/gen_seeds.o

tests: $(BIN) $(BENCH_BIN) $(UNIT_BIN) $(MPI_BIN)

# The README's test command.  Runs everything; the last line is "N passed, N failed".
test: deps
	@$(MAKE) --no-print-directory tests
	@BUILD=$(BUILD) PYTHON=$(PYTHON) bash tests/run.sh

test-unit: tests
	@BUILD=$(BUILD) PYTHON=$(PYTHON) bash tests/run.sh unit
test-mpi: tests
	@BUILD=$(BUILD) PYTHON=$(PYTHON) bash tests/run.sh mpi
test-e2e: tests
	@BUILD=$(BUILD) PYTHON=$(PYTHON) bash tests/run.sh e2e
# Every suite under AddressSanitizer + UndefinedBehaviorSanitizer (gcc, build-san/; not
# part of `make test`: it takes much longer; SUITES="unit mpi" picks some).  Any report
# fails the test: UBSan does not recover, leaks are detected in every process (Open MPI's
# and HDF5's own are suppressed by tests/san/lsan.supp, whose stacks need the slow
# unwinder).
SAN_ENV := ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0:abort_on_error=0 \
           LSAN_OPTIONS=suppressions=$(CURDIR)/tests/san/lsan.supp:print_suppressions=0 \
           UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
test-san:
	@$(MAKE) --no-print-directory SAN=address,undefined tests
	@BUILD=build-san PYTHON=$(PYTHON) $(SAN_ENV) bash tests/run.sh $(SUITES)

# Fuzzing (docs/fuzzing.md): build the harnesses with clang into build-fuzz/, then
# run each for FUZZ_SECONDS (FUZZ_TARGETS="config ckpt" picks some) from its corpus.
# tests/e2e/test_fuzz_smoke.sh (in `make test`) is the short version.
fuzz-build: $(FUZZ_BIN)
fuzz:
	@command -v $(FUZZ_CC) >/dev/null || { echo "make fuzz: $(FUZZ_CC) not found; install clang-14 and libclang-rt-14-dev (make deps)" >&2; exit 1; }
	@$(MAKE) --no-print-directory FUZZ=1 fuzz-build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) bash tests/fuzz/run.sh $(FUZZ_TARGETS)
# Regenerate the seed corpora with the project's writers and h5py (tests/fuzz/gen_seeds.c)
fuzz-seeds: $(BUILD)/tests/fuzz/gen_seeds
	$(BUILD)/tests/fuzz/gen_seeds tests/fuzz
	$(PYTHON) tests/fuzz/gen_seeds_h5py.py tests/fuzz

# The README's run command: the default job on Fashion-MNIST.
train: deps
	@$(MAKE) --no-print-directory all
	@bash scripts/train-default.sh

bench: deps
	@$(MAKE) --no-print-directory all
	@PYTHON=$(PYTHON) bash scripts/bench.sh

# docs/config.md is the program's own key table (tests/e2e/test_docs.sh checks it is current).
docs: $(BIN)
	$(BIN) help config --markdown > docs/config.md.tmp && mv docs/config.md.tmp docs/config.md

install: $(BIN) $(BENCH_BIN)
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/mpitrain
	install -m 755 $(BENCH_BIN) $(DESTDIR)$(PREFIX)/bin/mpitrain-bench
	install -m 755 scripts/mpitrain-restart $(DESTDIR)$(PREFIX)/bin/mpitrain-restart

clean:
	rm -rf build build-*

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
