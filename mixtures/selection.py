"""Choosing the number of components (and the covariance type) of a Gaussian mixture.

:func:`select_k` fits a :class:`mixtures.GaussianMixture` for every K of a range and every
covariance type, and ranks them by a criterion (lower is better):

- ``"bic"``: ``−2 log L + p log N`` on the training points (as scikit-learn's ``bic``),
- ``"aic"``: ``−2 log L + 2 p`` on the training points,
- ``"heldout"``: the mean negative log-likelihood of held-out points (``x_val``, or a random
  ``val_fraction`` of ``x`` kept out of the fit).

Example::

    from mixtures.selection import select_k

    result = select_k(x, range(1, 9), covariance_types=("full", "diag"), criterion="bic")
    result.n_components, result.covariance_type, result.model   # the best, fitted
    print(result.to_markdown())                                 # every candidate

Over a ``mixtures-train`` sweep the same choice is one command (README, "Comparing runs"):
``mixtures-train -m hparams_search=gmm_grid`` writes ``summary.md`` sorted by ``train/bic``.

Letters: N points, K components, D features.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Selection", "select_k"]

CRITERIA = ("bic", "aic", "heldout")


@dataclass
class Selection:
    """The outcome of :func:`select_k`.

    Attributes:
        criterion: ``bic``, ``aic`` or ``heldout``.
        n_components, covariance_type: the best candidate.
        score: its criterion value (lower is better).
        model: the best candidate's fitted GaussianMixture (for ``heldout``: refitted on all
            of ``x`` unless ``x_val`` was given).
        table: one row per candidate, best first: ``n_components``, ``covariance_type``,
            ``bic``, ``aic`` (training points), ``heldout_nll`` (when held-out points exist),
            ``converged``.
    """

    criterion: str
    n_components: int
    covariance_type: str
    score: float
    model: Any = field(repr=False)
    table: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def to_markdown(self) -> str:
        """The table as a Markdown table (best first)."""
        keys = list(self.table[0])
        lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        for row in self.table:
            lines.append("| " + " | ".join(
                f"{v:.6g}" if isinstance(v, float) else str(v) for v in row.values()) + " |")
        return "\n".join(lines) + "\n"


def _as_array(x: Any) -> np.ndarray:
    arr = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x)
    if arr.ndim != 2:
        raise ValueError(f"select_k: x must be [N, D] points, got shape {list(arr.shape)}.")
    return arr if arr.dtype in (np.float32, np.float64) else arr.astype(np.float64)


def select_k(x: Any, n_components: Iterable[int] = range(1, 11),
             covariance_types: Sequence[str] = ("full",), criterion: str = "bic", *,
             x_val: Any = None, val_fraction: float = 0.2, random_state: int | None = 0,
             **kwargs: Any) -> Selection:
    """Fit a GaussianMixture per (K, covariance type) and return the best by ``criterion``.

    Args:
        x: training points ``[N, D]`` (array, tensor or DataFrame).
        n_components: the Ks to try.
        covariance_types: any of ``full``, ``tied``, ``diag``, ``spherical``.
        criterion: ``bic`` / ``aic`` (on the training points) or ``heldout`` (mean negative
            log-likelihood of ``x_val``, or of a ``val_fraction`` split of ``x``).
        x_val: held-out points for ``heldout`` (and reported in the table when given).
        val_fraction: the fraction of ``x`` held out when ``criterion="heldout"`` and no
            ``x_val`` is given.
        random_state: seed of every fit (and of the split).
        **kwargs: further :class:`mixtures.GaussianMixture` arguments (``n_init``,
            ``max_iter``, ``tol``, ``reg_covar``, ``device``, ``dtype``, …).

    Returns:
        :class:`Selection`, with every candidate's scores in ``table``.
    """
    from mixtures.estimator import GaussianMixture

    if criterion not in CRITERIA:
        raise ValueError(f"criterion={criterion!r}: use one of {CRITERIA}.")
    ks = [int(k) for k in n_components]
    if not ks or min(ks) < 1:
        raise ValueError(f"n_components must be positive integers, got {ks!r}.")
    if isinstance(covariance_types, str):
        covariance_types = (covariance_types,)
    x = _as_array(x)
    fit_x, val_x = x, None if x_val is None else _as_array(x_val)
    if criterion == "heldout" and val_x is None:
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}.")
        order = np.random.default_rng(random_state).permutation(len(x))
        n_val = max(1, int(round(val_fraction * len(x))))
        val_x, fit_x = x[order[:n_val]], x[order[n_val:]]
    if max(ks) > len(fit_x):
        raise ValueError(f"n_components up to {max(ks)} but only {len(fit_x)} training "
                         "points; lower the range.")

    rows, models = [], []
    for cov in covariance_types:
        for k in ks:
            gm = GaussianMixture(k, covariance_type=cov, random_state=random_state, **kwargs)
            gm.fit(fit_x)
            row = {"n_components": k, "covariance_type": cov, "bic": float(gm.bic(fit_x)),
                   "aic": float(gm.aic(fit_x))}
            if val_x is not None:
                row["heldout_nll"] = -float(gm.score(val_x))
            row["converged"] = bool(gm.converged_)
            rows.append(row)
            models.append(gm)
    key = "heldout_nll" if criterion == "heldout" else criterion
    order = sorted(range(len(rows)), key=lambda i: (
        math.inf if not math.isfinite(rows[i][key]) else rows[i][key]))
    best = order[0]
    model = models[best]
    if criterion == "heldout" and x_val is None:  # refit the winner on all the points
        model = GaussianMixture(rows[best]["n_components"],
                                covariance_type=rows[best]["covariance_type"],
                                random_state=random_state, **kwargs).fit(x)
    return Selection(criterion=criterion, n_components=rows[best]["n_components"],
                     covariance_type=rows[best]["covariance_type"], score=rows[best][key],
                     model=model, table=[rows[i] for i in order])
