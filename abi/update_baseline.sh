#!/usr/bin/env bash
# Writes the ABI baseline abi/<SONAME>.abi (e.g. abi/libsinkrouter.so.1.abi) that
# .ci/abi_check.sh compares every build against, and removes the previous release's baseline.
# Run it when a release is cut (see abi/README.md).
#
#   abi/update_baseline.sh                  # builds a Release library with -g in build/abi
#   abi/update_baseline.sh path/to/libsinkrouter.so   # a library you built (it needs DWARF)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
library=${1:-}
if [[ -z "$library" ]]; then
  library=$("$root/abi/build_release.sh")
fi
if ! readelf -S --wide "$library" | grep -q '\.debug_info'; then
  echo "update_baseline.sh: $library has no DWARF (.debug_info): build it with -g" >&2
  exit 1
fi
soname=$(readelf -d "$library" | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')
if [[ "$soname" != libsinkrouter.so.* ]]; then
  echo "update_baseline.sh: unexpected SONAME '$soname' in $library" >&2
  exit 1
fi
out="$root/abi/$soname.abi"
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
# Only the public header's types count; no paths or source locations, so the file is the same
# wherever it is built.
abidw --headers-dir "$root/include/sinkrouter" --drop-private-types --exported-interfaces-only \
  --no-show-locs --no-corpus-path --no-comp-dir-path --out-file "$tmp" "$library"
find "$root/abi" -maxdepth 1 -name 'libsinkrouter.so.*.abi' ! -name "$soname.abi" -print -delete
chmod 644 "$tmp"
mv "$tmp" "$out"
trap - EXIT
echo "wrote $out: $(grep -c '<elf-symbol ' "$out") exported functions, SONAME $soname"
