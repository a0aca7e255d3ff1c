"""Console entry points: ``mixtures-train`` (= ``python train.py``).

The Hydra configs ship inside the package (``mixtures/conf``; in a checkout it links to the
repository's ``conf/``), so an installed ``mixtures-train`` composes the same configs as
``python train.py`` and takes the same overrides, from any working directory::

    mixtures-train model=gmm_em covariance=diag trainer.max_epochs=20
    mixtures-train -m hparams_search=gmm_grid
    mixtures-train --cfg job          # print the composed config
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

__all__ = ["CONF_DIR", "train_main"]

CONF_DIR = Path(__file__).resolve().parent / "conf"


# an absolute directory: Hydra would otherwise look for an importable package mixtures.conf
@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def train_main(cfg: DictConfig) -> float | None:
    """Train from the composed config; print the final metrics; return ``optimized_metric``."""
    from hydra.core.hydra_config import HydraConfig

    from mixtures.console import final_metrics
    from mixtures.train import metric_value, train

    run_dir = HydraConfig.get().runtime.output_dir
    print(f"run directory: {run_dir}", flush=True)
    metrics, _ = train(cfg)
    shown = final_metrics(metrics)
    width = max((len(k) for k in shown), default=0)
    print("\nfinal metrics")
    for key, value in shown.items():
        print(f"  {key:<{width}}  {value:.6g}")
    print(f"run directory: {run_dir}")
    return metric_value(metrics, cfg.get("optimized_metric"))
