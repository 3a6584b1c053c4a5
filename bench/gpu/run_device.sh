#!/usr/bin/env bash
# Everything the GPU machine runs, in one call from the repository root:
#   bench/gpu/run_device.sh [tests] [sanitize] [bench] [quick] [cpu] [e2e] [ab] [certificate] [trace] [probe] [profile] [peers-profile]
# (no phase named: tests, sanitize and bench). On the H100 `tests sanitize bench profile` takes
# about 4 minutes; `e2e` (samples/python/e2e/run_gpu.sh) about 2.5 with the committed weights,
# 6 when it trains. `ab` sweeps one tuning knob over a few cases; `trace` prints each phase of
# a launch per block from a tracing build (SR_TRACE_LIB). `peers-profile` (about 1.5
# minutes) puts the peers' kernels beside ours under ncu: grid, registers, shared memory, DRAM. The build comes from this
# machine: build/cuda-run, a stripped copy of build/cuda (bench/gpu/pack_build.sh), carried
# with .realattn. Logs and results go to $OUT; a short table is printed last.
set -u
OUT=${OUT:-/tmp/sr_out}
mkdir -p "$OUT"
ROOT=$PWD
phases="$*"
[ -z "$phases" ] || [ "$phases" = quick ] && phases="tests sanitize bench $phases"
want() { case " $phases " in *" $1 "*) return 0 ;; esac; return 1; }

# The carried build holds absolute paths of /work/main (CTest files, RPATHs): make them resolve.
if [ "$ROOT" != /work/main ]; then
  mkdir -p /work/main/build
  for entry in "$ROOT"/* "$ROOT"/.realattn; do ln -sfn "$entry" "/work/main/$(basename "$entry")"; done
  ln -sfn "$ROOT/build/cuda-run" /work/main/build/cuda
else
  ln -sfn "$ROOT/build/cuda-run" "$ROOT/build/cuda"
fi
BUILD=/work/main/build/cuda
# pack_build.sh carries the CUDA plugin xz-compressed.
[ -f "$BUILD/lib/libsinkrouter-cuda.so.xz" ] && xz -d -f "$BUILD/lib/libsinkrouter-cuda.so.xz"
# CTest runs `cmake -P` scripts by the building machine's path of cmake.
[ -x /usr/bin/cmake ] || ln -s "$(command -v cmake)" /usr/bin/cmake
# The test files include this CMake module by the absolute path of the building machine.
module=$(grep -ho '/usr/share/cmake-[0-9.]*/Modules/GoogleTestAddTests.cmake' "$BUILD"/tests/*include.cmake | head -1)
if [ -n "$module" ] && [ ! -f "$module" ]; then mkdir -p "$(dirname "$module")" && cp "$BUILD/GoogleTestAddTests.cmake" "$module"; fi
export SINKROUTER_REALATTN_DIR=$ROOT/.realattn
summary=$OUT/summary.txt
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.total,temperature.gpu --format=csv
} >"$summary" 2>&1

if want tests; then
  # Left to CI: install_and_consume (needs install manifests the stripped, carried build lacks)
  # and python_e2e_cpu (the device's python has no pytest; the e2e phase runs that sample on GPU).
  echo "== ctest (whole suite, CPU and CUDA backends)" | tee -a "$summary"
  (cd "$BUILD" && timeout 420 ctest -j8 --timeout 300 --output-on-failure -E 'install_and_consume|python_e2e_cpu') >"$OUT/ctest.log" 2>&1
  echo "ctest exit $?" >>"$summary"
  grep -E "tests passed|tests failed|Failed|\*\*\*Failed|Timeout" "$OUT/ctest.log" | head -40 >>"$summary"
  # Reference compensation, off by default on the GPU for now: the suite's routed and GPU tests
  # again with it on.
  echo "== routed and GPU tests, compensation on (SINKROUTER_CUDA_COMPENSATION=1)" | tee -a "$summary"
  SINKROUTER_CUDA_COMPENSATION=1 SINKROUTER_TEST_BACKENDS=cuda timeout 300 "$BUILD/tests/sr_tests" \
    --gtest_filter='*Routed*:*RealAttention*:*AttentionVariants*:*Fp8*' >"$OUT/compensation_tests.log" 2>&1
  echo "exit $?: $(grep -E '^\[  PASSED  \]|^\[  FAILED  \]' "$OUT/compensation_tests.log" | head -3 | tr '\n' ' ')" >>"$summary"
  SINKROUTER_CUDA_COMPENSATION=1 timeout 300 "$BUILD/tests/gpu/sr_gpu_tests" >>"$OUT/compensation_tests.log" 2>&1
  echo "gpu tests exit $?: $(grep -E '^\[  PASSED  \]|^\[  FAILED  \]' "$OUT/compensation_tests.log" | tail -2 | tr '\n' ' ')" >>"$summary"
  # The streamed tau kernel runs by default only for one sequence of 64K+ tokens: the routed
  # and real-attention tests again with it taken at every length.
  echo "== routed tests, tau streamed at every length (SINKROUTER_CUDA_TAU_STREAM_FROM=0)" | tee -a "$summary"
  SINKROUTER_CUDA_TAU_STREAM_FROM=0 SINKROUTER_TEST_BACKENDS=cuda timeout 300 "$BUILD/tests/sr_tests" --gtest_filter='*Routed*:*RealAttention*:*AttentionVariants*' \
    >"$OUT/tau_stream_tests.log" 2>&1
  echo "exit $?: $(grep -E '^\[  PASSED  \]|^\[  FAILED  \]' "$OUT/tau_stream_tests.log" | head -3 | tr '\n' ' ')" >>"$summary"
  SINKROUTER_CUDA_TAU_STREAM_FROM=0 timeout 300 "$BUILD/tests/gpu/sr_gpu_tests" >>"$OUT/tau_stream_tests.log" 2>&1
  echo "gpu tests exit $?: $(grep -E '^\[  PASSED  \]|^\[  FAILED  \]' "$OUT/tau_stream_tests.log" | tail -2 | tr '\n' ' ')" >>"$summary"
