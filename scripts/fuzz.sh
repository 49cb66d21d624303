#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz, clang, build-fuzz/) and runs each, one after the
# other, for SECONDS (default 15) over its seed corpus; new inputs go to a scratch corpus in
# build-fuzz/. Exits non-zero at the first target that crashes (its input is saved as
# build-fuzz/fuzz-artifacts/<target>-crash-*). docs/fuzzing.md.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-15}
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(fuzz_frame_decoder fuzz_proxy_request fuzz_config fuzz_rest fuzz_msgpack)
dir=${SERVE_FUZZ_BUILD_DIR:-build-fuzz}
export CCACHE_BASEDIR=$PWD CCACHE_NOHASHDIR=1
if [[ ! -f $dir/build.ninja ]]; then
  CC=clang CXX=clang++ cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DSERVE_FUZZ=ON -DSERVE_BUILD_TESTS=OFF -DSERVE_BUILD_EXAMPLES=OFF -DSERVE_BUILD_BENCH=OFF
fi
ninja -C "$dir" -j "${SERVE_BUILD_JOBS:-2}" serve_fuzz_targets
mkdir -p "$dir/fuzz-artifacts"
for t in "${targets[@]}"; do
  mkdir -p "$dir/tests/fuzz/corpus/$t"
  echo "== $t (${seconds}s)"
  nice -n 10 "$dir/bin/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$dir/fuzz-artifacts/$t-" \
    "$dir/tests/fuzz/corpus/$t" "tests/fuzz/corpus/$t"
done
