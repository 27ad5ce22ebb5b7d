"""A generated module under DistributedDataParallel (2 CPU processes, gloo): gradients are
averaged across ranks, so after one step both replicas hold the same parameters, equal to a
single-process step on the concatenated batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import os, sys, torch, torch.distributed as dist
import sparkc
rank, world = int(sys.argv[1]), 2
dist.init_process_group("gloo", init_method=f"file://{sys.argv[2]}", rank=rank, world_size=world)
m = sparkc.load(sys.argv[3])
torch.manual_seed(0)
net = m.Model(impl="reference")
ref = m.Model(impl="reference")
ref.load_state_dict(net.state_dict())
ddp = torch.nn.parallel.DistributedDataParallel(net)
g = torch.Generator().manual_seed(5)
tokens = torch.randint(0, 64, (4, 9), generator=g)
targets = torch.randint(0, 64, (4, 9), generator=g)
out = ddp(tokens[2 * rank: 2 * rank + 2], targets[2 * rank: 2 * rank + 2])
out.loss.backward()
# The single-process equivalent: the mean of the two half-batch losses.
sum(ref(tokens[2 * r: 2 * r + 2], targets[2 * r: 2 * r + 2]).loss for r in range(2)).div(2).backward()
for (n, a), (_, b) in zip(net.named_parameters(), ref.named_parameters()):
    assert torch.allclose(a.grad, b.grad, atol=1e-6, rtol=1e-5), n
print("ok", rank)
dist.destroy_process_group()
"""


def test_ddp_averages_gradients(tmp_path):
    example = ROOT / "examples" / "tiny_gpt.spark"
    import sparkc

    sparkc.load(example)  # compile once, before two processes race for the cache
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    init = tmp_path / "rendezvous"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(r), str(init), str(example)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for r in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    assert sorted(o.strip() for o, _ in outs) == ["ok 0", "ok 1"]
