#!/usr/bin/env bash
# The next device calls, numbered, each within one 10-minute call on a lent GPU machine (see
# docs/performance.md, "Not measured yet"). Usage, from the repo root on the GPU machine (wheels in
# .whl/, as bench/device_run.sh needs them):
#   bash bench/device_plan.sh N        (N = 0..5; a warm machine keeps the install and the caches)
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
nvidia-smi --query-gpu=name --format=csv,noheader
case "${1:-1}" in
0) # the spark_k bf16 gradient ablation (issue 15), then the GPU tests of the eighth session's changes
  TAIL=40 step 240 lowp_probe $PY bench/probe_lowp_spark_k.py --json "$OUT/lowp_probe.json"
  TAIL=8 step 200 tests env SPARKC_TUNE=0 $PY -m pytest -v -m gpu -n 15 --timeout 180 -p no:cacheprovider \
    tests/kernels/test_matmul.py tests/kernels/test_rownorm.py tests/codegen/test_low_precision_gradients.py
  grep -E "FAILED|ERROR|passed|failed" "$OUT/tests.log" | tail -12
  ;;
1) # the tiny_gpt step against nanoGPT (issue 22) and its profile, the routed MLP rows (issue 20)
  step 200 nanogpt_2l $PY bench/nanogpt_step.py --json "$OUT/nanogpt_2l.json"
  TAIL=24 step 120 tiny_gpt_profile $PY -m sparkc bench examples/tiny_gpt.spark --shape B=8,N=1024 -D d=1024 \
    -D heads=16 -D max_len=1024 -D vocab=32000 -D layers=2 --modes step --variants sparkc --no-compile --profile 20
  step 130 routed_mlp $PY bench/procedural_routed_mlp.py --out "$OUT/routed_mlp.json"
  ;;
2) # the basis rows not reached (key, per-element) and the lora rows (issues 20, 22)
  step 330 attention_basis $PY bench/bench_attention.py --only basis --json "$OUT/attn_basis.json"
  step 100 plinear $PY bench/procedural_linear.py --out "$OUT/plinear.json"
  ;;
3) # the d = 2048 / 8-layer headline and hspmn's model row (issues 22, 18)
  step 330 nanogpt_8l $PY bench/nanogpt_step.py --d 2048 --layers 8 --json "$OUT/nanogpt_8l.json"
  step 220 sqdk_model $PY bench/sqdk.py --model --dim 1024 --out "$OUT/sqdk_model.json"
  ;;
4) # splatflow's model row with the compile row, the decode table (issues 19, 21)
  step 250 splat_model $PY bench/splat.py --model --wheels .whl --out "$OUT/splat_model.json"
  step 150 decode $PY bench/decode.py --batch 1 64 --models splatflow hspmn spark_k --json "$OUT/decode.json"
  step 150 decode_sweep $PY bench/decode.py --sweep --json "$OUT/sweep.json"
  ;;
5) # cold start, with and without the tuner's parallel compile pass (issue 22 item 5)
  for w in 1 8; do
    step 140 "cold_attention_w$w" env SPARKC_COMPILE_WORKERS=$w SPARKC_CACHE_DIR=/tmp/cold$w $PY -m sparkc bench \
      --op attention --shape B=4,N=4096,D=2048 --hp heads=16 --variants sparkc --no-compile
  done
  for w in 1 8; do
    step 140 "cold_tiny_gpt_w$w" env SPARKC_COMPILE_WORKERS=$w SPARKC_CACHE_DIR=/tmp/coldm$w $PY -m sparkc bench \
      examples/tiny_gpt.spark --shape B=8,N=1024 -D d=1024 -D heads=16 -D layers=8 -D vocab=32000 --modes step \
      --variants sparkc --no-compile
  done
  ;;
*) echo "usage: bash bench/device_plan.sh 0..5" >&2; exit 2 ;;
esac
echo "total $(($(date +%s) - T0)) s"
