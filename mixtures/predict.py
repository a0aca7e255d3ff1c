"""Use a trained run: labels, log-densities and samples for new points, and the fitted model.

Command line (``mixtures-predict`` once installed, or ``python -m mixtures.predict``)::

    mixtures-predict run=logs/train/runs/<time> data.path=new.csv
    mixtures-predict run=<dir> data.path=new.csv samples=500 proba=true output=out.csv

writes ``<run>/predictions/<file stem>.csv`` (one row per point: ``label``, ``log_density`` in
the data's units, and ``proba_0 … proba_{K-1}`` with ``proba=true``) and, with ``samples=N``,
``<output stem>_samples.csv`` (``x0 … x{D-1}`` in the data's units and ``component``). The new
file is read as ``data=file`` reads it; ``data.label_column`` and ``data.delimiter`` default to
the run's own (``data.label_column=null`` when the new file has no label column).

Python::

    from mixtures.predict import load_run, load_model, load_gaussian_mixture

    model = load_model("logs/train/runs/<time>")        # the plain nn.Module (standardised units)
    gm = load_gaussian_mixture("logs/train/runs/<time>")  # a fitted mixtures.GaussianMixture
    run = load_run("logs/train/runs/<time>")              # both, and predictions in data units
    run.score_samples(x), run.predict(x), run.predict_proba(x), run.sample(100)

A run directory or one of its checkpoints (``<run>/checkpoints/*.ckpt``) may be given. The
checkpoint is the one whose weights the run reported: ``last.ckpt``, or the best epoch when the
run tested the best (``test_ckpt=best``); ``checkpoint="last"`` / ``"best"`` / a path chooses.
Loading is ``weights_only=True``: a checkpoint never runs code. A run without checkpoints
(``trainer.fast_dev_run``, or checkpoint callbacks switched off) is predicted from its
``mixture.pt``, the fitted Gaussian mixture in the data's units.

The nn.Module works in the units it was trained in: with ``data.standardize=true`` (the
default for ``data=file``) those are standardised units, ``run.standardizer`` maps them
(``log p(x) = log p(z) − run.standardizer.log_scale_sum``); :class:`Run`'s methods and the
:class:`~mixtures.GaussianMixture` take and give the data's own units.

Letters: N points, K components, D features, S samples.
"""

from __future__ import annotations

import csv
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

__all__ = ["Run", "load_gaussian_mixture", "load_model", "load_run", "main", "predict_file"]

USAGE = """usage: mixtures-predict run=<run dir> data.path=<file> [key=value ...]

  run=DIR               a run of mixtures-train / train.py (logs/train/runs/<time>)
  ckpt=auto|last|best|PATH
                        which weights (auto: those the run reported; a .ckpt path may replace run=)
  data.path=FILE        new points: .csv/.txt/.tsv/.npy/.npz/.pt, read as data=file reads them
  data.label_column=N   a label column to drop (default: the run's; null for none)
  data.delimiter=C      text-file separator (default: the run's, else ",")
  output=FILE           predictions CSV (default <run>/predictions/<file stem>.csv)
  proba=true            also write the responsibilities proba_0 .. proba_{K-1}
  samples=N             also write N points drawn from the model (<output stem>_samples.csv)
  seed=S                seed of the samples (default 0)
"""


# -- finding what a run holds -----------------------------------------------------------------
def _run_dir(path: Path) -> Path | None:
    """The run directory of a run directory or of a checkpoint inside one."""
    for candidate in (path, *path.parents[:3]):
        if candidate.is_dir() and ((candidate / ".hydra").is_dir()
                                   or (candidate / "mixture.pt").is_file()
                                   or (candidate / "checkpoints").is_dir()):
            return candidate
    return None


def _run_config(run: Path | None) -> DictConfig | None:
    path = None if run is None else run / ".hydra" / "config.yaml"
    return OmegaConf.load(path) if path is not None and path.is_file() else None


def _select(cfg: DictConfig | None, key: str, default: Any = None) -> Any:
    """A plain value of the run's config (interpolations to Hydra's runtime do not resolve
    outside the run, so nothing else is resolved)."""
    if cfg is None:
        return default
    try:
        return OmegaConf.select(cfg, key, default=default, throw_on_resolution_failure=False)
    except Exception:  # an interpolation that needs the run's Hydra context
        return default


