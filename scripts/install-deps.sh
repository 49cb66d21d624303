#!/usr/bin/env bash
# Installs the Debian 12 packages that serve's build, tests and examples need.
# Idempotent: skips apt entirely when every package is already installed.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libboost1.81-dev
  libyaml-cpp-dev nlohmann-json3-dev libspdlog-dev prometheus-cpp-dev libcli11-dev
  libhiredis-dev redis-server libgtest-dev libgmock-dev libbenchmark-dev
  libcurl4-openssl-dev unzip zip curl procps python3 python3-pytest python3-requests python3-yaml
  libxgboost-dev libopenblas-dev python3-numpy
  chromium python3-websockets prometheus python3-grpcio python3-grpc-tools
  clang libclang-rt-14-dev  # tests/fuzz (scripts/fuzz.sh, docs/fuzzing.md)
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
else
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Debian's prometheus package enables and starts a system-wide server on :9090; the tests run
# their own (private config, free loopback port), so the service must not run nor start at boot.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
  $SUDO systemctl disable --now prometheus.service prometheus-node-exporter.service \
    >/dev/null 2>&1 || true
else
  for svc in prometheus prometheus-node-exporter; do
    if [ -x "/etc/init.d/$svc" ]; then
      $SUDO "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
      $SUDO update-rc.d "$svc" disable >/dev/null 2>&1 || true
    fi
  done
fi

# The examples' training data: the small data sets scikit-learn bundles (digits, iris, wine,
# breast cancer), taken from Debian's python3-sklearn package without installing it (its
# python3-scipy -> python3-pythran -> libboost-dev chain conflicts with libboost1.81-dev).
DATA_DIR=/usr/local/share/serve/sklearn-data
if [ ! -f "$DATA_DIR/digits.csv.gz" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && { apt-get download python3-sklearn >/dev/null 2>&1 ||
                  { $SUDO apt-get update -qq && apt-get download python3-sklearn; }; })
  dpkg-deb -x "$tmp"/python3-sklearn_*.deb "$tmp/pkg"
  $SUDO mkdir -p "$DATA_DIR"
  $SUDO cp "$tmp"/pkg/usr/lib/python3/dist-packages/sklearn/datasets/data/*.csv* "$DATA_DIR"/
  echo "install-deps: scikit-learn's bundled data sets in $DATA_DIR"
fi

# The dashboard's chart library (uPlot), from npm into a fixed prefix; the build copies it next
# to the dashboard's own files (web/CMakeLists.txt). Debian's npm is used when none is present.
NPM_PREFIX=/usr/local/share/serve/npm
UPLOT_VERSION=1.6.32
if ! grep -qs "\"version\": \"$UPLOT_VERSION\"" "$NPM_PREFIX/node_modules/uplot/package.json"; then
  if ! command -v npm >/dev/null; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends npm
  fi
  $SUDO mkdir -p "$NPM_PREFIX"
  $SUDO npm install --prefix "$NPM_PREFIX" --no-audit --no-fund --save-exact "uplot@$UPLOT_VERSION"
  echo "install-deps: uplot $UPLOT_VERSION in $NPM_PREFIX"
fi
