#!/usr/bin/env bash
# Runs sr_cp_bench on RANKS GPUs of this host, one process per GPU (README.md here):
#   context_parallel/run_cp_bench.sh BUILD_DIR RANKS [sr_cp_bench arguments: --length L --methods ... --steps S]
# Rank 0 prints the CSV rows; every rank's timings go to stderr. NCCL's NVLink multicast stays
# off (NCCL_NVLS_ENABLE=0).
set -euo pipefail
build=$1
ranks=$2
shift 2
export NCCL_NVLS_ENABLE=0
id_file=$(mktemp -u "${TMPDIR:-/tmp}/sr_cp_id.XXXXXX")
trap 'rm -f "$id_file" "$id_file.tmp"' EXIT
pids=()
for ((rank = 0; rank < ranks; ++rank)); do
  "$build/context_parallel/sr_cp_bench" --rank "$rank" --ranks "$ranks" --id-file "$id_file" "$@" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
