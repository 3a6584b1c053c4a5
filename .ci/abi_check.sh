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
#   anything removed or changed (abidiff exit bit 8 ABIDIFF_ABI_INCOMPATIBLE_CHANGE, or any
#   change abi/verdict.py does not recognise as a struct_size struct growing at its end:
#   abidiff reports a moved field or a renumbered enum only with bit 4 ABIDIFF_ABI_CHANGE)
#                                                             -> fail, unless the SONAME major
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
baseline=${SR_ABI_BASELINE:-${baselines[0]}}  # (abi/selftest.sh passes doctored baselines)

soname=$(readelf -d "$library" | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')
baseline_soname=$(grep -o -m1 "soname='[^']*'" "$baseline" | sed "s/soname='\(.*\)'/\1/")
major=${soname##*.so.}
baseline_major=${baseline_soname##*.so.}
[[ -n "$soname" && -n "$baseline_soname" ]] || fail "could not read the SONAMEs ('$soname', '$baseline_soname')"
echo "== abi_check: $library (SONAME $soname) against $(basename "$baseline") (SONAME $baseline_soname)"

report=$(mktemp)
trap 'rm -f "$report"' EXIT
echo "+ abidiff --no-show-locs $(basename "$baseline") $library"
abidiff --no-show-locs "$baseline" "$library" >"$report" 2>&1
rc=$?
cat "$report"
(( rc & 3 )) && fail "abidiff could not compare (exit $rc)"

# abidiff's exit bit 8 marks removals only; abi/verdict.py reads every change in the report.
if (( rc & 8 )) || ! python3 "$root/abi/verdict.py" <"$report"; then
  if [[ "$major" != "$baseline_major" ]]; then
    echo "abi_check: incompatible ABI changes, and the SONAME major moved ($baseline_major -> $major): allowed."
    echo "abi_check: PASSED. Write the new baseline with abi/update_baseline.sh when this release is cut."
    exit 0
  fi
  fail "incompatible ABI change (abidiff exit $rc; reasons above) while the SONAME stays $soname. Restore compatibility, or bump SR_ABI_VERSION in include/sinkrouter/version.h and run abi/update_baseline.sh (abi/README.md)."
fi
if (( rc & 4 )); then
  echo "abi_check: PASSED with compatible additions (abidiff exit $rc): the baseline gets them at the next release."
else
  echo "abi_check: PASSED: the ABI matches the baseline."
fi
if [[ -z "${SR_ABI_BASELINE:-}" && -z "${1:-}" ]]; then
  echo "== abi_check: the check itself must catch breaks (abi/selftest.sh)"
  bash "$root/abi/selftest.sh" "$library" || fail "the ABI check failed its self-test"
fi
