"""`sparkc.generate`: sampling tokens from a compiled model with cached decoding (SPEC §5.6).

Consumes a generated model (a `SparkModule` whose program can decode: `model.new_cache`) and a
prompt of token ids; produces the prompt followed by the generated ids, `[B, P + new]` int64.
The prompt is consumed in one cached call (prefill), then one token per call; each step reads
the `logits` output at the last position and samples with temperature, top-k and top-p
(nucleus) filtering from a seeded generator (`temperature=0`: greedy). Rows that produced a stop
token keep producing it; the loop ends early when every row has stopped. A progress bar (tqdm
when installed, else one line rewritten in place on a terminal) shows long runs.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from typing import Any

import torch


def _filter(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Logits [B, V] with everything outside the top-k / the top-p nucleus set to −inf."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # Drop a token when the tokens before it already reach top_p (the first always stays).
        drop = probs.cumsum(-1) - probs >= top_p
        drop = torch.zeros_like(drop).scatter(-1, order, drop)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One token id per row of `logits` [B, V]: [B] int64."""
    logits = logits.float()
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = _filter(logits / temperature, top_k, top_p)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


class _Bar:
    def __init__(self, total: int, show: bool):
        self.total, self.done, self.tqdm = total, 0, None
        self.show = show
        if show:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.tqdm = tqdm(total=total, desc="generate", unit="tok", file=sys.stderr)

    def update(self) -> None:
        self.done += 1
        if self.tqdm is not None:
            self.tqdm.update(1)
        elif self.show and (self.done == self.total or self.done % 16 == 0):
            sys.stderr.write(f"\rgenerate {self.done}/{self.total} tokens")
            sys.stderr.flush()

    def close(self) -> None:
        if self.tqdm is not None:
            self.tqdm.close()
        elif self.show:
            sys.stderr.write("\n")


def generate(
    model: Any,
    prompt_tokens: torch.Tensor | Iterable[int],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    stop_tokens: Iterable[int] = (),
    inputs: Mapping[str, torch.Tensor] | None = None,
    progress: bool | None = None,
) -> torch.Tensor:
    """The prompt [B, P] (or a list of ids: one sequence) followed by up to `max_new_tokens`
    sampled ids. `inputs`: the model's per-sequence inputs (an instruction tape, ...), given
    with the prompt. `progress`: None shows a bar for 256 tokens or more on a terminal."""
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    like = next((p for p in model.parameters()), None)
    device = like.device if like is not None else torch.device("cpu")
    prompt = torch.as_tensor(
        prompt_tokens if isinstance(prompt_tokens, torch.Tensor) else list(prompt_tokens)
    )
    if prompt.dim() == 1:
        prompt = prompt[None]
    if prompt.dim() != 2 or prompt.shape[1] < 1:
        raise ValueError(f"prompt_tokens must be [batch, length >= 1], got {list(prompt.shape)}")
    prompt = prompt.to(device=device, dtype=torch.long)
    if max_new_tokens == 0:
        return prompt
    b, p = prompt.shape
    cache = model.new_cache(b, p + max_new_tokens - 1, device=device)
    gen = None
    if seed is not None:
        gen = torch.Generator(device=device).manual_seed(seed)
    stops = torch.tensor(sorted(set(stop_tokens)), device=device, dtype=torch.long)
    stopped = torch.zeros(b, dtype=torch.bool, device=device)
    show = progress if progress is not None else (max_new_tokens >= 256 and sys.stderr.isatty())
    bar = _Bar(max_new_tokens, bool(show))
    out = [prompt]
    logits = model(prompt, cache=cache, **dict(inputs or {})).logits[:, -1]
    try:
        for i in range(max_new_tokens):
            nxt = sample_next(logits, temperature, top_k, top_p, gen)
            if stops.numel():
                nxt = torch.where(stopped, out[-1][:, -1], nxt)
                stopped |= torch.isin(nxt, stops)
            out.append(nxt[:, None])
            bar.update()
            if i + 1 == max_new_tokens or (stops.numel() and bool(stopped.all())):
                break
            logits = model(nxt[:, None], cache=cache).logits[:, -1]
    finally:
        bar.close()
    return torch.cat(out, dim=1)
