#!/usr/bin/env bash
# Proves .ci/abi_check.sh can fail: checks the built library against doctored copies of the
# baseline, each standing for a release that differed from this build in one way, and expects
# the verdict the policy in abi/README.md gives.
#
#   abi/selftest.sh path/to/libsinkrouter.so   (a library built with -g, as .ci/abi_check.sh uses)
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
library=${1:?usage: abi/selftest.sh path/to/libsinkrouter.so}
baseline=$(ls "$root"/abi/libsinkrouter.so.*.abi)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0

expect() {  # verdict (pass|fail), case name, then a sed program applied to the baseline
  local verdict=$1 name=$2 program=$3
  local doctored="$work/$name.abi"
  sed "$program" "$baseline" >"$doctored"
  if cmp -s "$doctored" "$baseline"; then
    echo "abi selftest: '$name' did not change the baseline (the sed program no longer matches)" >&2
    failures=$((failures + 1))
    return
  fi
  SR_ABI_BASELINE="$doctored" bash "$root/.ci/abi_check.sh" "$library" >"$work/$name.log" 2>&1
  local rc=$?
  if [[ $verdict == pass && $rc -eq 0 ]] || [[ $verdict == fail && $rc -ne 0 ]]; then
    echo "abi selftest: $name -> ${verdict}ed, as it must"
  else
    echo "abi selftest: $name -> exit $rc, but it must $verdict:" >&2
    cat "$work/$name.log" >&2
    failures=$((failures + 1))
  fi
}

# The release had a function this build lacks: a removal.
expect fail removed_function "s/name='sr_kv_read'/name='sr_kv_read_gone'/g; s/'sr_kv_read@@/'sr_kv_read_gone@@/g"
# The release numbered a status differently: a renumbered enumerator.
expect fail renumbered_enum "s/<enumerator name='SR_ERR_OUT_OF_RANGE' value='[0-9]*'/<enumerator name='SR_ERR_OUT_OF_RANGE' value='99'/"
# The release laid a struct out differently: a moved field (second member of the first struct).
expect fail moved_field "0,/layout-offset-in-bits='64'/s//layout-offset-in-bits='96'/"
# The release's sr_context_options ended before its last field: this build appended one.
expect pass appended_field "/<class-decl name='sr_context_options'/s/size-in-bits='256'/size-in-bits='192'/; /<class-decl name='sr_context_options'/,/<\/class-decl>/{/layout-offset-in-bits='192'/,/<\/data-member>/d}"
# The release lacked SR_DTYPE_FP8_E4M3 and sr_decode_args' last field: an enumerator appended to
# the type of fields of a struct that also grew (abidiff reports the enum part as filtered). The
# field's offset and the struct's size are read from the baseline, which grows with releases.
args_decl=$(awk "/<class-decl name='sr_decode_args'/,/<\/class-decl>/" "$baseline")
last_field=$(grep -o "layout-offset-in-bits='[0-9]*'" <<<"$args_decl" | tail -1 | grep -o '[0-9]*')
args_size=$(sed -n "s/.*<class-decl name='sr_decode_args' size-in-bits='\([0-9]*\)'.*/\1/p" <<<"$args_decl")
older_size=$(((last_field + 63) / 64 * 64))
expect pass appended_enumerator "/<enumerator name='SR_DTYPE_FP8_E4M3'/d; /<class-decl name='sr_decode_args'/s/size-in-bits='$args_size'/size-in-bits='$older_size'/; /<class-decl name='sr_decode_args'/,/<\/class-decl>/{/layout-offset-in-bits='$last_field'/,/<\/data-member>/d}"
# The release lacked a function this build has: a compatible addition.
expect pass added_function "/<elf-symbol name='sr_kv_read'/d; /<function-decl name='sr_kv_read'/,/<\/function-decl>/d"

if ((failures > 0)); then
  echo "ABI SELFTEST FAILED: $failures case(s)" >&2
  exit 1
fi
echo "abi selftest: PASSED (removal, renumbered enum and moved field fail; an appended field, an appended enumerator and a new function pass)"
