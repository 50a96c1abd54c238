# veil build. `make` builds ./veil; `make test` runs the unit tests in the
# normal and the ASan/UBSan build; `make demo` runs the demo. Every top-level
# target runs the idempotent setup first (scripts/setup).

B       ?= build
CC      ?= cc
PKGS    := yaml-0.1 jansson openssl libnghttp2 libnftables
# libnftables is not linked: src/capture loads it only while it installs
# rules (dlopen), so the node proxy does not keep it mapped.
LINK_PKGS := yaml-0.1 jansson openssl libnghttp2
VERSION := $(shell cat VERSION)
OPT     ?= -O2

# Deferred (=) so pkg-config runs after setup has installed the packages.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   = $(shell pkg-config --libs $(LINK_PKGS))

CFLAGS_ALL = -std=c17 -Wall -Wextra -Werror -D_GNU_SOURCE -g $(OPT) -Isrc \
             -DVEIL_VERSION='"$(VERSION)"' $(SANFLAGS) $(PKG_CFLAGS) $(CFLAGS)
LDLIBS_ALL = $(PKG_LIBS) -lpthread -lm $(LDLIBS)

ifeq ($(SAN),1)
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
OPT      := -O1
endif
ifeq ($(FUZZ),1)
CC       := clang
SANFLAGS := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all
OPT      := -O1
endif

LIB_SRC   := $(filter-out src/cli/main.c,$(shell find src -name '*.c' | sort))
LIB_OBJ   := $(LIB_SRC:%.c=$(B)/%.o)
TEST_SRC  := $(shell find tests/unit -name '*_test.c' | sort)
TEST_BIN  := $(TEST_SRC:%.c=$(B)/%)
FUZZ_SRC  := $(shell find tests/fuzz -name '*_fuzz.c' | sort)
FUZZ_BIN  := $(FUZZ_SRC:tests/fuzz/%.c=$(B)/fuzz/%)
BENCH_SRC := $(shell find bench -name '*_bench.c' | sort)
BENCH_BIN := $(patsubst %.c,$(B)/bench/%,$(notdir $(BENCH_SRC)))
LINT_SRC  := $(shell find src tests bench -name '*.[ch]' | sort)

.PHONY: all setup veil-bin test unit-build asan fuzz fuzz-bins bench bench-bins bench-l4 lint format demo clean
.DEFAULT_GOAL := all

all: setup
	@$(MAKE) --no-print-directory veil-bin

setup:
	@scripts/setup

veil-bin: $(B)/veil
	@ln -sf $(B)/veil veil

$(B)/veil: $(B)/src/cli/main.o $(B)/libveil.a
	$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

$(B)/libveil.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(B)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c -o $@ $<

$(B)/tests/unit/%: tests/unit/%.c $(B)/libveil.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -MMD -MP -Itests -o $@ $< $(B)/libveil.a -lcmocka $(LDLIBS_ALL)

$(B)/fuzz/%: tests/fuzz/%.c $(B)/libveil.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -fsanitize=fuzzer -o $@ $< $(B)/libveil.a $(LDLIBS_ALL)

$(B)/bench/%_bench: $(B)/libveil.a $(B)/veil
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -o $@ $(filter %/$*_bench.c,$(BENCH_SRC)) $(B)/libveil.a $(LDLIBS_ALL)

unit-build: $(B)/veil $(TEST_BIN)

# The README's test command: both builds, one closing "N passed, N failed".
test: setup
	@$(MAKE) --no-print-directory unit-build B=build
	@$(MAKE) --no-print-directory unit-build B=build-asan SAN=1
	@tests/run build build-asan

asan: setup
	@$(MAKE) --no-print-directory unit-build B=build-asan SAN=1
	@tests/run build-asan

fuzz: setup
	@$(MAKE) --no-print-directory fuzz-bins B=build-fuzz FUZZ=1

fuzz-bins: $(FUZZ_BIN)

lint: setup
	clang-format --dry-run --Werror $(LINT_SRC)
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	    --inline-suppr --suppress=missingIncludeSystem -D_GNU_SOURCE -Isrc src tests bench

format:
	clang-format -i $(LINT_SRC)

# Benchmarks (docs/benchmarks.md): by hand, never in CI.
bench: setup
	@$(MAKE) --no-print-directory bench-bins
	$(B)/bench/control_bench --veil $(B)/veil

bench-bins: $(B)/veil $(BENCH_BIN)

# bench/l4 builds a local cluster (root): direct TCP, veil and stunnel.
bench-l4: setup
	@$(MAKE) --no-print-directory bench-bins
	bench/l4/run --veil $(B)/veil --rr $(B)/bench/rr_bench

# bench/l7 (root): direct, HAProxy, nginx and veil's waypoint, wrk and h2load.
.PHONY: bench-l7
bench-l7: setup
	@$(MAKE) --no-print-directory $(B)/veil
	bench/l7/run --veil $(B)/veil

demo: all
	./veil demo

clean:
	rm -rf build build-asan build-fuzz veil

-include $(shell find $(B) -name '*.d' 2>/dev/null)
