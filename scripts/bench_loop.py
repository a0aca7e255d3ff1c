"""The training loop's overhead: ``train(cfg)`` (the CLI) against a plain loop of the same step.

For each model, one run times three blocks on the same data: the bare loop, the CLI, and the
bare loop again (the bare time is the mean of the two: on a shared 2-core machine the speed of
a step drifts by tens of percent between blocks).

- **CLI**: ``mixtures.train.train(cfg)`` with the config ``python train.py model=<model>``
  composes, its default callbacks (checkpoints, divergence guard, figures) and logger
  (TensorBoard), full batch. Per epoch: the time from the start of the first training epoch to
  the end of training (validation, metrics, figures, checkpoints and the DPMM's moves
  included), divided by the epochs. The one-off set-up before it (data generation,
  initialisation, sanity check) and the work after it (test, saving the mixture) are reported
  apart. Also timed inside it: the DPMM's ELBO-checked moves (``model.moves_every_n_epochs``,
  an algorithm the bare loop does not run) and the training batches themselves (forward,
  backward, update: "its own steps", the same drift-free comparison within one block), and
  the median epoch against the median bare step (robust to an epoch slowed by another
  process; an epoch with the DPMM's moves is one of the few it sets aside).
- **bare**: the module's step in a plain Python loop, as in the README:
  - ``gmm_em``: ``model.em_step(model.statistics(x), tol)``;
  - ``dpmm_full`` (memoized VI, ``model=dpmm``'s regime): ``memo.visit(0, x); memo.end_lap();
    memo.elbo()`` of :class:`~mixtures.models.MemoizedVI` with one batch and the config's moves
    (merges, splits, sort: part of both sides), as in the README's plain loop;
  - ``dpmm_svi`` (the SVI regime): ``opt.zero_grad(); model(x)[1].mean().backward();
    opt.step()``, SGD lr 1;
  - ``gmm_sgd``: ``opt.zero_grad(); (-model(x).mean()).backward(); opt.step()``, Adam lr 0.05.

  The first block starts from the model's own initialisation, the second from the parameters
  the CLI started training from (copied at ``on_train_start``; memoized VI initialises afresh,
  which gives the same start: the same seed on the same points); each runs as many steps as
  the CLI runs epochs.

    python scripts/bench_loop.py --quick                 # smoke run, N = 20k, D = 8 (< 60 s)
    python scripts/bench_loop.py                         # N = 1M, D = 32 (gmm_sgd: 200k)
    python scripts/bench_loop.py --models gmm_em --override +data.shuffle=false
    python scripts/bench_loop.py --models dpmm_full --epochs 30 --device cuda

Progress goes to stderr; the header and the markdown table go to stdout.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import hydra
import lightning as L
import torch
from _machine import Contention, log, sync  # noqa: E402  (scripts/ is on sys.path when run)
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mixtures.train import train  # noqa: E402

MODELS = ("gmm_em", "dpmm_full", "dpmm_svi", "gmm_sgd")


class MovesClock:
    """Wraps the SVI DPMM module's ``global_moves`` to add up the seconds spent in it: its
    moves (ELBO-checked merges, re-seeds; ``model.moves_every_n_epochs``) are part of the CLI's
    algorithm, which the bare loop does not run. (Memoized VI's moves run in both.)"""

    def __init__(self) -> None:
        import mixtures.lit.dpmm as lit_dpmm

        self.module, self.original, self.seconds = lit_dpmm, lit_dpmm.global_moves, 0.0

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return self.original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        lit_dpmm.global_moves = timed


class EpochClock(L.Callback):
    """Time stamps of the fit (added to the CLI's callbacks by this script) and a copy of the
    parameters training starts from."""

    def __init__(self) -> None:
        self.epoch_starts: list[float] = []
        self.train_end: float | None = None
        self.initial_state: dict[str, torch.Tensor] | None = None
        self.steps: list[float] = []  # seconds in each training batch: forward, backward, update
        self._batch_start = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        self.initial_state = {k: v.detach().clone()
                              for k, v in pl_module.model.state_dict().items()}

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        sync(pl_module.device)
        self.epoch_starts.append(time.perf_counter())

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        sync(pl_module.device)
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        sync(pl_module.device)
        self.steps.append(time.perf_counter() - self._batch_start)

    def on_train_end(self, trainer, pl_module) -> None:
        sync(pl_module.device)
        self.train_end = time.perf_counter()


def sizes(model: str, args) -> tuple[int, int]:
    """(N, epochs) of a model's run."""
    if model == "gmm_sgd":
        return args.sgd_samples, args.sgd_epochs
    return args.samples, args.epochs


def compose_cfg(model: str, args, out: Path):
    samples, epochs = sizes(model, args)
    overrides = [
        f"model={model}", "data=blobs", f"data.num_samples={samples}",
        f"data.num_features={args.dims}", f"data.num_components={args.components}",
        f"trainer.max_epochs={epochs}", f"seed={args.seed}",
        f"trainer={'gpu' if args.device == 'cuda' else 'cpu'}",
        f"paths.log_dir={out}/logs", f"hydra.run.dir={out}/run",
        "+callbacks.bench_clock._target_=__main__.EpochClock",
    ]
    if model == "gmm_em":
        overrides += ["model.tol=0"]  # never converged: every run takes all its epochs
    if model == "dpmm_full":
        overrides += [f"model.net.num_components={args.truncation}", "model.tol=null"]
    if model == "dpmm_svi":
        overrides[0] = "model=dpmm_svi"
        overrides += ["covariance=full", f"model.net.num_components={args.truncation}",
                      "model.tol=null"]
    overrides += args.override
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out / "run")
    return cfg


