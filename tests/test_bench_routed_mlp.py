"""bench/procedural_routed_mlp.py --dry-run (CPU, Triton interpreter, tiny shapes) runs every
implementation and writes its JSON: the rows of each implementation and mode, the routed
implementations agreeing with sparkc's output, and the speed-up ratios with their targets.
The timings themselves only mean something on a GPU (the lead's run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_routed_mlp_bench_dry_run_writes_rows_and_ratios(tmp_path):
    out = tmp_path / "rb.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "procedural_routed_mlp.py"),
            "--dry-run",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=dict(os.environ, TRITON_INTERPRET="1"),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    impls = {(r["impl"], r["mode"]) for r in data["rows"]}
    for impl in ("sparkc", "dense MLP", "grouped_mm+perm", "eager"):
        assert {(impl, "forward"), (impl, "forward+backward")} <= impls
    for r in data["rows"]:
        assert r["ms"] is not None or r["impl"] == "grouped_mm+perm", r
        if r["impl"] in ("eager", "sparkc"):
            assert r["max_abs_diff_vs_sparkc"] < 1e-4
    assert {s["versus"] for s in data["ratios"]} == {"dense MLP", "grouped_mm+perm", "eager"}
    assert "sparkc speed-up vs" in proc.stdout
