#!/usr/bin/env bash
# The GPU run in one command, from the repository root of the GPU machine with build/cuda built
# (preset cuda: build/cuda/lib/libsinkrouter.so with libsinkrouter-cuda.so beside it). Scores
# held-out text through the CUDA backend with the committed weights
# (samples/python/e2e/weights/byte_lm.npz), or, when that file is absent, trains the byte model
# for 150 s first and writes the file. Writes bench/E2E.md and copies it, the weights it wrote
# and the log to $OUT when that is set. Ends within 6 minutes; extra arguments go to e2e.py (a
# later one wins); delete the weights file to retrain:
#     bash samples/python/e2e/run_gpu.sh [--train-seconds 150] [--weights FILE.npz]
set -euo pipefail
cd "$(dirname "$0")/../../.."

library=${SINKROUTER_LIBRARY:-build/cuda/lib/libsinkrouter.so}
if [[ ! -f $library ]]; then
  echo "run_gpu.sh: $library not found: build with the cuda preset first" >&2
  exit 2
fi
if ! compgen -G "$(dirname "$library")/libsinkrouter-cuda.so*" >/dev/null; then
  echo "run_gpu.sh: warning: no libsinkrouter-cuda.so next to $library" >&2
fi

weights=samples/python/e2e/weights/byte_lm.npz
log=${OUT:-/tmp}/e2e.log
started=$(mktemp)  # only files this run wrote are copied to $OUT
status=0
if [[ -f $weights ]]; then
  source_of_weights=(--weights "$weights")
else
  source_of_weights=(--train-seconds 150 --save-weights "$weights")
fi
# The deadline stops starting routed modes at 300 s; timeout is the backstop under 6 minutes.
SINKROUTER_LIBRARY=$library PYTHONPATH=bindings/python${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 \
  timeout 345 python3 samples/python/e2e/e2e.py --backend cuda --deadline 300 \
  --report bench/E2E.md "${source_of_weights[@]}" "$@" 2>&1 | tee "$log" || status=$?

if [[ -n ${OUT:-} ]]; then
  for file in bench/E2E.md "$weights"; do
    if [[ $file -nt $started ]]; then cp "$file" "$OUT/"; fi
  done
fi
rm -f "$started"
echo "run_gpu.sh: exit status $status (0: every check passed, 1: a check failed, 124: timed out)"
exit "$status"
