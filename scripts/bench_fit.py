"""What a user waits for: ``GaussianMixture(K).fit(X)`` end to end, ours against scikit-learn's.

Both estimators run with their default arguments (k-means initialisation, ``n_init=1``,
``tol=1e-3``, ``max_iter=100``, ``reg_covar=1e-6``; ours in float32 on the CPU, scikit-learn in
float64 as it converts) on the same float32 numpy training split, in the same run. For each side
the table gives the initialisation (k-means and the first M-step), the EM loop per iteration,
the whole ``fit()`` and the ratio, with the iteration counts, the held-out mean log-likelihood
(``score`` on the test split) and the ARI against the true labels. Each side fits ``--repeats``
times (default 3, same seed, so the same fit) and the times are medians: one fit on a shared
2-core machine varies by up to 2× from run to run. Before the first row both sides fit a tiny
problem once per covariance type (per-process first-call costs, paid once by a user too).

    python scripts/bench_fit.py --quick        # smoke run, about a minute
    python scripts/bench_fit.py                # 10k × 2 × 5, 100k × 16 × 16, 800k × 32 × 32

Each side runs in a fresh Python process per row (data generated there from the same seed,
the warm-up fits, then the timed fits): neither side inherits the other's process state. In one
process, our fits measured after scikit-learn's 800k fit ran 1.3–1.7× slower than before it, in
every operation alike (in-place matrix products too; the allocator's state is suspected: with
``THP_MEM_ALLOC_ENABLE=1`` the difference went away); ``--same-process`` keeps that protocol
(ours first, then scikit-learn, in this process) for comparison.

Init time: ours is ``GaussianMixture._initialize`` (k-means responsibilities + one M-step),
scikit-learn's is ``_initialize_parameters`` (its ``KMeans(n_init=1)`` + one M-step), both timed
inside the same ``fit`` by a thin subclass. Per iteration: (fit − init) / n_iter, so it includes
each side's final E-step and bookkeeping. Progress goes to stderr; the tables to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings

import sklearn
import torch
from _machine import Contention, log, sync  # noqa: E402  (scripts/ is on sys.path when run)
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from mixtures import GaussianMixture
from mixtures.data.blobs import make_blobs

SIZES = [(10_000, 2, 5), (100_000, 16, 16), (800_000, 32, 32)]
QUICK = [(10_000, 2, 5), (50_000, 8, 8)]


class _TimedOurs(GaussianMixture):
    """Ours, with the initialisation's share of ``fit`` recorded."""

    init_seconds = 0.0

    def _initialize(self, em, x):
        sync(x.device)
        start = time.perf_counter()
        super()._initialize(em, x)
        sync(x.device)
        self.init_seconds = time.perf_counter() - start


class _TimedSklearn(SkGaussianMixture):
    """scikit-learn's, with the initialisation's share of ``fit`` recorded."""

    init_seconds = 0.0

    def _initialize_parameters(self, X, random_state, **kwargs):
        start = time.perf_counter()
        super()._initialize_parameters(X, random_state, **kwargs)
        self.init_seconds = time.perf_counter() - start


def _run(make, x_train, x_test, y_test, clock: Contention, device: torch.device,
         repeats: int) -> dict:
    """``repeats`` fits of a fresh ``make()`` (same seed: the same fit each time); times are
    the medians, the fit's results those of the last (they are identical)."""
    totals, inits = [], []
    for _ in range(repeats):
        model = make()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            with clock.timed(device) as t:
                model.fit(x_train)
        totals.append(t.seconds)
        inits.append(model.init_seconds)
    total, init = statistics.median(totals), statistics.median(inits)
    n_iter = int(model.n_iter_)
    return {"total": total, "init": init, "per_iter": (total - init) / max(n_iter, 1),
            "n_iter": n_iter, "converged": bool(model.converged_),
            "ll": float(model.score(x_test)),
            "ari": adjusted_rand_score(y_test, model.predict(x_test))}


def _warm_up(types: list[str], device: str, sides: tuple[str, ...]) -> None:
    """First-call costs (threads, kernels): one tiny fit per covariance type and side, paid
    once per process (by a user too) before any timed fit."""
    warm = make_blobs(2000, 2, 3, seed=1)[0].numpy()
    for cov in types:
        if "ours" in sides:
            GaussianMixture(3, covariance_type=cov, device=device).fit(warm)
        if "sklearn" in sides:
            SkGaussianMixture(3, covariance_type=cov).fit(warm)


