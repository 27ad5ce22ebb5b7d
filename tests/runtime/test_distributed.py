"""Generated modules under PyTorch's distributed engines, on 2 CPU processes with gloo.

Consumes `examples/train_ddp.py` (its `wrap` / `micro_batches` / `backward` in a worker
process, and the script itself as torchrun would start it) and a tiny tiny_gpt (d=16, 1 layer,
vocab 16, N=8). Checks:
- DDP and FSDP2 (`fully_shard`), with and without gradient accumulation and activation
  checkpointing, give the gradients of single-process training on the concatenated batch, on
  the reference path and (slower: the Triton interpreter) on the Triton path; checkpointed
  gradients equal the uncheckpointed ones exactly;
- a run saved after 2 steps and resumed for 2 more prints the losses of an uninterrupted
  4-step run (bit for bit with the same world size and settings);
- a `torch.distributed.checkpoint` saved by 2 processes loads in 1 with equal model and
  optimizer state, and one saved by 1 process continues in 2 (FSDP2 -> FSDP2 -> DDP).

Processes are started like torchrun starts them (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)
without torchrun itself, which would only add a process.
"""

from __future__ import annotations

import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "train_ddp.py"
TINY = {"vocab": 16, "d": 16, "heads": 2, "layers": 1, "max_len": 8}

# Starting 2 processes and training costs seconds: out of the quick check, like tests/codegen/.
pytestmark = pytest.mark.slow

WORKER = r"""
import ast, importlib.util, sys, torch, torch.distributed as dist
import sparkc
spec = importlib.util.spec_from_file_location("train_ddp", sys.argv[1])
td = importlib.util.module_from_spec(spec)
spec.loader.exec_module(td)
rank, init, impl, cases = int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5].split(",")
dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=2)
m = sparkc.load(sys.argv[6], **ast.literal_eval(sys.argv[7]))
g = torch.Generator().manual_seed(5)
batch = {"tokens": torch.randint(0, 16, (8, 8), generator=g),
         "targets": torch.randint(0, 16, (8, 8), generator=g)}
torch.manual_seed(0)
ref = m.Model(impl=impl)
ref(**batch).loss.backward()  # single process, the concatenated batch
want = {n: p.grad for n, p in ref.named_parameters()}
seen = {}
for case in cases:
    strategy, accum, mode = case.split(":")
    torch.manual_seed(0)
    net = m.Model(impl=impl)
    precision = "bf16" if mode == "bf16" else "fp32"
    model = td.wrap(net, strategy, ckpt=mode == "ckpt", precision=precision)
    micro = td.micro_batches(batch, rank, 2, int(accum), {"tokens": True, "targets": True})
    td.backward(model, net, strategy, micro)
    got = {}
    for n, p in net.named_parameters():
        grad = p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad
        got[n] = grad
        if mode == "bf16":  # bfloat16 forward and backward: close, and not float32's
            err = float((grad - want[n]).norm() / want[n].norm())
            assert grad.dtype == torch.float32 and err < 0.05, (case, n, err)
            continue
        assert torch.allclose(grad, want[n], atol=1e-6, rtol=1e-5), (
            case, n, float((grad - want[n]).abs().max()))
    if mode == "bf16":
        assert not all(torch.equal(got[n], want[n]) for n in got), "bf16 did not run"
        print("ok", case, flush=True)
        continue
    seen[case] = got
    plain = seen.get(f"{strategy}:{accum}:plain")
    if mode == "ckpt" and plain:  # recomputation changes nothing: the same gradients, exactly
        assert all(torch.equal(got[n], plain[n]) for n in got), case
    print("ok", case, flush=True)
dist.barrier()
dist.destroy_process_group()
# Every check above has passed and the output is flushed: leave without the interpreter's
# teardown, where gloo/FSDP threads once aborted a passing worker ("terminate called without an
# active exception", exit -6, CI 2026-12-06).
sys.stdout.flush()
import os
os._exit(0)
"""


def _env() -> dict:
    # PYTHONFAULTHANDLER: a hung process shows where it hangs when `_finish` aborts it.
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONWARNINGS": "ignore",
        "PYTHONFAULTHANDLER": "1",
    }


