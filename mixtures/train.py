"""``train(cfg)``: build everything from the Hydra config, fit, test, return the metrics.

Used by the ``train.py`` entry point, by the tests and by sweeps. Every object is instantiated
from its ``_target_``; nothing here knows about a particular model family.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, OmegaConf

from mixtures.console import (
    progress_enabled,
    route_lightning_logs,
    set_threads,
    threads_note,
    torch_threads,
)
from mixtures.lit.requirements import check_kind
from mixtures.lit.saving import record_net_config

__all__ = ["train", "instantiate_list", "metric_value"]

log = logging.getLogger(__name__)


def instantiate_list(cfg: DictConfig | None,
                     kwargs_for: Callable[[DictConfig], dict[str, Any]] | None = None
                     ) -> list[Any]:
    """Instantiate every entry with a ``_target_`` in a config group (callbacks, loggers),
    each with the keyword arguments ``kwargs_for(entry)`` gives (none by default)."""
    objs: list[Any] = []
    if not cfg:
        return objs
    if not isinstance(cfg, DictConfig):
        raise TypeError("callbacks / logger config must be a mapping of name → {_target_: …}.")
    for _, conf in cfg.items():
        if isinstance(conf, DictConfig) and "_target_" in conf:
            objs.append(hydra.utils.instantiate(conf, **(kwargs_for(conf) if kwargs_for else {})))
    return objs


def _data_sizes(cfg: DictConfig, datamodule: Any) -> dict[str, Any]:
    """The data's sizes for the model's null size fields: ``{"net": {"num_features": D, …}}``,
    passed as keyword arguments at instantiation (the config is not rewritten). Fields that
    are set keep their value; the module's data check rejects one that does not fit."""
    net = cfg.model.get("net")
    sizes = datamodule.sizes() if hasattr(datamodule, "sizes") else {}
    if not isinstance(net, DictConfig):
        return {}
    fill = {k: v for k, v in sizes.items() if k in net and net.get(k) is None}
    return {"net": fill} if fill else {}


def metric_value(metrics: dict[str, float], name: str | None) -> float | None:
    """The value Hydra sweepers optimise (``optimized_metric``)."""
    if not name:
        return None
    if name not in metrics:
        raise KeyError(
            f"optimized_metric={name!r} was not logged; available: {sorted(metrics)}."
        )
    return metrics[name]


def _to_float(value: Any) -> float:
    return float(value.item()) if isinstance(value, torch.Tensor) else float(value)


#: rows scored at once by :func:`_train_criteria` (bounds the [rows, K, D] work)
_CHUNK = 65536


