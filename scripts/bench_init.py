"""k-means initialisation: ``initial_responsibilities(x, K, 1, "kmeans", seed)`` against
scikit-learn's ``KMeans(n_clusters=K, n_init=1, random_state=seed)``.

Answers: how long does the initialisation every model (and ``mixtures.GaussianMixture``'s
default ``init_params="kmeans"``) runs take, next to scikit-learn's KMeans on the same points,
and is its clustering as good (inertia)? Also k-means++ seeding alone on all points: ours
``kmeans_plusplus`` (``init_params="k-means++"``) against ``sklearn.cluster.kmeans_plusplus``.

    python scripts/bench_init.py --quick          # smoke run, a few seconds
    python scripts/bench_init.py                  # 10k×2 K=5, 100k×16 K=16, 800k×32 K=32; ~2 min
    python scripts/bench_init.py --device cpu cuda

Set-up, per size and separation: ``make_blobs`` (float32, data seed 0, means ``separation`` ×
max std apart: 4 = well separated, 1.5 = overlapping). Both sides run once untimed (warm-up),
then once per seed 0 … S−1; a call shorter than 0.2 s is repeated back to back within its timed
block and the time per call reported. Times are medians over seeds, inertias means over seeds.
Inertia is that of the returned partition, ``Σ_k Σ_{i∈k} ‖x_i − mean_k‖²``, computed in
float64 from the labels for both sides. Ours runs on ``--device`` (data moved there before
timing); scikit-learn on the CPU. "of which seeding" is the time our init spent in k-means++
(on its subsamples).

Progress goes to stderr; the header and the markdown table go to stdout.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import math
import os
import platform
import statistics
import subprocess
import time
from contextlib import contextmanager

import numpy as np
import sklearn
import torch
from _machine import Contention, log, sync  # noqa: E402  (scripts/ is on sys.path when run)
from sklearn.cluster import KMeans, kmeans_plusplus
from threadpoolctl import threadpool_info

from mixtures.data.blobs import make_blobs
from mixtures.models.init import initial_responsibilities

KMEANS = importlib.import_module("mixtures.models.kmeans")  # the module, not the function
CPU = torch.device("cpu")
SIZES = [(10_000, 2, 5), (100_000, 16, 16), (800_000, 32, 32)]
MIN_BLOCK = 0.2  # s: a timed block repeats a call at least this long


def inertia(x64: torch.Tensor, labels, k: int) -> float:
    """Inertia of a partition: squared distances to the clusters' means, float64."""
    lab = torch.as_tensor(np.asarray(labels)).long()
    counts = torch.bincount(lab, minlength=k).double().clamp_min(1.0)
    sums = torch.zeros(k, x64.shape[1], dtype=torch.float64).index_add_(0, lab, x64)
    return float(x64.square().sum() - (sums.square().sum(1) / counts).sum())


@contextmanager
def seeding_timer(device: torch.device):
    """Adds up the time spent in our k-means++ (``kmeans._plusplus``) while active."""
    real, spent = KMEANS._plusplus, [0.0]

    def timed(*args, **kwargs):
        sync(device)
        t0 = time.perf_counter()
        out = real(*args, **kwargs)
        sync(device)
        spent[0] += time.perf_counter() - t0
        return out

    KMEANS._plusplus = timed
    try:
        yield spent
    finally:
        KMEANS._plusplus = real


def timed(clock: Contention, device: torch.device, f, seed: int, calls: int):
    """Result of ``f(seed)`` and seconds per call of ``calls`` calls back to back in one timed
    block (small workloads are repeated: the first milliseconds after the quiet check's sleep
    run slowly on a shared virtual machine)."""
    with clock.timed(device) as t:
        for _ in range(calls):
            out = f(seed)
    return out, t.seconds / calls


def calls_for(device: torch.device, f) -> int:
    """Calls of ``f`` (warmed up once here, seed 10⁴) that fill about ``MIN_BLOCK`` s."""
    sync(device)
    t0 = time.perf_counter()
    f(10_000)
    sync(device)
    return max(1, math.ceil(MIN_BLOCK / max(time.perf_counter() - t0, 1e-6)))


