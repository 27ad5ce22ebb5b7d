"""`sparkc.generate`: sampling tokens from a compiled model with cached decoding (SPEC §5.6).

Consumes a generated model (a `SparkModule` whose program can decode: `model.new_cache`) and a
prompt of token ids; produces the prompt followed by the generated ids, `[B, P + new]` int64.
The prompt is consumed in one cached call (prefill), then one token per call; each step reads
the `logits` output at the last position and samples with temperature, top-k and top-p
(nucleus) filtering from a seeded generator (`temperature=0`: greedy). Rows that produced a stop
token keep producing it; the loop ends early when every row has stopped. A progress bar (tqdm
when installed, else one line rewritten in place on a terminal) shows long runs.

`cuda_graph=True` runs the one-token steps as replays of a CUDA graph (runtime/decode_graph.py:
the prefill and the first step eager, then one captured step replayed per token; sampling runs
outside the graph, so a seeded generator gives the same tokens as the plain loop). It needs the
model on a CUDA device; `cuda_graph="auto"` uses it there and warns and runs the plain loop
elsewhere. With stop tokens the graph loop looks at the stop flags every `STOP_EVERY` tokens
(reading them is a host sync) and cuts the output where every row had stopped, so the result is
the plain loop's.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import torch

STOP_EVERY = 16  # tokens between reads of the stop flags in the CUDA-graph loop


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
    cuda_graph: bool | str = False,
    compile_step: bool = False,
) -> torch.Tensor:
    """The prompt [B, P] (or a list of ids: one sequence) followed by up to `max_new_tokens`
    sampled ids. `inputs`: the model's per-sequence inputs (an instruction tape, ...), given
    with the prompt. `progress`: None shows a bar for 256 tokens or more on a terminal.
    `cuda_graph`: False, True or "auto" (see the module docstring); `compile_step`: the graph
    records the step compiled by torch.compile (runtime/decode_graph.py)."""
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if cuda_graph not in (False, True, "auto"):
        raise ValueError(f"cuda_graph must be False, True or 'auto', got {cuda_graph!r}")
    if model.training:
        warnings.warn(
            "generate: the model is in training mode (the ops' training-time noise draws stay "
            "on, and the prompt runs the cached step rules instead of the prefill kernels); "
            "call model.eval() first to sample from the trained function",
            stacklevel=2,
        )
    like = next((p for p in model.parameters()), None)
    device = like.device if like is not None else torch.device("cpu")
    graph = bool(cuda_graph) and graph_capable(device)
    if cuda_graph is True and not graph:
        raise ValueError(
            f"generate(cuda_graph=True) needs the model on a CUDA device; it is on {device} "
            "(pass cuda_graph=False, or 'auto' to fall back to the plain loop)"
        )
    if cuda_graph == "auto" and not graph:
        warnings.warn(
            f"generate(cuda_graph='auto'): the model is on {device}, not a CUDA device; "
            "running the plain decode loop",
            stacklevel=2,
        )
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
    step, check, every, done = None, True, (STOP_EVERY if graph else 1), []
    if graph:
        from .runtime.decode_graph import GraphStep

        step = GraphStep(model, cache, compile=compile_step)
        check = not _ids_valid(model, step.input_name, logits.shape[-1])
    try:
        for i in range(max_new_tokens):
            nxt = sample_next(logits, temperature, top_k, top_p, gen)
            if stops.numel():
                nxt = torch.where(stopped, out[-1][:, -1], nxt)
                stopped |= torch.isin(nxt, stops)
                done.append(stopped.all())
            out.append(nxt[:, None])
            bar.update()
            if i + 1 == max_new_tokens:
                break
            if stops.numel() and (i + 1) % every == 0 and bool(done[-1]):
                break
            if step is not None:
                logits = step(nxt[:, None], check=check).logits[:, -1]
            else:
                logits = model(nxt[:, None], cache=cache).logits[:, -1]
    finally:
        bar.close()
    if len(done) > 1:  # cut after the first token at which every row had stopped
        first = int(torch.stack(done).int().argmax()) if bool(torch.stack(done).any()) else None
        if first is not None:
            out = out[: first + 2]
    return torch.cat(out, dim=1)


def graph_capable(device: torch.device) -> bool:
    """Whether the decode loop on `device` can replay CUDA graphs."""
    return device.type == "cuda" and torch.cuda.is_available()


def _ids_valid(model: Any, name: str, vocab: int) -> bool:
    """Whether every id in [0, vocab) passes the range rules of the token input `name` (then the
    graph loop need not read the sampled ids on the host to check them)."""
    for rule in type(model).RULES:
        if rule.get("kind") == "range" and rule.get("input") == name:
            low, high = rule.get("low"), rule.get("high")
            if (low is not None and low > 0) or (high is not None and high < vocab):
                return False
    return True