@torch.no_grad()
def _train_criteria(model: Any, datamodule: Any) -> dict[str, float]:
    """``train/bic`` and ``train/aic`` of the final mixture on the training points, in the
    data's units (BIC on the training data, as usual; ``val/bic`` is the held-out split's).
    Empty for models that are not mixture densities over in-memory points."""
    net = getattr(model, "model", None)
    standardizer = getattr(model, "x_standardizer", None)
    if getattr(model, "data_kind", None) != "points" or standardizer is None \
            or not hasattr(net, "score_samples") or not hasattr(net, "num_parameters"):
        return {}
    try:
        x = datamodule.train_tensor
    except (AttributeError, RuntimeError, KeyError):
        return {}
    if x is None or (x.shape[0] == 0 and getattr(datamodule, "shard", None) is None):
        return {}
    device, dtype = next(iter(model.state_dict().values())).device, model.dtype
    total = sum(float(net.score_samples(x[i:i + _CHUNK].to(device, dtype)).double().sum())
                for i in range(0, x.shape[0], _CHUNK))
    n = int(x.shape[0])
    if getattr(datamodule, "shard", None) is not None and torch.distributed.is_initialized():
        # each rank holds only its shard (every rank runs this): the sums over all points
        both = torch.tensor([total, float(n)], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(both)
        total, n = float(both[0]), int(both[1])
    total -= n * float(standardizer.log_scale_sum.double())  # log p(x) = log p(z) - sum log s
    p = int(net.num_parameters())
    return {"train/bic": -2.0 * total + p * math.log(n), "train/aic": -2.0 * total + 2.0 * p}


def _swept_keys(hydra_cfg: Any) -> set[str]:
    """The keys a sweep varies: sweep overrides of its command line (``k=1,3``, ``range``,
    ``choice``; recorded in the sweep's ``multirun.yaml``) and ``hydra.sweeper.params``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    keys = set((OmegaConf.select(hydra_cfg, "sweeper.params") or {}).keys())
    path = Path(str(hydra_cfg.sweep.dir)) / "multirun.yaml"
    if path.is_file():
        task = OmegaConf.select(OmegaConf.load(path), "hydra.overrides.task") or []
        for override in OverridesParser.create().parse_overrides([str(o) for o in task]):
            if override.is_sweep_override():
                keys.add(override.get_key_element())
    return keys


def _tensorboard_kwargs(conf: DictConfig) -> dict[str, Any]:
    """In a sweep, name each job's TensorBoard run by the values of the swept keys
    (``<job>/tensorboard/covariance=diag,model.net.num_components=3``, so ``tensorboard
    --logdir <sweep dir>`` tells the runs apart); all of ``hydra.job.override_dirname`` when
    the swept keys are unknown. A single run, or a logger given a ``version``, keeps its
    directory."""
    if not str(conf.get("_target_", "")).endswith("TensorBoardLogger") \
            or conf.get("version") not in (None, ""):
        return {}
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
        if hydra_cfg.mode != RunMode.MULTIRUN:
            return {}
        swept = _swept_keys(hydra_cfg)
        items = [str(o) for o in hydra_cfg.overrides.task
                 if str(o).partition("=")[0].lstrip("+~") in swept]
        name = ",".join(sorted(items)) if items else str(hydra_cfg.job.override_dirname or "")
    except Exception as err:  # naming never fails a run
        log.debug("TensorBoard run name from the overrides failed: %s", err)
        return {}
    name = name.replace("/", "_").replace("\\", "_")[:200]
    return {"version": name} if name else {}


def _log_final_hparams(trainer: L.Trainer, hparams: Any, metrics: dict[str, float]) -> None:
    """TensorBoard's HParams tab: the config with the final metrics (as ``hparams/<key>``,
    so that the training curves keep their own tags)."""
    from lightning.pytorch.loggers import TensorBoardLogger

    final = {f"hparams/{k}": v for k, v in sorted(metrics.items())}
    for lg in trainer.loggers:
        if isinstance(lg, TensorBoardLogger) and final:
            lg.log_hyperparams(hparams, metrics=final)
            lg.finalize("success")


def _report_mixture(model: Any, output_dir: str | None) -> None:
    """Save the fitted mixture in the data's original units (``mixture.pt``)."""
    if not hasattr(model, "mixture_parameters"):
        return
    params = model.mixture_parameters(original_units=True)
    params = {k: v.cpu() for k, v in params.items()}
    bad = [k for k, v in params.items() if not bool(torch.isfinite(v).all())]
    if bad:  # nothing is written: a mixture with non-finite parameters is not a result
        raise FloatingPointError(
            f"the fitted mixture has non-finite {bad} in the data's units: the run diverged "
            "or the data's scale exceeds float64; train in float64 (trainer.precision=64), "
            "standardise the data (data.standardize=true) or raise the covariance floor "
            "(model.net.reg_covar).")
    if output_dir:
        path = Path(output_dir) / "mixture.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(params, path)
        log.info("fitted mixture (original units) saved to %s", path)
    shown = range(params["weights"].shape[0])
    net = getattr(model, "model", None)
    if hasattr(net, "active_components"):  # a truncated model: its unused sticks are noise
        shown = [int(k) for k in net.active_components().tolist()]
        log.info("%d active components of %d (expected weight >= %g)", len(shown),
                 params["weights"].shape[0], getattr(net, "active_threshold", float("nan")))
    if len(shown) * params["means"].shape[1] <= 64:
        with torch.no_grad():
            for k in shown:
                log.info("component %d: weight %.4f, mean %s", k, float(params["weights"][k]),
                         [round(float(v), 4) for v in params["means"][k]])


def _carry_csv_header(trainer: L.Trainer) -> None:
    """Make a CSVLogger that re-opens its file in a new process (``ddp_spawn`` test after fit)
    keep the existing columns: Lightning's writer would otherwise rewrite the file with only the
    new keys and fail."""
    for lg in trainer.loggers:
        if not isinstance(lg, CSVLogger):
            continue
        path = Path(lg.log_dir) / "metrics.csv"
        if path.is_file():
            with path.open(newline="") as fh:
                header = next(csv.reader(fh), [])
            keys = lg.experiment.metrics_keys
            keys.extend(k for k in header if k not in keys)
            keys.sort()