def bench(n: int, d: int, k: int, sep: float, device: torch.device, args,
          clock: Contention, sklearn_cache: dict) -> dict:
    x_cpu, _, _ = make_blobs(n, d, k, separation=sep, seed=0, dtype=torch.float32)
    x64, xn = x_cpu.double(), x_cpu.numpy()
    x = x_cpu.to(device)
    row = {"N": n, "D": d, "K": k, "sep": sep}
    seeds = list(range(args.seeds))

    clock.others = clock.wall = 0.0

    def ours_init(s: int) -> torch.Tensor:
        return initial_responsibilities(x, k, 1, "kmeans", s)  # the estimator's call

    def ours_pp(s: int) -> torch.Tensor:
        return KMEANS.kmeans_plusplus(x, k, torch.Generator(device=device).manual_seed(s))

    init_calls, pp_calls = calls_for(device, ours_init), calls_for(device, ours_pp)
    times, seed_times, pp_times, inert = [], [], [], []
    for s in seeds:
        with seeding_timer(device) as spent:
            resp, seconds = timed(clock, device, ours_init, s, init_calls)
        times.append(seconds)
        seed_times.append(spent[0] / init_calls)
        inert.append(inertia(x64, resp[:, 0].argmax(-1).cpu(), k))
        pp_times.append(timed(clock, device, ours_pp, s, pp_calls)[1])
    row["ours"] = statistics.median(times)
    row["ours_seeding"] = statistics.median(seed_times)
    row["ours_pp"] = statistics.median(pp_times)
    row["ours_inertia"] = statistics.mean(inert)
    row["ours_others"] = clock.share()
    log(f"  ours: {row['ours']:.3f} s (seeding {row['ours_seeding']:.3f} s), k-means++ "
        f"{row['ours_pp']:.3f} s, inertia {row['ours_inertia']:.6g}")

    if (n, sep) in sklearn_cache:  # scikit-learn runs on the CPU: same for every device
        row.update(sklearn_cache[n, sep])
        return row
    clock.others = clock.wall = 0.0

    def sk_fit(s: int) -> KMeans:
        return KMeans(k, n_init=1, random_state=s).fit(xn)

    def sk_pp(s: int):
        return kmeans_plusplus(xn, k, random_state=s)

    fit_calls, pp_calls = calls_for(CPU, sk_fit), calls_for(CPU, sk_pp)
    times, pp_times, inert, iters = [], [], [], []
    for s in seeds:
        km, seconds = timed(clock, CPU, sk_fit, s, fit_calls)
        times.append(seconds)
        inert.append(inertia(x64, km.labels_, k))
        iters.append(km.n_iter_)
        pp_times.append(timed(clock, CPU, sk_pp, s, pp_calls)[1])
    row["sk"] = statistics.median(times)
    row["sk_pp"] = statistics.median(pp_times)
    row["sk_inertia"] = statistics.mean(inert)
    row["sk_iters"] = statistics.mean(iters)
    row["sk_others"] = clock.share()
    log(f"  sklearn: {row['sk']:.3f} s ({row['sk_iters']:.1f} Lloyd iterations), k-means++ "
        f"{row['sk_pp']:.3f} s, inertia {row['sk_inertia']:.6g}")
    sklearn_cache[n, sep] = {key: v for key, v in row.items() if key.startswith("sk")}
    return row


def table(rows: list[dict]) -> str:
    head = ("| N | D | K | separation | ours init s (of which seeding) | sklearn KMeans s "
            "| speed-up | ours k-means++ s | sklearn k-means++ s | speed-up | inertia ours "
            "| inertia sklearn | ours / sklearn − 1 | others' CPU ours / sk |")
    lines = [head, "|" + "---|" * 14]
    for r in rows:
        lines.append(
            f"| {r['N']:,} | {r['D']} | {r['K']} | {r['sep']:g} "
            f"| {r['ours']:.3f} ({r['ours_seeding']:.3f}) | {r['sk']:.3f} "
            f"| {r['sk'] / r['ours']:.1f}× | {r['ours_pp']:.3f} | {r['sk_pp']:.3f} "
            f"| {r['sk_pp'] / r['ours_pp']:.1f}× | {r['ours_inertia']:.6g} "
            f"| {r['sk_inertia']:.6g} | {100 * (r['ours_inertia'] / r['sk_inertia'] - 1):+.2f}% "
            f"| {100 * r['ours_others']:.0f}% / {100 * r['sk_others']:.0f}% |")
    return "\n".join(lines)