def bare_loop(model: str, net: torch.nn.Module, x: torch.Tensor, cfg, steps: int,
              clock: Contention) -> float:
    """Seconds of ``steps`` plain steps of ``net`` on ``x``, and of each step."""
    if model == "gmm_em":
        tol = float(cfg.model.tol)

        def step() -> None:
            net.em_step(net.statistics(x), tol)
    elif model == "dpmm_full":
        from mixtures.models.memoized import MemoizedVI

        m = cfg.model
        memo = MemoizedVI(net, 1, m.moves, m.max_pairs, m.max_splits, m.split_tries)
        memo.initialize([x], x[:m.init_sample], m.init_components)  # not timed

        def step() -> None:
            memo.visit(0, x)
            memo.end_lap()
            float(memo.elbo())  # the CLI logs it every lap
    elif model == "dpmm_svi":
        opt = torch.optim.SGD(net.parameters(), lr=1.0)

        def step() -> None:
            opt.zero_grad()
            net(x)[1].mean().backward()
            opt.step()
    else:
        opt = torch.optim.Adam(net.parameters(), lr=float(cfg.optimizer.lr))

        def step() -> None:
            opt.zero_grad()
            (-net(x).mean()).backward()
            opt.step()
    times = []
    with clock.timed(x.device) as t:
        for _ in range(steps):
            start = time.perf_counter()
            step()
            sync(x.device)
            times.append(time.perf_counter() - start)
    return t.seconds, times


def x_dim(objects: dict) -> int:
    """D of the run's training points."""
    return int(objects["datamodule"].split("train")[0].shape[1])


def bench(model: str, args) -> dict:
    """One table row: a bare loop, the CLI, and the bare loop again (the bare time is the mean
    of the two, which cancels a slow drift of the machine's speed)."""
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_cfg(model, args, Path(tmp))
        clocks = {side: Contention(args.wait_quiet) for side in ("before", "cli", "after")}
        steps = sizes(model, args)[1]
        # the bare loop first, from the model's own initialisation on the same data
        x = hydra.utils.instantiate(cfg.data).split("train")[0].to(device)
        net = hydra.utils.instantiate(cfg.model.net, num_features=x.shape[1]).to(device)
        if model != "dpmm_full":  # memoized VI initialises its summaries with the model
            net.initialize(x)
        log(f"{model}: bare loop, {steps} steps")
        seconds, before_steps = bare_loop(model, net, x, cfg, steps, clocks["before"])
        before = seconds / steps
        del x, net
        log(f"{model}: train(cfg), N = {sizes(model, args)[0]}, {steps} epochs")
        moves = MovesClock()
        try:
            with clocks["cli"].timed(device) as t:
                _, objects = train(cfg)
        finally:
            moves.module.global_moves = moves.original
        end = t.start + t.seconds
        timer = next(c for c in objects["trainer"].callbacks if isinstance(c, EpochClock))
        epochs = len(timer.epoch_starts)
        cli = (timer.train_end - timer.epoch_starts[0]) / epochs
        ends = [*timer.epoch_starts[1:], timer.train_end]
        row = dict(model=model, epochs=epochs, cli=cli, moves=moves.seconds / epochs,
                   cli_median=statistics.median(e - b for b, e in
                                                zip(timer.epoch_starts, ends, strict=True)),
                   own_steps=sum(timer.steps) / epochs, own_median=statistics.median(timer.steps),
                   setup=timer.epoch_starts[0] - t.start, after=end - timer.train_end)
        # and again, from the parameters the CLI started from
        if model == "dpmm_full":
            net = hydra.utils.instantiate(cfg.model.net, num_features=x_dim(objects))
        else:
            net = copy.deepcopy(objects["model"].model)
            net.load_state_dict(timer.initial_state)
        x = objects["datamodule"].split("train")[0]
        row["n_train"], row["k"] = x.shape[0], net.num_components
        del objects
        log(f"{model}: bare loop, {epochs} steps")
        seconds, after_steps = bare_loop(model, net, x, cfg, epochs, clocks["after"])
        after = seconds / epochs
        del net, x
    row.update(bare=(before + after) / 2, bare_before=before, bare_after=after,
               bare_median=statistics.median(before_steps + after_steps),
               others={side: c.share() for side, c in clocks.items()})
    log(f"  CLI {row['cli']:.3f} s/epoch (moves {row['moves']:.3f}), bare {before:.3f} / "
        f"{after:.3f} s/step; median step: CLI {row['own_median']:.3f} s, bare "
        f"{row['bare_median']:.3f} s")
    return row


