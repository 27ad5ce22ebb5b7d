#!/usr/bin/env bash
# The next device calls, numbered, each within one 10-minute call on a lent GPU machine (see
# docs/performance.md, "Not measured yet"). The machine is given back after 30 s idle: issue the
# next call at once (a lost machine means a reinstall, which this script does by itself). Usage,
# from the repo root on the GPU machine (wheels in .whl/, as bench/device_run.sh needs them):
#   bash bench/device_plan.sh N        (N = 0..20; next: 20 15 14 18 19, then 4 5, then 1 3 6 2 8; a warm machine keeps the install and the caches)
# Writes logs and JSON under $OUT (or ./out). Every step has its own time limit, so one that runs
# long costs its own rows only.
set -uo pipefail
OUT="${OUT:-$PWD/out}"
mkdir -p "$OUT"
[[ -d /tmp/site/sparkc ]] || bash bench/device_run.sh none 2>&1 | tail -3
export PYTHONPATH=/tmp/site SPARKC_CACHE_DIR=/tmp/sc_cache PYTHONUNBUFFERED=1
PY="python3 -P"
T0=$(date +%s)
step() { # step LIMIT NAME COMMAND...: run with a limit, keep the whole log, print its tail
  local limit=$1 name=$2
  shift 2
  echo "== $name (limit ${limit} s, t=$(($(date +%s) - T0)) s)"
  timeout -s INT -k 10 "$limit" "$@" >"$OUT/$name.log" 2>&1
  grep -v -i "warn" "$OUT/$name.log" | tail -"${TAIL:-16}"
  nvidia-smi --query-compute-apps=pid --format=csv,noheader | xargs -r kill -9 2>/dev/null
}
exps() { # exps "NAMES" LIMIT: every seed of every named experiment as its own process, at once
  local pids=() name s
  for name in $1; do
    for s in 0 1 2; do
      timeout -s INT -k 10 "$2" $PY -m sparkc.experiments "$name" --device cuda --no-tune \
        --seeds $s --out "$OUT/${name}_s$s" >"$OUT/${name}_s$s.log" 2>&1 &
      pids+=($!)
    done
  done
  for p in "${pids[@]}"; do wait "$p"; done
  for name in $1; do
    for s in 0 1 2; do echo "$name seed $s: $(tr '\r' '\n' <"$OUT/${name}_s$s.log" | grep -v -i warn | tail -1)"; done
  done
}
exps_seq() { # exps_seq "NAME:SEEDS ..." LIMIT: per experiment a loop over its seeds (comma-separated), the loops at once
  local pids=() job name
  for job in $1; do
    name=${job%%:*}
    (for s in $(tr ',' ' ' <<<"${job#*:}"); do
      left=$(($2 - ($(date +%s) - T0)))
      ((left > 20)) || break
      timeout -s INT -k 10 "$left" $PY -m sparkc.experiments "$name" --device cuda --no-tune \
        --seeds "$s" --out "$OUT/${name}_s$s" >"$OUT/${name}_s$s.log" 2>&1
    done) &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  for job in $1; do
    name=${job%%:*}
    for s in $(tr ',' ' ' <<<"${job#*:}"); do
      echo "-- $name seed $s:"
      tr '\r' '\n' <"$OUT/${name}_s$s.log" 2>/dev/null | grep -v -i warn | tail -"${TAIL:-4}"
    done
  done
}
decode_tests() { # every test of the decoding files, compiled kernels instead of the interpreter
  # -m gpu: the files' other tests build CPU tensors, which on this machine (no interpreter)
  # are refused or compile nothing (2026-12-07, fifteenth: 12 of 14 failures were those)
  TAIL=10 step 150 decode_tests env SPARKC_TUNE=0 $PY -m pytest -q -m gpu -n 8 --timeout 140 \
    -p no:cacheprovider tests/runtime/test_decode.py tests/runtime/test_decode_graph.py \
    tests/runtime/test_decode_prefill.py tests/runtime/test_decode_kernel_paths.py \
    tests/kernels/test_decode_attention.py tests/kernels/test_decode_splat.py \
    tests/kernels/test_decode_stack.py
  grep -E "FAILED|ERROR|passed|failed" "$OUT/decode_tests.log" | tail -10
}
long_context() { # long_context LIMIT: JOBS (seed:length ...) one process each, in order, until LIMIT
  local job s n left
  for job in ${JOBS:-0:1024 0:4096 0:16384 1:1024 1:4096 1:16384 2:1024 2:4096 2:16384}; do
    s=${job%%:*} n=${job#*:}
    left=$(($1 - ($(date +%s) - T0)))
    ((left > 30)) || { echo "no time left for seed $s N=$n"; continue; }
    timeout -s INT -k 10 "$left" $PY -m sparkc.experiments long_context --device cuda --no-tune \
      --seeds "$s" --set "lengths=$n," --out "$OUT/lc_s${s}_n$n" >"$OUT/lc_s${s}_n$n.log" 2>&1
    echo "long_context seed $s N=$n (t=$(($(date +%s) - T0)) s):"
    tr '\r' '\n' <"$OUT/lc_s${s}_n$n.log" | grep -v -i warn | grep -E "seed|tokens|Error" | tail -4
  done
}
nvidia-smi --query-gpu=name --format=csv,noheader
case "${1:-1}" in
0) # measured 2026-12-07 (tenth): the low-precision tests, the fold's tests, the 2-layer step
  TAIL=12 step 200 lowp env SPARKC_TUNE=0 $PY -m pytest -v -m gpu -n 15 --timeout 180 -p no:cacheprovider \
    --runxfail tests/codegen/test_low_precision_gradients.py
  grep -E "FAILED|ERROR|passed|failed" "$OUT/lowp.log" | tail -12
  TAIL=6 step 120 fold_tests env SPARKC_TUNE=0 $PY -m pytest -v -m gpu -n 4 --timeout 100 -p no:cacheprovider \
    tests/kernels/test_matmul.py -k "folded or pass_through or matches_reference"
  step 200 nanogpt_2l $PY bench/nanogpt_step.py --json "$OUT/nanogpt_2l.json"
  ;;
