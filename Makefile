# Convenience wrapper around meson: installs what the build needs (as root,
# with apt-get), configures, builds and runs.  `make demo` and `make test`
# are the README's quick start; CI runs `make test` and nothing else.

BUILD ?= build
MESON_OPTS ?=
# Everything `make test` needs on a fresh Debian 12 machine.
PACKAGES := gcc clang libclang-rt-14-dev liburing-dev libcmocka-dev \
	libnbd-dev nbdkit meson ninja-build pkg-config python3 util-linux \
	valgrind debhelper dpkg-dev man-db groff-base

TSAN_OPTIONS_FILE := $(CURDIR)/tests/tsan.supp
VALGRIND := valgrind --quiet --error-exitcode=99 --leak-check=full \
	--errors-for-leak-kinds=definite,indirect \
	--show-leak-kinds=definite,indirect

.PHONY: all deps build test check check-asan check-tsan check-valgrind \
	check-install check-deb check-fuzz soak soak-long soak-self-test fuzz \
	demo bench install clean

all: build

# Install missing Debian packages; as a normal user, say which are missing.
deps:
	@missing=""; \
	for p in $(PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing </dev/null; \
		else \
			echo "missing packages:$$missing (run as root, or: sudo apt-get install$$missing)" >&2; exit 1; \
		fi; \
	fi

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_OPTS)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

# The whole suite: every test on both backends and with io_uring blocked
# (the short soak and its self-test included), then under ASan+UBSan, under
# TSan, the core under valgrind, a bounded fuzz run, and the install and
# packaging checks.
test: check check-asan check-tsan check-valgrind check-fuzz check-install \
	check-deb
	@echo "make test: all green"

check: build
	meson test -C $(BUILD) --print-errorlogs

$(BUILD)-asan/build.ninja:
	meson setup $(BUILD)-asan -Db_sanitize=address,undefined $(MESON_OPTS)

check-asan: deps $(BUILD)-asan/build.ninja
	ninja -C $(BUILD)-asan
	meson test -C $(BUILD)-asan --print-errorlogs

$(BUILD)-tsan/build.ninja:
	meson setup $(BUILD)-tsan -Db_sanitize=thread $(MESON_OPTS)

# TSan cannot see the kernel write io_uring's rings: tests/tsan.supp says
# which accesses that covers, and nothing else.
check-tsan: deps $(BUILD)-tsan/build.ninja
	ninja -C $(BUILD)-tsan
	TSAN_OPTIONS="suppressions=$(TSAN_OPTIONS_FILE) halt_on_error=1" \
		meson test -C $(BUILD)-tsan --print-errorlogs

# memcheck on the thread-pool runs of the core tests: valgrind cannot see
# memory the kernel reads and writes through io_uring, and its scheduler
# stalls a thread blocked in io_uring_enter.
check-valgrind: build
	meson test -C $(BUILD) --print-errorlogs --wrapper "$(VALGRIND)" \
		$$(meson test -C $(BUILD) --suite core --list 2>/dev/null | \
		   sed 's/.* \/ //' | grep -- '-threads$$')

FUZZ_BUILD ?= $(BUILD)-fuzz
FUZZ_SECONDS ?= 60

$(FUZZ_BUILD)/build.ninja:
	CC=clang meson setup $(FUZZ_BUILD) -Dfuzz=enabled -Dtests=false \
		-Dexamples=false

# libFuzzer on request validation and planning (fuzz/README.md).
check-fuzz fuzz: deps $(FUZZ_BUILD)/build.ninja
	ninja -C $(FUZZ_BUILD) fuzz/fuzz-plan
	fuzz/run-fuzz.sh $(FUZZ_BUILD)/fuzz/fuzz-plan $(FUZZ_SECONDS)

# The soak against a model (soak/README.md); `make check` runs --short.
soak: build
	$(BUILD)/soak/soak --short

soak-long: build
	$(BUILD)/soak/soak --long

soak-self-test: build
	@$(BUILD)/soak/soak --self-test --seconds 5; st=$$?; \
	if [ $$st -eq 1 ]; then echo "soak self-test: OK, the lost write was detected"; \
	else echo "soak self-test: FAILED (exit $$st, expected 1)" >&2; exit 1; fi

check-install: build
	scripts/check-install.sh .

check-deb: build
	scripts/check-deb.sh .

demo: build
	$(BUILD)/tools/dmio demo

# Benchmarks (docs/performance.md): ~8 min as root; BENCH_OPTS=--quick for
# ~1.5 min.  Installs fio, gnuplot and FUSE itself when missing.
bench: build
	bench/run.sh --build $(BUILD) $(BENCH_OPTS)

install: build
	meson install -C $(BUILD)

clean:
	rm -rf $(BUILD) $(BUILD)-asan $(BUILD)-tsan $(FUZZ_BUILD)
