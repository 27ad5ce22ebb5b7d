#!/usr/bin/env bash
# One device call: install sparkc on the GPU machine, run the GPU tests, train tiny_gpt on the
# Triton path, and run the kernel benchmarks. Usage (from the repo root, on the GPU machine):
#   bash bench/device_run.sh [tests|train|sanitize|bench|model|all|none]  (none: install into /tmp/site only; export PYTHONPATH=/tmp/site to use it)
# Writes logs and JSON under $OUT (or ./out when unset). Needs .whl/ with the lark wheel (the
# GPU machine has no network); see docs/performance.md.
set -uo pipefail
what="${1:-all}"
OUT="${OUT:-$PWD/out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
# The wheel built here (`pip wheel . --no-deps -w .whl`): the GPU machine's setuptools may be too
# old for an editable install of this pyproject. ruff (for formatting generated code) is carried
# as a wheel too when the machine lacks it.
rm -rf /tmp/site
python3 -m pip install -q --no-deps --no-index --no-compile --target /tmp/site .whl/*.whl \
  >"$OUT/install.log" 2>&1 \
  || { echo "install failed"; tail -20 "$OUT/install.log"; exit 1; }
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
# -P: the checkout's own sparkc/ folder must not shadow the installed package (its runtime/ and
# templates live beside it, not inside it).
PY="python3 -P"
# The tuning and Triton caches live in .devcache/ (ignored by git), which a warm machine keeps
# between calls; `devcache.tgz` under $OUT carries them to the next cold machine (put it at
# .devcache/devcache.tgz and name .devcache in the device call's carry). A choice is keyed by its
# kernel's source hash, so an edited kernel is tuned afresh. The startup measurement of `model`
# uses its own empty cache.
export SPARKC_CACHE_DIR="${SPARKC_CACHE_DIR:-$PWD/.devcache/sparkc}"
if [[ ! -d $SPARKC_CACHE_DIR && -f .devcache/devcache.tgz ]]; then
  mkdir -p "$SPARKC_CACHE_DIR" && tar xzf .devcache/devcache.tgz -C "$SPARKC_CACHE_DIR"
fi
save_cache() {
  [[ -d $SPARKC_CACHE_DIR ]] || return 0
  tar czf /tmp/devcache.tgz -C "$SPARKC_CACHE_DIR" . 2>/dev/null
  # Files back from the machine are capped at 16 MiB each: without Triton's kernels when too big.
  if (($(stat -c %s /tmp/devcache.tgz) > 15000000)); then
    tar czf /tmp/devcache.tgz -C "$SPARKC_CACHE_DIR" --exclude ./triton . 2>/dev/null
  fi
  cp /tmp/devcache.tgz "$OUT/devcache.tgz"
}
trap save_cache EXIT
$PY - <<'PY'
import torch, triton
p = torch.cuda.get_device_properties(0)
print(f"torch {torch.__version__} triton {triton.__version__} {p.name} sm_{p.major}{p.minor} "
      f"{p.multi_processor_count} SMs {p.total_memory / 2**30:.0f} GiB")
PY
if [[ $what == tests || $what == all ]]; then
  # -n 8: kernel compilation and autotuning dominate; one process per core group keeps it short.
  # GPU_TESTS: which test paths (default: all); TEST_LIMIT bounds the run in seconds.
  # Tile tuning off (GPU_TUNE=1 turns it on): every test shape is a new shape class, and timing
  # seven GEMM candidates for each made the suite run out of time; sanitize.py launches every
  # candidate instead.
  # shellcheck disable=SC2086
  # SIGINT at the limit: pytest then still prints the names and tracebacks of the failures so
  # far (a plain kill printed only "..F..F" on 2026-12-02); SIGKILL 20 s later if it hangs.
  SPARKC_TUNE=${GPU_TUNE:-0} timeout -s INT -k 20 "${TEST_LIMIT:-420}" $PY -m pytest -q -m gpu -n 8 \
    --timeout 400 --durations 15 -p no:cacheprovider ${GPU_TESTS:-tests} 2>&1 | tee "$OUT/gpu_tests.log" | tail -25
  # `timeout` ends pytest but not its xdist workers, which go on running GPU tests: on
  # 2026-12-01 they overlapped (and spoiled) the benchmarks that followed. End every process
  # still holding the GPU before anything is timed.
  nvidia-smi --query-compute-apps=pid --format=csv,noheader | xargs -r kill -9 2>/dev/null
  sleep 1
fi
if [[ $what == train || $what == all ]]; then
  $PY -m sparkc.demo --device cuda --steps 300 2>&1 | tee "$OUT/train.log" | tail -25
  $PY -m sparkc.demo --device cuda --example spark_k --steps 300 2>&1 | tee -a "$OUT/train.log" | tail -25
fi
if [[ $what == sanitize || $what == all ]]; then
  # Every kernel family, odd shapes, forward and backward, under the memory checker, in
  # SHARDS processes side by side (SANITIZE_ONLY: comma-separated program/example names).
  shards=${SHARDS:-4}
  for ((i = 0; i < shards; i++)); do
    # One tuning round: every candidate still launches once (coverage), not three times.
    SPARKC_TUNE_ROUNDS=1 timeout "${SANITIZE_LIMIT:-300}" compute-sanitizer --tool memcheck --error-exitcode 9 \
      --print-limit 50 $PY bench/sanitize.py --shard "$i/$shards" --only "${SANITIZE_ONLY:-}" \
      >"/tmp/sanitize_$i.log" 2>&1 &
  done
  wait
  for ((i = 0; i < shards; i++)); do
    echo "== shard $i/$shards"
    cat "/tmp/sanitize_$i.log"
  done | tee "$OUT/sanitize.log" | grep -v "^  " | tail -60
fi
if [[ $what == bench || $what == all ]]; then
  # BENCHES names the bench/ scripts to run (default: all of them), BENCH_LIMIT bounds each
  # script's seconds.
  # Entries are separated by ';' and may carry arguments ("bench/bench_spark_k.py --blocks spd")
  # and their own limit after '@' ("bench/bench_attention.py --only sdpa,sparkc,flex@200"). The
  # JSON of the n-th entry is $OUT/<script>_<n>.json (a script may appear twice).
  if [[ -n ${BENCHES:-} ]]; then IFS=';' read -ra list <<<"$BENCHES"; else list=(bench/bench_*.py); fi
  n=0
  for entry in "${list[@]}"; do
    b=${entry%@*}
    limit=${BENCH_LIMIT:-240}
    [[ $entry == *@* ]] && limit=${entry##*@}
    n=$((n + 1))
    echo "== $b (limit ${limit} s)"
    # shellcheck disable=SC2086
    timeout "$limit" $PY $b --json "$OUT/$(basename "${b%% *}" .py)_$n.json" 2>&1 | tail -30
  done
fi
if [[ $what == model || $what == all ]]; then
  # `sparkc bench` of tiny_gpt at GPT-2-small-like width (MODEL_MODES, default
  # fwd,fwd+bwd,step; MODEL_VARIANTS, default every one that applies; MODEL_LIMIT seconds),
  # unless MODEL_BENCH=0; then one attention op (OP_BENCH=0 skips it).
  if [[ ${MODEL_BENCH:-1} == 1 ]]; then
    # shellcheck disable=SC2046
    timeout "${MODEL_LIMIT:-600}" $PY -m sparkc bench examples/tiny_gpt.spark --shape B=8,N=1024 \
      -D d=1024 -D heads=16 -D max_len=1024 -D vocab=32000 --modes "${MODEL_MODES:-fwd,fwd+bwd,step}" \
      $([[ -n ${MODEL_VARIANTS:-} ]] && echo --variants "$MODEL_VARIANTS") \
      --json "$OUT/bench_tiny_gpt.json" 2>&1 | tail -24
  fi
  if [[ ${OP_BENCH:-1} == 1 ]]; then
    # Twice: the first process starts cold (Triton compiles, tiles are timed), the second warm
    # (Triton's cache and sparkc's tuning cache on disk): compare their "first call s".
    rm -rf /tmp/sparkc_startup_cache
    for start in cold warm; do
      echo "== sparkc bench --op attention ($start start)"
      SPARKC_CACHE_DIR=/tmp/sparkc_startup_cache TRITON_CACHE_DIR=/tmp/sparkc_startup_cache/triton $PY -m sparkc bench --op attention --hp heads=16 --shape B=4,N=4096,D=2048 --no-compile \
        --json "$OUT/bench_op_attention_$start.json" 2>&1 | tail -8
    done
  fi
fi
