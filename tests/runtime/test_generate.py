"""`sparkc.generate` (sparkc/generation.py): greedy generation equals the argmax continuation of
the full forward, sampling is reproducible from a seed, top-k / top-p filter what they should,
stop tokens end rows, bad arguments are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import sparkc
from sparkc.generation import sample_next

ROOT = Path(__file__).resolve().parents[2]


def _net(example="tiny_gpt"):
    mod = sparkc.load(ROOT / "examples" / f"{example}.spark")
    torch.manual_seed(0)
    return mod.Model(impl="reference").eval()


@pytest.mark.parametrize("example", ["tiny_gpt", "splatflow", "hspmn"])
def test_greedy_equals_argmax_of_the_full_forward(example):
    net = _net(example)
    prompt = torch.randint(0, 64, (2, 3))
    out = sparkc.generate(net, prompt, 6, temperature=0)
    assert out.shape == (2, 9) and torch.equal(out[:, :3], prompt)
    seq = prompt
    with torch.no_grad():
        for _ in range(6):
            nxt = net(seq).logits[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat((seq, nxt), dim=1)
    assert torch.equal(out, seq)


def test_sampling_is_reproducible_from_a_seed():
    net = _net()
    a = sparkc.generate(net, [1, 2, 3], 8, temperature=1.5, seed=7)
    b = sparkc.generate(net, [1, 2, 3], 8, temperature=1.5, seed=7)
    c = sparkc.generate(net, [1, 2, 3], 8, temperature=1.5, seed=8)
    assert torch.equal(a, b) and a.shape == (1, 11)
    assert not torch.equal(a, c)


def test_top_k_and_top_p_filter():
    logits = torch.tensor([[0.0, 3.0, 2.0, 1.0]]).repeat(200, 1)
    g = torch.Generator().manual_seed(0)
    assert set(sample_next(logits, 1.0, top_k=2, generator=g).tolist()) == {1, 2}
    # p = softmax: [0.032, 0.644, 0.237, 0.087]; top_p=0.7 keeps tokens 1 and 2.
    assert set(sample_next(logits, 1.0, top_p=0.7, generator=g).tolist()) == {1, 2}
    assert set(sample_next(logits, 1.0, top_p=0.5, generator=g).tolist()) == {1}
    assert sample_next(logits, 0.0).unique().tolist() == [1]


def test_stop_tokens_end_rows_and_the_loop():
    net = _net()
    free = sparkc.generate(net, [5, 6], 10, temperature=0)
    stop = int(free[0, 4])
    out = sparkc.generate(net, [5, 6], 10, temperature=0, stop_tokens=[stop])
    first = (free[0, 2:] == stop).nonzero()[0].item() + 2
    assert out.shape[1] == first + 1 and out[0, -1] == stop


def test_generate_refuses_bad_arguments():
    net = _net()
    for kw, msg in [
        ({"temperature": -1}, "temperature"),
        ({"top_k": 0}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
    ]:
        with pytest.raises(ValueError, match=msg):
            sparkc.generate(net, [1], 2, **kw)
    with pytest.raises(ValueError, match="max_len=65 exceeds pos_embed"):
        sparkc.generate(net, [1] * 10, 56)
    with pytest.raises(ValueError, match="prompt_tokens"):
        sparkc.generate(net, [], 2)


def test_progress_line_and_per_sequence_inputs(capsys):
    net = _net()
    sparkc.generate(net, [1, 2], 20, temperature=0, progress=True)
    err = capsys.readouterr().err  # tqdm's bar where it is installed, else the plain line
    assert err.lstrip("\r").startswith("generate") and "20/20" in err
    sparkc.generate(net, [1, 2], 3, temperature=0)
    assert capsys.readouterr().err == ""  # short runs off a terminal: no bar
    proc = _net("procedural")
    g = torch.Generator().manual_seed(0)
    tape = {
        "ops": torch.randint(0, 9, (2, 4), dtype=torch.int32, generator=g),
        "args": torch.randn(2, 4, 64, generator=g),
        "has_arg": torch.ones(2, 4, dtype=torch.bool),
    }
    prompt = torch.randint(0, 64, (2, 3), generator=g)
    out = sparkc.generate(proc, prompt, 4, temperature=0, inputs=tape)
    with torch.no_grad():
        full = proc(out[:, :-1], **tape).logits[:, 2:].argmax(-1)
    assert torch.equal(out[:, 3:], full)


def test_generating_in_training_mode_warns():
    net = _net().train()
    with pytest.warns(UserWarning, match=r"training mode .* model\.eval\(\)"):
        sparkc.generate(net, [1, 2], 2, temperature=0)
