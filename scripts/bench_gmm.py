"""EM for Gaussian mixtures: ``GaussianMixtureEM`` against scikit-learn's ``GaussianMixture``.

Answers: on the same data, from the same initial parameters, how long does one EM iteration take
(ours vs scikit-learn), how close is ours to the machine's matrix-multiply rate, and do both reach
the same held-out log-likelihood and clustering when run to convergence?

    python scripts/bench_gmm.py --quick          # smoke run, a few seconds
    python scripts/bench_gmm.py                  # N = 10k, 100k, 800k; D = K = 32; ~10-15 min

Set-up, per N: ``make_blobs`` (float32, seed fixed; generated once at the largest N, smaller N
take a prefix — the points are i.i.d.), the last 10% held out. Initial means: scikit-learn's
``kmeans_plusplus`` on the training split (seeded); weights 1/K; every covariance = the training
data's covariance, projected onto the type (diagonal for diag, mean variance for spherical).
scikit-learn gets them as ``weights_init`` / ``means_init`` / ``precisions_init``; ours through
``set_parameters(..., shift=training mean)``.

Per-iteration time: scikit-learn = (fit(max_iter=1+I) − fit(max_iter=1)) / I with ``tol=0``
(removes its initialisation and final E-step); ours = one warm-up iteration, then ``repeats``
loops of I iterations of ``m_step(statistics(x))``, median over loops. Run to convergence:
``tol=1e-3``, ``max_iter=300`` for both; scikit-learn's run is skipped when its estimated time
(its s/iter × (our iterations + 2)) exceeds ``--sklearn-budget`` seconds.

Progress goes to stderr; the header and the markdown tables go to stdout.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import time
import warnings
from dataclasses import dataclass

import numpy as np
import sklearn
import torch
from _machine import Contention, log, sync  # noqa: E402  (scripts/ is on sys.path when run)
from sklearn.cluster import kmeans_plusplus
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_info

from mixtures.data.blobs import make_blobs
from mixtures.distributions import (
    DiagCovariance,
    FullCovariance,
    ScalarCovariance,
    SharedFullCovariance,
)
from mixtures.models.em import GaussianMixtureEM

#: scikit-learn's name → our covariance type
COVARIANCES = {
    "full": FullCovariance,
    "diag": DiagCovariance,
    "tied": SharedFullCovariance,
    "spherical": ScalarCovariance,
}
DTYPES = {"float32": torch.float32, "float64": torch.float64}
TOL, MAX_ITER = 1e-3, 300


CPU = torch.device("cpu")


# -- hardware limit -------------------------------------------------------------------------------
def torch_gemm_rate(device: torch.device, dtype: torch.dtype, size: int, reps: int) -> float:
    """GFLOP/s of ``size``×``size`` matrix products on ``device`` (median of ``reps``)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen, dtype=dtype).to(device)
    b = torch.randn(size, size, generator=gen, dtype=dtype).to(device)
    c = a @ b  # warm-up
    sync(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        c = torch.matmul(a, b, out=c)
        sync(device)
        times.append(time.perf_counter() - t0)
    return 2 * size**3 / statistics.median(times) / 1e9


def numpy_gemm_rate(dtype: torch.dtype, size: int, reps: int) -> float:
    """GFLOP/s of numpy's BLAS (the one scikit-learn uses), as :func:`torch_gemm_rate`."""
    rng = np.random.default_rng(0)
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    a = rng.standard_normal((size, size)).astype(np_dtype)
    b = rng.standard_normal((size, size)).astype(np_dtype)
    c = a @ b
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        times.append(time.perf_counter() - t0)
    return 2 * size**3 / statistics.median(times) / 1e9


def limit_flops(cov_type: str, n: int, k: int, d: int) -> float:
    """FLOPs of one EM iteration that the hardware limit counts (see the table's footnote)."""
    if cov_type in ("full", "tied"):
        return 2.0 * n * k * d * d
    if cov_type == "diag":
        return 2.0 * n * k * d * 4
    return 2.0 * n * k * d * 2  # spherical: one score and one moment product of width D


# -- data and initial parameters ------------------------------------------------------------------
@dataclass
class Problem:
    x_train: torch.Tensor  # [N_train, D] CPU
    x_test: torch.Tensor  # [N_test, D] CPU
    y_test: np.ndarray  # [N_test]
    weights: torch.Tensor  # [K] float64
    means: torch.Tensor  # [K, D] float64
    cov: torch.Tensor  # [D, D] float64, covariance of the training split
    shift: torch.Tensor  # [D] float64, mean of the training split


def make_problem(x: torch.Tensor, y: torch.Tensor, n: int, k: int, seed: int) -> Problem:
    x, y = x[:n], y[:n]
    n_train = n - n // 10
    x_train, x_test = x[:n_train].contiguous(), x[n_train:].contiguous()
    centres, _ = kmeans_plusplus(x_train.numpy(), k, random_state=seed)
    xd = x_train.double()
    shift = xd.mean(0)
    xc = xd - shift
    cov = xc.T @ xc / n_train
    weights = torch.full((k,), 1.0 / k, dtype=torch.float64)
    return Problem(x_train, x_test, y[n_train:].numpy(), weights,
                   torch.from_numpy(centres).double(), cov, shift)


def projected_covariances(prob: Problem, cov_type: str) -> torch.Tensor:
    """The data covariance projected onto ``cov_type``, as dense ``[K, D, D]`` (float64)."""
    k, d = prob.means.shape
    cov = prob.cov
    if cov_type == "diag":
        cov = torch.diag(cov.diagonal())
    elif cov_type == "spherical":
        cov = cov.diagonal().mean() * torch.eye(d, dtype=cov.dtype)
    return cov.expand(k, d, d)


def sklearn_precisions(prob: Problem, cov_type: str) -> np.ndarray:
    """``precisions_init`` in scikit-learn's layout for ``cov_type`` (float64)."""
    covs = projected_covariances(prob, cov_type)
    if cov_type == "full":
        return torch.linalg.inv(covs).numpy()
    if cov_type == "tied":
        return torch.linalg.inv(covs[0]).numpy()
    if cov_type == "diag":
        return (1.0 / covs.diagonal(dim1=-2, dim2=-1)).numpy()
    return (1.0 / covs[:, 0, 0]).numpy()


# -- scikit-learn ---------------------------------------------------------------------------------
def sklearn_model(prob: Problem, cov_type: str, max_iter: int, tol: float) -> GaussianMixture:
    np_dtype = prob.x_train.numpy().dtype  # float32 inits keep its arithmetic in float32
    return GaussianMixture(
        n_components=prob.means.shape[0], covariance_type=cov_type, max_iter=max_iter, tol=tol,
        init_params="random_from_data",  # cheapest; every parameter is overridden below
        weights_init=prob.weights.numpy().astype(np_dtype),
        means_init=prob.means.numpy().astype(np_dtype),
        precisions_init=sklearn_precisions(prob, cov_type).astype(np_dtype), random_state=0,
    )


def timed_sklearn_fit(prob: Problem, cov_type: str, max_iter: int, tol: float,
                      clock: Contention):
    gm = sklearn_model(prob, cov_type, max_iter, tol)
    x = prob.x_train.numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with clock.timed(CPU) as t:
            gm.fit(x)
    return gm, t.seconds


def sklearn_per_iter(prob: Problem, cov_type: str, iters: int, repeats: int,
                     clock: Contention) -> float:
    """(fit(1 + I) − fit(1)) / I, median over up to ``repeats`` pairs (fewer past 60 s)."""
    diffs, start = [], time.perf_counter()
    for _ in range(repeats):
        _, t_one = timed_sklearn_fit(prob, cov_type, 1, 0.0, clock)
        gm, t_many = timed_sklearn_fit(prob, cov_type, 1 + iters, 0.0, clock)
        assert gm.n_iter_ == 1 + iters
        diffs.append((t_many - t_one) / iters)
        if time.perf_counter() - start > 60:
            break
    return statistics.median(diffs)


# -- ours -----------------------------------------------------------------------------------------
def our_model(prob: Problem, cov_type: str, device: torch.device,
              dtype: torch.dtype) -> GaussianMixtureEM:
    k, d = prob.means.shape
    em = GaussianMixtureEM(k, d, COVARIANCES[cov_type]()).to(device=device, dtype=dtype)
    em.set_parameters(prob.weights, prob.means, projected_covariances(prob, cov_type),
                      shift=prob.shift)
    return em


def our_per_iter(prob: Problem, cov_type: str, x: torch.Tensor, iters: int, repeats: int,
                 clock: Contention) -> float:
    """Median over ``repeats`` loops (fewer past 60 s) of I iterations of the per-iteration
    time, after one warm-up iteration."""
    em = our_model(prob, cov_type, x.device, x.dtype)
    em.m_step(em.statistics(x))
    per_iter, start = [], time.perf_counter()
    for _ in range(repeats):
        with clock.timed(x.device) as t:
            for _ in range(iters):
                stats = em.statistics(x)
                em.m_step(stats)
        per_iter.append(t.seconds / iters)
        if time.perf_counter() - start > 60:
            break
    return statistics.median(per_iter)


# -- one row --------------------------------------------------------------------------------------
def bench(prob: Problem, cov_type: str, device: torch.device, dtype: torch.dtype, args,
          sklearn_cache: dict, clock: Contention) -> dict:
    n_train, d = prob.x_train.shape
    k = prob.means.shape[0]
    x = prob.x_train.to(device=device, dtype=dtype)
    x_test = prob.x_test.to(device=device, dtype=dtype)
    row = {"N": n_train + prob.x_test.shape[0], "D": d, "K": k, "type": cov_type}

    clock.others = clock.wall = 0.0
    log(f"  ours {cov_type}: per-iteration timing")
    row["ours_s_iter"] = our_per_iter(prob, cov_type, x, args.iters, args.repeats, clock)
    log(f"    {row['ours_s_iter']:.4f} s/iter; run to convergence")
    em = our_model(prob, cov_type, device, dtype)
    with clock.timed(device) as t:
        out = em.fit(x, max_iter=MAX_ITER, tol=TOL)
    row["ours_total"] = t.seconds
    row["ours_iters"] = int(out["n_iter"][0])
    row["ours_converged"] = bool(out["converged"][0])
    row["ours_ll"] = em.score(x_test)
    pred = em.predict(x_test).cpu().numpy()
    row["ours_ari"] = adjusted_rand_score(prob.y_test, pred)
    log(f"    {row['ours_iters']} iterations, {row['ours_total']:.2f} s, "
        f"LL {row['ours_ll']:.4f}, ARI {row['ours_ari']:.4f}")

    key = (row["N"], cov_type)
    if key not in sklearn_cache:  # scikit-learn runs on the CPU: same for every device
        sk = {}
        ours = clock.others, clock.wall
        clock.others = clock.wall = 0.0
        log(f"  sklearn {cov_type}: per-iteration timing")
        sk["s_iter"] = sklearn_per_iter(prob, cov_type, args.iters, args.repeats, clock)
        estimate = sk["s_iter"] * (row["ours_iters"] + 2)
        log(f"    {sk['s_iter']:.4f} s/iter; run to convergence (estimate {estimate:.0f} s)")
        if estimate > args.sklearn_budget:
            sk["skipped"] = estimate
            log("    skipped")
        else:
            gm, sk["total"] = timed_sklearn_fit(prob, cov_type, MAX_ITER, TOL, clock)
            sk["iters"], sk["converged"] = int(gm.n_iter_), bool(gm.converged_)
            x_test_np = prob.x_test.numpy()
            sk["ll"] = float(gm.score(x_test_np))
            sk["ari"] = adjusted_rand_score(prob.y_test, gm.predict(x_test_np))
            sk["dtype"] = str(gm.precisions_cholesky_.dtype)
            log(f"    {sk['iters']} iterations, {sk['total']:.2f} s, LL {sk['ll']:.4f}, "
                f"ARI {sk['ari']:.4f} (parameters in {sk['dtype']})")
        sk["others"] = clock.share()
        clock.others, clock.wall = ours
        sklearn_cache[key] = sk
    row["sk"] = sklearn_cache[key]
    row["others"] = (clock.share(), row["sk"]["others"])
    log(f"  others' CPU share while timing ours {100 * row['others'][0]:.0f}%, sklearn "
        f"{100 * row['others'][1]:.0f}%; "
        f"waited for quiet so far: {clock.waited:.0f} s")
    row["flops"] = limit_flops(cov_type, n_train, k, d)
    return row


# -- output ---------------------------------------------------------------------------------------
def fmt_time(t: float) -> str:
    return f"{t:.3g}" if t < 100 else f"{t:.0f}"


def fmt_iters(n: int, converged: bool) -> str:
    return f"{n}" if converged else f"{n}*"


def table(rows: list[dict], device_rate: float, cpu_rate: float) -> str:
    head = ("| N | D | K | type | sklearn s/iter | ours s/iter | speed-up | % of limit ours "
            "(sklearn) | iters ours / sk | total s ours / sk | held-out LL ours / sk "
            "| ARI ours / sk | others' CPU ours / sk |")
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        sk = r["sk"]
        ours_pct = 100 * r["flops"] / (device_rate * 1e9) / r["ours_s_iter"]
        sk_pct = 100 * r["flops"] / (cpu_rate * 1e9) / sk["s_iter"]
        if "skipped" in sk:
            skipped = f"skipped (est. {sk['skipped']:.0f} s)"
            iters, total, ll, ari = (f"{fmt_iters(r['ours_iters'], r['ours_converged'])} / "
                                     + skipped, f"{fmt_time(r['ours_total'])} / —",
                                     f"{r['ours_ll']:.4f} / —", f"{r['ours_ari']:.4f} / —")
        else:
            iters = (f"{fmt_iters(r['ours_iters'], r['ours_converged'])} / "
                     f"{fmt_iters(sk['iters'], sk['converged'])}")
            total = f"{fmt_time(r['ours_total'])} / {fmt_time(sk['total'])}"
            ll = f"{r['ours_ll']:.4f} / {sk['ll']:.4f}"
            ari = f"{r['ours_ari']:.4f} / {sk['ari']:.4f}"
        lines.append(
            f"| {r['N']:,} | {r['D']} | {r['K']} | {r['type']} | {fmt_time(sk['s_iter'])} "
            f"| {fmt_time(r['ours_s_iter'])} | {sk['s_iter'] / r['ours_s_iter']:.1f}× "
            f"| {ours_pct:.2g}% ({sk_pct:.2g}%) | {iters} | {total} | {ll} | {ari} "
            f"| {100 * r['others'][0]:.0f}% / {100 * r['others'][1]:.0f}% |"
        )
    return "\n".join(lines)


FOOTNOTE = """\
N counts all points; both fit the 90% training split and are scored on the 10% held out (LL =
mean log-likelihood per held-out point, nats; ARI of the predicted clusters of the held-out points
against the true labels). sklearn s/iter = (fit(max_iter=1+I) − fit(max_iter=1)) / I with tol=0;
ours s/iter = median over loops of I iterations of `m_step(statistics(x))` after a warm-up.
Limit = FLOPs / measured GEMM rate (ours: torch on the device; sklearn: numpy's BLAS on the CPU),
FLOPs per iteration on the training split: 2·N·K·D² for full and tied (the issue's definition;
ours scores and sums each chunk with its design matrix [1 | x | F(x)], F(x) = the products
x_i x_(i+t mod D) for t = 0…D/2, 1 + D + D(D/2 + 1) = 577 columns at D = 32, so full costs
2·2·N·K·577 and tops out at about 89%; a shared covariance needs only ~4·N·D² + 8·N·K·D, so
tied may exceed 100%), 2·N·K·D·4 for diag (scores and moments of x and x²), 2·N·K·D·2 for
spherical (scores and moments of x only; the ‖x‖² column is negligible); exp / logsumexp work is
not counted. Iterations to convergence: tol=1e-3,
max_iter=300 (* = not converged). Total time: ours = `fit` from the loaded parameters; sklearn =
`fit`, which also estimates parameters once from its (overridden) initial responsibilities and
ends with an extra E-step. A skipped sklearn run would take longer than the budget, estimated as
its s/iter × (our iterations + 2). Others' CPU = the share of the machine's CPU time that other
processes used while ours / sklearn were being timed in that row (from /proc/stat; each timed
block first waits up to --wait-quiet s for them to drop below 15%); timings in rows with more
than ~10% are slowed by contention."""


def git_version() -> str:
    """Commit of this checkout, with ``+uncommitted mixtures/`` when the library differs."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def git(*cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *cmd], capture_output=True, text=True, cwd=root,
                              timeout=10)

    try:
        commit = git("rev-parse", "--short", "HEAD").stdout.strip() or "unknown"
        dirty = git("status", "--porcelain", "--", "mixtures").stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + (" + uncommitted changes in mixtures/" if dirty else "")


def header(args, devices: list[torch.device], rates: dict, cpu_rate: float,
           version: str) -> str:
    blas = [f"{i.get('internal_api')} {i.get('version')} ({i.get('threading_layer')}, "
            f"{i.get('num_threads')} threads, {os.path.basename(i.get('filepath', ''))})"
            for i in threadpool_info() if i.get("user_api") == "blas"]
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    lines = [
        f"# bench_gmm — {datetime.date.today().isoformat()}",
        "",
        f"- mixtures at git {version}; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), "
        f"scikit-learn {sklearn.__version__}, numpy {np.__version__}, "
        f"Python {platform.python_version()}",
        f"- CPU: {cpu}, {os.cpu_count()} logical cores; load average at start "
        f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}",
        f"- numpy BLAS (threadpoolctl): {'; '.join(blas) or 'none found'}",
        f"- OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, "
        f"MKL_NUM_THREADS={os.environ.get('MKL_NUM_THREADS', 'unset')}",
        f"- numpy {args.gemm_size}² {args.dtype} GEMM: {cpu_rate:.1f} GFLOP/s",
    ]
    for dev in devices:
        name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
        lines.append(f"- torch {args.gemm_size}² {args.dtype} GEMM on {dev} ({name}): "
                     f"{rates[dev]:.1f} GFLOP/s")
    lines.append(f"- iterations timed: {args.iters} × {args.repeats} repeats (fewer past 60 s); "
                 f"sklearn budget for run-to-convergence {args.sklearn_budget:.0f} s; "
                 f"wait for quiet up to {args.wait_quiet:.0f} s per timed block")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 800_000],
                   help="numbers of points N (default: 10000 100000 800000; 1000000 also works)")
    p.add_argument("--dims", type=int, default=32, help="D (default 32)")
    p.add_argument("--components", type=int, default=32, help="K (default 32)")
    p.add_argument("--types", nargs="+", default=list(COVARIANCES), choices=list(COVARIANCES))
    p.add_argument("--iters", type=int, default=10, help="timed EM iterations (default 10)")
    p.add_argument("--repeats", type=int, default=3, help="timed loops for ours (default 3)")
    p.add_argument("--device", nargs="+", default=["auto"], choices=["auto", "cpu", "cuda"],
                   help="one table per device; auto = cuda if available else cpu")
    p.add_argument("--dtype", default="float32", choices=list(DTYPES))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sklearn-budget", type=float, default=120.0,
                   help="skip sklearn's run to convergence if estimated longer (s; default 120)")
    p.add_argument("--wait-quiet", type=float, default=20.0,
                   help="before each timed block, wait up to this long (s) for other processes "
                   "to use < 15%% of the CPUs (default 20; 0 = never wait)")
    p.add_argument("--gemm-size", type=int, default=4096)
    p.add_argument("--gemm-reps", type=int, default=5)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: N=20000, D=8, K=8, 3 iterations, 1 repeat, 2048² GEMM")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.dims, args.components = [20_000], 8, 8
        args.iters, args.repeats, args.gemm_size, args.gemm_reps = 3, 1, 2048, 2
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    version = git_version()  # the library is imported already: this is the code that runs
    dtype = DTYPES[args.dtype]
    devices = []
    for name in args.device:
        dev = torch.device("cuda" if name == "auto" and torch.cuda.is_available() else
                           "cpu" if name == "auto" else name)
        if dev not in devices:
            devices.append(dev)

    clock = Contention(args.wait_quiet)
    clock.wait()
    log(f"GEMM rates ({args.gemm_size}², {args.gemm_reps} reps)")
    cpu_rate = numpy_gemm_rate(dtype, args.gemm_size, args.gemm_reps)
    rates = {dev: torch_gemm_rate(dev, dtype, args.gemm_size, args.gemm_reps) for dev in devices}
    print(header(args, devices, rates, cpu_rate, version), flush=True)

    n_max = max(args.sizes)
    log(f"make_blobs: N={n_max}, D={args.dims}, K={args.components}")
    t0 = time.perf_counter()
    x, y, _ = make_blobs(n_max, args.dims, args.components, covariance_type="diag",
                         seed=args.seed, dtype=torch.float32)
    x = x.to(dtype)  # --dtype float64: scikit-learn gets float64 data too
    log(f"  {time.perf_counter() - t0:.1f} s")

    rows: dict[torch.device, list[dict]] = {dev: [] for dev in devices}
    sklearn_cache: dict = {}
    start = time.perf_counter()
    for n in args.sizes:
        log(f"N={n}: k-means++ initial means")
        prob = make_problem(x, y, n, args.components, args.seed)
        for cov_type in args.types:
            for dev in devices:
                log(f"N={n} {cov_type} on {dev}")
                rows[dev].append(bench(prob, cov_type, dev, dtype, args, sklearn_cache, clock))
    for dev in devices:
        print(f"\n## {dev} ({args.dtype})\n\n{table(rows[dev], rates[dev], cpu_rate)}")
    print(f"\n{FOOTNOTE}\n\nTotal benchmark time {time.perf_counter() - start:.0f} s; load "
          f"average at end {', '.join(f'{v:.2f}' for v in os.getloadavg())}; waited "
          f"{clock.waited:.0f} s in all for other processes to go quiet.")


if __name__ == "__main__":
    main()
