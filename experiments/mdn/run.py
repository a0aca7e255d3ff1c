"""Mixture density networks: K = 1 (a heteroscedastic Gaussian) vs K = 3, 5, per noise model.

For `data=inverse_sine` (1-D target, up to three branches) and `data=ring` (2-D target on a ring),
and every noise model (covariance full, diag, scalar, shared_scalar, unit with fixed σ), trains
`model=mdn` through the real `train(cfg)` pipeline and prints a markdown table of the held-out
(test split) NLL in the original units of y, the coverage of central 90% intervals, the CRPS
(1-D targets) and the wall time of each run.

    python experiments/mdn/run.py               # 30 runs, ~5 minutes on 2 CPU cores
    python experiments/mdn/run.py --epochs 100  # quicker, less converged
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # small networks: one thread is fastest

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import open_dict  # noqa: E402

from mixtures.train import train  # noqa: E402

CONF = Path(__file__).resolve().parents[2] / "conf"
DATA = ["inverse_sine", "ring"]
NOISE = ["full", "diag", "scalar", "shared_scalar", "unit"]
COMPONENTS = [1, 3, 5]
UNIT_SCALE = 0.1  # the fixed σ of `unit`, in standardised units of y


def _cfg(out: Path, overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", return_hydra_config=True, overrides=[
            f"paths.log_dir={out}", f"hydra.run.dir={out}", "logger=csv", "callbacks=none",
            "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
            *overrides])
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    return cfg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=400, help="full-batch Adam steps")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "mixtures"):
        logging.getLogger(name).setLevel(logging.ERROR)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{args.epochs} full-batch epochs, lr 0.005, hidden [64, 64] tanh, seed 42\n")
    print("| data | noise model | K | test NLL | coverage 90% | CRPS | fit s |")
    print("|---|---|---|---|---|---|---|")
    for data in DATA:
        for noise in NOISE:
            for k in COMPONENTS:
                extra = [f"covariance.scale={UNIT_SCALE}"] if noise == "unit" else []
                with tempfile.TemporaryDirectory() as tmp:
                    cfg = _cfg(Path(tmp), [
                        "model=mdn", f"data={data}", f"covariance={noise}",
                        f"model.net.num_components={k}", f"trainer.max_epochs={args.epochs}",
                        f"trainer.check_val_every_n_epoch={args.epochs}", *extra])
                    start = time.perf_counter()
                    with contextlib.redirect_stdout(io.StringIO()):  # Lightning's test table
                        metrics, _ = train(cfg)
                    seconds = time.perf_counter() - start
                crps = f"{metrics['test/crps']:.4f}" if "test/crps" in metrics else "—"
                label = f"unit (σ = {UNIT_SCALE})" if noise == "unit" else noise
                print(f"| {data} | {label} | {k} | {metrics['test/nll']:.4f} | "
                      f"{metrics['test/coverage90']:.3f} | {crps} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
