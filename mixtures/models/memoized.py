"""Memoized variational inference for a :class:`~mixtures.models.DPMM` (Hughes & Sudderth,
NeurIPS 2013), with merges and splits decided from summaries.

The data are cut into B fixed batches. Each batch keeps its summary — statistics
``(Σ r, Σ r x, Σ r F(x))`` per component, the entropy ``−Σ r log r`` and the proposals'
entropies and child statistics — and the global statistics are the sum of the B summaries.
Visiting a batch runs the local step under the current posterior, *replaces* that batch's
summary and updates the global statistics by the difference: after one lap every global step is
exact, for any batch size, and the objective (the ELBO of the cached responsibilities and the
optimal global factors, :func:`~mixtures.models.dpmm_proposals.summary_elbo`) never decreases.
With one batch this is coordinate-ascent VI.

Across processes each rank holds its own shard's batches; the differences are summed across
ranks (``reduce``) so every rank has the same global statistics, and the moves are decided at
the end of a lap from reduced summaries — the same decisions on every rank, from no second copy
of the data:

- *merge*: the candidate pairs (largest upper bound on the gain, chosen at the start of a lap)
  have their merged entropy summed during the lap; at its end every non-conflicting pair whose
  exact gain is positive is merged;
- *split* (birth): up to ``max_splits`` target components carry two children, refined once per
  lap by the points' sub-responsibilities (as sub-clusters in DPMMSubClusters); a target whose
  split raises the ELBO takes an empty slot of the truncation. A target rejected
  ``split_tries`` laps in a row rests until a move touches it;
- *sort*: components ordered by decreasing count (the stick-breaking prior prefers it).

Each move is applied only if the summary ELBO rises, and rewrites every batch's summary the
same way, so the next lap starts consistent. Empty components are left out of the local step
(bnpy's truncation grows and shrinks the same way).

    memo = MemoizedVI(model, num_batches=len(batches))
    memo.initialize(batches)               # data-derived priors, k-means on a sample, one pass
    for lap in range(20):
        for b, x in enumerate(batches):
            memo.visit(b, x)
        memo.end_lap()

Letters: B batches, K components (truncation), A active, M candidate pairs, T split targets,
D features, Q moment features.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.special import xlogy

from mixtures.distributions import expfam_log_prob, normalize_log_prob
from mixtures.models.dpmm import DPMM
from mixtures.models.dpmm_proposals import (
    child_statistics,
    merge_candidates,
    summary_elbo,
)
from mixtures.models.init import initial_responsibilities
from mixtures.models.kmeans import assign

__all__ = ["MemoizedVI"]

_STATS = ("counts", "sum_x", "sum_f")
_PROPOSALS = ("pair_entropy", "child_counts", "child_sum_x", "child_sum_f", "child_entropy")


def _identity(t: Tensor) -> Tensor:
    return t


class MemoizedVI:
    """Per-batch summaries, the exact global step, and moves between laps.

    Args:
        model: the DPMM (its statistics are overwritten with the global sums).
        num_batches: B, the fixed batches of this process.
        moves: merge / split / sort at the end of every lap.
        max_pairs: merge candidates tracked per lap (default K).
        max_splits: split targets per lap.
        split_tries: laps a rejected target keeps refining its children before it rests.
        reduce: sums a tensor across processes (identity for one process).
    """

    def __init__(self, model: DPMM, num_batches: int, moves: bool = True,
                 max_pairs: int | None = None, max_splits: int = 4, split_tries: int = 3,
                 reduce: Callable[[Tensor], Tensor] | None = None) -> None:
        if num_batches < 1:
            raise ValueError(f"memoized VI needs at least one batch, got {num_batches}.")
        self.model, self.moves = model, moves
        self.reduce = reduce or _identity
        k, d = model.num_components, model.num_features
        q = model.cov.feature_size(d)
        self.max_pairs = k if max_pairs is None else int(max_pairs)
        self.max_splits, self.split_tries = int(max_splits), int(split_tries)
        m, c = self.max_pairs, 2 * self.max_splits
        dev = dict(dtype=torch.float64, device=model.counts.device)
        shapes = {"counts": (k,), "sum_x": (k, d), "sum_f": (k, q), "entropy": (k,),
                  "pair_entropy": (m,), "child_counts": (c,), "child_sum_x": (c, d),
                  "child_sum_f": (c, q), "child_entropy": (c,)}
        self.cache = {n: torch.zeros(num_batches, *s, **dev) for n, s in shapes.items()}
        self.total = [torch.zeros(s, **dev) for s in ((k,), (k, d), (k, q))]
        self.entropy = torch.zeros((), **dev)  # Σ over batches and ranks
        long = dict(dtype=torch.long, device=model.counts.device)
        self.active = torch.zeros(0, **long)
        self.pairs = torch.zeros(0, 2, **long)
        self.targets = torch.zeros(0, **long)
        self.children: tuple[Tensor, Tensor, Tensor] | None = None  # the lap's child stats
        self.tries = torch.zeros(k, **long)
        self.laps = 0
        self.accepted: dict[str, int] = {}
        self._refined: dict[int, list[Tensor]] = {}

    # -- state (checkpoints: tensors only) ------------------------------------------------------
    def state_dict(self) -> dict:
        children = self.children or (torch.zeros(0),) * 3
        return {"cache": dict(self.cache), "total": list(self.total), "entropy": self.entropy,
                "active": self.active, "pairs": self.pairs, "targets": self.targets,
                "children": list(children), "tries": self.tries,
                "laps": torch.tensor(self.laps)}

    def load_state_dict(self, state: dict) -> None:
        dev = self.model.counts.device
        for name, value in state["cache"].items():
            if value.shape != self.cache[name].shape:
                raise ValueError(f"the checkpoint's memoized summaries '{name}' have shape "
                                 f"{list(value.shape)}, this run {list(self.cache[name].shape)}"
                                 ": resume with the same data, batch size and processes.")
            self.cache[name] = value.to(dev, torch.float64)
        self.total = [t.to(dev) for t in state["total"]]
        self.entropy = state["entropy"].to(dev)
        self.active, self.pairs = state["active"].to(dev), state["pairs"].to(dev)
        self.targets, self.tries = state["targets"].to(dev), state["tries"].to(dev)
        kids = [t.to(dev) for t in state["children"]]
        self.children = tuple(kids) if kids[0].numel() else None
        self.laps = int(state["laps"])
        self._publish()

    # -- initialisation -------------------------------------------------------------------------
    @torch.no_grad()
    def initialize(self, batches: Sequence[Tensor], sample: Tensor | None = None,
                   num_clusters: int | None = None,
                   gather: Callable[[Tensor], Tensor] | None = None) -> None:
        """Priors from the data's moments (summed over batches and processes), centres by the
        model's ``init`` on ``sample`` (default: all of ``batches``), then one pass that
        assigns every point to its nearest centre and fills the summaries.

        Args:
            batches: this process's B batches ``[n_b, D]``, in the order of later visits.
            sample: points ``[S, D]`` for the centres — the same on every process.
            num_clusters: the number of starting clusters (default: the truncation K).
        """
        model = self.model
        k, d = model.num_components, model.num_features
        batches = [model._check_points(x, model.counts.dtype) for x in batches]
        moments = torch.zeros(1 + d + d * d, dtype=torch.float64, device=model.counts.device)
        for x in batches:
            if not bool(torch.isfinite(x).all()):
                raise ValueError("the training points contain NaN or inf; remove them first.")
            xd = x.double()
            moments += torch.cat([xd.new_tensor([x.shape[0]]), xd.sum(0), (xd.T @ xd).flatten()])
        moments = self.reduce(moments)
        n = float(moments[0])
        if n < 2:
            raise ValueError(f"memoized VI needs at least 2 training points, got {n:g}.")
        mean = moments[1:1 + d] / n
        cov = (moments[1 + d:].view(d, d) - n * torch.outer(mean, mean)) / (n - 1)
        settings = model.settings
        shift = mean if settings.mean_prior is None else settings.mean_prior.double().to(mean)
        model.shift.copy_(shift)
        model.prior_scatter.copy_(settings.scatter_from_data_covariance(cov, mean.device))
        model.dataset_size.fill_(n)
        model.initialized.fill_(True)
        sample = torch.cat(batches) if sample is None else sample.to(model.counts.dtype)
        clusters = k if num_clusters is None else int(num_clusters)
        if not 1 <= clusters <= k:
            raise ValueError(f"the starting clusters ({clusters}) must lie in [1, truncation "
                             f"K={k}].")
        if clusters > sample.shape[0]:
            raise ValueError(f"{clusters} starting clusters but only {sample.shape[0]} points "
                             "to place them; lower model.net.num_components.")
        resp = initial_responsibilities(sample, clusters, 1, model.init, model.seed,
                                        model.kmeans_iters)[:, 0]  # [S, C]
        centres = (resp.T @ sample) / resp.sum(0).clamp_min(1e-12)[:, None]  # [C, D]
        for b, x in enumerate(batches):
            onehot = torch.zeros(x.shape[0], k, dtype=x.dtype, device=x.device)
            if x.shape[0]:
                onehot.scatter_(1, assign(x, centres)[0][:, None], 1.0)
            self._store(b, self._summary(x, resp=onehot))
        self.total = [self.reduce(self.cache[n].sum(0)) for n in _STATS]
        self.entropy = self.reduce(self.cache["entropy"].sum())
        self._publish()
        self._plan()

    @torch.no_grad()
    def refresh(self, batches: Sequence[Tensor]) -> None:
        """Summaries of every batch under the model's current posterior (for a model trained
        elsewhere): one pass, then the global statistics are their sum."""
        model = self.model
        self.active = torch.arange(model.num_components, device=model.counts.device)
        for b, x in enumerate(batches):
            self._store(b, self._summary(model._check(x)))
        self.total = [self.reduce(self.cache[n].sum(0)) for n in _STATS]
        self.entropy = self.reduce(self.cache["entropy"].sum())
        self._publish()
        self._plan()

    # -- the local step and its summary ---------------------------------------------------------
    def _summary(self, x: Tensor, resp: Tensor | None = None) -> dict[str, Tensor]:
        """One batch's summary under the current posterior (or the given responsibilities)."""
        model = self.model
        k, d = model.num_components, model.num_features
        act = torch.arange(k, device=x.device) if resp is not None else self.active
        a = act.numel()
        out = {n: torch.zeros_like(v[0]) for n, v in self.cache.items()}
        acc = {"counts": out["counts"].new_zeros(a), "sum_x": out["sum_x"].new_zeros(a, d),
               "sum_f": out["sum_f"].new_zeros(a, out["sum_f"].shape[-1]),
               "entropy": out["entropy"].new_zeros(a)}
        pairs, kids = self._local_pairs(act), self._child_coefficients(x.dtype)
        if resp is None:
            quad, lin, const = (c[act] for c in model._coefficients())
        start, buffer = 0, None
        for chunk in model._chunks(x):
            xc = chunk - model.shift
            feats = buffer = model.cov.moment_features(xc, out=buffer)
            if resp is None:
                r, _ = normalize_log_prob(expfam_log_prob(feats, xc, quad, lin, const))
            else:
                r = resp[start:start + chunk.shape[0]]
                start += chunk.shape[0]
            acc["counts"] += r.sum(0)
            acc["sum_x"] += r.T @ xc
            acc["sum_f"] += r.T @ feats
            acc["entropy"] -= xlogy(r, r).sum(0)
            if pairs is not None:
                joint = r[:, pairs[:, 0]] + r[:, pairs[:, 1]]  # [n, M]
                out["pair_entropy"][:joint.shape[1]] -= xlogy(joint, joint).sum(0)
            if kids is not None:
                self._children_pass(out, r, feats, xc, kids, act)
        for name, value in acc.items():
            out[name][act] = value
        return out

    def _local_pairs(self, act: Tensor) -> Tensor | None:
        if self.pairs.numel() == 0 or act.numel() != self.active.numel():
            return None
        where = torch.full((self.model.num_components,), -1, dtype=torch.long,
                           device=act.device)
        where[act] = torch.arange(act.numel(), device=act.device)
        return where[self.pairs]

    def _child_coefficients(self, dtype: torch.dtype):
        if self.children is None or self.targets.numel() == 0:
            return None
        counts, sum_x, sum_f = self.children
        family, model = self.model.prior_family, self.model
        prior = family.prior(counts.shape[0], model.num_features, model.beta0, model.nu0,
                             model.prior_scatter.double())
        quad, lin, const = family.expected_coefficients(
            family.posterior(prior, counts, sum_x, sum_f))
        pair = counts.view(-1, 2)
        const = const + (pair / pair.sum(-1, keepdim=True).clamp_min(1e-300)).log().flatten()
        return quad.to(dtype), lin.to(dtype), const.to(dtype)

    def _children_pass(self, out, r, feats, xc, kids, act) -> None:
        """Sub-responsibilities of each target's two children, weighted by the target's own."""
        where = torch.full((self.model.num_components,), -1, dtype=torch.long, device=r.device)
        where[act] = torch.arange(act.numel(), device=r.device)
        t = self.targets.numel()
        sub = expfam_log_prob(feats, xc, *kids).view(-1, t, 2).softmax(-1)  # [n, T, 2]
        w = (r[:, where[self.targets]][..., None] * sub).reshape(-1, 2 * t)  # [n, 2T]
        out["child_counts"][:2 * t] += w.sum(0)
        out["child_sum_x"][:2 * t] += w.T @ xc
        out["child_sum_f"][:2 * t] += w.T @ feats
        out["child_entropy"][:2 * t] -= xlogy(w, w).sum(0)

    def _store(self, b: int, summary: dict[str, Tensor]) -> list[Tensor]:
        """Replace batch b's summary; returns the differences of its statistics and entropy."""
        delta = [summary[n] - self.cache[n][b] for n in _STATS]
        delta.append((summary["entropy"] - self.cache["entropy"][b]).sum()[None])
        for name, value in summary.items():
            self.cache[name][b] = value
        return delta

    def _publish(self) -> None:
        """Write the global statistics into the model's parameters."""
        for p, t in zip((self.model.counts, self.model.sum_x, self.model.sum_f), self.total,
                        strict=True):
            p.data.copy_(t.to(p.dtype))

    # -- one step -------------------------------------------------------------------------------
    @torch.no_grad()
    def visit(self, b: int, x: Tensor) -> None:
        """The local step on batch b ``[n, D]`` and the exact global step that follows."""
        x = self.model._check(x)
        delta = self._store(b, self._summary(x))
        flat = self.reduce(torch.cat([t.flatten() for t in delta]))
        offset = 0
        for t in self.total:
            t += flat[offset:offset + t.numel()].view_as(t)
            offset += t.numel()
        self.entropy = self.entropy + flat[offset]
        self._publish()

    def elbo(self) -> Tensor:
        """The ELBO of the cached responsibilities and the current global factors (float64)."""
        return summary_elbo(self.model, *self.total, self.entropy)

    # -- between laps ---------------------------------------------------------------------------
    @torch.no_grad()
    def end_lap(self) -> dict[str, int]:
        """Re-sum the summaries exactly; merge, split and sort (if ``moves``); plan the next
        lap's proposals. Returns the accepted moves by kind."""
        self.laps += 1
        names = (*_STATS, "entropy", *_PROPOSALS)
        sums = [self.cache[n].sum(0) for n in names]
        flat = self.reduce(torch.cat([s.flatten() for s in sums]))
        offset, summed = 0, {}
        for name, s in zip(names, sums, strict=True):
            summed[name] = flat[offset:offset + s.numel()].view_as(s)
            offset += s.numel()
        self.total = [summed[n] for n in _STATS]
        self.entropy = summed["entropy"].sum()
        self.accepted = {"merge": 0, "split": 0, "sort": 0}
        self._refined: dict[int, list[Tensor]] = {}
        if self.moves:
            used = torch.zeros(self.model.num_components, dtype=torch.bool)
            self._merge(summed, used)
            self._split(summed, used)
            self._sort()
        self._publish()
        self._plan()
        return dict(self.accepted)

    def _try(self, proposal: list[Tensor], entropy: Tensor, current: Tensor) -> bool:
        return bool(summary_elbo(self.model, *proposal, entropy) > current)

    def _merge(self, summed: dict[str, Tensor], used: Tensor) -> None:
        if self.pairs.shape[0] == 0:
            return
        ent = summed["entropy"]
        current = self.elbo()
        for i, (j, k) in enumerate(self.pairs.tolist()):
            if used[j] or used[k]:
                continue
            proposal = [t.clone() for t in self.total]
            for t in proposal:
                t[j] += t[k]
                t[k] = 0
            gain = summed["pair_entropy"][i] - ent[j] - ent[k]
            if self._try(proposal, self.entropy + gain, current):
                self.total, self.entropy = proposal, self.entropy + gain
                current = self.elbo()
                used[j] = used[k] = True
                for name in _STATS:
                    c = self.cache[name]
                    c[:, j] += c[:, k]
                    c[:, k] = 0
                c = self.cache["entropy"]
                c[:, j], c[:, k] = self.cache["pair_entropy"][:, i], 0
                ent = ent.clone()
                ent[j], ent[k] = summed["pair_entropy"][i], 0
                self.tries[j] = self.tries[k] = 0
                self.accepted["merge"] += 1
        summed["entropy"] = ent

    def _split(self, summed: dict[str, Tensor], used: Tensor) -> None:
        if self.targets.numel() == 0 or self.children is None:
            return
        current = self.elbo()
        ent = summed["entropy"]
        for i, k in enumerate(self.targets.tolist()):
            kids = [summed[n][2 * i:2 * i + 2] for n in ("child_counts", "child_sum_x",
                                                          "child_sum_f")]
            if used[k]:  # merged this lap: its children describe another component
                continue
            empty = (self.total[0] == 0).nonzero().flatten()
            if empty.numel() == 0:
                break
            e = int(empty[0])
            proposal = [s.clone() for s in self.total]
            for s, kid in zip(proposal, kids, strict=True):
                s[k], s[e] = kid[0], kid[1]
            h = summed["child_entropy"][2 * i:2 * i + 2]
            gain = h.sum() - ent[k]
            if self._try(proposal, self.entropy + gain, current):
                self.total, self.entropy = proposal, self.entropy + gain
                current = self.elbo()
                for name, child in zip(_STATS, ("child_counts", "child_sum_x", "child_sum_f"),
                                       strict=True):
                    c, kid = self.cache[name], self.cache[child]
                    c[:, k], c[:, e] = kid[:, 2 * i], kid[:, 2 * i + 1]
                c, kid = self.cache["entropy"], self.cache["child_entropy"]
                c[:, k], c[:, e] = kid[:, 2 * i], kid[:, 2 * i + 1]
                self.tries[k] = self.tries[e] = 0
                used[k] = used[e] = True
                self.accepted["split"] += 1
            else:  # keep refining: next lap starts its children from these statistics
                self.tries[k] += 1
                self._refined[k] = kids

    def _sort(self) -> None:
        order = self.total[0].argsort(descending=True, stable=True)
        if bool((order == torch.arange(order.numel(), device=order.device)).all()):
            return
        proposal = [t[order] for t in self.total]
        if not self._try(proposal, self.entropy, self.elbo()):
            return
        self.total = proposal
        for name in (*_STATS, "entropy"):
            self.cache[name] = self.cache[name][:, order]
        self.tries = self.tries[order]
        rank = order.argsort()  # old index → new
        self._refined = {int(rank[k]): kids for k, kids in self._refined.items()}
        self.accepted["sort"] = 1

    def _plan(self) -> None:
        """Choose the next lap's active set, merge pairs and split targets (with children)."""
        counts, sum_x, sum_f = self.total
        self.active = (counts > 0).nonzero().flatten()
        long = dict(dtype=torch.long, device=counts.device)
        self.pairs, self.targets, self.children = torch.zeros(0, 2, **long), \
            torch.zeros(0, **long), None
        for name in _PROPOSALS:
            self.cache[name].zero_()
        if not self.moves:
            return
        self.pairs = merge_candidates(self.model, counts, sum_x, sum_f, self.active,
                                      self.max_pairs)
        room = self.model.num_components - self.active.numel()
        if room == 0 or self.max_splits == 0:
            return
        ready = self.active[(self.tries[self.active] < self.split_tries)
                            & (counts[self.active] > 2.0 * self.model.num_features)]
        ready = ready[counts[ready].argsort(descending=True)][:self.max_splits]
        if ready.numel() == 0:
            return
        self.targets = ready
        kids = list(child_statistics(self.model, counts[ready], sum_x[ready], sum_f[ready]))
        refined = getattr(self, "_refined", {})
        for i, k in enumerate(ready.tolist()):
            if k in refined and bool((refined[k][0] > 0).all()):
                for stat, value in zip(kids, refined[k], strict=True):
                    stat[2 * i:2 * i + 2] = value
        self.children = tuple(kids)

    # -- a plain loop (no Lightning) ------------------------------------------------------------
    def fit(self, batches: Sequence[Tensor], max_laps: int = 100, tol: float = 1e-6
            ) -> list[float]:
        """Laps until the ELBO per point changes by less than ``tol`` in a lap without an
        accepted move; returns the ELBO after each lap."""
        trace: list[float] = []
        n = float(self.model.dataset_size)
        for _ in range(max_laps):
            for b, x in enumerate(batches):
                self.visit(b, x)
            moved = any(self.end_lap().values())
            trace.append(float(self.elbo()))
            if not moved and len(trace) > 1 and abs(trace[-1] - trace[-2]) < tol * n:
                break
        return trace

