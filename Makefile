# mpitrain — build, test, bench, install.
#   make            build build/mpitrain and build/mpitrain-bench (CPU backend)
#   make test       install deps if missing, build, run unit, MPI and end-to-end tests
#   make train      install deps, build, import Fashion-MNIST, train the default job
#   make bench      benchmarks -> results/
#   make docs       regenerate docs/config.md from the config table (build/mpitrain)
#   make install PREFIX=/usr/local
#   SAN=address     sanitizer build (used by `make test-san`)
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
CFLAGS += -std=c11 -D_GNU_SOURCE -Wall -Wextra $(WERROR) -pthread -MMD -MP -Isrc
CFLAGS += -DMPITRAIN_VERSION='"$(VERSION)"'
CFLAGS += $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
LDLIBS := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null) -lz -lm -pthread
BENCH_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(BENCH_PKGS) 2>/dev/null)
BENCH_LDLIBS := $(shell $(PKG_CONFIG) --libs $(BENCH_PKGS) 2>/dev/null)
TEST_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(TEST_PKGS) 2>/dev/null)
TEST_LDLIBS := $(shell $(PKG_CONFIG) --libs $(TEST_PKGS) 2>/dev/null)
ifdef SAN
CFLAGS  += -fsanitize=$(SAN) -fno-omit-frame-pointer
LDFLAGS += -fsanitize=$(SAN)
BUILD   := build-$(SAN)
endif

LIB_SRC  := $(sort $(wildcard src/core/*.c src/parallel/*.c src/io/*.c src/train/*.c))
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

.PHONY: all deps test test-unit test-mpi test-e2e test-san train bench install clean tests docs
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
test-san:
	@$(MAKE) --no-print-directory SAN=address tests
	@BUILD=build-address PYTHON=$(PYTHON) ASAN_OPTIONS=detect_leaks=0 bash tests/run.sh unit

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
