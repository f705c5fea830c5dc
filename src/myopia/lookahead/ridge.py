"""Closed-form ridge regression on one layer's fitting positions, the penalty chosen by
generalised cross-validation."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class _Design:
    """The fitting positions of one layer: standardised features and their spectrum."""

    mean: torch.Tensor  # (d,)
    scale: torch.Tensor  # (d,)
    x: torch.Tensor  # (n, d) standardised, float32
    eigvals: torch.Tensor  # (d,) float64, of the correlation matrix
    eigvecs: torch.Tensor  # (d, d) float64

    @classmethod
    def of(cls, features: torch.Tensor) -> _Design:
        mean = features.double().mean(0)
        centred = features - mean.float()  # (n, d)
        scale = centred.std(0)
        scale = torch.where(scale > 1e-8 * max(float(scale.max()), 1e-30), scale, 1.0)
        x = centred / scale
        gram = (x.T @ x).double() / len(x)  # (d, d) correlation matrix
        eigvals, eigvecs = torch.linalg.eigh(gram)
        return cls(mean.float(), scale, x, eigvals.clamp_min(0.0), eigvecs)

    def solve(
        self, cross: torch.Tensor, target_var: float, lambdas: tuple[float, ...]
    ) -> tuple[torch.Tensor, float]:
        """Ridge weights (d, m) on the standardised features, the penalty chosen by
        generalised cross-validation. ``cross`` = x̃ᵀ z / n (d, m) and ``target_var`` =
        mean over positions of |z - z̄|² for the centred targets z."""
        n = len(self.x)
        s = self.eigvals  # (d,)
        rotated = self.eigvecs.T @ cross.double()  # (d, m)
        alive = s > 1e-10 * max(float(s.max()), 1e-30)
        energy = torch.where(alive, (rotated**2).sum(1) / s.clamp_min(1e-300), 0.0)  # (d,)
        best, best_score = lambdas[0], math.inf
        for lam in lambdas:
            shrink = torch.where(alive, s / (s + lam), 0.0)
            rss = target_var - float(((2 * shrink - shrink**2) * energy).sum())
            dof = float(shrink.sum()) + 1.0  # + the intercept
            score = max(rss, 0.0) / max(1.0 - dof / n, 1e-12) ** 2
            if score < best_score:
                best, best_score = lam, score
        weight = self.eigvecs @ (rotated / (s + best)[:, None])  # (d, m)
        return weight.float(), float(best)

    def to_raw(self, weight: torch.Tensor, target_mean: torch.Tensor):
        """Weight and bias on the raw features: raw @ W + b == standardised @ weight + z̄."""
        raw = weight / self.scale[:, None]  # (d, m)
        return raw, target_mean - self.mean @ raw
