"""Combining out-of-distribution scores by their in-distribution tail probabilities.

Two scores see different kinds of novelty: the density ``−log p(z)`` sees inputs unlike any
digit (noise, shuffled, inverted pixels), the classifier's confidence ``−max_c log p(c | x)``
sees digits of classes it was not trained on. Their units differ, so they are put on one scale
first: each score's upper-tail probability among held-in digits (validation digits, never
OOD data),

    p_k(s) = P(S_k ≥ s)   estimated from Q quantiles of the reference scores,

linear between the quantiles and, beyond the largest, an exponential tail fitted to the top
decile (so the most extreme inputs keep their order instead of tying at 1/Q). The combined
score is Fisher's statistic ``−Σ_k log p_k(s_k)``: an input extreme on either score, or
moderately unusual on both, scores high.

Letters: N reference points, B batch, K scores, Q quantiles.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mixtures.models.class_density import _mirror_fitted

__all__ = ["TailCalibration"]


class TailCalibration(nn.Module):
    """Upper-tail probabilities of K scores under a reference (in-distribution) sample.

    Args:
        num_scores: K.
        num_quantiles: Q, the reference quantiles kept (at levels (i + ½) / Q).
    """

    def __init__(self, num_scores: int = 2, num_quantiles: int = 1000) -> None:
        super().__init__()
        if num_scores < 1 or num_quantiles < 10:
            raise ValueError(f"TailCalibration needs num_scores ≥ 1 and num_quantiles ≥ 10, "
                             f"got {num_scores} and {num_quantiles}.")
        self.num_scores, self.num_quantiles = num_scores, num_quantiles
        self.register_buffer("quantiles", torch.zeros(num_scores, num_quantiles))
        #: scale of the exponential tail beyond the largest quantile, per score [K]
        self.register_buffer("tail_scale", torch.ones(num_scores))
        self.register_buffer("fitted", torch.tensor(False))
        self.is_fitted = False
        self.register_load_state_dict_post_hook(_mirror_fitted)

    @property
    def levels(self) -> Tensor:
        """Lower-tail levels of the quantiles ``[Q]``."""
        q = self.num_quantiles
        return (torch.arange(q, dtype=self.quantiles.dtype, device=self.quantiles.device)
                + 0.5) / q

    @torch.no_grad()
    def fit(self, scores: Tensor) -> None:
        """Keep the quantiles of reference scores ``[N, K]`` (finite, N ≥ 10)."""
        if scores.dim() != 2 or scores.shape[1] != self.num_scores or scores.shape[0] < 10:
            raise ValueError(f"TailCalibration.fit needs reference scores [N ≥ 10, "
                             f"{self.num_scores}], got {list(scores.shape)}.")
        if not torch.isfinite(scores).all():
            raise ValueError("TailCalibration.fit: the reference scores hold non-finite "
                             "values; check the density and the network for NaN.")
        q = torch.quantile(scores.double(), self.levels.double(), dim=0).T  # [K, Q]
        self.quantiles.copy_(q.to(self.quantiles))
        # exponential tail through the 90% quantile and the largest one: P(S ≥ s) =
        # p_top · exp(−(s − q_top) / β), with p(q_90) = 0.1 and p(q_top) = 0.5 / Q
        i90 = int(0.9 * self.num_quantiles)
        gap = (q[:, -1] - q[:, i90]).clamp_min(1e-12)
        self.tail_scale.copy_((gap / math.log(0.1 * 2 * self.num_quantiles))
                              .to(self.tail_scale))
        self.fitted.fill_(True)
        self.is_fitted = True

    def log_tail(self, scores: Tensor) -> Tensor:
        """``log P(S_k ≥ s_k)`` ``[B, K]`` of scores ``[B, K]`` (≤ log(1 − ½/Q))."""
        if not self.is_fitted:
            raise RuntimeError("TailCalibration is not fitted: call fit(reference scores).")
        q, lv = self.quantiles, self.levels.to(scores.dtype)
        s = scores.T.contiguous().to(q.dtype)  # [K, B]
        idx = torch.searchsorted(q, s).clamp(1, q.shape[1] - 1)  # [K, B]
        lo, hi = q.gather(1, idx - 1), q.gather(1, idx)
        t = ((s - lo) / (hi - lo).clamp_min(1e-12)).clamp(0, 1)
        cdf = lv[idx - 1] + t * (lv[idx] - lv[idx - 1])
        log_p = torch.log1p(-cdf)  # inside the reference range (clamped at its ends)
        top = q[:, -1:]
        beyond = math.log(0.5 / self.num_quantiles) - (s - top) / self.tail_scale[:, None]
        return torch.where(s > top, beyond, log_p).T

    def combined(self, scores: Tensor) -> Tensor:
        """Fisher's statistic ``−Σ_k log P(S_k ≥ s_k)`` ``[B]`` (higher: more anomalous)."""
        return -self.log_tail(scores).sum(dim=1)
