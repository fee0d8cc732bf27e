#!/bin/sh
# Checks that every error code string of include/flwd/errors.h appears in
# the C API documentation, and that the documentation lists no code the
# table lacks.
set -eu
root=$1
table=$(grep -v 'X(NAME,' "$root/include/flwd/errors.h" \
  | grep -o 'X([A-Z_]*, "[^"]*"' \
  | sed 's/.*"\(.*\)"/\1/' | grep -vx ok | sort -u)
doc="$root/docs/c-api.md"
if [ ! -f "$doc" ]; then
  echo "missing $doc" >&2
  exit 1
fi
status=0
for code in $table; do
  if ! grep -q "\`$code\`" "$doc"; then
    echo "error code $code is not documented in docs/c-api.md" >&2
    status=1
  fi
done
documented=$(grep -o '`FLWD_E_[A-Z_]*` | `[^`]*`' "$doc" \
  | sed 's/.*| `\(.*\)`$/\1/' | grep -vx ok | sort -u)
for code in $documented; do
  if ! printf '%s\n' "$table" | grep -qx "$code"; then
    echo "docs/c-api.md lists $code, which the error table lacks" >&2
    status=1
  fi
done
exit $status
