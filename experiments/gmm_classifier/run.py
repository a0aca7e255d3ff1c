"""Gaussian-mixture head vs linear head on MNIST (same CNN): accuracy, NLL, ECE and OOD AUROC.

    python experiments/gmm_classifier/run.py                      # the whole table
    python experiments/gmm_classifier/run.py --rows linear diag-1 # some rows
    python experiments/gmm_classifier/run.py --table              # print the table from results

Every row trains ``train.py``'s config (``data=mnist``, Adam lr 1e-3 with StepLR γ = 0.7 per
epoch, batch 128, ``--epochs`` epochs, seed 0) on the 50k training digits, keeps the final
weights and evaluates on the 10k test digits. Out-of-distribution inputs are made from the
test digits themselves: each digit with its pixels randomly permuted, and uniform noise in
[0, 1]. The OOD score is ``logsumexp_c log p(x | c)`` of the head (the mixture's ``log p(z)``
up to the class prior; for the linear head the same of its logits, the "energy" score);
AUROC is for telling the real test digits (positive, higher score) from the OOD ones.
Results are appended to ``results.json`` next to this file after every row.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import open_dict  # noqa: E402

from mixtures.data.mnist import MEAN, STD  # noqa: E402
from mixtures.metrics import auroc  # noqa: E402
from mixtures.train import train  # noqa: E402

ROWS = {
    "linear": ["model=cnn_linear"],
    **{f"{cov}-{g}": ["model=gmm_classifier", f"covariance={cov}",
                      f"model.net.head.num_components={g}"]
       for cov in ("diag", "full") for g in (1, 2, 4)},
}
RESULTS = HERE / "results.json"


def config(row: str, epochs: int, data_dir: str, out: Path, extra: list[str]):
    GlobalHydra.instance().clear()
    overrides = ROWS[row] + [
        "data=mnist", f"data.data_dir={data_dir}", "optimizer=adam", "model.lr=0.001",
        "+scheduler=step", f"trainer.max_epochs={epochs}", "trainer.enable_progress_bar=false",
        "seed=0", f"hydra.run.dir={out}", f"paths.log_dir={out}",
    ] + extra
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    return cfg


@torch.no_grad()
def ood_scores(module, x: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    """``logsumexp_c log p(x | c)`` ``[N]`` in evaluation mode."""
    module.eval()
    out = [torch.logsumexp(module.class_log_likelihood(x[i:i + batch]), -1)
           for i in range(0, x.shape[0], batch)]
    return torch.cat(out)


def evaluate_ood(module, x_test: torch.Tensor, seed: int = 0) -> dict[str, float]:
    """AUROCs of test digits vs pixel-shuffled digits and vs uniform noise."""
    gen = torch.Generator().manual_seed(seed)
    x = x_test.cpu()
    perms = torch.argsort(torch.rand(x.shape, generator=gen), dim=1)
    shuffled = x.gather(1, perms)
    noise = (torch.rand(x.shape, generator=gen) - MEAN) / STD
    module = module.cpu()
    s_in = ood_scores(module, x)
    return {"auroc_shuffled": auroc(s_in, ood_scores(module, shuffled)),
            "auroc_noise": auroc(s_in, ood_scores(module, noise))}


def run_row(row: str, epochs: int, data_dir: str, extra: list[str]) -> dict[str, float]:
    out = Path(tempfile.mkdtemp(prefix=f"gmmcls_{row}_"))
    cfg = config(row, epochs, data_dir, out, extra)
    start = time.perf_counter()
    metrics, objects = train(cfg)
    seconds = time.perf_counter() - start
    x_test = objects["datamodule"].split("test")[0]
    result = {"row": row, "epochs": epochs, "seconds": round(seconds, 1),
              "test/acc": metrics["test/acc"], "test/nll": metrics["test/nll"],
              "test/ece": metrics["test/ece"], "val/acc": metrics["val/acc"],
              **evaluate_ood(objects["model"], x_test), "log_dir": str(out)}
    usage = getattr(objects["model"], "component_usage", None)
    if usage is not None:
        result["usage_min"] = float(usage.amin() * usage.shape[1])
    return result


def table(results: list[dict]) -> str:
    lines = ["| head | covariance | G | test acc (%) | test NLL | test ECE (%) | "
             "AUROC shuffled | AUROC noise | epochs | time (s) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        head, cov, g = ("linear", "—", "—") if r["row"] == "linear" else \
            ("GMM", *r["row"].split("-"))
        lines.append(
            f"| {head} | {cov} | {g} | {100 * r['test/acc']:.2f} | {r['test/nll']:.4f} | "
            f"{100 * r['test/ece']:.2f} | {r['auroc_shuffled']:.4f} | {r['auroc_noise']:.4f} | "
            f"{r['epochs']} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--data-dir", default=str(ROOT / "data"))
    parser.add_argument("--table", action="store_true", help="only print the saved table")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every row")
    args = parser.parse_args()
    results = json.loads(args.results.read_text()) if args.results.exists() else []
    if not args.table:
        for row in args.rows:
            result = run_row(row, args.epochs, args.data_dir, args.overrides)
            results = [r for r in results if r["row"] != row] + [result]
            results.sort(key=lambda r: list(ROWS).index(r["row"]))
            args.results.write_text(json.dumps(results, indent=1) + "\n")
            print(f"[{row}] {json.dumps(result)}", flush=True)
    print(table(results))


if __name__ == "__main__":
    main()