def _finish(procs, timeout: float = 240) -> list[str]:
    """Every process's stdout once all exit 0; a process still running after `timeout` s
    fails the test with every process's Python stacks (faulthandler on SIGABRT) and output."""
    deadline = time.monotonic() + timeout
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            for q in procs:
                if q.poll() is None:
                    q.send_signal(signal.SIGABRT)  # faulthandler prints the stacks to stderr
            report = []
            for rank, q in enumerate(procs):
                try:
                    out, err = q.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    q.kill()
                    out, err = q.communicate()
                report.append(f"rank {rank}: exit {q.returncode}\n{out[-1500:]}\n{err[-3000:]}")
            pytest.fail(f"a process did not exit within {timeout:.0f} s\n" + "\n".join(report))
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, f"exit {p.returncode}\n{out[-2000:]}\n{err[-4000:]}"
    return [out for out, _ in outs]


def _grad_cases(tmp_path: Path, impl: str, cases: list[str], name="tiny_gpt", hyper=TINY) -> None:
    import sparkc

    example = ROOT / "examples" / f"{name}.spark"
    sparkc.load(example, **hyper)  # compile once, before two processes race for the cache
    args = [str(EXAMPLE), "", str(tmp_path / "rendezvous"), impl, ",".join(cases)]
    args += [str(example), repr(hyper)]
    procs = []
    for rank in range(2):
        args[1] = str(rank)
        cmd = [sys.executable, "-c", WORKER, *args]
        procs.append(
            subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
            )
        )
    for out in _finish(procs):
        assert out.split("\n")[:-1] == [f"ok {c}" for c in cases]


def test_ddp_and_fsdp2_gradients_equal_single_process_reference(tmp_path):
    cases = [f"{s}:{a}:{c}" for s in ("ddp", "fsdp") for a in (1, 2) for c in ("plain", "ckpt")]
    # FSDP2 in bfloat16 (MixedPrecisionPolicy) runs on the CPU; DDP's mixed precision needs CUDA.
    cases.append("fsdp:2:bf16")
    _grad_cases(tmp_path, "reference", cases)


def test_ddp_and_fsdp2_gradients_equal_single_process_triton(tmp_path):
    # The Triton interpreter is slow: one plain DDP step, one checkpointed FSDP2 step
    # (recomputation re-runs the kernels' custom autograd functions).
    _grad_cases(tmp_path, "triton", ["ddp:1:plain", "fsdp:1:ckpt"])


def test_fsdp2_replicates_scalar_parameters(tmp_path):
    # splatflow's trajectory has a 0-d `strength`, which fully_shard refuses ("fully_shard
    # doesn't support scalar parameters"): the example leaves it replicated (ignored_params)
    # and averages its gradient itself.
    hyper = {"vocab": 16, "d": 16, "heads": 2, "splats": 4, "window": 3, "layers": 1}
    _grad_cases(tmp_path, "reference", ["fsdp:2:plain"], "splatflow", {**hyper, "max_len": 8})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(world: int, *flags: str) -> list[tuple[int, float]]:
    """Runs the example on `world` processes; returns rank 0's (step, loss) lines."""
    port = str(_free_port())
    common = ["--length", "8", "--batch", "8", "--impl", "reference"]
    common += [f"-D{k}={v}" for k, v in TINY.items()]
    procs = []
    for rank in range(world):
        env = {**_env(), "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world)}
        env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        cmd = [sys.executable, str(EXAMPLE), *common, *flags]
        procs.append(
            subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
            )
        )
    outs = _finish(procs)
    assert all(not re.search(r"^step ", o, re.MULTILINE) for o in outs[1:]), "only rank 0 prints"
    steps = re.findall(r"^step (\d+)  loss (\S+)$", outs[0], re.MULTILINE)
    return [(int(s), float(v)) for s, v in steps]


def _tensors(ckpt: Path, tmp: Path) -> dict:
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    out = tmp / f"{ckpt.parent.name}-{ckpt.name}.pt"
    dcp_to_torch_save(str(ckpt), str(out))
    state = torch.load(out, weights_only=False)
    flat = {f"model.{k}": v for k, v in state["model"].items()}
    for name, slots in state["optim"]["state"].items():
        flat.update({f"optim.{name}.{k}": v for k, v in slots.items()})
    flat.update({f"train.{k}": v for k, v in state["train"].items()})
    return flat