def _checkpoint(path: Path, run: Path | None, cfg: DictConfig | None,
                checkpoint: str | Path) -> Path | None:
    """The checkpoint file to load, or None when the run has none (see the module doc)."""
    if path.is_file():
        return path
    if checkpoint not in ("auto", "last", "best"):
        ckpt = Path(checkpoint)
        if not ckpt.is_file():
            raise FileNotFoundError(f"ckpt={str(ckpt)!r} does not exist.")
        return ckpt
    folder = (run or path) / "checkpoints"
    last = folder / "last.ckpt"
    best = sorted(p for p in folder.glob("*.ckpt") if p.name != "last.ckpt")
    want = checkpoint
    if want == "auto":
        want = "best" if _select(cfg, "test_ckpt") == "best" and best else "last"
    if want == "best":
        if not best:
            raise FileNotFoundError(f"ckpt=best: {folder} holds no best epoch_*.ckpt.")
        return best[-1]
    if last.is_file():
        return last
    if checkpoint == "last":
        raise FileNotFoundError(f"ckpt=last: {last} does not exist.")
    return best[-1] if best else None


def _module_class(ckpt: Path, cfg: DictConfig | None, module: str | type | None) -> type:
    if isinstance(module, type):
        return module
    target = module or _select(cfg, "model._target_")
    if not target:
        raise ValueError(
            f"cannot tell which LightningModule wrote {ckpt}: it is not inside a run directory "
            "with .hydra/config.yaml; pass module='mixtures.lit.GMMSGD' (the run's "
            "model._target_).")
    return hydra.utils.get_class(target)


def _load_module(cls: type, ckpt: Path, map_location: Any) -> Any:
    """``cls.load_from_checkpoint`` (weights_only), in the checkpoint's own float dtype: a
    float64 run (trainer.precision=64) is not rounded through a float32 module."""
    module = cls.load_from_checkpoint(ckpt, map_location=map_location, weights_only=True)
    state = torch.load(ckpt, map_location=map_location, weights_only=True)["state_dict"]
    if any(v.dtype == torch.float64 for v in state.values() if torch.is_tensor(v)):
        module = module.double()
        module.load_state_dict(state)
    return module.eval()


