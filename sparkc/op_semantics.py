"""The operator contract's prose that belongs to no single op, for `docs/ops.md` and `sparkc ops`.

Consumes nothing; produces `CONVENTIONS` (section 0 of docs/ops.md: notation, dtypes, modes),
`REFLEXIVE` (section 4.3, a composite built from primitives), `DECODING` (section 5.6, cached
decoding) and `PROPERTIES` (section 6, what the tests check of every op). Each op's own
definition (its edge cases and where it departs from the research code it comes from) is its
spec's `semantics`, beside the spec in its family module under sparkc/ir/ops/;
`sparkc.tools.docs_gen` places each text under its op and renders the names, shapes,
hyperparameters, defaults and initialisers from the op table.

This text and the ops' `semantics` are the project's operator contract: the reference path
(`sparkc.runtime.reference`) and the generated kernels compute exactly these functions, forward
and backward, up to floating-point rounding. Choices this text leaves open are recorded in
docs/ops_decisions.md.
"""

from __future__ import annotations

CONVENTIONS = """\
- Sizes: `B` batch, `N` sequence length, `D` model width, `H` heads, `d = D / H` the width of one
  head. Activations are `[B, N, D]`, row-major and contiguous.
- `Linear(i→o)` is a weight `[o, i]` and a bias `[o]` laid out and initialised like
  `torch.nn.Linear`, computing `y = x Wᵀ + b`; `Linear(i→o, bias=False)` has no bias.
  `LayerNorm(n)` is `torch.nn.LayerNorm(n)` (weight ones, bias zeros, eps 1e-5).
- A parameter's `state_dict` key is the instance name, a dot, and the parameter name given
  below: an `attention` bound as `attn1` owns `attn1.wq.weight`.
- Dtypes: activations in float32, bfloat16 or float16 (float64 on the reference path). Matrix
  products accumulate in at least float32; exponentials, logarithms, softmaxes, norms and scans
  are computed in at least float32 and the result is cast back to the activation dtype.
- `causal=true` means that the output at position `t` depends on inputs at positions `≤ t`
  only. Every op that mixes positions has a `causal` flag and it defaults to `true` (except
  where noted).
- `module.train()` is training mode, `module.eval()` evaluation mode. Random noise is drawn only
  in training mode, only where the op's noise flag is on, and follows `torch.manual_seed`.
  Evaluation is deterministic.
- Every parameter gets a gradient from a loss that depends on the op's output; buffers (index
  tables, constants) get none.
- Notation: `σ` the logistic sigmoid, `softmax_k` a softmax over the index `k`, `sg(·)` stop
  gradient (`detach`), `⊙` the elementwise product.
- An op with an auxiliary loss returns it as a 0-d float tensor that carries gradient. The
  compiled module adds every op's auxiliary loss (already scaled by the op's own weight
  hyperparameter) into `aux_loss`, and `loss` is the sum of the declared loss terms and
  `aux_loss`.
- Bad hyperparameters (a size that is not positive, `beta` outside (0, 1), `heads` not dividing
  `D`, ...) are compile-time errors that point at the offending argument; bad run-time data
  (ids out of range, a sequence longer than `max_len`, an unknown opcode) raise `InputError`
  naming the model input.
- Weight tying: `linear(x, out=V, tie=E)` uses the weight of the `embed` instance `E` (which must
  have `vocab = V` and `dim` equal to the width of `x`) instead of a weight of its own. Such a
  shared weight is initialised N(0, 1/dim) rather than the embedding's N(0, 1), so a tied
  language-model head starts with unit-variance logits (docs/ops_decisions.md, "Tied embedding
  initialisation")."""


REFLEXIVE = """\
Not an op: HSPMN's cheap per-token "reflexive" stream is built from primitives, e.g.
`swiglu(conv1d(rmsnorm(x), kernel=3, causal=true), hidden=4·D)` or
`mlp(conv1d(x, kernel=3), hidden=4·D, act=relu)`. The HSPMN layer of `examples/hspmn.spark` is
`y = x + reflexive(x) + sqdk_attention(rmsnorm(x), token_router(x).gate, ...)`."""

DECODING = """\
A compiled model whose sequence-mixing ops are all causal decodes incrementally:
`cache = model.new_cache(batch, max_len)`, then `out = model(x_new, cache=cache)` consumes the
next positions (a prefill of many, steps of one, mixed freely) and returns their outputs, equal
to the full forward's outputs at those positions (tested for every example and every causal op).
The cache holds, per op instance: keys and values (`attention`, with RoPE and the basis bias at
absolute positions; `sqdk_attention`, keys and values of every position, queries only for the
routed rows), the keys and every hop's `P_0 .. P_{hops−1}` (`fk_attention`), the state `(S, z)`
(`splat_attention`), `(M, p)` (`verifier_stack`), the last `kernel − 1` inputs (`conv1d`), the
last `window` inputs (`trajectory`); `rope` and `pos_embed` read the cache length as their
position offset; inputs without the sequence dimension (an instruction tape, lora metadata) are
given with the first call and kept, and ops that read only them and parameters
(`opcode_tape`) run once per cache. Aux losses of a cached call cover its new positions only.
A program that cannot decode (a non-causal op, `topk` routing, `mean`) is refused by
`new_cache`, which names every op instance at fault. The cache belongs to the caller: nothing is
reused across calls unless the same cache object is passed again (docs/decoding.md). A
one-token step can be captured in a CUDA graph and replayed (`sparkc.generate(...,
cuda_graph=True)`): its positions then come from a device tensor the cache owns, never from a
host value. Departure from the SPARK research code: its key/value patcher kept detached tensors of earlier, unrelated
batches and fed them into later forwards."""

PROPERTIES = """\
The test suite checks every op for:

1. forward values and gradients equal to the float64 reference path on random inputs of several
   shapes, including lengths that are not multiples of any block size;
2. causality: changing inputs at positions `> t` leaves outputs at positions `≤ t` unchanged,
   bit for bit;
3. determinism in evaluation mode: two calls give identical outputs;
4. a non-zero gradient for every parameter on a generic input (for `lora_linear`, once `gen_b`
   has moved away from zero);
5. finite outputs on edge cases: `N = 1`, one routed token or none, an empty stack, a tape of
   only −1, very large and very small logits."""