def git_version() -> str:
    """Commit of this checkout, with ``+uncommitted mixtures/`` when the library differs."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        run = dict(capture_output=True, text=True, cwd=root, timeout=10)
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], **run).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "mixtures"],
                               **run).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit or 'unknown'}{' +uncommitted mixtures/' if dirty else ''}"


def header(args, devices: list[torch.device]) -> str:
    blas = [f"{i.get('internal_api')} {i.get('version')} ({i.get('num_threads')} threads)"
            for i in threadpool_info() if i.get("user_api") == "blas"]
    openmp = [f"{i.get('prefix')} ({i.get('num_threads')} threads)"
              for i in threadpool_info() if i.get("user_api") == "openmp"]
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    gpus = [torch.cuda.get_device_name(dev) for dev in devices if dev.type == "cuda"]
    return "\n".join([
        f"# bench_init — {datetime.date.today().isoformat()}",
        "",
        f"- mixtures at git {git_version()}; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), scikit-learn {sklearn.__version__}, "
        f"numpy {np.__version__}, Python {platform.python_version()}",
        f"- CPU: {cpu}, {os.cpu_count()} logical cores; load average at start "
        f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}"
        + (f"; GPU: {', '.join(gpus)}" if gpus else ""),
        f"- numpy BLAS: {'; '.join(blas) or 'none found'}; OpenMP: "
        f"{'; '.join(openmp) or 'none found'}",
        f"- seeds 0…{args.seeds - 1} per row (times: median; inertia: mean); wait for quiet up "
        f"to {args.wait_quiet:.0f} s per timed block",
    ])


def parse_args(argv: list[str] | None = None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", nargs="+", default=["cpu"], choices=["auto", "cpu", "cuda"],
                   help="one table per device (default cpu; auto = cuda if available)")
    p.add_argument("--separations", type=float, nargs="+", default=[4.0, 1.5],
                   help="blob separations in max std (default 4 = separated, 1.5 = overlapping)")
    p.add_argument("--seeds", type=int, default=5, help="seeds per row (default 5)")
    p.add_argument("--wait-quiet", type=float, default=20.0,
                   help="before each timed block, wait up to this long (s) for other processes "
                   "to use < 15%% of the CPUs (default 20; 0 = never wait)")
    p.add_argument("--quick", action="store_true", help="smoke run: 20k×8, K=8, 2 seeds")
    args = p.parse_args(argv)
    args.sizes = [(20_000, 8, 8)] if args.quick else SIZES
    if args.quick:
        args.seeds = 2
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    devices = []
    for name in args.device:
        dev = torch.device("cuda" if name == "auto" and torch.cuda.is_available() else
                           "cpu" if name == "auto" else name)
        if dev not in devices:
            devices.append(dev)
    clock = Contention(args.wait_quiet)
    print(header(args, devices), flush=True)
    start = time.perf_counter()
    sklearn_cache: dict = {}
    for dev in devices:
        rows = []
        for n, d, k in args.sizes:
            for sep in args.separations:
                log(f"N={n} D={d} K={k} separation {sep} on {dev}")
                rows.append(bench(n, d, k, sep, dev, args, clock, sklearn_cache))
        print(f"\n## ours on {dev}, float32 (scikit-learn on the CPU)\n\n{table(rows)}",
              flush=True)
    print(f"\nTotal benchmark time {time.perf_counter() - start:.0f} s; load average at end "
          f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}; waited {clock.waited:.0f} s in "
          "all for other processes to go quiet.")


if __name__ == "__main__":
    main()