1) # the d = 2048 / 8-layer headline (issue 22): compile + tuning of 8 layers took > 280 s (2026-12-07)
  step 560 nanogpt_8l $PY bench/nanogpt_step.py --d 2048 --layers 8 --json "$OUT/nanogpt_8l.json"
  ;;
2) # hspmn's model row with the compiled reference now before the eager one (issue 18), then its
  # decode rows after the prefill change (issue 21; B=64 prefill was 1,078 ms on 2026-12-07)
  step 300 sqdk_model $PY bench/sqdk.py --model --dim 1024 --out "$OUT/sqdk_model.json"
  step 250 decode_hspmn $PY bench/decode.py --batch 1 64 --models hspmn --no-tiny-gpt --json "$OUT/decode_hspmn.json"
  ;;
3) # cold start of the tiny_gpt step (issue 22 item 5), empty caches, parallel compile on (the
  # default since 2026-12-07): the defaults (shipped choices: on an H100 with Triton 3.6 they match
  # this shape, the kernels being those of bench/nanogpt_step.py's 2 layers; pruned GEMM lists),
  # no shipped choices, and neither (every candidate timed: also new data for
  # bench/replay_gemm_pruning.py in tuning.tgz)
  for mode in default noship full; do
    case $mode in default) e="";; noship) e="SPARKC_TUNE_SHIPPED=0";; full) e="SPARKC_TUNE_SHIPPED=0 SPARKC_TUNE_PRUNE=0";; esac
    step 180 "cold_tiny_gpt_$mode" env $e SPARKC_CACHE_DIR=/tmp/coldm_$mode $PY -m sparkc bench \
      examples/tiny_gpt.spark --shape B=8,N=1024 -D d=1024 -D heads=16 -D layers=8 -D vocab=32000 \
      --modes step --variants sparkc --no-compile
  done
  SPARKC_CACHE_DIR=/tmp/coldm_full  # its tuning choices (all candidates timed) come back below
  ;;
