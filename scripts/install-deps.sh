#!/usr/bin/env bash
# Installs the Debian packages Kiln needs to build, run and test; a no-op when all are present.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake g++ clang libclang-rt-14-dev pkg-config git make
  # libraries
  nlohmann-json3-dev libcpp-httplib-dev libsqlite3-dev libssl-dev libseccomp-dev
  libarchive-dev libyaml-cpp-dev libexpat1-dev libpq-dev libspdlog-dev libfmt-dev libcli11-dev
  libnftables-dev  # sandbox nftables tables loaded in-process (src/daemon/net)
  libboost-dev     # Boost.Beast/Asio: kilnd's HTTP server (docs/http.md); httplib is only a client now
  libgtest-dev libgmock-dev libbenchmark-dev
  # the VMM
  qemu-system-x86 qemu-utils
  # guest kernel and images
  linux-source-6.1 flex bison bc libelf-dev cpio lz4 xz-utils busybox-static e2fsprogs
  xfsprogs debootstrap
  # tests, benchmarks, networking
  python3 python3-pytest python3-yaml python3-venv iproute2 nftables iperf3 sqlite3 postgresql curl
  # the dashboard's browser tests (tests/ui): Debian's Chromium, its driver and Selenium, headless
  chromium chromium-driver python3-selenium
)
# npm fetches GitHub's recorded webhook payloads and GitHub's webhook signing code for the tests
# (scripts/fetch-webhook-examples.sh, scripts/fetch-webhook-methods.sh), and node runs the signer
# (tests/ci/sign_webhook.mjs), and it installs E2B's JS SDK for tests/e2b (scripts/fetch-e2b-sdk.sh:
# node >= 20); Debian's npm brings nodejs, and a Node.js install brings its own npm.
command -v npm >/dev/null || PACKAGES+=(npm)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
echo "[kiln] installing ${#missing[@]} Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
# An update only when the package lists are missing or older than a day.
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -1)" ]; then
  $SUDO apt-get update -q
fi
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
