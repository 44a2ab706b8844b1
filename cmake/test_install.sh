#!/bin/sh
# install_tree_consumer: install the build tree at $2, then build and run a consumer with find_package and
# with pkg-config, and run a program under the installed `uiommufd run`.
set -eu
build=$1 prefix=$(realpath -m "$2") cxx=$3
rm -rf "$prefix"
cmake --install "$build" --prefix "$prefix" >/dev/null
src=$prefix/consumer
mkdir -p "$src"
cat >"$src/main.cc" <<'CC'
#include <cstdio>
#include "uiommufd/objects/context.h"
#include "uiommufd/objects/ioas.h"
int main() {
  auto ctx = uiommufd::Context::create();
  if (!ctx.ok()) return 1;
  auto id = uiommufd::Ioas::create(**ctx);
  if (!id.ok() || *id != 1) return 2;
  std::puts("consumer ok");
  return 0;
}
CC
cat >"$src/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.25)
project(consumer CXX)
find_package(uiommufd 0.1 REQUIRED)
add_executable(consumer main.cc)
target_link_libraries(consumer PRIVATE uiommufd::uiommufd)
CM
cmake -S "$src" -B "$src/build" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_CXX_COMPILER="$cxx" >/dev/null
cmake --build "$src/build" >/dev/null
"$src/build/consumer"

if command -v pkg-config >/dev/null; then
  pcdir=$(dirname "$(find "$prefix" -name uiommufd.pc)")
  # shellcheck disable=SC2046
  "$cxx" "$src/main.cc" -o "$src/consumer-pc" $(PKG_CONFIG_PATH=$pcdir pkg-config --cflags --libs uiommufd)
  "$src/consumer-pc"
else
  echo "pkg-config not installed: the uiommufd.pc consumer was not built"
fi

"$prefix/bin/uiommufd" run -- sh -c 'case "$LD_PRELOAD" in "'"$prefix"'"/*libuiommufd-preload.so*) exit 0;; esac; exit 1'
echo "install tree ok"
