#!/usr/bin/env bash
# ABI check: compares libsinkrouter against the committed baseline of the current release
# (abi/libsinkrouter.so.<major>.abi) with abidiff, and fails on an incompatible change unless the
# library's SONAME major number moved with it.
#
#   .ci/abi_check.sh                          # builds a Release library with -g in build/abi
#   .ci/abi_check.sh path/to/libsinkrouter.so # checks a library you built (it needs DWARF)
#
# Verdicts:
#   no change, or only additions (new functions, fields appended to struct_size structs,
#   enumerators appended)                                     -> pass
#   anything removed or changed (abidiff exit bit 8 ABIDIFF_ABI_INCOMPATIBLE_CHANGE, or a
#   "Changed" function/variable: abidiff reports a moved field or a renumbered enum only with
#   bit 4 ABIDIFF_ABI_CHANGE)                                 -> fail, unless the SONAME major
#                                                                differs from the baseline's
#   abidiff itself failed (bit 1 ABIDIFF_ERROR, bit 2 ABIDIFF_USAGE_ERROR) -> fail
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
fail() { echo "ABI CHECK FAILED: $*" >&2; exit 1; }

library=${1:-}
if [[ -z "$library" ]]; then
  echo "== abi_check: building a Release library with debug info (abi/build_release.sh)"
  library=$("$root/abi/build_release.sh") || fail "the Release build failed"
fi
[[ -f "$library" ]] || fail "no library at $library"
readelf -S --wide "$library" | grep -q '\.debug_info' ||
  fail "$library has no DWARF (.debug_info): abidiff would compare symbols only. Build it with -g."

shopt -s nullglob
baselines=("$root"/abi/libsinkrouter.so.*.abi)
[[ ${#baselines[@]} -eq 1 ]] || fail "expected exactly one abi/libsinkrouter.so.*.abi, found ${#baselines[@]}"
baseline=${baselines[0]}

soname=$(readelf -d "$library" | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')
baseline_soname=$(grep -o -m1 "soname='[^']*'" "$baseline" | sed "s/soname='\(.*\)'/\1/")
major=${soname##*.so.}
baseline_major=${baseline_soname##*.so.}
[[ -n "$soname" && -n "$baseline_soname" ]] || fail "could not read the SONAMEs ('$soname', '$baseline_soname')"
echo "== abi_check: $library (SONAME $soname) against $(basename "$baseline") (SONAME $baseline_soname)"

report=$(mktemp)
trap 'rm -f "$report"' EXIT
echo "+ abidiff --no-show-locs --suppressions abi/struct_size.suppr $(basename "$baseline") $library"
abidiff --no-show-locs --suppressions "$root/abi/struct_size.suppr" "$baseline" "$library" >"$report" 2>&1
rc=$?
cat "$report"
(( rc & 3 )) && fail "abidiff could not compare (exit $rc)"

# "N Removed, M Changed" of the functions and variables summaries (filtered changes excluded).
removed_or_changed=$(sed -n 's/^\(Functions\|Variables\) changes summary: \([0-9]*\) Removed, \([0-9]*\) Changed.*/\2 \3/p' "$report" |
  awk '{n += $1 + $2} END {print n + 0}')
if (( rc & 8 )) || (( removed_or_changed > 0 )); then
  if [[ "$major" != "$baseline_major" ]]; then
    echo "abi_check: incompatible ABI changes, and the SONAME major moved ($baseline_major -> $major): allowed."
    echo "abi_check: PASSED. Write the new baseline with abi/update_baseline.sh when this release is cut."
    exit 0
  fi
  fail "incompatible ABI change (abidiff exit $rc, $removed_or_changed removed or changed functions/variables) while the SONAME stays $soname. Restore compatibility, or bump SR_ABI_VERSION in include/sinkrouter/version.h and run abi/update_baseline.sh (abi/README.md)."
fi
if (( rc & 4 )); then
  echo "abi_check: PASSED with compatible additions (abidiff exit $rc): the baseline gets them at the next release."
else
  echo "abi_check: PASSED: the ABI matches the baseline."
fi
