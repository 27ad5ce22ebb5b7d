"""The next-token training loop the example-training tests share (CPU reference path and GPU
kernels): AdamW on the arithmetic-progression task of the main job."""

from __future__ import annotations

import torch

from sparkc.tools.demo_data import progressions


def task_losses(net, vocab, steps, lr, device="cpu", batch=16, length=24, loss_name="ce"):
    """Train `net` for `steps` steps; returns the task loss (output `loss_name`) of each step."""
    opt = torch.optim.AdamW(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        tokens, targets = progressions(batch, length, vocab, gen)
        out = net(tokens.to(device), targets.to(device))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out[loss_name].item())
    return losses
