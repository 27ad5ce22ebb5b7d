"""The CUDA side of a step recorded once in a CUDA graph and replayed: shared by the one-token
decode step (runtime/decode_graph.py, `GraphStep`) and the whole training step
(runtime/train_graph.py, `TrainStep`).

Consumes a callable that issues the step's GPU work (kernels only: no host synchronisation once
its kernels are compiled and tuned); produces a `CUDAGraph` that replays it. One method per CUDA
operation, so the tests emulate them on the CPU by overriding the three methods (and each
subclass's `_require_device`, which calls `require_cuda`):
- `_warm(fn)`: one eager run of `fn` on a side stream (PyTorch asks for warm-up work off the
  capturing stream: allocator pools and cuBLAS workspaces settle there; sparkc's kernels compile
  and tune there);
- `_capture(fn)`: records `fn` into `self.graph` (nothing runs) and returns what `fn` returned:
  tensors whose memory the graph owns, overwritten by every replay;
- `_replay()`: runs the recorded work once.
A graph reads every tensor at the address it had at capture, so each step also keeps
`addresses(tensors)` of what it reads besides its static inputs (parameters, buffers, optimizer
or cache state) and records again when they differ before a replay.
"""

from __future__ import annotations

from typing import Any

import torch


def require_cuda(device: torch.device, what: str, instead: str) -> None:
    """ValueError unless `device` is a CUDA device and CUDA is available."""
    if device.type != "cuda" or not torch.cuda.is_available():
        raise ValueError(
            f"a CUDA-graph {what} needs the model and its tensors on a CUDA device; they are on "
            f"{device} ({instead} instead)"
        )


def addresses(tensors) -> tuple:
    """The identity a recorded graph depends on: each tensor's data address (another object's
    `id` for a non-tensor entry, such as a cache slot not filled yet)."""
    return tuple(t.data_ptr() if isinstance(t, torch.Tensor) else id(t) for t in tensors)


class CudaGraphRunner:
    """Base of the graph-replayed steps: `self.device` (set by the subclass) and `self.graph`
    (None until captured)."""

    graph: torch.cuda.CUDAGraph | None = None
    device: torch.device

    def _warm(self, fn) -> Any:
        """An eager run on a side stream (as PyTorch asks before a capture)."""
        device = self.device
        stream = torch.cuda.Stream(device=device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            out = fn()
        torch.cuda.current_stream(device).wait_stream(stream)
        return out

    def _capture(self, fn) -> Any:
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            return fn()

    def _replay(self) -> None:
        self.graph.replay()
