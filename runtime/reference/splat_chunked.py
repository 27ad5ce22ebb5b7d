"""The mixing of `splat_attention` (SPEC §3.1) in the chunked state form, in plain PyTorch.

Consumes responsibilities φ [B,H,N,K] and values v [B,H,N,d] (compute dtype: float32 or
float64); produces o [B,H,N,d] with
  causal:     num_t = Σ_{s≤t} (φ_t·φ_s) v_s,  den_t = Σ_{s≤t} φ_t·φ_s
  non-causal: the same sums over every s,
  o = num / den (normalize) or num.
The sequence is cut into chunks of C positions (the last one padded with φ = 0 rows). Within a
chunk the quadratic form `(Φ_c Φ_cᵀ ⊙ tril) V_c`; across chunks the exclusive prefix of the chunk
states `S_c = Φ_cᵀ V_c` [K,d] and `z_c = Φ_cᵀ 1` [K], so `num = A V_c + Φ_c S_prev` and
`den = A 1 + Φ_c z_prev`. Memory per head is O(N·C + (N/C)·K·d): never [N, N]. States are kept
in at least float32 (the compute dtype). The generated kernels (codegen_templates/
splat_attention.py.jinja) compute the same function chunk by chunk.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

CHUNK = 64


def splat_mix(
    phi: Tensor,
    v: Tensor,
    causal: bool,
    normalize: bool,
    chunk: int = CHUNK,
    start: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """o [B,H,N,d] from φ [B,H,N,K] and v [B,H,N,d] (see the module docstring). `start`, causal
    only: the state (S [B,H,K,d], z [B,H,K]) of the positions before these (a cached decoding
    call continuing a sequence), added to every chunk's prefix."""
    b, h, n, k = phi.shape
    d = v.shape[-1]
    if not causal:
        assert start is None, "a start state is for causal mixing"
        state = torch.einsum("bhnk,bhnd->bhkd", phi, v)
        num = torch.einsum("bhnk,bhkd->bhnd", phi, state)
        den = torch.einsum("bhnk,bhk->bhn", phi, phi.sum(2))
        return num / den[..., None] if normalize else num
    c = max(1, min(chunk, n))
    nc = -(-n // c)
    pad = nc * c - n
    # Padded rows have φ = 0: they add nothing to any state and are cut from the output.
    phic = F.pad(phi, (0, 0, 0, pad)).view(b, h, nc, c, k)
    vc = F.pad(v, (0, 0, 0, pad)).view(b, h, nc, c, d)
    keep = torch.ones(c, c, dtype=torch.bool, device=phi.device).tril()
    a = torch.einsum("bhntk,bhnsk->bhnts", phic, phic)
    a = torch.where(keep, a, torch.zeros((), dtype=a.dtype, device=a.device))
    kv = torch.einsum("bhnsk,bhnsd->bhnkd", phic, vc)  # S of each chunk alone
    zc = phic.sum(3)  # [B,H,NC,K]
    # Exclusive prefix over chunks: the state before chunk c is the sum of chunks 0..c−1.
    s_prev = F.pad(torch.cumsum(kv, dim=2)[:, :, :-1], (0, 0, 0, 0, 1, 0))
    z_prev = F.pad(torch.cumsum(zc, dim=2)[:, :, :-1], (0, 0, 1, 0))
    if start is not None:
        s_prev = s_prev + start[0][:, :, None]
        z_prev = z_prev + start[1][:, :, None]
    num = torch.einsum("bhnts,bhnsd->bhntd", a, vc) + torch.einsum(
        "bhntk,bhnkd->bhntd", phic, s_prev
    )
    num = num.reshape(b, h, nc * c, d)[:, :, :n]  # padded rows cut before any division
    if normalize:
        den = a.sum(-1) + torch.einsum("bhntk,bhnk->bhnt", phic, z_prev)
        # den_t ≥ φ_t·φ_t ≥ 1/K > 0 on real rows, so the division is always safe there.
        num = num / den.reshape(b, h, nc * c)[:, :, :n, None]
    return num
