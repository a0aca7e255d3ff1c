"""Gradient-descent GMM (`model=gmm_sgd`) vs scikit-learn's EM and the true mixture.

For every covariance type, on the same blobs split: held-out mean log-likelihood of our fit
(through the real `train(cfg)` pipeline), of scikit-learn's `GaussianMixture` (same K; the types
it has: full, diag, spherical) and of the true generating mixture; ARI against the labels; wall
times of the fits and their ratio. Prints a markdown table.

    python experiments/gmm_sgd_vs_sklearn/run.py                 # N=10k, D=2, K=5 and D=16, K=10
    python experiments/gmm_sgd_vs_sklearn/run.py --quick         # fewer epochs
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from mixtures.train import train

CONF = Path(__file__).resolve().parents[2] / "conf"
SKLEARN = {"full": "full", "diag": "diag", "scalar": "spherical"}
SETTINGS = {
    "D=2, K=5, N=10k": ["data.num_samples=10000", "data.num_features=2",
                        "data.num_components=5"],
    "D=16, K=10, N=50k": ["data.num_samples=50000", "data.num_features=16",
                          "data.num_components=10", "data.batch_size=5000"],
}


def _cfg(out: Path, overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", return_hydra_config=True, overrides=[
            f"paths.log_dir={out}", f"hydra.run.dir={out}", "logger=csv", "callbacks=none",
            "trainer.enable_progress_bar=false", *overrides])
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    return cfg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("mixtures").setLevel(logging.WARNING)
    epochs = {"D=2, K=5, N=10k": 50 if args.quick else 150,
              "D=16, K=10, N=50k": 10 if args.quick else 40}
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}\n")
    print("| setting | covariance | ours LL | sklearn LL | truth LL | ours − sklearn (%) "
          "| ARI ours | ARI sklearn | fit s ours | fit s sklearn | sklearn/ours time |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for setting, data_over in SETTINGS.items():
        for cov in ["full", "diag", "scalar", "shared_scalar", "unit"]:
            with tempfile.TemporaryDirectory() as tmp:
                data_cov = "diag" if "D=16" in setting else "full"
                cfg = _cfg(Path(tmp), [*data_over, f"covariance={cov}",
                                       f"data.covariance_type={data_cov}",
                                       f"trainer.max_epochs={epochs[setting]}"])
                start = time.perf_counter()
                cfg.trainer.enable_model_summary = False
                metrics, objects = train(cfg)
                ours_time = time.perf_counter() - start
            dm = objects["datamodule"]
            xtr = dm.split("train")[0].double()
            xte, yte = dm.split("test")
            xte = xte.double()
            truth = dm.truth
            true_ll = MixtureSameFamily(
                Categorical(probs=truth["weights"].double()),
                MultivariateNormal(truth["means"].double(),
                                   covariance_matrix=truth["covariances"].double()),
            ).log_prob(xte).mean().item()
            ours = -metrics["test/nll"]
            if cov in SKLEARN:
                k = cfg.model.net.num_components
                start = time.perf_counter()
                sk = GaussianMixture(k, covariance_type=SKLEARN[cov], random_state=0)
                sk.fit(xtr.numpy())
                sk_time = time.perf_counter() - start
                sk_ll = sk.score(xte.numpy())
                sk_ari = adjusted_rand_score(yte.numpy(), sk.predict(xte.numpy()))
                diff = 100 * (ours - sk_ll) / abs(sk_ll)
                row = (f"{sk_ll:.4f} | {true_ll:.4f} | {diff:+.3f} | {metrics['test/ari']:.4f} | "
                       f"{sk_ari:.4f} | {ours_time:.2f} | {sk_time:.2f} | "
                       f"{sk_time / ours_time:.2f}")
            else:
                row = (f"— | {true_ll:.4f} | — | {metrics['test/ari']:.4f} | — | "
                       f"{ours_time:.2f} | — | —")
            print(f"| {setting} | {cov} | {ours:.4f} | {row} |", flush=True)


if __name__ == "__main__":
    main()