# -- the loaded run ---------------------------------------------------------------------------
@dataclass
class Run:
    """A trained run: its LightningModule (from a checkpoint) or, without checkpoints, its
    fitted Gaussian mixture; predictions in the data's units.

    Attributes:
        path: the run directory (None for a checkpoint outside one).
        checkpoint: the checkpoint loaded (None: predictions come from ``mixture.pt``).
        module: the LightningModule, in eval mode (None without a checkpoint).
        config: the run's config (``.hydra/config.yaml``, unresolved), when there is one.
    """

    path: Path | None
    checkpoint: Path | None
    module: Any = None
    config: DictConfig | None = None
    _mixture: Any = field(default=None, repr=False)

    @property
    def model(self) -> nn.Module:
        """The plain nn.Module the run trained (``module.model``), in its training units."""
        if self.module is None:
            raise FileNotFoundError(f"{self.path} has no checkpoint to rebuild the nn.Module "
                                    "from; load_gaussian_mixture reads its mixture.pt.")
        return self.module.model

    @property
    def standardizer(self) -> nn.Module | None:
        """The data's standardisation the model was trained behind (identity if none)."""
        return None if self.module is None else self.module.x_standardizer

    def gaussian_mixture(self) -> Any:
        """The fitted mixture as a :class:`mixtures.GaussianMixture` in the data's units."""
        if self._mixture is None:
            from mixtures.estimator import GaussianMixture

            if self.module is not None and hasattr(self.module, "mixture_parameters"):
                params = self.module.mixture_parameters(original_units=True)
                buffer = io.BytesIO()
                torch.save({k: v.detach().cpu() for k, v in params.items()}, buffer)
                buffer.seek(0)
                self._mixture = GaussianMixture.load(buffer)
            elif self.path is not None and (self.path / "mixture.pt").is_file():
                self._mixture = GaussianMixture.load(self.path / "mixture.pt")
            else:
                raise ValueError(f"{self.path or self.checkpoint} holds no Gaussian mixture "
                                 "(a density model's checkpoint or mixture.pt).")
        return self._mixture

    # predictions in the data's units ----------------------------------------------------------
    def _z(self, x: Tensor) -> Tensor:
        """Points ``[N, D]`` as the model sees them (standardised, in its dtype and device)."""
        x = torch.as_tensor(x).double()
        if x.dim() != 2:
            raise ValueError(f"points must be [N, D], got shape {list(x.shape)}.")
        d = self.model.num_features
        if x.shape[1] != d:
            raise ValueError(f"the run's model has {d} features but the points have "
                             f"{x.shape[1]} columns; check data.label_column.")
        z = self.standardizer.transform(x) if self.standardizer is not None else x
        return z.to(self.module.device, self.module.dtype)

    @torch.no_grad()
    def score_and_predict(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Log-density ``[N]`` (data units, float64) and component labels ``[N]``."""
        if self.module is None:
            gm = self.gaussian_mixture()
            x = torch.as_tensor(x).double().numpy()
            return torch.as_tensor(gm.score_samples(x)), torch.as_tensor(gm.predict(x))
        log_density, labels = self.model.score_and_predict(self._z(x))
        log_scale = self.standardizer.log_scale_sum.double()
        return log_density.double().cpu() - log_scale.cpu(), labels.cpu()

    def score_samples(self, x: Tensor) -> Tensor:
        """Log-density of each point ``[N]`` in the data's units."""
        return self.score_and_predict(x)[0]

    def predict(self, x: Tensor) -> Tensor:
        """Most responsible component of each point ``[N]``."""
        return self.score_and_predict(x)[1]

    @torch.no_grad()
    def predict_proba(self, x: Tensor) -> Tensor:
        """Responsibilities ``[N, K]`` (rows sum to one)."""
        if self.module is None:
            x = torch.as_tensor(x).double().numpy()
            return torch.as_tensor(self.gaussian_mixture().predict_proba(x))
        return self.model.predict_proba(self._z(x)).double().cpu()

    @torch.no_grad()
    def sample(self, num_samples: int, seed: int = 0) -> tuple[Tensor, Tensor]:
        """Points ``[S, D]`` in the data's units and their components ``[S]``."""
        if self.module is None:
            gm = self.gaussian_mixture()
            gm.random_state = seed
            x, y = gm.sample(num_samples)
            return torch.as_tensor(x), torch.as_tensor(y)
        gen = torch.Generator(device=self.module.device).manual_seed(int(seed))
        z, labels = self.model.sample(int(num_samples), gen)
        x = self.standardizer.inverse(z.double()) if self.standardizer is not None else z
        return x.double().cpu(), labels.cpu()


def load_run(path: str | Path, checkpoint: str | Path = "auto", module: str | type | None = None,
             map_location: Any = "cpu") -> Run:
    """Load a run directory (or a checkpoint) for prediction.

    Args:
        path: a run directory (``logs/train/runs/<time>``, a sweep's ``<job>``) or a ``.ckpt``.
        checkpoint: ``auto`` (the weights the run reported), ``last``, ``best`` or a path.
        module: the LightningModule class (or its ``_target_``) for a checkpoint outside a run
            directory; read from the run's ``.hydra/config.yaml`` otherwise.
        map_location: device of the loaded module.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"run={str(path)!r} does not exist; pass a run directory "
                                "(logs/train/runs/<time>) or a checkpoint file.")
    run = _run_dir(path)
    cfg = _run_config(run)
    ckpt = _checkpoint(path, run, cfg, checkpoint)
    if ckpt is None:
        if run is None or not (run / "mixture.pt").is_file():
            raise FileNotFoundError(f"{path} holds neither checkpoints/*.ckpt nor mixture.pt.")
        return Run(path=run, checkpoint=None, config=cfg)
    lit = _load_module(_module_class(ckpt, cfg, module), ckpt, map_location)
    if getattr(lit, "data_kind", "points") != "points":
        raise ValueError(f"{type(lit).__name__} is a {lit.data_kind} model: mixtures-predict "
                         "and load_run serve the density models (gmm_sgd, gmm_em, gmm_vi, "
                         "dpmm); load it with load_model.")
    return Run(path=run, checkpoint=ckpt, module=lit, config=cfg)


def load_model(path: str | Path, checkpoint: str | Path = "auto",
               module: str | type | None = None, map_location: Any = "cpu") -> nn.Module:
    """The plain nn.Module a run trained (e.g. ``mixtures.models.GaussianMixtureModel``),
    rebuilt from its checkpoint with ``weights_only=True``, in eval mode.

    It takes points in the units it was trained in (standardised with ``data.standardize``;
    :func:`load_run` gives the standardiser). Any LightningModule of the package works here,
    the MDN and the classifiers too.
    """
    path = Path(path).expanduser()
    run = _run_dir(path)
    cfg = _run_config(run)
    ckpt = _checkpoint(path, run, cfg, checkpoint)
    if ckpt is None:
        raise FileNotFoundError(f"{path} has no checkpoint (checkpoints/*.ckpt).")
    return _load_module(_module_class(ckpt, cfg, module), ckpt, map_location).model


def load_gaussian_mixture(path: str | Path, checkpoint: str | Path = "auto",
                          module: str | type | None = None) -> Any:
    """A run's fitted mixture as a :class:`mixtures.GaussianMixture` in the data's units
    (``covariance_type="full"``): its ``mixture.pt`` for a run directory and the default
    ``checkpoint``, else the mixture of the chosen checkpoint."""
    from mixtures.estimator import GaussianMixture

    path = Path(path).expanduser()
    if path.is_dir() and checkpoint == "auto" and (path / "mixture.pt").is_file():
        return GaussianMixture.load(path / "mixture.pt")
    return load_run(path, checkpoint, module).gaussian_mixture()


# -- the command ------------------------------------------------------------------------------
def _read_points(path: str, label_column: int | None, delimiter: str | None) -> Tensor:
    from mixtures.data.file import FileDataModule

    dm = FileDataModule(path=path, label_column=label_column, delimiter=delimiter,
                        standardize=False, dtype="float64")
    x, _ = dm.load()
    return x


def _write_csv(path: Path, header: list[str], columns: list[Tensor]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = zip(*[c.tolist() for c in columns], strict=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for row in rows:
            writer.writerow([f"{v:.10g}" if isinstance(v, float) else v for v in row])


def predict_file(run: Run, data_path: str, output: Path, label_column: int | None = None,
                 delimiter: str | None = None, proba: bool = False, samples: int = 0,
                 seed: int = 0) -> dict[str, Path]:
    """Write the predictions (and samples) of ``run`` for the points in ``data_path``."""
    x = _read_points(data_path, label_column, delimiter)  # [N, D]
    log_density, labels = run.score_and_predict(x)
    header, columns = ["label", "log_density"], [labels, log_density]
    if proba:
        resp = run.predict_proba(x)  # [N, K]
        header += [f"proba_{k}" for k in range(resp.shape[1])]
        columns += list(resp.T)
    _write_csv(output, header, columns)
    written = {"predictions": output}
    if samples:
        points, comps = run.sample(int(samples), seed)
        out = output.with_name(f"{output.stem}_samples.csv")
        _write_csv(out, [f"x{j}" for j in range(points.shape[1])] + ["component"],
                   [*points.T, comps])
        written["samples"] = out
    return written


_KEYS = {"run", "ckpt", "module", "data.path", "data.label_column", "data.delimiter", "output",
         "proba", "samples", "seed"}


def _parse(argv: list[str]) -> DictConfig:
    bad = [a for a in argv if "=" not in a]
    if bad:
        raise SystemExit(f"mixtures-predict: arguments are key=value, got {bad}.\n\n{USAGE}")
    args = OmegaConf.from_dotlist(argv)
    keys = {k for k in _flat(OmegaConf.to_container(args))}
    unknown = sorted(keys - _KEYS)
    if unknown:
        raise SystemExit(f"mixtures-predict: unknown keys {unknown}.\n\n{USAGE}")
    if "data.path" not in keys or ("run" not in keys and "ckpt" not in keys):
        raise SystemExit(f"mixtures-predict: run=<dir> and data.path=<file> are needed.\n\n"
                         f"{USAGE}")
    return args


def _flat(d: Any, prefix: str = "") -> list[str]:
    if not isinstance(d, dict):
        return [prefix]
    return [k for key, v in d.items() for k in _flat(v, f"{prefix}{key}" if not prefix
                                                     else f"{prefix}.{key}")]


def main(argv: list[str] | None = None) -> int:
    """``mixtures-predict run=<dir> data.path=new.csv [...]`` (see :data:`USAGE`)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    args = _parse(argv)
    ckpt = str(args.get("ckpt", "auto"))
    source = args.get("run") or ckpt
    run = load_run(source, checkpoint=ckpt if args.get("run") else "auto",
                   module=args.get("module"))
    data = args.data
    label_column = (data.label_column if "label_column" in data
                    else _select(run.config, "data.label_column"))
    delimiter = data.delimiter if "delimiter" in data else _select(run.config, "data.delimiter")
    if "output" in args:
        output = Path(str(args.output))
    else:
        base = run.path if run.path is not None else Path.cwd()
        output = base / "predictions" / f"{Path(str(data.path)).stem}.csv"
    written = predict_file(run, str(data.path), output, label_column=label_column,
                           delimiter=delimiter, proba=bool(args.get("proba", False)),
                           samples=int(args.get("samples", 0)), seed=int(args.get("seed", 0)))
    source = run.checkpoint or (run.path / "mixture.pt")
    print(f"model: {source}")
    for what, path in written.items():
        print(f"{what}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