4) # the eleventh session's changes, untimed so far: the trajectory probe's shifted_norm and
  # one_pass rows (issue 19: does a single pass reach 80% of copy?), the tiny_gpt step with the
  # bias-only GEMM's addmm candidate (issue 22), demopack with it (issue 20)
  # (fourteenth session: the value check now waits on an event after the kernels are queued;
  # its GPU test first, then the per-call rows it should move: nanogpt_2l's sparkc row, plinear)
  TAIL=4 step 60 input_checks_gpu env SPARKC_TUNE=0 $PY -m pytest -q -m gpu -p no:cacheprovider \
    tests/runtime/test_input_checks.py
  # (the trajectory probe's one_pass rows ran on 2026-12-07, fifteenth: plan 10 has the probe)
  step 200 nanogpt_2l $PY bench/nanogpt_step.py --json "$OUT/nanogpt_2l.json"
  step 100 plinear $PY bench/procedural_linear.py --out "$OUT/plinear.json"
  ;;
6) # the basis rows not reached twice (issue 22 item 2): each tile class compiles and tunes here
  step 560 attention_basis_key $PY bench/bench_attention.py --only basis --basis-rows key,per-element \
    --json "$OUT/attn_basis.json"
  ;;
7) # tiny_gpt's decode table after the prefill change (issue 21: B=64 prefill was 81 ms), then
  # splatflow's rows after the one-launch splat step (B=1 graph step was 485 tok/s)
  # First the GPU decoding tests (prefill ≡ full forward, graph replay, the splat step kernel).
  TAIL=8 step 150 decode_tests env SPARKC_TUNE=0 $PY -m pytest -v -m gpu -n 8 --timeout 140 \
    -p no:cacheprovider tests/runtime/test_decode.py tests/runtime/test_decode_graph.py \
    tests/kernels/test_decode_splat.py tests/kernels/test_decode_stack.py tests/kernels/test_decode_attention.py
  grep -E "FAILED|ERROR|passed|failed" "$OUT/decode_tests.log" | tail -8
  step 200 decode_tiny_gpt $PY bench/decode.py --batch 1 64 --json "$OUT/decode_tiny_gpt.json"
  step 200 decode_splatflow $PY bench/decode.py --batch 1 64 --models splatflow --no-tiny-gpt \
    --json "$OUT/decode_splatflow.json"
  ;;
8) # sqdk at 100% routing under the profiler: its gap to the dense user block split into GEMM and
  # attention time (issue 18); then lora/demopack and routed_mlp again (issue 20)
  TAIL=40 step 150 sqdk_profile $PY -m sparkc bench bench/sqdk_block.spark --shape B=4,N=4096 --dtype bf16 \
    --variants sparkc --no-compile --profile 15
  step 100 plinear $PY bench/procedural_linear.py --out "$OUT/plinear.json"
  step 150 routed_mlp $PY bench/procedural_routed_mlp.py --out "$OUT/routed_mlp.json"
  ;;
5) # spark_k's decode rows (issue 21), after its verifier prompts became one scan launch (the
  # 512-token prefill took 815-995 ms before, 2026-12-07 eleventh): one batch size per step
  # (each row compiles its own static step under torch.compile)
  for b in 1 64; do
    step 270 "decode_spark_k_b$b" $PY bench/decode.py --batch $b --models spark_k --no-tiny-gpt --json "$OUT/decode_spark_k_b$b.json"
  done
  ;;
9) # issue 21's remaining rows: the GPU decoding tests (the one-launch splat and verifier steps never
  # ran on a GPU), time per decoded token at contexts 1k / 8k / 32k for the verifier-only model
  # (bench/verifier_lm.spark) and splatflow (after the one-launch splat step), spark_k's B=1 row
  TAIL=8 step 150 decode_tests env SPARKC_TUNE=0 $PY -m pytest -v -m gpu -n 8 --timeout 140 \
    -p no:cacheprovider tests/runtime/test_decode.py tests/runtime/test_decode_graph.py \
    tests/kernels/test_decode_splat.py tests/kernels/test_decode_stack.py tests/kernels/test_decode_attention.py
  grep -E "FAILED|ERROR|passed|failed" "$OUT/decode_tests.log" | tail -8
  TAIL=12 step 150 decode_sweep $PY bench/decode.py --sweep --sweep-models verifier_lm splatflow \
    --json "$OUT/decode_sweep.json"
  step 260 decode_spark_k_b1 $PY bench/decode.py --batch 1 --models spark_k --no-tiny-gpt --json "$OUT/decode_spark_k_b1.json"
  ;;
