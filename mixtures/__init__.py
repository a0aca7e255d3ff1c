"""mixtures: mixture models trained with PyTorch Lightning and configured with Hydra.

Layers (see DESIGN.md): ``distributions`` (all Gaussian math) → ``models`` (plain nn.Modules)
→ ``lit`` (LightningModules) ← ``data`` (DataModules); ``train.train(cfg)`` ties them together.
"""

import warnings

# Lightning 2.6 with torch ≥ 2.10 warns about LeafSpec on every fit; it is Lightning's own
# internal call, not ours. Filtered by message only.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")

__version__ = "0.1.0"

from mixtures.bayesian_mixture import BayesianGaussianMixture  # noqa: E402
from mixtures.estimator import GaussianMixture  # noqa: E402  (after the filter above)
from mixtures.selection import Selection, select_k  # noqa: E402

__all__ = ["BayesianGaussianMixture", "GaussianMixture", "Selection", "__version__", "select_k"]
