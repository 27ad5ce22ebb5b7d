"""`ModelOutput` is a pytree node: pytree-based tools (torch.cuda.make_graphed_callables,
torch.export) see the tensors inside it and rebuild it with its keys in order."""

from __future__ import annotations

import torch
from sparkc.runtime import launch
from sparkc.runtime.module_support import ModelOutput
from torch.utils import _pytree


def test_flattens_to_its_tensors_and_back():
    out = ModelOutput(logits=torch.ones(2, 3), aux_loss=torch.zeros(()), loss=torch.tensor(1.5))
    leaves, spec = _pytree.tree_flatten(out)
    assert [t.shape for t in leaves] == [(2, 3), (), ()]
    back = _pytree.tree_unflatten([t * 2 for t in leaves], spec)
    assert isinstance(back, ModelOutput) and list(back) == ["logits", "aux_loss", "loss"]
    assert float(back.loss) == 3.0


def test_cpu_tensors_are_never_being_captured():
    assert launch.capturing(torch.zeros(1)) is False