fi

if want sanitize; then
  echo "== compute-sanitizer" | tee -a "$summary"
  san() {
    local tool=$1 filter=$2
    shift 2
    # (racecheck of the GPU tests' FP8 tensor-core cases ran past 150 s on the H100: stop 31)
    local limit=150
    [ "$tool" = racecheck ] && limit=240
    timeout "$limit" compute-sanitizer --tool "$tool" --error-exitcode 99 "$@" --gtest_filter="$filter" >>"$OUT/sanitizer.log" 2>&1
    local rc=$?
    echo "$tool $filter ($(basename "$1")${SINKROUTER_CUDA_SPECTRAL_NODES:+, nodes $SINKROUTER_CUDA_SPECTRAL_NODES}${SINKROUTER_CUDA_COMPENSATION:+, compensation $SINKROUTER_CUDA_COMPENSATION}): exit $rc, $(grep -c 'ERROR SUMMARY: 0 errors' "$OUT/sanitizer.log") clean summaries so far" >>"$summary"
  }
  : >"$OUT/sanitizer.log"
  export SINKROUTER_TEST_BACKENDS=cuda
  # (The three longest contexts take minutes under memcheck; sink_9000_p32 stays.)
  san memcheck '*-*sink_65613*:*sink_262221*:*mixed_40000*:*sink_20000*:*mixed_20003*:*sink_40000*' "$BUILD/tests/gpu/sr_gpu_tests"
  san memcheck '*Dense*:*Routed*:*Cache*' "$BUILD/tests/sr_tests"
  san racecheck 'GpuDecode.*:*sink_9000*:*sink_9005*' "$BUILD/tests/gpu/sr_gpu_tests"
  san synccheck 'GpuDecode.*:*sink_9000*:*sink_9005*' "$BUILD/tests/gpu/sr_gpu_tests"
  # The attention variants (windows, caps, sinks, lse, merge) and the FP8 cache, every pass.
  san memcheck '*AttentionVariants*:*Fp8*:*AttendedRun*' "$BUILD/tests/sr_tests"
  san racecheck '*AttentionVariants*:*Fp8*' "$BUILD/tests/sr_tests"
  # The routed passes with the node tree (its stream, =1) and its walk (=2).
  SINKROUTER_CUDA_SPECTRAL_NODES=1 san memcheck '*Routed*:*RealAttention*' "$BUILD/tests/sr_tests"
  SINKROUTER_CUDA_SPECTRAL_NODES=1 san racecheck '*Routed*' "$BUILD/tests/sr_tests"
  SINKROUTER_CUDA_SPECTRAL_NODES=2 san memcheck '*Routed*' "$BUILD/tests/sr_tests"
  SINKROUTER_CUDA_SPECTRAL_NODES=2 san synccheck '*Routed*' "$BUILD/tests/sr_tests"
  # Reference compensation (the reference and centred summaries on append, the chunks' choice).
  SINKROUTER_CUDA_COMPENSATION=1 san memcheck '*Routed*:*RealAttention*' "$BUILD/tests/sr_tests"
  SINKROUTER_CUDA_COMPENSATION=1 san racecheck '*Routed*' "$BUILD/tests/sr_tests"
  SINKROUTER_CUDA_COMPENSATION=1 san synccheck '*Routed*' "$BUILD/tests/sr_tests"
  SINKROUTER_CUDA_COMPENSATION=1 san memcheck 'GpuDecode.*:*sink_9000*:*mixed_20003_p128*' "$BUILD/tests/gpu/sr_gpu_tests"
  # The streamed tau kernel, taken at every length.
  export SINKROUTER_CUDA_TAU_STREAM_FROM=0
  san memcheck '*Routed*' "$BUILD/tests/sr_tests"
  san racecheck '*Routed*' "$BUILD/tests/sr_tests"
  san synccheck '*Routed*' "$BUILD/tests/sr_tests"
  san memcheck '*AttentionVariants*' "$BUILD/tests/sr_tests"
  unset SINKROUTER_CUDA_TAU_STREAM_FROM
  unset SINKROUTER_TEST_BACKENDS
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$OUT/sanitizer.log" | sort | uniq -c >>"$summary"
fi

