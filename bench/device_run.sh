#!/usr/bin/env bash
# One device call: install sparkc on the GPU machine, run the GPU tests, train tiny_gpt on the
# Triton path, and run the kernel benchmarks. Usage (from the repo root, on the GPU machine):
#   bash bench/device_run.sh [tests|train|bench|all]
# Writes logs and JSON under $OUT (or ./out when unset). Needs .whl/ with the lark wheel (the
# GPU machine has no network); see docs/performance.md.
set -uo pipefail
what="${1:-all}"
OUT="${OUT:-$PWD/out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/lark-*.whl \
  && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
python3 -m pip install -q --no-deps --no-build-isolation -e . >"$OUT/install.log" 2>&1 \
  || python3 -m pip install -q --no-deps .whl/sparkc-*.whl >>"$OUT/install.log" 2>&1 \
  || { echo "install failed"; tail -20 "$OUT/install.log"; exit 1; }
python3 - <<'PY'
import torch, triton
p = torch.cuda.get_device_properties(0)
print(f"torch {torch.__version__} triton {triton.__version__} {p.name} sm_{p.major}{p.minor} "
      f"{p.multi_processor_count} SMs {p.total_memory / 2**30:.0f} GiB")
PY
if [[ $what == tests || $what == all ]]; then
  python3 -m pytest -q -m gpu -p no:cacheprovider tests 2>&1 | tee "$OUT/gpu_tests.log" | tail -25
fi
if [[ $what == train || $what == all ]]; then
  python3 -m sparkc.demo --device cuda --steps 300 2>&1 | tee "$OUT/train.log" | tail -25
fi
if [[ $what == bench || $what == all ]]; then
  for b in bench/bench_*.py; do
    echo "== $b"
    timeout 240 python3 "$b" --json "$OUT/$(basename "$b" .py).json" 2>&1 | tail -30
  done
fi