def _side(side: str, n: int, d: int, k: int, cov: str, args, clock: Contention) -> dict:
    """One side's fits of one row, in this process."""
    x, y, _ = make_blobs(n + n // 10, d, k, covariance_type="diag", seed=args.seed)
    x_np, y_np = x.numpy(), y.numpy()
    x_train, x_test, y_test = x_np[:n], x_np[n:], y_np[n:]
    if side == "ours":
        return _run(lambda: _TimedOurs(k, covariance_type=cov, random_state=args.seed,
                                       device=args.device), x_train, x_test, y_test, clock,
                    torch.device(args.device), args.repeats)
    return _run(lambda: _TimedSklearn(k, covariance_type=cov, random_state=args.seed),
                x_train, x_test, y_test, clock, torch.device("cpu"), args.repeats)


def _child(args) -> None:
    """``--child SIDE N D K COV``: one side of one row in a fresh process; prints its JSON."""
    side, n, d, k, cov = args.child
    _warm_up([cov], args.device, (side,))
    clock = Contention(args.wait_quiet)
    out = _side(side, int(n), int(d), int(k), cov, args, clock)
    print(json.dumps({**out, "others": clock.share()}))


def _in_child(side: str, n: int, d: int, k: int, cov: str, args) -> tuple[dict, float]:
    cmd = [sys.executable, __file__, "--child", side, str(n), str(d), str(k), cov,
           "--seed", str(args.seed), "--repeats", str(args.repeats), "--device", args.device,
           "--wait-quiet", str(args.wait_quiet)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{side} {n}x{d}x{k} {cov} failed:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return out, out.pop("others")


def bench(n: int, d: int, k: int, cov: str, args, clock: Contention) -> dict:
    if args.same_process:
        ours = _side("ours", n, d, k, cov, args, clock)
        theirs = _side("sklearn", n, d, k, cov, args, clock)
        others = clock.share()
    else:
        (ours, a), (theirs, b) = (_in_child(side, n, d, k, cov, args)
                                  for side in ("ours", "sklearn"))
        others = max(a, b)
    return {"size": f"{n // 1000}k × {d} × {k}", "cov": cov, "ours": ours, "sklearn": theirs,
            "others": others}


def table(rows: list[dict]) -> str:
    lines = ["| N × D × K | cov | init ours | init sklearn | s/iter ours | s/iter sklearn | "
             "fit ours | fit sklearn | **speed-up (fit)** | init share ours | iters ours / "
             "sklearn | held-out LL ours / sklearn | ARI ours / sklearn |",
             "|" + "---|" * 13]
    for r in rows:
        o, s = r["ours"], r["sklearn"]
        lines.append(
            f"| {r['size']} | {r['cov']} | {o['init']:.3f} | {s['init']:.3f} | "
            f"{o['per_iter']:.3f} | {s['per_iter']:.3f} | {o['total']:.2f} | {s['total']:.2f} | "
            f"**{s['total'] / o['total']:.1f}×** | {o['init'] / o['total']:.0%} | "
            f"{o['n_iter']} / {s['n_iter']} | {o['ll']:.4f} / {s['ll']:.4f} | "
            f"{o['ari']:.3f} / {s['ari']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    p.add_argument("--types", nargs="+", default=["full", "diag"],
                   choices=["full", "diag", "spherical", "tied"])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3,
                   help="fits per side and row; times are their medians")
    p.add_argument("--wait-quiet", type=float, default=20.0,
                   help="seconds to wait for other processes to go quiet before each fit")
    p.add_argument("--same-process", action="store_true",
                   help="both sides in this process, ours first (the old protocol)")
    p.add_argument("--child", nargs=5, metavar=("SIDE", "N", "D", "K", "COV"),
                   help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(args)
        return
    clock = Contention(args.wait_quiet)
    protocol = "both sides in this process" if args.same_process else \
        "each side in a fresh process per row"
    print(f"# bench_fit — torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"scikit-learn {sklearn.__version__}, {os.cpu_count()} cores, device {args.device}, "
          f"{protocol}\n")
    if args.same_process:
        _warm_up(args.types, args.device, ("ours", "sklearn"))
    rows = []
    for n, d, k in QUICK if args.quick else SIZES:
        for cov in args.types:
            log(f"N={n} D={d} K={k} {cov}")
            clock.others = clock.wall = 0.0
            rows.append(bench(n, d, k, cov, args, clock))
    print(table(rows))
    worst = max(r["others"] for r in rows)
    print(f"\nOther processes used at most {worst:.0%} of the CPUs during a row's fits.")


if __name__ == "__main__":
    main()
