"""Shared fixtures: compose the Hydra config once per test, CPU-only, output in tmp_path."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# Lightning variables that would make a child process think it is a DDP rank.
_DIST_VARS = ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK",
              "GROUP_RANK", "LOCAL_WORLD_SIZE")


def make_cfg(tmp_path: Path, overrides: list[str] | None = None) -> DictConfig:
    """Compose ``conf/train.yaml`` with quick-test defaults plus ``overrides``."""
    GlobalHydra.instance().clear()
    base = [
        "trainer=cpu",
        "trainer.enable_progress_bar=false",
        "trainer.max_epochs=2",
        f"paths.log_dir={tmp_path}/logs",
        f"hydra.run.dir={tmp_path}/run",
    ]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=base + list(overrides or []), return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
    return cfg


@pytest.fixture
def cfg_factory(tmp_path: Path) -> Callable[..., DictConfig]:
    """``cfg_factory(overrides)`` → composed config writing into ``tmp_path``."""

    def factory(overrides: list[str] | None = None, sub: str = "") -> DictConfig:
        return make_cfg(tmp_path / sub if sub else tmp_path, overrides)

    yield factory
    GlobalHydra.instance().clear()


def clean_env() -> dict[str, str]:
    """Environment for a child ``train.py``: no DDP variables, no GPUs, quiet warnings."""
    env = {k: v for k, v in os.environ.items() if k not in _DIST_VARS}
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["PYTHONWARNINGS"] = "ignore"
    return env


def run_train(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``python train.py args`` in a clean subprocess (never in-process DDP)."""
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=timeout,
    )