10) # issues 18 and 19's bounds: hspmn's model row with the compiled reference (300 s), sqdk at 100%
  # routing under the profiler (GEMM vs attention time of its gap to the dense block), and what
  # bounds the trajectory forward below 80% of copy
  step 260 sqdk_model $PY bench/sqdk.py --model --dim 1024 --out "$OUT/sqdk_model.json"
  TAIL=40 step 150 sqdk_profile $PY -m sparkc bench bench/sqdk_block.spark --shape B=4,N=4096 --dtype bf16 \
    --variants sparkc --no-compile --profile 15
  TAIL=10 step 150 traj_probe $PY bench/probe_trajectory_bound.py --json "$OUT/traj_probe.json"
  ;;
11) # spark_k's B=64 decode row (issue 21), then its gate rounded once by torch (issue 15)
  step 270 decode_spark_k_b64 $PY bench/decode.py --batch 64 --models spark_k --no-tiny-gpt --json "$OUT/decode_spark_k_b64.json"
  TAIL=40 step 280 lowp_probe $PY bench/probe_lowp_spark_k.py --only base sigmoid_once gemm_sigmoid \
    --json "$OUT/lowp_probe.json"
  ;;
12) # issue 23: the experiments' GPU tests (the graphed training loop against eager steps, every
  # smoke on the Triton kernels), then dyck and structure_noise, every seed its own process, all
  # six at once on the one GPU (--no-tune: no candidate timing on a cold machine; their tokens/s
  # are from shared runs and mean little; the quality metrics do not depend on it). Merge after:
  #   python -m sparkc.experiments dyck --merge OUT/dyck_s0 OUT/dyck_s1 OUT/dyck_s2 --out DIR
  TAIL=6 step 150 exp_tests env SPARKC_TUNE=0 $PY -m pytest -v -m gpu -n 6 --timeout 140 \
    -p no:cacheprovider tests/experiments
  grep -E "FAILED|ERROR|passed|failed" "$OUT/exp_tests.log" | tail -6
  exps "dyck structure_noise" 400
  ;;
13) # issue 23: reachability and recall, as plan 12 runs dyck and structure_noise
  exps "reachability recall" 560
  ;;
14) # issue 23, every experiment but long_context at its documented size: one shell loop per
  # experiment, the four at once on the one GPU, each running its seeds one process after another
  # (the first compiles the kernels; the later ones find them in Triton's cache). Only the quality
  # metrics count from this call: the experiments share the GPU, so their tokens/s and seconds
  # are not solo timings. (2026-12-07, twelfth: 12 processes at once, every seed compiling the
  # same kernels beside the GPU tests, finished no run in 280 s.)
  # Seed 0 of dyck and structure_noise ran on 2026-12-07 (twelfth session), their seeds 1 and 2
  # and reachability's three seeds on the development CPU (fourteenth and fifteenth;
  # docs/experiments/runs/): recall is what is left, its three seeds in three loops at once.
  exps_seq "${JOBS:-recall:0 recall:1 recall:2}" \
    "${LIMIT:-560}"
  ;;
15) # issue 23's long_context, alone on the GPU (its tokens/s and equal-time losses are timings):
  # one process per (seed, length), one after another, so each finished pair is kept (the first
  # compiles; the later ones find the kernels in the caches). Merge the folders after:
  #   python -m sparkc.experiments long_context --merge OUT/lc_s0_n1024 ... --out DIR
  long_context "${LIMIT:-560}"
  ;;
16) # 2026-12-07 (thirteenth): the new decode code on the GPU (every test of these files, with
  # compiled kernels instead of the interpreter): the fused split-KV step (RoPE, cache write),
  # the generated prefill, the splat step with its projections; then the decode tables of
  # tiny_gpt (prefill now the forward's kernels; B=64 prefill was 81 ms) and splatflow (the
  # splat step's fused-or-GEMV choice is timed on its first step); the one-SM streaming probe
  # (is the verifier step's projection fusion slower, as docs/decoding.md argues?)
  decode_tests
  TAIL=14 step 40 one_sm $PY bench/probe_one_sm_stream.py --json "$OUT/one_sm.json"
  step 180 decode_tiny_gpt $PY bench/decode.py --batch 1 64 --json "$OUT/decode_tiny_gpt.json"
  step 170 decode_splatflow $PY bench/decode.py --batch 1 64 --models splatflow --no-tiny-gpt \
    --json "$OUT/decode_splatflow.json"
  ;;
