"""What a run prints: each Lightning line once, the run directory at start and end, a final
summary without ``_step`` / ``_epoch`` duplicates, only a DPMM's active components, no progress
bars when stdout is not a terminal, and one torch thread for small CPU problems."""

from __future__ import annotations

import logging
import re
import sys

import lightning as L
import pytest
import torch

from mixtures.console import final_metrics, progress_enabled, torch_threads
from mixtures.train import train
from tests.conftest import run_train


def test_a_runs_console(tmp_path) -> None:
    """``train.py`` with stdout to a pipe (model=mdn logs train/nll per step and per epoch)."""
    result = run_train(["model=mdn", "data=heteroscedastic", "trainer.max_epochs=2",
                        "hydra.run.dir=run"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    both = result.stdout + result.stderr
    # Lightning's lines once (they came twice: "INFO: Seed set to 42" and Hydra's format)
    assert both.count("Seed set to 42") == 1, both[:2000]
    assert both.count("`Trainer.fit` stopped") == 1
    # no progress bars in a pipe (they wrote every step's carriage-return line)
    assert "it/s" not in both and "Epoch 1:" not in both
    # the run directory first and last
    run_dir = str(tmp_path / "run")
    lines = result.stdout.strip().splitlines()
    assert lines[0] == f"run directory: {run_dir}"
    assert f"run directory: {run_dir}" in lines[-2:]
    summary = result.stdout.split("final metrics", 1)[1]
    assert "train/nll " in summary
    assert "_step" not in summary and "_epoch" not in summary
    # the file log holds the Lightning lines too, once
    log_text = (tmp_path / "run" / "train.log").read_text()
    assert log_text.count("Seed set to 42") == 1


def test_only_a_dpmms_active_components_are_listed(cfg_factory, caplog) -> None:
    cfg = cfg_factory(["model=dpmm", "trainer.max_epochs=3", "data.num_samples=300",
                       "logger=csv", "test=false"])
    with caplog.at_level(logging.INFO, logger="mixtures.train"):
        _, objects = train(cfg)
    net = objects["model"].model
    active = net.active_components().tolist()
    assert 0 < len(active) < net.num_components
    listed = [int(m.group(1)) for r in caplog.records
              if (m := re.match(r"component (\d+): weight", r.getMessage()))]
    assert listed == active
    assert f"{len(active)} active components of {net.num_components}" in caplog.text


class ThreadProbe(L.Callback):
    """Records torch's thread count while the model trains."""

    seen: list[int] = []

    def on_train_start(self, trainer, pl_module) -> None:
        ThreadProbe.seen.append(torch.get_num_threads())


@pytest.mark.parametrize(("setting", "expected"), [("auto", 1), ("2", 2)])
def test_torch_threads_for_a_run(cfg_factory, setting, expected) -> None:
    """``threads=auto`` gives a small CPU fit one thread; a number is taken as it is; torch's
    own setting is back after the run."""
    before = torch.get_num_threads()
    ThreadProbe.seen = []
    cfg = cfg_factory([f"threads={setting}", "trainer.max_epochs=1", "logger=csv", "test=false",
                       "+callbacks.probe._target_=tests.test_console.ThreadProbe"])
    train(cfg)
    assert ThreadProbe.seen == [expected]
    assert torch.get_num_threads() == before


def test_console_helpers(monkeypatch) -> None:
    assert final_metrics({"train/nll_step": 1.0, "train/nll_epoch": 2.0, "val/nll": 3.0}) == {
        "train/nll": 2.0, "val/nll": 3.0}
    assert final_metrics({"train/nll": 2.0, "train/nll_step": 1.0, "train/nll_epoch": 2.0}) == {
        "train/nll": 2.0}
    assert final_metrics({"val/first_step": 4.0}) == {"val/first_step": 4.0}
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False, raising=False)
    assert progress_enabled("auto") is False and progress_enabled(True) is True
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    assert progress_enabled("auto") is True and progress_enabled(False) is False
    with pytest.raises(ValueError, match="enable_progress_bar='sometimes'"):
        progress_enabled("sometimes")
    assert torch_threads("auto", 1_000, "cpu") == 1
    assert torch_threads("auto", 10_000_000, "cpu") is None  # large: torch's default
    assert torch_threads("auto", 1_000, "gpu") is None
    assert torch_threads(3, None, "cpu") == 3
    with pytest.raises(ValueError, match="threads=0"):
        torch_threads(0, 10, "cpu")