if want bench; then
  quick=""
  want quick && quick=--quick
  echo "== benchmark $quick" | tee -a "$summary"
  PYTHONUNBUFFERED=1 timeout 300 python3 "$ROOT/bench/gpu/peers.py" $quick >"$OUT/peers.jsonl" 2>"$OUT/bench.log"
  echo "peers exit $?" >>"$summary"
  timeout 400 "$BUILD/bench/gpu/sr_gpu_bench" $quick >"$OUT/bench.csv" 2>>"$OUT/bench.log"
  echo "bench exit $?" >>"$summary"
  echo "per-call floor (bench/gpu/launch_floor.cu):" >>"$summary"
  timeout 60 "$BUILD/bench/gpu/sr_launch_floor" >>"$summary" 2>&1
  python3 "$ROOT/bench/gpu/report.py" "$OUT/bench.csv" "$OUT/peers.jsonl" "$OUT/results.md" "$OUT/plot.png" \
    >>"$OUT/bench.log" 2>&1
  echo "report exit $?" >>"$summary"
fi

if want cpu; then
  # The CPU backend on this machine's host CPU (more cores, and other instruction sets, than the
  # development machine): bf16 and FP8 rows at 32K and 128K beside the measured read bandwidth.
  echo "== CPU benchmark (host CPU)" | tee -a "$summary"
  lscpu | grep -E "Model name|^CPU\(s\)|Socket|L3" >>"$summary"
  grep -o -w 'avx512f\|avx512_bf16\|avx512_fp16\|avx512vnni\|amx_bf16\|f16c' /proc/cpuinfo | sort -u | tr '\n' ' ' >>"$summary"
  echo >>"$summary"
  timeout 240 "$BUILD/bench/sinkrouter_bench" --threads="${SR_CPU_THREADS:-$(nproc)}" \
    --benchmark_filter='MemoryRead|Decode/context:(32768|131072)/mode:(0|1|3|4|5)/sink:1/' >"$OUT/cpu_bench.txt" 2>&1
  echo "cpu bench exit $?" >>"$summary"
  grep -E "bandwidth|^device|^Decode" "$OUT/cpu_bench.txt" | sed -E 's/ +/ /g' | cut -c1-200 >>"$summary"
  # The bf16 dot-product build against the plain AVX-512 one, on bf16 caches, all threads and one.
  if grep -q avx512_bf16 /proc/cpuinfo; then
    for threads in "${SR_CPU_THREADS:-$(nproc)}" 1; do
      for isa in avx512bf16 avx512; do
        SINKROUTER_CPU_ISA=$isa timeout 120 "$BUILD/bench/sinkrouter_bench" --threads=$threads \
          --benchmark_filter='Decode/context:(32768|131072)/mode:(0|1)/sink:1/dtype:2' >"$OUT/cpu_isa_${isa}_t$threads.txt" 2>&1
        echo "== $isa, $threads threads (exit $?)" >>"$summary"
        grep -E "^device|^Decode" "$OUT/cpu_isa_${isa}_t$threads.txt" | sed -E 's/ +/ /g' | cut -c1-120 >>"$summary"
      done
    done
  fi
fi

if want e2e; then
  echo "== end-to-end byte model (samples/python/e2e/run_gpu.sh)" | tee -a "$summary"
  (cd "$ROOT" && OUT=$OUT SINKROUTER_LIBRARY=$BUILD/lib/libsinkrouter.so bash samples/python/e2e/run_gpu.sh) >"$OUT/e2e_run.log" 2>&1
  echo "e2e exit $?" >>"$summary"
  tail -n 30 "$OUT/e2e_run.log" >>"$summary"
