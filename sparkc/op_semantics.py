"""The exact meaning of every built-in op, as Markdown, for `docs/ops.md` and `sparkc ops`.

Consumes nothing; produces the prose the op table (`sparkc.ir.ops`) cannot hold: `CONVENTIONS`
(section 0 of docs/ops.md: notation, dtypes, modes), `SEMANTICS` (op name -> the op's
definition, its edge cases and where it departs from the research code it comes from),
`REFLEXIVE` (section 4.3, a composite
built from primitives), `DECODING` (section 5.6, cached decoding) and `PROPERTIES` (section 6, what the tests check of
every op). `sparkc.docs_gen` places each text under its op; the op table stays the source of
the names, shapes, hyperparameters, defaults and initialisers, which docs_gen renders as tables.

This text is the project's operator contract: the reference path (`sparkc.runtime.reference`)
and the generated kernels compute exactly these functions, forward and backward, up to
floating-point rounding. Choices this text leaves open are recorded in docs/ops_decisions.md.
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

_LINEAR = """\
`y = x Wᵀ + b` over the last dimension of `x` (any number of leading dimensions). With
`bias=false` there is no `b`. With `tie=E` the weight is `E.weight` (`[vocab, dim]`) and the op
owns only its bias; see the conventions for the initialisation of a shared weight."""

_EMBED = """\
`y[..., :] = weight[tokens[...], :]`, a row gather. Ids must lie in `[0, vocab)`; an id outside
is an `InputError` on the host before anything runs, never a silent read of another row (inside
a CUDA-graph capture, which cannot synchronise, an out-of-range id reads a zero row and sets the
kernel's error flag instead). The weight is N(0, 1), or N(0, 1/dim) when a `linear` ties to it."""

_POS_EMBED = """\
`y[b, t, :] = x[b, t, :] + weight[t, :]` for `t = 0..N−1` (shifted by the cache length when
decoding). `N > max_len` is an `InputError`. The table is N(0, 0.02²)."""

_RMSNORM = """\
`y = x / sqrt(mean(x²) + eps) ⊙ weight`, the mean over the last dimension, computed in at least
float32."""

_LAYERNORM = """\
`y = (x − mean(x)) / sqrt(var(x) + eps) ⊙ weight + bias` over the last dimension, with the
biased variance: exactly `torch.nn.functional.layer_norm(x, (D,), weight, bias, eps)`."""

_UNARY = {
    "relu": "`max(x, 0)` elementwise; the gradient at 0 is 0.",
    "gelu": "`x · Φ(x)` elementwise, `Φ` the standard normal CDF: the exact (erf) form, not the "
    "tanh approximation.",
    "silu": "`x · σ(x)` elementwise.",
    "sigmoid": "`σ(x) = 1 / (1 + e^(−x))` elementwise.",
    "tanh": "`tanh(x)` elementwise.",
    "neg": "`−x` elementwise; written `-x`.",
}

_BINARY = """\
Elementwise with broadcasting from the right (as in NumPy and PyTorch: sizes must be equal or
1). Either operand may be a scalar constant of the program; constant arithmetic is folded at
compile time in float64. Written with the operators `+ - * /`. Division follows IEEE rules
(`x / 0` is ±inf or nan), as in PyTorch."""

_SOFTMAX = """\
`y_i = exp(x_i − max x) / Σ_j exp(x_j − max x)` along dimension `dim` (negative values count
from the end), computed in at least float32."""

_MLP = """\
`fc2(act(fc1 x))` with `fc1 = Linear(D→hidden)` and `fc2 = Linear(hidden→D)`; `act` is one of
relu, gelu (erf form), silu, sigmoid, tanh."""

_SWIGLU = """\
`w_down(silu(w_gate x) ⊙ w_up x)` with `w_gate, w_up = Linear(D→hidden, bias=False)` and
`w_down = Linear(hidden→D, bias=False)`."""

_CONV1D = """\
A depthwise convolution over the sequence (each channel has its own filter), weight
`[D, 1, kernel]` and bias `[D]` initialised like a depthwise `torch.nn.Conv1d`.
Causal: the input is padded with `kernel − 1` zeros on the left, so
`y_t = b + Σ_{j<kernel} w[j] · x_{t−kernel+1+j}` (positions before 0 read 0). Non-causal: the
padding is `(kernel − 1)/2` on each side and `kernel` must be odd."""

_ROPE = """\
Rotary position embedding in the rotate-half layout on `[B, N, H, d]` (`d` even). For
`i < d/2`, `θ_i = base^(−2i/d)`; at position `t` (offset by the cache length when decoding) the
pair `(x_i, x_{i+d/2})` becomes `(x_i cos tθ_i − x_{i+d/2} sin tθ_i, x_i sin tθ_i +
x_{i+d/2} cos tθ_i)`. The angles are computed in float64."""

_SPLIT = "`[B, N, D] → [B, N, heads, D/heads]`, a reshape of the last dimension (no copy)."
_MERGE = "`[B, N, H, d] → [B, N, H·d]`, the inverse of `split_heads` (no copy)."
_CONCAT = "Concatenation of `a` and `b` along the last dimension; the other dimensions must match."
_MEAN = "The mean of all elements, a 0-d tensor (useful to turn a tensor into a loss term)."

_CROSS_ENTROPY = """\
`loss = mean over positions with targets ≠ ignore_index of (logsumexp(logits_p) −
logits_p[target_p])`, computed in at least float32; `0` (with a zero gradient) when every
position is ignored. `logits` is `[..., V]` and `targets` the matching integer tensor; a target
outside `[0, V)` that is not `ignore_index` is an `InputError`. When `logits` comes straight
from a `linear` (and nothing else reads it), the compiler fuses the two so that the `[B, N, V]`
logits are never stored."""

_ATTENTION = """\
Multi-head attention with grouped-query heads, the baseline every other mixer is compared with.

- Parameters: `wq = Linear(D→D, bias=False)`, `wk, wv = Linear(D→kv_heads·d, bias=False)`,
  `wo = Linear(D→D, bias=False)`. `kv_heads` must divide `heads`; `G = heads / kv_heads`.
- Query head `h` reads key/value head `⌊h / G⌋`. With `rope=true`, `q` and `k` are rotated
  (see `rope`, base `rope_base`) at their own positions.
- `s_ij = q_i · k_j / √d + bias_h(i, j)`, restricted to `j ≤ i` when causal;
  `o_i = Σ_j softmax_j(s_ij) v_j`; `y = wo(merge_heads(o))`.
- `basis=basis(...)` adds the learned procedural score bias described under `basis`; without
  it `bias_h ≡ 0`. The bias is computed inside the kernel from `(i, j)`, never stored as
  `[N, N]`."""

_BASIS = """\
A compile-time value for `attention`'s `basis=`, not a layer. It gives the attention one
parameter, `basis.gains [H, 2·freqs + legendre]` (zeros, under the attention instance), and the
score bias `bias_h(i, j) = Σ_a gains[h, a] · atom_a(x)` with `x = |i − j| / max_len`
(`over=distance`) or `x = j / max_len` (`over=key`). The atoms, in this order: `sin(π f x)` for
`f = 1..freqs`, `cos(π f x)` for `f = 1..freqs`, then the Legendre polynomials
`P_1..P_legendre` of `2x − 1` (`P_0` is left out: a constant bias cancels in the softmax).
`max_len` is required; a sequence longer than `max_len` is an `InputError`.
Departure from the SPARK research code: it had no Legendre atoms, and evaluated one query at a
time it reduced the bias to a constant that the softmax cancelled."""

_FK = """\
Feynman–Kac multi-hop attention: the resolvent `(I − βA)⁻¹ V` truncated after `hops` terms.

- Parameters: `wq, wk, wv = Linear(D→D, bias=False)`, `wo = Linear(D→D)` (with bias).
- Per head, `A = softmax_j(q_i · k_j / √d)` (restricted to `j ≤ i` when causal). Then
  `P_0 = V`, `P_k = β · A · P_{k−1}` for `k = 1..hops`, and `R = Σ_{k=0..hops} P_k`.
- `normalize=true` multiplies `R` by `(1 − β) / (1 − β^{hops+1})`, so every row of the total
  operator sums to 1; the default `false` keeps the original scale (row sums near `1/(1 − β)`).
- `y = wo(merge_heads(R))`. Requires `0 < beta < 1` and `hops ≥ 1`.
- Kernels never store `A` (`[B, H, N, N]`): each hop is an attention-shaped pass that reuses the
  row statistics (max, log-sum-exp) of the first. Under causal masking the `P_k` of past
  positions never change, so decoding caches them.
- Departures from the SPaR-K research code: it had no causal mask (a next-token model trained
  with it saw its targets); `causal=false` gives that bidirectional operator. Its Chebyshev and
  dense-inverse variants, attention dropout and per-hop early exit are not part of this op."""

_SPD = """\
Structure / pseudo-randomness decomposition. Outputs `(y, x_struct, x_pseudo, loss)`; a program
binds any of them (`r.y`, or `y, xs, xp, l = spd_router(x)`). With `Ds = struct_dim`,
`Dp = pseudo_dim` (both default `⌊D/2⌋`; `D ≥ 4`; `D/2` and `D/4` round down):

- Parameters: `gate_s1 = Linear(D→D/2)`, `gate_s2 = Linear(D/2→Ds)`, `gate_p1 = Linear(D→D/2)`,
  `gate_p2 = Linear(D/2→Dp)`, `basis = Linear(D→Ds, bias=False)` (weight N(0, 1/D)),
  `coeffs = Linear(Ds→Ds)`, `proc_s1 = Linear(Ds→Ds)`, `proc_s_norm = LayerNorm(Ds)`,
  `proc_s2 = Linear(Ds→Ds)`, `pseudo_proj = Linear(D→Dp)`, `proc_p1 = Linear(Dp→2Dp)`,
  `proc_p2 = Linear(2Dp→Dp)`, `proc_p_norm = LayerNorm(Dp)`, `reconstruct = Linear(Ds+Dp→D)`,
  `pred1 = Linear(Ds→D/4)`, `pred2 = Linear(D/4→D)`.
- Gate logits `ℓ_s = gate_s2(relu(gate_s1 x))`, `ℓ_p = gate_p2(relu(gate_p1 x))`.
  `gate=sigmoid` (default): `g_s = σ(ℓ_s)`, `g_p = σ(ℓ_p)`. `gate=softmax` (the original):
  `g_s` is the softmax over the `Ds` features of `log σ(ℓ_s)`, likewise `g_p`.
  `gate_noise=true` (training only): the sigmoid gate becomes `σ(ℓ + ln u − ln(1 − u))`,
  `u ~ U(0, 1)`; the softmax gate becomes `softmax(log σ(ℓ) + G)`, `G` iid Gumbel(0, 1)
  (temperature 1).
- `x_struct = basis(x) ⊙ g_s`, `x_pseudo = pseudo_proj(x) ⊙ g_p`,
  `y_s = proc_s2(relu(proc_s_norm(proc_s1(coeffs(x_struct)))))`,
  `y_p = proc_p_norm(proc_p2(relu(proc_p1(x_pseudo))))`, `y = reconstruct(concat(y_s, y_p))`.
- `loss = sep_weight · (mean((pred2(relu(pred1 x_struct)) − x)²) − 0.1 · H(x_pseudo))`, the
  mean over all `B·N·D` elements, with `H(z) = −mean over (b, n) of Σ_f |z_f| · log(|z_f| +
  1e-8)`.
- Departures from the SPaR-K research code: its separation loss was a Python float without
  gradient; it drew gate noise at evaluation too; its softmax gate spread each token's gate
  mass over all features and so shrank the signal about `D/2`-fold (hence the sigmoid
  default)."""

_VERIFIER = """\
A differentiable stack driven by the sequence. Outputs `(read, signals, pointer, loss)`:
`read [B, N, elem]`, `signals [B, N, signals]` in (0, 1), `pointer [B, N]`, a scalar `loss`.
`S = stack`; `elem` defaults to `⌊D/2⌋`.

- Parameters: `ctrl1 = Linear(D→D/2)`, `ctrl2 = Linear(D/2→3)`, `enc = Linear(D→elem)`,
  `head1 = Linear(D+elem→D/4)`, `head2 = Linear(D/4→signals)`.
- Per token, `(push_t, pop_t, noop_t) = softmax(ctrl2(relu(ctrl1 h_t)))`; with `op_noise=true`
  in training, `softmax(log π + G)` with Gumbel noise `G` (temperature 1), and these noisy values
  drive everything below. `e_t = enc(h_t)`.
- Start with memory `M_0 = 0 ∈ R^{S×elem}` and pointer `p_0 = 0`. For `t = 1..N` (sequential in
  `t`, parallel over batch and `elem`):
  `w_t[s] = exp(−(s − p_{t−1})²/2) / Σ_{s'} exp(−(s' − p_{t−1})²/2)` for `s = 0..S−1`;
  `M_t = M_{t−1} ⊙ (1 − push_t w_t)[:, None] + (push_t w_t)[:, None] · e_t[None, :]`;
  `p_t = clamp(p_{t−1} + push_t − pop_t, 0, S−1)` (with `torch.clamp`'s gradient).
  `read=top`: `u_t[s] = exp(−(s − (p_t − 1))²/2) / Σ_{s'} (same)` and `r_t = Σ_s u_t[s] M_t[s]`;
  `read=mean` (the original): `r_t = mean_s M_t[s]`.
- `signals_t = σ(head2(relu(head1 concat(h_t, r_t))))`, `pointer_t = p_t`, `read_t = r_t`.
- `loss = penalty · (mean_{b,t} pop_t · relu(1 − p_{t−1}) + mean_{b,t} push_t ·
  relu(p_{t−1} − (S − 2)))` (underflow and overflow pressure).
- Kernel: the per-token networks run in parallel, the pointer is a cheap scalar scan, and given
  the pointers the memory is a diagonal linear recurrence `M_t = a_t ⊙ M_{t−1} + b_t` scanned in
  one kernel, never one launch per step.
- Departures from the SPaR-K research code: its pop read the wrong slot, its under/overflow
  penalties were always zero, its loss grew with `N`, it drew noise at inference, and its result
  never reached the model output; here `read` is an output a program can add to its stream."""

_SPLAT = """\
Tokens communicate only through `K = splats` Gaussian splats per head: O(N·K) work instead of
O(N²).

- Parameters: `wa = Linear(D→D, bias=False)` (affinity features), `wv = Linear(D→D,
  bias=False)`, `wo = Linear(D→D, bias=False)`, `centers [H, K, d]` N(0, 1), `log_scale [H, K]`
  initialised to `½ ln d`, `log_amp [H, K]` zeros.
- Per head: `u_t = wa(x)_t` (the head's slice), `σ_k = exp(log_scale_k)`,
  `z_tk = −‖u_t − c_k‖² / (2σ_k²) + log_amp_k`, `φ_t = softmax_k(z_t)`: the normalised Gaussian
  responsibility, computed stably so it never underflows to all zeros. `‖u − c‖²` is computed
  as `‖u‖² − 2u·c + ‖c‖²`, never materialising `[B, N, K, d]`.
- With `v = wv(x)` per head: causal `num_t = Σ_{s≤t} (φ_t·φ_s) v_s`, `den_t = Σ_{s≤t} φ_t·φ_s`
  (non-causal: the same sums over all `s`); `o_t = num_t / den_t` when `normalize=true`, else
  `o_t = num_t`; `y = wo(merge_heads(o))`.
- Equivalent state form: `S_t = Σ_{s≤t} φ_s v_sᵀ ∈ R^{K×d}`, `z_t = Σ_{s≤t} φ_s`,
  `o_t = φ_tᵀ S_t / φ_tᵀ z_t`; a kernel processes the sequence in chunks like chunked linear
  attention, and decoding one token costs O(K·d).
- Departures from the SplatFlow research code: every version mixed over all positions
  (including future ones), kept the splats outside `state_dict`, moved them by heuristics
  without gradients, and the latest added a dense O(N²) path. Here the splats are parameters
  trained by backpropagation; `causal=false` gives the original global mixing."""

_TRAJECTORY = """\
The causal inter-layer trajectory signal. Parameter: `strength`, a 0-d tensor initialised to
0.2. Requires `2 ≤ window ≤ 64` (the kernels unroll one tap per step of the window).

- Normalised steps `δ_j = (x_{j+1} − x_j) / max(‖x_{j+1} − x_j‖, 1e-8)` for `j = 0..N−2` (the
  norm over the features).
- Weights `ω_i = exp(−1 + i/(window − 1))`, `i = 0..window−1`, from oldest to newest.
- `T_0 = 0`; for `p ≥ 1`, `T_p = Σ_j ω_{j−p+window} δ_j / Σ_j ω_{j−p+window}` over
  `j = max(0, p − window)..p − 1`.
- `y = x + strength · T`. One stencil kernel.
- Departures from the SplatFlow research code: a Python loop over positions, and a cache that
  reused trajectories of unrelated earlier batches (not part of this op)."""

_TOKEN_ROUTER = """\
Chooses which tokens take the expensive contextual path. Outputs `(mask, gate, loss)`: `mask`
bool `[B, N]`, `gate` float `[B, N]`, a scalar `loss`. Pass `.gate` to `sqdk_attention`.

- Parameter: `w = Linear(D→1)`; logits `ℓ_t = w(x_t)`, probabilities `p_t = σ(ℓ_t)`.
- Training with `noise=true`: `ℓ̃_t = ℓ_t + ln u − ln(1 − u)`, `u ~ U(0, 1)` clamped to
  `[tiny, 1 − eps]` of float32 (logistic noise: a token is routed with probability exactly
  `p_t`). Otherwise `ℓ̃ = ℓ`.
- `mode=threshold` (causal): `mask_t = [ℓ̃_t > 0]`. `mode=topk` (not causal): per sequence
  `k = max(1, ⌊sparsity · N + 1e-9⌋)` (in float64) and `mask` marks the `k` largest `ℓ̃_t`, ties
  going to the lower index.
- `gate_t = mask_t + (σ(ℓ̃_t) − sg(σ(ℓ̃_t)))`: straight-through, exactly 0 or 1 in the forward
  pass, with the sigmoid's gradient, so the router learns from the task loss.
- `loss = aux_weight · (mean_{b,t} p_t − sparsity)²`.
- Departures from the HSPMN research code: v2's single Gumbel sample routed with probability
  `1 − exp(−e^ℓ)` while its loss regularised `σ(ℓ)`; v2.1's top-k router got no task gradient."""

_SQDK = """\
Sparse-query, dense-key attention: only routed tokens ask questions, every token can answer.
Always causal.

- Parameters: `wq = Linear(D→D, bias=False)`, `wk, wv = Linear(D→kv_heads·d, bias=False)`,
  `wo = Linear(D→D, bias=False)`; `G = heads / kv_heads`.
- Keys and values at every position: `k_s = rope(wk x_s, s)`, `v_s = wv x_s` (RoPE when
  `rope=true`, base `rope_base`).
- For a routed `t` (`gate_t ≠ 0`): `q_t = rope(wq x_t, t)`; query head `h` reads key/value head
  `⌊h/G⌋`; `o_t = Σ_{s≤t} softmax_s(q_t·k_s / √d) v_s`; `y_t = gate_t · wo(merge_heads(o_t))`.
  For an unrouted `t`: `y_t = 0`.
- Gradients reach `x` through keys and values at every position and through queries at routed
  positions; they reach the router through `gate` at routed positions only.
- Work and memory scale with the number of routed tokens: routed queries are gathered, attend,
  and are scattered back; nothing is computed for unrouted rows.
- Departures from the HSPMN research code: v2.1's kernel indexed keys and values with the query
  head (the wrong head, and 1–3 future tokens, when `kv_heads < heads`); v2's kernel had no
  backward pass, so its projections never trained."""

_TAPE = """\
A batched stack machine that runs one instruction tape per sequence with the SPARK opcode set
and a step budget.

- Inputs: `ops` int32 `[B, T]` with values 0–8 (`PLAN RETR ASSUME EXEC LEMMA CHECK BRANCH MERGE
  CITE`, in this order) or −1 (end of tape); `args [B, T, D]`; `has_arg` bool `[B, T]`. An
  opcode outside −1..8 is an `InputError`.
- Parameter: `branch [D]`, zeros.
- Outputs: `top [B, D]` (the top of the stack after the run, zeros when empty), `depth` int32
  `[B]`, `status` int32 `[B]` (0 ok, 1 stack underflow, 2 budget exceeded, 3 capacity
  exceeded), `steps` int32 `[B]` (instructions executed), `checks [B, T, D]` (the value of the
  CHECK at position `i`, zeros elsewhere), `trace` int32 `[B, T]` (the opcode executed at `i`,
  −1 where none ran).
- Each sequence runs `i = 0..T−1` in order: stop at `ops_i = −1`; at `i ≥ budget` set status 2
  and stop; otherwise execute. An error sets its status and stops the run; the stack keeps its
  state from before the failing instruction, which counts in neither `steps` nor `trace`.
  The argument is `a_i = args_i` when `has_arg_i`, else 0.

  | opcode | effect |
  |---|---|
  | PLAN | push `a_i` if `has_arg_i`, else nothing |
  | RETR, ASSUME, LEMMA | push `a_i` |
  | EXEC | pop; on an empty stack, status 1 |
  | CHECK | pop if the stack is not empty, else use `a_i` if `has_arg_i`, else status 1; the value goes to `checks_i` |
  | BRANCH | push `a_i + branch` |
  | MERGE | replace the whole stack by one element, the mean of its elements (an empty stack becomes one zero element) |
  | CITE | nothing |

  A push onto a full stack (`capacity` elements) sets status 3.
- Differentiable in `args` and `branch` (for fixed opcodes the outputs are linear in them).
- `sparkc.runtime.tape` ships the same machine on strings with the SPARK log format (`PLAN: x`,
  `PLAN: no-op`, `RETRIEVE: x`, `ASSUME: x`, `EXEC: popped`, `LEMMA: x`, `CHECK: x`, `BRANCH`,
  `MERGE: a, b`, `CITE: x`, `Budget exceeded`) and helpers that encode a list of
  `(opcode, text)` pairs into the three input tensors given a text → vector function (MERGE
  joins bottom to top with ", "; BRANCH pushes `branch::text`; a missing text is ""; an error
  logs nothing). On every tape the two machines agree on status, steps and depth; e.g.
  `[PLAN "factor problem", CHECK "result"]` logs `PLAN: factor problem`, then
  `CHECK: factor problem`."""

_ROUTED = """\
Sparse neuron-group routing: the `hidden` neurons form `groups` equal groups and each token runs
only `active` of them.

- Parameters: `fc1 = Linear(D→hidden)`, `fc2 = Linear(hidden→D)` (group `g` owns rows/columns
  `[g·hidden/groups, (g+1)·hidden/groups)`), and with `route=learned` `gate = Linear(D→groups)`.
- `route=learned`: `sel(t)` is the top-`active` groups of `gate(x_t)` (ties to the lower index),
  weighted by `w_tg = softmax_g(gate(x_t))_g`, the softmax over all groups and not renormalised
  over `sel(t)` (so the gate learns even with `active = 1`).
- `route=hash`: `sel(t)` is the groups `(h(tokens_t) + j) mod groups`, `j = 0..active−1`, with
  `h(v) = ((v · 2654435761) mod 2³²) >> 16` in unsigned arithmetic (ids must be ≥ 0), weights
  `1/active`; needs the `tokens` input. The choice depends only on the token id.
- `y_t = fc2.bias + Σ_{g∈sel(t)} w_tg · act(fc1_g x_t) W2_gᵀ`, with `fc1_g` the rows of group
  `g` of fc1 (weight and bias) and `W2_g` its columns of fc2's weight.
- Work scales with `active/groups` of the dense MLP (a grouped GEMM over tokens sorted by group),
  never a dense MLP under a mask.
- Departure from the SPARK research code: it drew random scores independent of the input and
  returned `k` scaled copies of each token, which summed back to the identity."""

_DEMOPACK = """\
A linear layer whose weight is synthesised from a vector-quantised codebook and a fixed
procedural index table.

- Parameters: `codebook [codewords, in]` (N(0, 0.02²) truncated at ±0.04; a buffer when
  `learnable=false`), `scale [out]` ones, `bias [out]` zeros. A persistent buffer (in
  `state_dict`): `index` int64 `[out, per_row]`, made by
  `g = torch.Generator().manual_seed(seed); torch.randint(0, codewords, (out, per_row),
  generator=g)`, so it depends only on `seed`.
- `W_r = scale_r / per_row · Σ_j codebook[index_rj]`; `y = x Wᵀ + bias`.
- A kernel never writes `W` to memory: it either decodes weight tiles on chip and multiplies,
  or uses the lookup form `P = x codebookᵀ`, `y_r = scale_r / per_row · Σ_j P[index_rj] +
  bias_r`.
- Departure from the SPARK research code: it decoded the whole weight on the host at every
  forward and averaged `in_features` random codewords per row (a nearly rank-1 weight)."""

_LORA = """\
A linear layer plus a low-rank delta generated per sample from metadata by a small network.

- Inputs: `x [B, N, in]`, `meta [B, M]`.
- Parameters: `base = Linear(in→out)`, `gen1 = Linear(M→gen_dim)`,
  `gen2 = Linear(gen_dim→gen_dim)`, `gen_a = Linear(gen_dim→rank·in)`,
  `gen_b = Linear(gen_dim→out·rank)` with weight and bias zero (the delta starts at 0).
- `h_b = gelu(gen2(gelu(gen1(meta_b))))`, `A_b = reshape(gen_a h_b, [rank, in])`,
  `Bm_b = reshape(gen_b h_b, [out, rank])`; `y_bn = base(x_bn) + Bm_b (A_b x_bn)`.
- Departure from the SPARK research code: it averaged the delta over the batch and wrote it into
  a weight's `.data` outside autograd, so the generator never trained and deltas piled up
  across calls."""

SEMANTICS: dict[str, str] = {
    "linear": _LINEAR,
    "embed": _EMBED,
    "pos_embed": _POS_EMBED,
    "rmsnorm": _RMSNORM,
    "layernorm": _LAYERNORM,
    **_UNARY,
    "add": _BINARY,
    "sub": _BINARY,
    "mul": _BINARY,
    "div": _BINARY,
    "softmax": _SOFTMAX,
    "mlp": _MLP,
    "swiglu": _SWIGLU,
    "conv1d": _CONV1D,
    "rope": _ROPE,
    "split_heads": _SPLIT,
    "merge_heads": _MERGE,
    "concat": _CONCAT,
    "mean": _MEAN,
    "cross_entropy": _CROSS_ENTROPY,
    "attention": _ATTENTION,
    "basis": _BASIS,
    "fk_attention": _FK,
    "spd_router": _SPD,
    "verifier_stack": _VERIFIER,
    "splat_attention": _SPLAT,
    "trajectory": _TRAJECTORY,
    "token_router": _TOKEN_ROUTER,
    "sqdk_attention": _SQDK,
    "opcode_tape": _TAPE,
    "routed_mlp": _ROUTED,
    "demopack_linear": _DEMOPACK,
    "lora_linear": _LORA,
}

REFLEXIVE = """\
Not an op: HSPMN's cheap per-token "reflexive" stream is built from primitives, e.g.
`swiglu(conv1d(rmsnorm(x), kernel=3, causal=true), hidden=4·D)` or
`mlp(conv1d(x, kernel=3), hidden=4·D, act=relu)`. The HSPMN layer of `examples/hspmn.spark` is
`y = x + reflexive(x) + sqdk_attention(rmsnorm(x), token_router(x).gate, ...)`."""

DECODING = """\
Status: generated modules do not offer cached decoding yet (a forward over a longer prefix
recomputes it); the reference ops already take the position offset it needs
(docs/ops_decisions.md, "Calling convention"). The contract it will follow:
a compiled model whose sequence-mixing ops are all causal supports incremental decoding:
`cache = model.new_cache(batch, max_len)`, then `out = model(x_new, cache=cache)` consumes the
next positions and returns their outputs, equal to the full forward's outputs at those
positions. The cache holds, per op: keys and values (`attention`, `sqdk_attention` in threshold
mode), every hop's `P_k` (`fk_attention`), the state `(S, z)` (`splat_attention`), `(M, p)`
(`verifier_stack`), the last `kernel − 1` inputs (`conv1d`), the last `window` inputs
(`trajectory`). A program that cannot decode incrementally (a non-causal op, `topk` routing)
gets a clear error. The cache belongs to the caller: nothing is reused across calls unless the
same cache object is passed again. Departure from the SPARK research code: its key/value
patcher kept detached tensors of earlier, unrelated batches and fed them into later forwards."""

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