def git_version() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "mixtures",
                                "conf"], capture_output=True, text=True).stdout.strip()
        return rev + (" plus uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def table(rows: list[dict], args) -> str:
    lines = [
        "| model | N train | D | K | epochs | bare s/epoch | CLI s/epoch | CLI ÷ bare | "
        "of which moves s/epoch | CLI without the moves ÷ bare | CLI without the moves ÷ its own "
        "steps | bare before / after s | "
        "CLI set-up s | CLI after s | median epoch CLI ÷ median step bare | "
        "others' CPU bare / CLI / bare |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        moves = f"{r['moves']:.3g}" if r["moves"] else "—"
        lines.append(
            f"| {r['model']} | {r['n_train']:,} | {args.dims} | {r['k']} | {r['epochs']} | "
            f"{r['bare']:.3g} | {r['cli']:.3g} | {r['cli'] / r['bare']:.2f}× | {moves} | "
            f"{(r['cli'] - r['moves']) / r['bare']:.2f}× | "
            f"{(r['cli'] - r['moves']) / r['own_steps']:.2f}× | "
            f"{r['bare_before']:.3g} / {r['bare_after']:.3g} | "
            f"{r['setup']:.3g} | {r['after']:.3g} | "
            f"{r['cli_median']:.3g} ÷ {r['bare_median']:.3g} = "
            f"{r['cli_median'] / r['bare_median']:.2f}× | "
            + " / ".join(f"{100 * v:.0f}%" for v in r["others"].values()) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--samples", type=int, default=1_000_000,
                   help="N of data=blobs (default 1M; 80%% train, 10%% val, 10%% test)")
    p.add_argument("--dims", type=int, default=32, help="D (default 32)")
    p.add_argument("--components", type=int, default=32,
                   help="K of the data and of gmm_em / gmm_sgd (default 32)")
    p.add_argument("--truncation", type=int, default=64, help="K of dpmm_full (default 64)")
    p.add_argument("--epochs", type=int, default=20, help="epochs = bare steps (default 20)")
    p.add_argument("--sgd-samples", type=int, default=200_000,
                   help="N of gmm_sgd (default 200k: its autograd graph holds several "
                   "[N, K, D] tensors, ~25 GB at N = 1M)")
    p.add_argument("--sgd-epochs", type=int, default=10, help="epochs of gmm_sgd (default 10)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--wait-quiet", type=float, default=10.0,
                   help="before each timed block, wait up to this long (s) for other processes "
                   "to use < 15%% of the CPUs (default 10; 0 = never wait)")
    p.add_argument("--override", nargs="*", default=[],
                   help="extra Hydra overrides for the CLI side (e.g. trainer.precision=64)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: N=20000, D=8, K=8, truncation 16, 4 epochs")
    args = p.parse_args(argv)
    if args.quick:
        args.samples, args.dims, args.components, args.truncation = 20_000, 8, 8, 16
        args.sgd_samples, args.epochs, args.sgd_epochs = 20_000, 4, 4
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("mixtures").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    start = time.perf_counter()
    rows = [bench(model, args) for model in args.models]
    print(f"{datetime.date.today()}, mixtures at git {git_version()}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), Lightning {L.__version__}, Python "
          f"{platform.python_version()}, {platform.processor() or platform.machine()} "
          f"({os.cpu_count()} logical cores), device {args.device}, float32. "
          f"Command: `python scripts/bench_loop.py {' '.join(sys.argv[1:])}`, "
          f"wall time {time.perf_counter() - start:.0f} s.\n")
    print(table(rows, args))


if __name__ == "__main__":
    main()
