# Convenience wrapper around meson: installs what the build needs (as root,
# with apt-get), configures, builds and runs.  `make demo` and `make test`
# are the README's quick start.

BUILD ?= build
PACKAGES := gcc liburing-dev libcmocka-dev libnbd-dev nbdkit meson ninja-build pkg-config python3 util-linux
MESON_OPTS ?=

.PHONY: all deps build test demo install clean

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

test: build
	meson test -C $(BUILD) --print-errorlogs

demo: build
	$(BUILD)/tools/dmio demo

install: build
	meson install -C $(BUILD)

clean:
	rm -rf $(BUILD)
