# Convenience wrapper around meson: installs what is needed (as root, with
# apt-get: the build's packages for `make demo` and `make build`, the test
# suite's too for `make test` and the check-* targets), configures, builds
# and runs.  `make demo` and `make test` are the README's quick start; CI
# runs `make test` and nothing else.

BUILD ?= build
MESON_OPTS ?=
# What building and running the library and the tool needs (`make demo`).
BUILD_PACKAGES := gcc meson ninja-build pkg-config liburing-dev libnbd-dev
# What `make test` needs on top, on a fresh Debian 12 machine (some tests
# skip with a reason without the tools, but CI has them all).
TEST_PACKAGES := clang libclang-rt-14-dev libcmocka-dev nbdkit \
	nbdkit-plugin-dev libnbd-bin qemu-utils fio fuse3 libfuse3-dev e2fsprogs \
	util-linux strace valgrind debhelper dpkg-dev man-db groff-base
# `make deps APT_GET=echo` shows what would run, and installs nothing.
APT_GET ?= apt-get
# What says a package is installed, and what finishes an interrupted
# dpkg run (the package-list test fakes both).
DPKG_QUERY ?= dpkg-query
DPKG ?= dpkg
# Wait for another apt or dpkg to finish rather than fail.
APT_LOCK := -o DPkg::Lock::Timeout=600

TSAN_OPTIONS_FILE := $(CURDIR)/tests/tsan.supp
VALGRIND := valgrind --quiet --error-exitcode=99 --leak-check=full \
	--errors-for-leak-kinds=definite,indirect \
	--show-leak-kinds=definite,indirect

.PHONY: all deps deps-test build build-tests test check check-asan check-tsan check-valgrind \
	check-install check-deb check-fuzz soak soak-long soak-self-test fuzz \
	demo bench install clean

all: build

# Install the missing packages of the list $(1) as root; as a normal
# user, say which are missing.  apt-get update does not wait for another
# apt's lock on the package lists (DPkg::Lock::Timeout covers only
# dpkg's), so it is retried for up to ten minutes.  A dpkg run that was
# killed part-way (a CI job stopped mid-install) makes every apt-get
# install fail until `dpkg --configure -a` finishes it, so a failed
# install does that once and tries again.
define install-missing
	@missing=""; \
	for p in $(1); do \
		$(DPKG_QUERY) -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	[ -n "$$missing" ] || exit 0; \
	if [ "$$(id -u)" != 0 ]; then \
		echo "missing packages:$$missing (run as root, or: sudo apt-get install$$missing)" >&2; exit 1; \
	fi; \
	echo "installing:$$missing"; \
	tries=1; \
	until $(APT_GET) $(APT_LOCK) update -qq </dev/null; do \
		[ $$tries -lt 60 ] || exit 1; tries=$$((tries + 1)); \
		echo "apt-get update failed; trying again in 10 s" >&2; sleep 10; \
	done; \
	apt_install() { DEBIAN_FRONTEND=noninteractive $(APT_GET) $(APT_LOCK) \
		install -y -qq $$missing </dev/null; }; \
	apt_install && exit 0; \
	echo "apt-get install failed; finishing any interrupted dpkg run" \
		"(dpkg --configure -a) and trying again" >&2; \
	DEBIAN_FRONTEND=noninteractive $(DPKG) --force-confdef --force-confold \
		--configure -a </dev/null && apt_install
endef

deps:
	$(call install-missing,$(BUILD_PACKAGES))

deps-test:
	$(call install-missing,$(BUILD_PACKAGES) $(TEST_PACKAGES))

# Without cmocka (`make demo` on a fresh machine) the tests are left out
# of the build; build-tests installs what they need and puts them back.
$(BUILD)/build.ninja:
	meson setup $(BUILD) \
		-Dtests=$$(pkg-config --exists cmocka && echo true || echo false) \
		$(MESON_OPTS)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

build-tests: deps-test $(BUILD)/build.ninja
	meson configure $(BUILD) -Dtests=true $(MESON_OPTS) >/dev/null
	ninja -C $(BUILD)

# The whole suite: every test on both backends and with io_uring blocked
# (the short soak and its self-test included), then under ASan+UBSan, under
# TSan, the core under valgrind, a bounded fuzz run, and the install and
# packaging checks.
test: check check-asan check-tsan check-valgrind check-fuzz check-install \
	check-deb
	@echo "make test: all green"

check: build-tests
	meson test -C $(BUILD) --print-errorlogs

$(BUILD)-asan/build.ninja:
	meson setup $(BUILD)-asan -Db_sanitize=address,undefined $(MESON_OPTS)

check-asan: deps-test $(BUILD)-asan/build.ninja
	ninja -C $(BUILD)-asan
	meson test -C $(BUILD)-asan --print-errorlogs

$(BUILD)-tsan/build.ninja:
	meson setup $(BUILD)-tsan -Db_sanitize=thread $(MESON_OPTS)

# TSan cannot see the kernel write io_uring's rings: tests/tsan.supp says
# which accesses that covers, and nothing else.  The -nouring runs are left
# out: past the fallback, which check and check-asan prove, they run the
# same thread-pool code as the -threads runs, and they cost a fifth of
# the stage.
check-tsan: deps-test $(BUILD)-tsan/build.ninja
	ninja -C $(BUILD)-tsan
	TSAN_OPTIONS="suppressions=$(TSAN_OPTIONS_FILE) halt_on_error=1" \
		meson test -C $(BUILD)-tsan --print-errorlogs \
		$$(meson test -C $(BUILD)-tsan --list 2>/dev/null | \
		   sed -n 's/.* \/ //p' | grep -v -- '-nouring$$')

# memcheck on the thread-pool runs of the core tests: valgrind cannot see
# memory the kernel reads and writes through io_uring, and its scheduler
# stalls a thread blocked in io_uring_enter.
check-valgrind: build-tests
	meson test -C $(BUILD) --print-errorlogs --wrapper "$(VALGRIND)" \
		$$(meson test -C $(BUILD) --suite core --list 2>/dev/null | \
		   sed 's/.* \/ //' | grep -- '-threads$$')

FUZZ_BUILD ?= $(BUILD)-fuzz
FUZZ_SECONDS ?= 30

$(FUZZ_BUILD)/build.ninja:
	CC=clang meson setup $(FUZZ_BUILD) -Dfuzz=enabled -Dtests=false \
		-Dexamples=false

# libFuzzer on request validation and planning (fuzz/README.md).
check-fuzz fuzz: deps-test $(FUZZ_BUILD)/build.ninja
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

check-install: build-tests
	scripts/check-install.sh .

check-deb: build-tests
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
