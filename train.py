"""Train a mixture model: ``python train.py [overrides]`` (see README.md and conf/)."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from mixtures.train import metric_value, train

    metrics, _ = train(cfg)
    width = max((len(k) for k in metrics), default=0)
    print("\nfinal metrics")
    for key in sorted(metrics):
        print(f"  {key:<{width}}  {metrics[key]:.6g}")
    return metric_value(metrics, cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
