"""Does the DPMM find K fast? Memoized VI with summary moves against exact EM given the true K
and scikit-learn's ``BayesianGaussianMixture``, in one run.

Rows (same data, same held-out split):

- ``cli dpmm_full``: ``python train.py model=dpmm_full`` (memoized VI, moves, truncation
  ``--truncation``), wall time of the whole command;
- ``cli gmm_em (true K)``: ``python train.py model=gmm_em model.net.num_components=K_true``;
- ``memo full batch`` / ``memo mini-batch`` (``--batch``), with and without moves, and
  ``memo from 4``: :class:`mixtures.models.memoized.MemoizedVI` in-process (init included);
- ``sklearn BGM``: ``BayesianGaussianMixture(n_components=truncation, dirichlet_process)``
  (only up to ``--sklearn-max`` points: it takes minutes beyond).

Columns: wall seconds (init included), laps / iterations, active K (weight > 1%), ARI on the
test points, held-out mean log-likelihood (the Student-t predictive for ours, scikit-learn's
plug-in ``score`` for it; the CLI rows report ``test/nll``), and the time ratio to the
``cli gmm_em`` row (or to the sklearn row for in-process rows when there is no CLI row).

    python scripts/bench_dpmm_memo.py --quick                 # 20k × 8, 8 clusters (~1 min)
    python scripts/bench_dpmm_memo.py --n 1000000 --d 32 --k 32 --truncation 64
    python scripts/bench_dpmm_memo.py --n 200000 --d 32 --k 32 --truncation 64 --no-cli

Data: ``mixtures.data.BlobsDataModule`` (the CLI's ``data=blobs`` with the same settings, so
both sides see the same points); the script writes nothing but stdout (table) and stderr.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch
from sklearn.metrics import adjusted_rand_score

from mixtures.data import BlobsDataModule
from mixtures.distributions import FullCovariance
from mixtures.models import DPMM
from mixtures.models.memoized import MemoizedVI

ROOT = Path(__file__).resolve().parents[1]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def data(args):
    dm = BlobsDataModule(num_samples=args.n, num_features=args.d, num_components=args.k,
                         seed=0, covariance_type="full")
    dm.setup("fit")
    (xtr, _), (xte, yte) = dm.split("train"), dm.split("test")
    return dm, xtr, xte, yte


def overrides(args) -> list[str]:
    return ["data=blobs", f"data.num_samples={args.n}", f"data.num_features={args.d}",
            f"data.num_components={args.k}", "data.covariance_type=full", "logger=csv",
            "callbacks=none", "trainer.enable_progress_bar=false"]


def cli(args, model: list[str], tmp: Path, name: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE")}
    cmd = [sys.executable, "train.py", *overrides(args), *model, f"hydra.run.dir={tmp / name}"]
    log(" ".join(cmd[1:]))
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    metrics = dict(re.findall(r"^\s+(\S+)\s+(-?[\d.e+-]+)\s*$", out.stdout + out.stderr, re.M))
    laps = ""
    for path in (tmp / name).rglob("metrics.csv"):  # epochs = laps (EM: iterations)
        with path.open() as f:
            laps = 1 + max(int(r["epoch"]) for r in csv.DictReader(f) if r.get("epoch"))
    return {"wall": wall, "laps": laps, "active": metrics.get("test/active_k", ""),
            "ari": float(metrics.get("test/ari", "nan")),
            "ll": -float(metrics.get("test/nll", "nan"))}


def memo_row(args, xtr, xte, yte, batch, moves, start) -> dict:
    model = DPMM(args.truncation, args.d, FullCovariance(), seed=0)
    t0 = time.perf_counter()
    batches = list(xtr.split(batch or xtr.shape[0]))
    memo = MemoizedVI(model, len(batches), moves=moves)
    memo.initialize(batches, sample=xtr[:50_000], num_clusters=start)
    trace = memo.fit(batches, max_laps=args.max_laps, tol=1e-6)
    wall = time.perf_counter() - t0
    return {"wall": wall, "laps": len(trace), "active": int((model.weights > 0.01).sum()),
            "ari": adjusted_rand_score(yte.numpy(), model.predict(xte).numpy()),
            "ll": float(model.score(xte))}


def sklearn_row(args, xtr, xte, yte) -> dict:
    from sklearn.mixture import BayesianGaussianMixture

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = BayesianGaussianMixture(
            n_components=args.truncation, weight_concentration_prior_type="dirichlet_process",
            max_iter=args.max_laps * 5, tol=1e-6 * xtr.shape[0], random_state=0
        ).fit(xtr.double().numpy())
    wall = time.perf_counter() - t0
    return {"wall": wall, "laps": sk.n_iter_, "active": int((sk.weights_ > 0.01).sum()),
            "ari": adjusted_rand_score(yte.numpy(), sk.predict(xte.double().numpy())),
            "ll": float(sk.score(xte.double().numpy()))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=32)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--truncation", type=int, default=64)
    parser.add_argument("--batch", type=int, default=50_000)
    parser.add_argument("--max-laps", type=int, default=60)
    parser.add_argument("--sklearn-max", type=int, default=200_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-cli", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rows", nargs="*", default=None, help="subset of the row names")
    args = parser.parse_args()
    if args.quick:
        args.n, args.d, args.k, args.truncation, args.batch = 20_000, 8, 8, 24, 4_000
    torch.set_num_threads(args.threads)
    _, xtr, xte, yte = data(args)
    rows: dict[str, dict] = {}
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_dpmm_memo_{os.getpid()}"
    plan = []
    if not args.no_cli:
        plan += [("cli gmm_em (true K)", lambda: cli(args, [
                     "model=gmm_em", f"model.net.num_components={args.k}"], tmp, "em")),
                 ("cli dpmm_full", lambda: cli(args, [
                     "model=dpmm_full", f"model.net.num_components={args.truncation}",
                     f"data.batch_size={args.batch}"], tmp, "dpmm"))]
    plan += [("memo full batch", lambda: memo_row(args, xtr, xte, yte, None, True, None)),
             ("memo full batch, no moves",
              lambda: memo_row(args, xtr, xte, yte, None, False, None)),
             (f"memo batch {args.batch}",
              lambda: memo_row(args, xtr, xte, yte, args.batch, True, None)),
             (f"memo batch {args.batch} from 4",
              lambda: memo_row(args, xtr, xte, yte, args.batch, True, 4))]
    if xtr.shape[0] <= args.sklearn_max:
        plan.append(("sklearn BGM", lambda: sklearn_row(args, xtr, xte, yte)))
    for name, run in plan:
        if args.rows and name not in args.rows:
            continue
        log(f"-- {name}")
        rows[name] = run()
        log(f"   {rows[name]}")
    ref = rows.get("cli gmm_em (true K)") or rows.get("sklearn BGM")
    ref_name = "cli gmm_em" if "cli gmm_em (true K)" in rows else "sklearn"
    print(f"\nN = {args.n} ({xtr.shape[0]} train), D = {args.d}, true K = {args.k}, truncation "
          f"{args.truncation}, torch threads {args.threads}, torch {torch.__version__}\n")
    print(f"| row | wall s | laps | active K | test ARI | test mean LL | time / {ref_name} |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        ratio = f"{r['wall'] / ref['wall']:.2f}" if ref else ""
        print(f"| {name} | {r['wall']:.1f} | {r['laps']} | {r['active']} | {r['ari']:.4f} | "
              f"{r['ll']:.4f} | {ratio} |")


if __name__ == "__main__":
    main()
