#!/bin/sh
# Builds the fuzz targets with clang and runs each for SECONDS (default 60);
# with 0, only builds them.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
seconds=${1:-60}
build=${FLWD_FUZZ_BUILD:-$root/build-fuzz}
if [ ! -d "$build" ]; then
  CC=clang meson setup "$build" "$root" -Dfuzz=true -Dtests=false \
    -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
fi
meson compile -C "$build" >/dev/null
[ "$seconds" -eq 0 ] && exit 0
for target in spec args; do
  work=$(mktemp -d)
  cp "$root/tests/fuzz/corpus/$target"/* "$work"/
  echo "fuzzing $target for $seconds s"
  "$build/tests/fuzz/fuzz_$target" -max_total_time="$seconds" \
    -max_len=4096 "$work" 2>&1 | grep -E "ERROR|SUMMARY|DONE" | tail -n 5
  rm -rf "$work"
done
