"""Small .spark programs covering every primitive of SPEC §1 and `attention` (§1.1, §5.5).

Each entry: name → (source, inputs), where inputs maps an input name to a function
`make(B, N, generator) -> Tensor`. Shapes are deliberately not multiples of any block size.
Used by the code-generation numerics, causality and compile-only tests.
"""

from __future__ import annotations

import torch


def _float(*shape_tail):
    def make(b, n, g):
        return torch.randn(b, n, *shape_tail, generator=g, dtype=torch.float64)

    return make


def _ids(vocab, ignore_some=False):
    def make(b, n, g):
        t = torch.randint(0, vocab, (b, n), generator=g)
        if ignore_some:
            t[0, 0] = -100
        return t

    return make


PROGRAMS: dict[str, tuple[str, dict]] = {
    "elementwise": (
        """
model Elementwise(d = 12) {
  input x: float[B, N, d]
  a = linear(x, out=20)
  b = gelu(a) * 0.5 + sigmoid(a) - relu(-a) / 3.0
  c = linear(silu(b) * tanh(b), out=d, bias=false)
  y = c - x / 2.0
  output y
}
""",
        {"x": _float(12)},
    ),
    "norms": (
        """
model Norms(d = 10) {
  input x: float[B, N, d]
  a = rmsnorm(x)
  b = layernorm(x * 2.0 + 1.0)
  s = softmax(concat(a, b), dim=-1)
  y = linear(s, out=d) + x
  m = mean(y * y)
  output y
  loss reg = m
}
""",
        {"x": _float(10)},
    ),
    "norm_residual": (
        """
model NormResidual(d = 12) {
  input x: float[B, N, d]
  s = gelu(x) + x
  y = rmsnorm(s) * s
  t = sigmoid(y) + s
  z = layernorm(t)
  output z
  output t
}
""",
        {"x": _float(12)},
    ),
    "mlp_swiglu_conv": (
        """
model Ffn(d = 12) {
  input x: float[B, N, d]
  h = x + mlp(rmsnorm(x), hidden=24, act=relu)
  g = h + swiglu(layernorm(h), hidden=20)
  c = conv1d(g, kernel=3, causal=true)
  s = conv1d(c, kernel=5, causal=false)
  output s
}
""",
        {"x": _float(12)},
    ),
    "rope_heads": (
        """
model Rope(d = 16) {
  input x: float[B, N, d]
  r = merge_heads(rope(split_heads(x, heads=2)))
  output r
}
""",
        {"x": _float(16)},
    ),
    "attention_causal": (
        """
model Attn(d = 32) {
  input x: float[B, N, d]
  a = x + attention(rmsnorm(x), heads=4, kv_heads=2, rope=true)
  output a
}
""",
        {"x": _float(32)},
    ),
    "attention_gqa": (
        """
model AttnGqa(d = 32) {
  input x: float[B, N, d]
  a = attention(x, heads=4, kv_heads=2)
  output a
}
""",
        {"x": _float(32)},
    ),
    "attention_bidir_basis": (
        """
model AttnBasis(d = 32, L = 256) {
  input x: float[B, N, d]
  a = attention(x, heads=2, causal=false, basis=basis(freqs=2, legendre=3, over=key, max_len=L))
  b = attention(a, heads=2, basis=basis(freqs=3, legendre=2, over=distance, max_len=L))
  output b
}
""",
        {"x": _float(32)},
    ),
    "lm_fused_ce": (
        """
model LmFused(vocab = 13, d = 16) {
  input tokens: i64[B, N]
  input targets: i64[B, N]
  e = pos_embed(embed(tokens, vocab=vocab, dim=d), max_len=256)
  h = e + attention(rmsnorm(e), heads=2)
  loss ce = cross_entropy(linear(rmsnorm(h), out=vocab), targets)
}
""",
        {"tokens": _ids(13), "targets": _ids(13, ignore_some=True)},
    ),
    "lm_tied_logits": (
        """
model LmTied(vocab = 11, d = 16) {
  input tokens: i64[B, N]
  input targets: i64[B, N]
  tok = embed(tokens, vocab=vocab, dim=d)
  p = pos_embed(tok, max_len=256)
  logits = linear(layernorm(p), out=vocab, bias=false, tie=tok)
  output logits
  loss ce = cross_entropy(logits, targets) weight 0.5
}
""",
        {"tokens": _ids(11), "targets": _ids(11, ignore_some=True)},
    ),
}

# Programs whose every output at position t depends only on inputs at positions <= t.
CAUSAL = ("elementwise", "rope_heads", "attention_causal", "attention_gqa", "norm_residual")
