# Thin front door over CMake and scripts/. The commands the README promises:
#   make demo   - installs what is missing, builds everything, runs the main job
#   make test   - the same set-up, then the whole test suite
#   make fuzz   - every libFuzzer target for 10 minutes, new finds merged into tests/fuzz/corpus
# Guest artifacts are cached in $(KILN_CACHE) (default /var/cache/kiln), keyed by their inputs.

JOBS ?= 2
BUILD ?= build/release
export KILN_JOBS := $(JOBS)

.PHONY: all deps build kernel images image-tiny image-base data-dir setup demo test fuzz bench clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@scripts/cmake-build.sh $(BUILD) Release

kernel: deps
	@scripts/build-kernel.sh >/dev/null

images: image-tiny image-base

image-tiny: build
	@scripts/build-image-tiny.sh $(BUILD)/src/agent/kiln-agent >/dev/null

# The Debian CI image: a few minutes on a cold cache, so only `make images` (and what needs it) builds it.
image-base: build
	@scripts/build-image-base.sh $(BUILD)/src/agent/kiln-agent >/dev/null

data-dir: deps
	@scripts/setup-data-dir.sh

setup: build kernel image-tiny data-dir

# The demo and the CI tests run jobs in the Debian `base` image (cached after its first build).
demo: setup image-base
	@scripts/demo.sh $(BUILD)

test: setup image-base
	@scripts/test.sh $(BUILD)

# Long libFuzzer runs (FUZZ_SECONDS per target, default 600) that merge new finds into the
# checked-in corpora: see docs/testing.md.
fuzz: deps
	@scripts/fuzz.sh

bench: setup
	@scripts/bench.sh $(BUILD)

clean:
	rm -rf build