def _validate(trainer: L.Trainer, model: Any, datamodule: Any, cfg: DictConfig,
              training: bool) -> dict[str, float]:
    """The validation metrics of the weights at hand, when fitting logged none.

    With ``train=false`` this loads ``ckpt_path`` into the model (so the test, the fitted
    mixture and the returned metrics are the checkpoint's, not an untrained model's). After a
    fit that ran no epoch — ``trainer.max_epochs=0``, or resuming a run that had already
    finished — the final metrics would otherwise be missing (and ``optimized_metric`` with
    them); they are those of the weights the fit ended with.
    """
    if training:
        log.warning(
            "no training epoch ran (trainer.max_epochs=%s; a resumed run that had already "
            "reached it does not train again): validating the current weights.",
            trainer.max_epochs)
        ckpt = None
    else:
        log.info("train=false: validating and testing the weights of %s", cfg.ckpt_path)
        ckpt = cfg.ckpt_path
    trainer.validate(model=model, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
    return {k: _to_float(v) for k, v in trainer.callback_metrics.items()}


def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Fit (and test) the configured model.

    torch's CPU thread count is set for the run (``threads``: ``auto`` gives one thread to a
    small CPU problem, :func:`mixtures.console.torch_threads`) and restored afterwards.

    Returns:
        metrics (``train/…``, ``val/…``, ``test/…`` as floats) and the objects built
        (``datamodule``, ``model``, ``trainer``).
    """
    route_lightning_logs()
    previous = torch.get_num_threads()
    try:
        return _train(cfg)
    finally:
        set_threads(previous)


def _num_values(datamodule: Any) -> int | None:
    """N × D of the training points, when the DataModule holds them in memory."""
    try:
        return int(datamodule.train_tensor.numel())
    except Exception:  # not an in-memory DataModule, or one that cannot split yet
        return None


def _train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    if cfg.get("test_ckpt") not in (None, "best"):
        raise ValueError(f"test_ckpt={cfg.test_ckpt!r}: use null (final weights) or best.")
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)

    log.info("data: %s", cfg.data._target_)
    datamodule = hydra.utils.instantiate(cfg.data)
    # the pairing first: a model's sizes may only exist for the data it needs
    check_kind(hydra.utils.get_class(cfg.model._target_), datamodule)
    setting = cfg.get("threads", "auto")
    values = _num_values(datamodule) if setting in (None, "auto") else None
    threads = torch_threads(setting, values, cfg.trainer.get("accelerator"))
    if threads is not None:
        set_threads(threads)
        log.info("%s", threads_note(threads, values))

    log.info("model: %s", cfg.model._target_)
    sizes = _data_sizes(cfg, datamodule)
    model = hydra.utils.instantiate(cfg.model, **sizes)
    # checkpoints rebuild their model: Module.load_from_checkpoint(path), no net= needed
    record_net_config(model, cfg.model.get("net"), sizes.get("net"))
    if str(cfg.trainer.get("precision")) in ("64", "64-true", "double"):
        # Convert here, not only inside the trainer: initialisation then runs in float64, and
        # under ddp_spawn the weights copied back to this process keep their precision.
        model = model.double()
    callbacks = instantiate_list(cfg.get("callbacks"))
    loggers = instantiate_list(cfg.get("logger"), _tensorboard_kwargs)
    extra = ({"enable_progress_bar": progress_enabled(cfg.trainer.enable_progress_bar)}
             if "enable_progress_bar" in cfg.trainer else {})  # auto: only on a terminal
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers,
                                                 **extra)

    keys = [k for k in cfg if k != "hydra"]
    hparams = OmegaConf.to_container(OmegaConf.masked_copy(cfg, keys), resolve=True)
    for lg in trainer.loggers:
        lg.log_hyperparams(hparams)

    if hasattr(datamodule, "keep_only_shard"):  # the module declares it, the data is told
        datamodule.keep_only_shard = bool(getattr(model, "reads_only_its_shard", False))
    ckpt_path, training = cfg.get("ckpt_path"), bool(cfg.get("train", True))
    if not training and not ckpt_path:
        raise ValueError(
            "train=false evaluates a trained checkpoint, but ckpt_path is not set: pass "
            "ckpt_path=<run dir>/checkpoints/last.ckpt (or the best epoch_*.ckpt there).")
    if training:
        # weights_only: a checkpoint never runs code (Lightning's default is False for URLs)
        trainer.fit(model=model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    metrics = {k: _to_float(v) for k, v in trainer.callback_metrics.items()}
    if not training or not any(k.startswith("val/") for k in metrics):
        metrics.update(_validate(trainer, model, datamodule, cfg, training))

    if cfg.get("test", False):
        ckpt = None  # the final weights (with train=false: those of ckpt_path, loaded above)
        if cfg.get("test_ckpt") == "best" and training:
            ckpt = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
            if ckpt is None:
                log.warning("no best checkpoint: testing the final weights.")
        _carry_csv_header(trainer)
        trainer.test(model=model, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
        metrics.update({k: _to_float(v) for k, v in trainer.callback_metrics.items()})

    metrics.update(_train_criteria(model, datamodule))
    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
    if bad:
        raise FloatingPointError(f"non-finite final metrics {bad}: the run diverged.")
    bad = [n for n, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:  # never a successful exit with a broken model
        raise FloatingPointError(
            f"non-finite parameters {bad} after training: the run diverged; train in float64 "
            "(trainer.precision=64), lower the learning rate or standardise the data.")
    output_dir = cfg.get("paths", {}).get("output_dir")
    if trainer.is_global_zero:
        _report_mixture(model, output_dir)
        _log_final_hparams(trainer, hparams, metrics)
        if output_dir:  # one line per run, easy to compare across a sweep
            path = Path(output_dir) / "metrics.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(dict(sorted(metrics.items())), indent=1) + "\n")
    return metrics, {"datamodule": datamodule, "model": model, "trainer": trainer}