def test_resume_and_checkpoints_across_world_sizes(tmp_path):
    import sparkc

    sparkc.load(ROOT / "examples" / "tiny_gpt.spark", **TINY)
    two, one = tmp_path / "two", tmp_path / "one"
    flags = ["--strategy", "fsdp", "--accum", "2", "--checkpoint-activations"]
    full = _train(2, *flags, "--steps", "4", "--save", str(two), "--save-every", "2")
    assert [s for s, _ in full] == [1, 2, 3, 4]
    assert all(math.isfinite(v) for _, v in full)
    # 2 steps, save, resume for 2 more: the uninterrupted run's losses, bit for bit.
    resumed = _train(2, *flags, "--steps", "4", "--resume", str(two / "step-000002"))
    assert resumed == full[2:]
    # World size 2 -> 1: the state loads unchanged (saved again at once, compared tensor by
    # tensor), FSDP2 shards gathered into one process.
    assert (
        _train(1, *flags, "--steps", "2", "--resume", str(two / "step-000002"), "--save", str(one))
        == []
    )
    assert sorted(p.name for p in two.iterdir()) == ["step-000002", "step-000004"]
    saved2 = _tensors(two / "step-000002", tmp_path)
    saved1 = _tensors(one / "step-000002", tmp_path)
    assert saved1.keys() == saved2.keys() and len(saved1) > 30
    for k in saved2:
        assert torch.equal(saved1[k], saved2[k]), k
    # World size 1 -> 2, and into DDP without accumulation or checkpointing: the same curve
    # up to the order of float32 reductions.
    cont = _train(2, "--strategy", "ddp", "--steps", "4", "--resume", str(one))
    assert [s for s, _ in cont] == [3, 4]
    for (_, a), (_, b) in zip(cont, full[2:]):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6)


def test_ddp_bf16_without_cuda_is_refused_clearly():
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_ddp", EXAMPLE)
    td = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(td)
    # Refused before DDP is built: its mixed precision records CUDA events and would fail in
    # the first forward with "cpu backend doesn't support events".
    with pytest.raises(ValueError, match="bf16 with --strategy ddp needs CUDA"):
        td.wrap(torch.nn.Linear(2, 2), "ddp", precision="bf16", device=torch.device("cpu"))
    with pytest.raises(ValueError, match="strategy must be ddp or fsdp"):
        td.wrap(torch.nn.Linear(2, 2), "zero")


@pytest.mark.gpu
def test_one_gpu_nccl_bf16_triton_both_strategies():
    # One process on one GPU: NCCL, DDP's _MixedPrecision and FSDP2's bf16 policy with the
    # generated Triton kernels, accumulation and activation checkpointing (the CPU cannot run
    # DDP in bf16, and the Triton path there is the interpreter).
    import sparkc

    sparkc.load(ROOT / "examples" / "tiny_gpt.spark", **TINY)
    flags = ["--backend", "nccl", "--impl", "triton", "--precision", "bf16", "--steps", "3"]
    flags += ["--accum", "2", "--checkpoint-activations"]
    ddp = _train(1, *flags, "--strategy", "ddp")
    fsdp = _train(1, *flags, "--strategy", "fsdp")
    assert [s for s, _ in ddp] == [s for s, _ in fsdp] == [1, 2, 3]
    for (_, a), (_, b) in zip(ddp, fsdp):
        assert math.isfinite(a) and a == pytest.approx(b, rel=2e-2)


def test_a_hung_process_fails_with_its_stack():
    code = "import time\ndef wait_forever():\n    time.sleep(120)\nwait_forever()\n"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", c],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for c in ("print('done')", code)
    ]
    with pytest.raises(
        pytest.fail.Exception, match=r"(?s)did not exit within 3 s.*rank 1.*wait_forever"
    ):
        _finish(procs, timeout=3)
    assert all(p.returncode is not None for p in procs)