fi

if want probe; then
  echo "== staging probe (bench/gpu/staging_probe.cu)" | tee -a "$summary"
  timeout 120 "$BUILD/bench/gpu/sr_staging_probe" >>"$summary" 2>&1
fi

if want trace; then
  # Per-block phases of one launch per case (bench/gpu/trace_phases.py), from a tracing build of
  # the CUDA backend: SR_TRACE_LIB names the folder of its libsinkrouter-cuda.so (built with
  # -DSR_CUDA_PHASE_TRACE=ON), SR_TRACE_CASES the cases.
  echo "== phase trace ($SR_TRACE_LIB)" | tee -a "$summary"
  for case in ${SR_TRACE_CASES:-sink:1:4096:dense sink:1:131072:dense}; do
    echo "-- $case" >>"$summary"
    SINKROUTER_BACKEND_PATH=$SR_TRACE_LIB SINKROUTER_PHASE_TRACE=$OUT/trace.bin timeout 60 \
      "$BUILD/bench/gpu/sr_gpu_bench" --only "$case" >/dev/null 2>>"$OUT/trace.log"
    python3 "$ROOT/bench/gpu/trace_phases.py" "$OUT/trace.bin" >>"$summary" 2>&1
  done
fi

if want ab; then
  # One tuning knob swept over a few cases, each value in its own process (the backend reads its
  # knobs once): SR_AB_KNOB (default SINKROUTER_CUDA_BLOCKS_PER_SM), SR_AB_VALUES, SR_AB_CASES.
  knob=${SR_AB_KNOB:-SINKROUTER_CUDA_BLOCKS_PER_SM}
  values=${SR_AB_VALUES:-3 4}
  cases=${SR_AB_CASES:-sink:1:4096:dense sink:1:32768:dense sink:1:131072:dense sink:1:524288:dense sink:8:32768:dense sink:32:8192:dense sink:64:4096:dense sink:1:524288:tau12 sink:1:524288:budget1e-3 sink:8:32768:budget1e-2}
  echo "== A/B: $knob over {$values}" | tee -a "$summary"
  for case in $cases; do
    for value in $values; do
      # (stderr kept whole in ab.log: a run that prints no result line says why there)
      env "$knob=$value" timeout 60 "$BUILD/bench/gpu/sr_gpu_bench" --only "$case" 2>"$OUT/ab_run.err" >/dev/null
      echo "rc $? $knob=$value $case" >>"$OUT/ab.log"
      cat "$OUT/ab_run.err" >>"$OUT/ab.log"
      grep -E "per-call" "$OUT/ab_run.err" | sed "s|^|$knob=$value: |" >>"$summary"
    done
  done
fi

if want certificate; then
  # What the spectral summaries buy budget mode (issue 31), one table: per case the oracle and
  # the ideal certified skip (sr_budget_headroom, float64, on the same seed-7 contexts), then the
  # GPU's skip, time and bound/error under each routed bound (SINKROUTER_CUDA_PAGE_SIGMA=0: the
  # sum of norms; the pages' tree terms with reference compensation; SINKROUTER_CUDA_SPECTRAL_NODES=1:
  # the node tree), beside dense and the faster SDPA backend (peers.py), all timed in this call.
  echo "== certificate: oracle, old and new bounds (bench/gpu/certificate_table.py)" | tee -a "$summary"
  : >"$OUT/certificate.log"
  PYTHONUNBUFFERED=1 timeout 120 python3 "$ROOT/bench/gpu/peers.py" --shapes 1x131072,1x524288 >"$OUT/certificate_peers.jsonl" 2>>"$OUT/certificate.log"
  bench_case() {  # label, case, environment
    local label=$1 case=$2
    shift 2
    env "$@" timeout 150 "$BUILD/bench/gpu/sr_gpu_bench" --only "$case" 2>"$OUT/certificate_run.err" >/dev/null
    echo "rc $? $label $case" >>"$OUT/certificate.log"
    grep -E "per-call" "$OUT/certificate_run.err" | sed "s|^|bound=$label |" >>"$OUT/certificate.log"
  }
  for data in sink mixed; do
    bench_case dense "$data:1:524288:dense+fp8-dense"
    bench_case dense "$data:1:131072:dense"
    for case in "$data:1:524288:budget1e-3+budget1e-2+fp8-budget1e-2" "$data:1:131072:budget1e-2"; do
      bench_case sum-of-norms "$case" SINKROUTER_CUDA_PAGE_SIGMA=0
      bench_case page-terms "$case" SINKROUTER_CUDA_COMPENSATION=1
      bench_case node-tree "$case" SINKROUTER_CUDA_SPECTRAL_NODES=1
    done
  done
  timeout 240 "$BUILD/bench/sr_budget_headroom" --budgets 1e-3,1e-2 --data sink,mixed 131072 524288 \
    >"$OUT/certificate_headroom.txt" 2>>"$OUT/certificate.log"
  echo "headroom exit $?" >>"$summary"
  python3 "$ROOT/bench/gpu/certificate_table.py" "$OUT/certificate.log" "$OUT/certificate_headroom.txt" \
    "$OUT/certificate_peers.jsonl" >"$OUT/certificate.md" 2>>"$OUT/certificate.log"
  echo "table exit $?" >>"$summary"
  cat "$OUT/certificate.md" >>"$summary"