17) # plan 16 cut to what a short budget buys: the decode tests, tiny_gpt's decode table, then
  # splatflow's (each step keeps what it finished if the call's limit cuts the next)
  decode_tests
  step 150 decode_splatflow $PY bench/decode.py --batch 1 --models splatflow --no-tiny-gpt \
    --json "$OUT/decode_splatflow.json"
  step 200 decode_tiny_gpt $PY bench/decode.py --batch 1 64 --json "$OUT/decode_tiny_gpt.json"
  ;;
18) # issue 22 item 4: every block per call (no CUDA graphs) against torch.compile of its reference
  # and eager, B=8, N=2048, D=1024, bf16, one `sparkc bench` process per block (never measured
  # as one table; spd_router was 1.16 / 5.09 ms against compile's 0.50 / 2.42 when filed).
  # BLOCKS="a,b" picks some (bench/blocks_per_call.py lists them); a cold block compiles and
  # tunes for up to a minute, so one call may not reach the last: rerun with the rest.
  TAIL=24 step 585 blocks $PY bench/blocks_per_call.py ${BLOCKS:+--only "$BLOCKS"} --limit 150 \
    --budget 540 --json "$OUT/blocks.json"
  ;;
19) # issue 22 item 4's bound for spd_router per call: its kernels and the device-busy fraction,
  # sparkc against torch.compile of the reference (how many launches each, and how busy the GPU)
  TAIL=80 step 300 spd_profile $PY -m sparkc bench --op spd_router --shape B=8,N=2048,D=1024 \
    --variants sparkc,compile --profile 40 --json "$OUT/spd_profile.json"
  ;;
20) # the compiled decode step of splatflow 1.1e-2 from the eager steps (H100, 2026-12-07
  # fifteenth; CPU agrees to 2e-7): which of the step rules, Inductor or tracing parts from the
  # full forward, then the failing test again
  TAIL=8 step 150 compiled_decode $PY bench/probe_compiled_decode.py --json "$OUT/compiled_decode.json"
  TAIL=6 step 100 compiled_decode_test env SPARKC_TUNE=0 $PY -m pytest -q -m gpu -p no:cacheprovider \
    tests/runtime/test_decode_graph.py -k "compiled"
  # issue 19: the trajectory probe with its backward rows (bwd_copy, bwd_shape, generated backward)
  # and the row-stream form (one pass, every row read once: bench/probe_trajectory_stream.py),
  # then the op's own table, whose tuner now times the stream candidates beside the tiles
  TAIL=12 step 130 traj_stream $PY bench/probe_trajectory_stream.py --json "$OUT/traj_stream.json"
  TAIL=12 step 150 trajectory $PY bench/trajectory.py --dtypes bf16 --out "$OUT/trajectory.json"
  TAIL=14 step 100 traj_probe $PY bench/probe_trajectory_bound.py --json "$OUT/traj_probe.json"
  ;;
*) echo "usage: bash bench/device_plan.sh 0..20" >&2; exit 2 ;;
esac
# Experiments write many files; at most 8 come back from a call: one archive of them all.
if [[ ${1:-} == 14 || ${1:-} == 15 ]]; then
  tar czf /tmp/results.tgz -C "$OUT" --exclude=install.log . \
    && find "$OUT" -mindepth 1 -delete && mv /tmp/results.tgz "$OUT/results.tgz"
fi
# The tuning choices made on this card (JSON, small) come back with the logs: the material for
# shipped per-GPU defaults (issue 22 item 5).
[[ -d $SPARKC_CACHE_DIR/tuning ]] && tar czf "$OUT/tuning.tgz" -C "$SPARKC_CACHE_DIR" tuning
echo "total $(($(date +%s) - T0)) s"
