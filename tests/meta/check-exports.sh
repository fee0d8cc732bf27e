#!/bin/sh
# Checks that libflwd exports nothing but flwd_ symbols, and that every
# function declared with FLWD_API in the public header is exported.
set -eu
lib=$1
root=${MESON_SOURCE_ROOT:-$(dirname "$0")/../..}

exported=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBR]$/ {print $3}' | sort -u)
bad=$(printf '%s\n' "$exported" | grep -v '^flwd_' || true)
if [ -n "$bad" ]; then
  echo "exported symbols without the flwd_ prefix:" >&2
  printf '%s\n' "$bad" >&2
  exit 1
fi

declared=$(grep -h -v '#define' "$root"/include/flwd/*.h | grep -o 'FLWD_API [^(]*(' \
  | sed 's/($//; s/.*[ *]//' | sort -u)
missing=$(printf '%s\n' "$declared" | while read -r name; do
  printf '%s\n' "$exported" | grep -qx "$name" || printf '%s\n' "$name"
done)
if [ -n "$missing" ]; then
  echo "declared in the public header but not exported:" >&2
  printf '%s\n' "$missing" >&2
  exit 1
fi
echo "$(printf '%s\n' "$exported" | wc -l) symbols exported, all flwd_"
