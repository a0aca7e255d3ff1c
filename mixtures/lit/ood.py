"""Out-of-distribution scores of the test loop, kept on the device: a metric that gathers
scores (DDP: concatenated over ranks) and the AUROC computed from them without leaving the
device (no host synchronisation per batch; one at the end, when the value is logged).

Letters: N scores.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

__all__ = ["ScoreList", "auroc_tensor"]


def auroc_tensor(scores_pos: Tensor, scores_neg: Tensor) -> Tensor:
    """AUROC of telling positives (higher score) from negatives, on their device: the
    probability that a random positive scores above a random negative, ties counting one half
    (Mann-Whitney U, average ranks over ties). ``[N_pos]``, ``[N_neg]`` → a 0-d tensor
    (0.5 when either set is empty)."""
    n_pos, n_neg = scores_pos.numel(), scores_neg.numel()
    dtype = torch.float32 if scores_pos.device.type == "mps" else torch.float64
    if n_pos == 0 or n_neg == 0:
        return torch.tensor(0.5, dtype=dtype, device=scores_pos.device)
    s = torch.cat([scores_pos.flatten(), scores_neg.flatten()]).to(dtype)
    uniq, inverse, counts = torch.unique(s, return_inverse=True, return_counts=True)
    # average rank of each distinct value: the ranks before it, plus (1 + count) / 2
    before = torch.cumsum(counts, 0) - counts
    ranks = (before.to(dtype) + (counts.to(dtype) + 1) / 2)[inverse]
    u = ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


class ScoreList(Metric):
    """The scores of one set, concatenated over batches and ranks."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("scores", [], dist_reduce_fx="cat")

    def update(self, scores: Tensor) -> None:
        """``scores`` ``[B]``."""
        self.scores.append(scores.detach().flatten())

    def compute(self) -> Tensor:
        """All scores ``[N]`` (empty when none were seen)."""
        if isinstance(self.scores, Tensor):
            return self.scores
        return dim_zero_cat(self.scores) if self.scores else torch.zeros(0, device=self.device)