fi

if want profile; then
  echo "== profile" | tee -a "$summary"
  timeout 200 ncu --kernel-name regex:decode_kernel --launch-skip 3 --launch-count 1 --section SpeedOfLight \
    --section MemoryWorkloadAnalysis --section WarpStateStats --section Occupancy --section LaunchStats \
    --section SchedulerStats --section SourceCounters --metrics regex:smsp__pcsamp_warps_issue_stalled_.* "$BUILD/bench/gpu/sr_gpu_bench" --only "${SR_PROFILE_CASE:-sink:1:131072:dense}" \
    >"$OUT/ncu.txt" 2>&1
  echo "ncu exit $?" >>"$summary"
  cuobjdump -sass -fun '_ZN2sr3gpu13decode_kernelILi2ELi128ELi4ELi4EEEvNS0_12DecodeParamsE' "$BUILD/lib/libsinkrouter-cuda.so" \
    >"$OUT/sass.txt" 2>&1
fi

if want peers-profile; then
  # One SDPA call per peer and shape (bench/gpu/profile_peers.py), then our step on the same
  # shape; the launch shape and the DRAM throughput of each kernel go to the summary.
  echo "== peers' kernels beside ours (ncu, clocks locked)" | tee -a "$summary"
  sections="--section SpeedOfLight --section LaunchStats --section Occupancy"
  condense() { grep -E "^  [a-zA-Z_].*\(|Duration|DRAM Throughput|Registers Per|Dynamic Shared Memory Per|Static Shared Memory Per|Waves Per SM" | sed 's/  */ /g' | cut -c1-150; }
  : >"$OUT/peers_profile.txt"
  for c in "sdpa_cudnn 64 4096" "sdpa_cudnn 32 8192" "sdpa_flash 8 32768" "sdpa_flash 1 524288" "sdpa_flash 1 4096"; do
    set -- $c
    echo "-- $1 ${2}x$3" >>"$OUT/peers_profile.txt"
    (cd "$ROOT/bench/gpu" && timeout 120 ncu --profile-from-start off $sections python3 profile_peers.py $1 $2 $3) 2>&1 | condense >>"$OUT/peers_profile.txt"
    echo "-- ours ${2}x$3" >>"$OUT/peers_profile.txt"
    timeout 120 ncu --kernel-name regex:decode_kernel --launch-skip 3 --launch-count 1 $sections "$BUILD/bench/gpu/sr_gpu_bench" \
      --only "sink:$2:$3:dense" 2>&1 | condense >>"$OUT/peers_profile.txt"
  done
  cat "$OUT/peers_profile.txt" >>"$summary"
fi

cat "$summary"
[ -f "$OUT/ncu.txt" ] && grep -E "stalled_.*(long_scoreboard|barrier|short_scoreboard|wait|math|mio|lg_throttle|no_instruction|dispatch|not_selected|selected|branch|membar|sleeping|tex|drain|imc|misc)[^_]|Duration|DRAM Throughput|Memory Throughput|L2 Hit|Achieved Occupancy|Theoretical Occupancy|Registers Per|Block Limit|Issued Warp|No Eligible|Warp Cycles Per Issued|Stall|est. speedup|OPT" "$OUT/ncu.txt" | cut -c1-200 | head -60
[ -f "$OUT/sass.txt" ] && echo "SASS: $(grep -c 'LDG.E.128' "$OUT/sass.txt") LDG.E.128, $(grep -c 'LDG' "$OUT/sass.txt") LDG, $(grep -c 'STL\|LDL' "$OUT/sass.txt") local"
[ -f "$OUT/bench.log" ] && grep -E "^  (sink|mixed|real)" "$OUT/bench.log" | tail -n 80
[ -f "$OUT/results.md" ] && cut -c1-220 "$OUT/results.md" | tail -n 80
exit 0
