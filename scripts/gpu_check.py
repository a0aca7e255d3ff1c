"""One command that checks the GPU paths and times them: run it whenever a GPU is lent.

    python scripts/gpu_check.py                      # on cuda: every check, GPU sizes (< 8 min)
    python scripts/gpu_check.py --device cpu --quick # the same checks, tiny sizes (the tests)

It prints one markdown table, a row per check, with its wall time and what it verifies:

1. every model config (``conf/model/*.yaml``) trained briefly through ``train(cfg)`` with
   ``trainer=gpu`` (or ``trainer=cpu`` with ``--device cpu``) on data it fits (blobs, the
   inverse sine, random 28×28 digits written as IDX files); the final metrics must be finite;
2. the scikit-learn drop-in ``GaussianMixture`` on the device in float32 and float64: held-out
   log-likelihood equal to a CPU float64 fit of the same data from the same initial means;
3. timings at GPU sizes (1M–10M points): the EM statistics pass per iteration (full and diag),
   a DPMM natural-gradient step, and the k-means initialisation, each against the device's
   matrix-multiply rate.

A check that raises is reported as FAIL with the error, and the command exits non-zero.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import open_dict  # noqa: E402

from mixtures import GaussianMixture  # noqa: E402
from mixtures.data.blobs import make_blobs  # noqa: E402
from mixtures.distributions import DiagCovariance, FullCovariance  # noqa: E402
from mixtures.models import DPMM, GaussianMixtureEM, initial_responsibilities  # noqa: E402
from mixtures.train import train  # noqa: E402

CONF = ROOT / "conf"
#: the data each model config is checked on (the others: blobs)
DATA = {"mdn": ["data=inverse_sine"], "gmm_classifier": ["data=mnist"],
        "cnn_linear": ["data=mnist"]}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device: torch.device, fn: Callable[[], object]) -> tuple[float, object]:
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - start, out


def _gemm_rate(device: torch.device, dtype: torch.dtype, size: int = 4096) -> float:
    a = torch.randn(size, size, device=device, dtype=dtype)
    a @ a  # warm-up
    seconds, _ = _timed(device, lambda: [a @ a for _ in range(5)])
    return 5 * 2 * size**3 / seconds / 1e9


def _fake_mnist(data_dir: Path, n: int) -> None:
    """Random digits as the four IDX files data=mnist reads (no download)."""
    import prepare_mnist

    rng = np.random.default_rng(0)
    splits = tuple((rng.random((m, 784), dtype=np.float32) * 0.99,
                    rng.integers(0, 10, m).astype(np.int64)) for m in (n, n // 5, n // 5))
    prepare_mnist.write_idx(splits, data_dir)


def check_model_configs(args, tmp: Path) -> list[dict]:
    """Every conf/model config trained briefly on the device through train(cfg)."""
    rows = []
    mnist = tmp / "mnist"
    _fake_mnist(mnist, 500 if args.quick else 5000)
    n = 2000 if args.quick else 200_000
    for path in sorted((CONF / "model").glob("*.yaml")):
        name = path.stem
        data = DATA.get(name, ["data=blobs", f"data.num_samples={n}"])
        if data == ["data=mnist"]:
            data = [*data, f"data.data_dir={mnist}", f"data.num_val={100 if args.quick else 1000}",
                    "data.batch_size=100"]
        elif name == "mdn":
            data = [*data, f"data.num_samples={n}", "data.batch_size=4096"]
        overrides = [f"model={name}", *data, f"trainer={args.device_kind}", "logger=csv",
                     "callbacks=none", f"trainer.max_epochs={2 if args.quick else 5}",
                     "trainer.enable_progress_bar=false", f"paths.log_dir={tmp}/logs/{name}",
                     f"hydra.run.dir={tmp}/run/{name}"]
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("train", overrides=overrides, return_hydra_config=True)
        HydraConfig().set_config(cfg)
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp / "run" / name)

        def run(cfg=cfg):
            with contextlib.redirect_stdout(sys.stderr):  # Lightning's tables: not ours
                metrics, _ = train(cfg)
            bad = [k for k, v in metrics.items() if not math.isfinite(v)]
            if bad:
                raise FloatingPointError(f"non-finite {bad}")
            return metrics

        rows.append(_row(f"train.py model={name}", args.device, run,
                         lambda m: f"test/nll {m.get('test/nll', float('nan')):.4f}"
                         + (f", test/acc {m['test/acc']:.3f}" if "test/acc" in m else "")))
    GlobalHydra.instance().clear()
    return rows


def check_estimator(args) -> list[dict]:
    """The drop-in on the device, float32 and float64, against a CPU float64 fit."""
    n, d, k = (5000, 4, 4) if args.quick else (1_000_000, 32, 32)
    x, _, _ = make_blobs(n + n // 10, d, k, seed=1)
    x_train, x_test = x[:n].numpy(), x[n:].numpy()
    means = x[:n][initial_responsibilities(x[:n], k, 1, "kmeans", 0)[:, 0].argmax(0)].numpy()
    ref = GaussianMixture(k, means_init=means, dtype="float64", tol=1e-6).fit(x_train)
    ref_ll = ref.score(x_test)
    rows = []
    for dtype in ("float32", "float64"):
        def fit(dtype=dtype):
            model = GaussianMixture(k, means_init=means, dtype=dtype, device=args.device,
                                    tol=1e-6).fit(x_train)
            ll = model.score(x_test)
            if abs(ll - ref_ll) > (1e-3 if dtype == "float32" else 1e-6) * abs(ref_ll):
                raise AssertionError(f"held-out LL {ll} against the CPU float64 {ref_ll}")
            return model, ll

        rows.append(_row(f"GaussianMixture({k}).fit {n // 1000}k × {d}, {dtype}", args.device,
                         fit, lambda out, dtype=dtype: f"LL {out[1]:.6f} (CPU f64 {ref_ll:.6f}),"
                         f" {out[0].n_iter_} iterations"))
    return rows


def check_timings(args) -> list[dict]:
    """EM statistics, a DPMM step and the k-means init at GPU sizes, against the GEMM rate."""
    device = torch.device(args.device)
    rate = _gemm_rate(device, torch.float32, 512 if args.quick else 4096)
    rows = [{"check": "float32 GEMM rate", "device": args.device, "seconds": float("nan"),
             "status": "ok", "detail": f"{rate:.0f} GFLOP/s"}]
    sizes = [20_000] if args.quick else [1_000_000, 10_000_000]
    d, k = (8, 8) if args.quick else (32, 32)
    for n in sizes:
        x = make_blobs(n, d, k, covariance_type="diag", seed=0)[0].to(device)
        # the flops of the E- and M-step's products: 2·N·K·D² full, 2·N·K·D diag
        for cov, flops in ((FullCovariance(), 2 * n * k * d * d),
                           (DiagCovariance(), 2 * n * k * d)):
            em = GaussianMixtureEM(k, d, cov).to(device)
            em.initialize(x[: min(n, 100_000)])

            def step(em=em, x=x):
                em.em_step(em.statistics(x), tol=0.0)
                return em

            step()  # warm-up
            seconds, _ = _timed(device, step)
            rows.append({"check": f"EM iteration {n // 1000}k × {d} × {k}, "
                         f"{type(cov).__name__}", "device": args.device, "seconds": seconds,
                         "status": "ok", "detail": f"{flops / seconds / 1e9 / rate:.0%} of "
                         "the GEMM rate (2·N·K·D² full, 2·N·K·D diag)"})
    n = sizes[0]
    x = make_blobs(n, d, k, seed=0)[0].to(device)
    dpmm = DPMM(2 * k, d, FullCovariance()).to(device)
    dpmm.initialize(x)
    opt = torch.optim.SGD(dpmm.parameters(), lr=1.0)

    def dpmm_step():
        opt.zero_grad()
        dpmm(x)[1].mean().backward()
        opt.step()

    dpmm_step()
    seconds, _ = _timed(device, dpmm_step)
    rows.append({"check": f"DPMM natural-gradient step {n // 1000}k × {d}, truncation {2 * k}",
                 "device": args.device, "seconds": seconds, "status": "ok",
                 "detail": f"{int(dpmm.active_components().numel())} active"})
    seconds, _ = _timed(device, lambda: initial_responsibilities(x, k, 1, "kmeans", 0))
    rows.append({"check": f"k-means init {n // 1000}k × {d} × {k}", "device": args.device,
                 "seconds": seconds, "status": "ok", "detail": "initial_responsibilities"})
    return rows


def _row(check: str, device: str, fn: Callable[[], object],
         detail: Callable[[object], str]) -> dict:
    start = time.perf_counter()
    try:
        out = fn()
        status, text = "ok", detail(out)
    except Exception as err:  # a failed check is a row of the table, not the end of the run
        status, text = "FAIL", f"{type(err).__name__}: {err}"[:300]
        traceback.print_exc()
    return {"check": check, "device": device, "seconds": time.perf_counter() - start,
            "status": status, "detail": text}


def table(rows: list[dict]) -> str:
    lines = ["| check | device | s | status | detail |", "|---|---|---|---|---|"]
    for r in rows:
        seconds = "—" if math.isnan(r["seconds"]) else f"{r['seconds']:.2f}"
        lines.append(f"| {r['check']} | {r['device']} | {seconds} | {r['status']} | "
                     f"{r['detail']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run, the tests)")
    p.add_argument("--only", nargs="+", choices=["models", "estimator", "timings"],
                   default=["models", "estimator", "timings"])
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("no CUDA device here: run with --device cpu (the same checks on the CPU)")
    args.device_kind = "gpu" if args.device == "cuda" else "cpu"
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    start = time.perf_counter()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        if "models" in args.only:
            rows += check_model_configs(args, Path(tmp))
        if "estimator" in args.only:
            rows += check_estimator(args)
        if "timings" in args.only:
            rows += check_timings(args)
    print(f"# gpu_check — {name}, torch {torch.__version__}, "
          f"{time.perf_counter() - start:.0f} s in all\n")
    print(table(rows))
    return 1 if any(r["status"] != "ok" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
