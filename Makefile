# mpitrain — build, test, bench, install.
#   make            build build/mpitrain (CPU backend)
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
CC     := gcc
PKGS   := hdf5-openmpi ompi-c openblas inih libxxhash
TEST_PKGS := cmocka

ifeq ($(filter deps,$(MAKECMDGOALS)),)
HAVE_PKGS := $(shell pkg-config --exists $(PKGS) $(TEST_PKGS) 2>/dev/null && echo yes)
ifeq ($(HAVE_PKGS),yes)
$(info mpitrain: $(foreach p,$(PKGS) $(TEST_PKGS),$(p)-$(shell pkg-config --modversion $(p))))
endif
endif

WERROR := $(if $(CI),-Werror,)
CFLAGS ?= -O2 -g
CFLAGS += -std=c11 -D_GNU_SOURCE -Wall -Wextra $(WERROR) -pthread -MMD -MP -Isrc
CFLAGS += $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lz -lm -pthread
TEST_CFLAGS := $(shell pkg-config --cflags $(TEST_PKGS) 2>/dev/null)
TEST_LDLIBS := $(shell pkg-config --libs $(TEST_PKGS) 2>/dev/null)
ifdef SAN
CFLAGS  += -fsanitize=$(SAN) -fno-omit-frame-pointer
LDFLAGS += -fsanitize=$(SAN)
BUILD   := build-$(SAN)
endif

LIB_SRC  := $(sort $(wildcard src/core/*.c src/parallel/*.c src/io/*.c src/train/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
LIB      := $(BUILD)/libmpitrain.a
BIN      := $(BUILD)/mpitrain
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:%.c=$(BUILD)/%)
MPI_SRC  := $(sort $(wildcard tests/mpi/test_*.c))
MPI_BIN  := $(MPI_SRC:%.c=$(BUILD)/%)
TESTLIB_SRC := $(sort $(wildcard tests/common/*.c))
TESTLIB_OBJ := $(TESTLIB_SRC:%.c=$(BUILD)/%.o)

.PHONY: all deps test test-unit test-mpi test-e2e test-san train bench install clean tests docs
all: $(BIN)

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

$(BIN): $(BUILD)/src/main.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/unit/%: $(BUILD)/tests/unit/%.o $(TESTLIB_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(TEST_LDLIBS) $(LDLIBS)

$(BUILD)/tests/mpi/%: $(BUILD)/tests/mpi/%.o $(TESTLIB_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(TEST_LDLIBS) $(LDLIBS)

tests: $(BIN) $(UNIT_BIN) $(MPI_BIN)

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

install: $(BIN)
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/mpitrain
	install -m 755 scripts/mpitrain-restart $(DESTDIR)$(PREFIX)/bin/mpitrain-restart

clean:
	rm -rf build build-*

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
