"""Rounding of the low-rank basis bias's Legendre gains gradient (docs/kernels/attention.md,
"Gains gradient through V"), simulated in numpy. No GPU.

For random softmax-shaped dS (rows summing to zero, causal or not) over N positions, tiles of
BLOCK_M queries × BLOCK_N keys and max_len M, computes d gains[n] = Σ_ij dS_ij P_n(y_ij)
(y = 2|i − j|/M − 1) three ways: exactly in float64; by the moment form the kernels use now
(per tile the products Σ dS α^p (−β)^m, scaled by σ^(p+m) y0^r into one float32 accumulator,
then multinomials and the monomial coefficients of P_n); and by the per-atom form used before
2026-12-07 (per tile, each atom's Taylor coefficients P_n^(k)(y0)/k! at the tile's centre pair).
The products' inputs are rounded to tf32 (10 mantissa bits), as the kernels' 16-bit paths do.
Prints each form's error relative to the gradient's norm; the two forms should agree.

Run: python bench/sim_basis_gradient.py [--n 256] [--max-len 512] [--legendre 4]
     [--block-m 32] [--block-n 64] [--non-causal] [--seed 0]
"""

from __future__ import annotations

import argparse
from math import comb, factorial

import numpy as np
from numpy.polynomial import legendre as npleg
from numpy.polynomial import polynomial as nppoly

F32 = np.float32


def tf32(x: np.ndarray) -> np.ndarray:
    """x rounded toward zero to tf32 (the low 13 mantissa bits of float32 cleared)."""
    x = np.asarray(x, np.float32).copy()
    x.view(np.uint32)[...] &= np.uint32(0xFFFFE000)
    return x


def softmax_grad(n: int, causal: bool, rng: np.random.Generator) -> np.ndarray:
    """dS = P ⊙ (dP − rowsum(P ⊙ dP)) for random row-stochastic P and random dP."""
    p = rng.random((n, n))
    if causal:
        p = np.tril(p)
    p /= p.sum(1, keepdims=True)
    dp = rng.standard_normal((n, n))
    return p * (dp - (p * dp).sum(1, keepdims=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--max-len", type=int, default=512)
    ap.add_argument("--legendre", type=int, default=4)
    ap.add_argument("--block-m", type=int, default=32)
    ap.add_argument("--block-n", type=int, default=64)
    ap.add_argument("--non-causal", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    n, m_len, big_l, bm, bn = args.n, args.max_len, args.legendre, args.block_m, args.block_n
    ds = softmax_grad(n, not args.non_causal, np.random.default_rng(args.seed))
    i, j = np.arange(n)[:, None], np.arange(n)[None, :]
    y = 2 * np.abs(i - j) / m_len - 1
    exact = np.array([(ds * npleg.legval(y, [0] * k + [1])).sum() for k in range(1, big_l + 1)])
    mono = [npleg.leg2poly([0] * k + [1]) for k in range(big_l + 1)]  # a_(n, s)
    moments: dict[tuple[int, int, int], np.float32] = {}
    per_atom = np.zeros(big_l)
    alpha = ((np.arange(bm) - bm // 2) * (2.0 / m_len)).astype(F32)
    beta_neg = ((np.arange(bn) - bn // 2) * (-2.0 / m_len)).astype(F32)
    u = tf32(np.stack([alpha**p for p in range(big_l + 1)], 1))
    b = tf32(np.stack([beta_neg**m for m in range(big_l + 1)], 1))
    for k0 in range(0, n, bn):
        acc = np.zeros(big_l, F32)
        for q0 in range(0, n, bm):
            d0 = (q0 + bm // 2) - (k0 + bn // 2)
            lo, hi = q0 - (k0 + bn - 1), q0 + bm - 1 - k0
            tile = ds[q0 : q0 + bm, k0 : k0 + bn].astype(F32)
            rows, cols = i[q0 : q0 + bm], j[:, k0 : k0 + bn]
            for sg in (1, -1):
                if (sg == -1 and lo >= 0) or (sg == 1 and hi < 0):
                    continue
                part = np.where((rows >= cols) if sg == 1 else (rows < cols), tile, 0)
                z = u[: part.shape[0]].T @ tf32(part) @ b[: part.shape[1]]  # [p, m]
                y0 = F32(sg * d0 * 2.0 / m_len - 1)
                for p in range(big_l + 1):
                    for m in range(big_l + 1 - p):
                        for r in range(big_l + 1 - p - m):
                            term = z[p, m] * F32(sg ** (p + m)) * F32(y0**r)
                            moments[(p, m, r)] = F32(moments.get((p, m, r), F32(0)) + term)
                for atom in range(1, big_l + 1):
                    poly = nppoly.Polynomial(mono[atom])
                    for kk in range(atom + 1):
                        q = F32(poly.deriv(kk)(y0) / factorial(kk)) if kk else F32(poly(y0))
                        zk = sum(comb(kk, p) * z[p, kk - p] for p in range(kk + 1))
                        acc[atom - 1] = F32(acc[atom - 1] + q * F32(zk) * F32(sg**kk))
        per_atom += acc
    moment = np.zeros(big_l)
    for (p, m, r), v in moments.items():
        s = p + m + r
        weight = factorial(s) / (factorial(p) * factorial(m) * factorial(r))
        for atom in range(1, big_l + 1):
            if s < len(mono[atom]):
                moment[atom - 1] += float(v) * weight * mono[atom][s]
    norm = np.linalg.norm(exact)
    print(f"N={n} max_len={m_len} L={big_l} tiles {bm}x{bn} causal={not args.non_causal}")
    print(f"  moment form:   error / |dg| = {np.linalg.norm(moment - exact) / norm:.2e}")
    print(f"  per-atom form: error / |dg| = {np.linalg.norm(per_atom - exact) / norm:.2e}")


if __name__ == "__main__":
    main()
