"""Using a trained run: ``mixtures-predict`` and ``load_run`` / ``load_model`` /
``load_gaussian_mixture``, checked against the run's own module."""

from __future__ import annotations

import csv
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from mixtures.train import train
from tests.conftest import ROOT, clean_env


def _points(path: Path, n: int = 400, seed: int = 0, labels: bool = True) -> Path:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = np.array([[0.0, 0.0, 0.0], [6.0, 0.0, 1.0], [0.0, 6.0, -1.0]])
    x = (centres[y] + rng.normal(size=(n, 3))) * 10.0 + 100.0
    table = np.column_stack([x, y]) if labels else x
    np.savetxt(path, table, delimiter=",", comments="",
               header="a,b,c,label" if labels else "a,b,c")
    return path


def _trained_run(cfg_factory, tmp_path: Path, extra: list[str] | None = None):
    """A short data=file run written as Hydra writes one (with .hydra/config.yaml)."""
    csv_path = _points(tmp_path / "train.csv")
    cfg = cfg_factory(["data=file", f"data.path={csv_path}", "data.label_column=-1",
                       "model.net.num_components=3", "trainer.max_epochs=4", "logger=csv",
                       *(extra or [])])
    metrics, objects = train(cfg)
    run = Path(cfg.paths.output_dir)
    (run / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]),
                   run / ".hydra" / "config.yaml")
    return run, objects["model"]


def _own_numbers(module, x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The in-process module's log-densities (data units) and labels of raw points."""
    z = module.x_standardizer.transform(torch.as_tensor(x).double()).to(module.dtype)
    with torch.no_grad():
        log_density, labels = module.model.score_and_predict(z)
    return log_density.double() - module.x_standardizer.log_scale_sum.double(), labels


def _read(path: Path) -> tuple[list[str], np.ndarray]:
    with path.open() as fh:
        rows = list(csv.reader(fh))
    return rows[0], np.array(rows[1:], dtype=float)


def test_load_run_matches_the_runs_own_module(cfg_factory, tmp_path) -> None:
    """The nn.Module, the run's predictions and its GaussianMixture give the numbers of the
    module the run trained (log-densities in the data's units)."""
    from mixtures import GaussianMixture
    from mixtures.predict import load_gaussian_mixture, load_model, load_run

    run_dir, own = _trained_run(cfg_factory, tmp_path)
    x = np.loadtxt(_points(tmp_path / "new.csv", n=50, seed=1), delimiter=",",
                   skiprows=1)[:, :3]
    want_ll, want_labels = _own_numbers(own, x)

    model = load_model(run_dir)
    assert type(model) is type(own.model) and not model.training
    for (name, got), want in zip(model.state_dict().items(), own.model.state_dict().values(),
                                 strict=True):
        assert torch.equal(got, want.cpu()), name

    run = load_run(run_dir)
    assert run.checkpoint == run_dir / "checkpoints" / "last.ckpt"
    got_ll, got_labels = run.score_and_predict(x)
    torch.testing.assert_close(got_ll, want_ll, rtol=0, atol=1e-9)
    assert torch.equal(got_labels, want_labels)
    assert torch.allclose(run.predict_proba(x).sum(1), torch.ones(50, dtype=torch.float64))

    gm = load_gaussian_mixture(run_dir)
    assert isinstance(gm, GaussianMixture)
    np.testing.assert_allclose(gm.score_samples(x), want_ll.numpy(), rtol=1e-5)
    np.testing.assert_array_equal(gm.predict(x), want_labels.numpy())
    # a checkpoint path works as well as the directory, and gives the same mixture
    np.testing.assert_allclose(
        load_gaussian_mixture(run_dir / "checkpoints" / "last.ckpt").score_samples(x),
        gm.score_samples(x), rtol=1e-6)

    points, comps = run.sample(2000, seed=3)
    assert points.shape == (2000, 3) and comps.shape == (2000,)
    # in the data's units (the file's points are centre x 10 + 100)
    assert abs(float(points.mean()) - float(x.mean())) < 5.0


def test_mixtures_predict_writes_labels_log_densities_and_samples(cfg_factory, tmp_path) -> None:
    """``mixtures-predict run=<dir> data.path=new.csv`` writes what the module computes."""
    from mixtures.predict import main

    run_dir, own = _trained_run(cfg_factory, tmp_path)
    new = _points(tmp_path / "new.csv", n=30, seed=2)
    assert main([f"run={run_dir}", f"data.path={new}", "proba=true", "samples=7"]) == 0
    header, table = _read(run_dir / "predictions" / "new.csv")
    assert header == ["label", "log_density", "proba_0", "proba_1", "proba_2"]
    want_ll, want_labels = _own_numbers(own, np.loadtxt(new, delimiter=",", skiprows=1)[:, :3])
    np.testing.assert_array_equal(table[:, 0], want_labels.numpy())
    np.testing.assert_allclose(table[:, 1], want_ll.numpy(), rtol=1e-8)
    np.testing.assert_allclose(table[:, 2:].sum(1), 1.0, rtol=1e-6)
    header, samples = _read(run_dir / "predictions" / "new_samples.csv")
    assert header == ["x0", "x1", "x2", "component"] and samples.shape == (7, 4)

    # a file without the label column, named by the user, and an output path of their own
    bare = _points(tmp_path / "bare.csv", n=30, seed=2, labels=False)
    out = tmp_path / "mine.csv"
    assert main([f"run={run_dir}", f"data.path={bare}", "data.label_column=null",
                 f"output={out}"]) == 0
    np.testing.assert_allclose(_read(out)[1][:, 1], want_ll.numpy(), rtol=1e-8)


def test_a_run_without_checkpoints_predicts_from_its_mixture(cfg_factory, tmp_path) -> None:
    """fast_dev_run writes no checkpoint: predictions come from mixture.pt."""
    from mixtures import GaussianMixture
    from mixtures.predict import main

    run_dir, _ = _trained_run(cfg_factory, tmp_path, ["trainer.fast_dev_run=true"])
    assert not list(run_dir.glob("checkpoints/*.ckpt"))
    new = _points(tmp_path / "new.csv", n=20, seed=4)
    assert main([f"run={run_dir}", f"data.path={new}"]) == 0
    gm = GaussianMixture.load(run_dir / "mixture.pt")
    x = np.loadtxt(new, delimiter=",", skiprows=1)[:, :3]
    table = _read(run_dir / "predictions" / "new.csv")[1]
    np.testing.assert_allclose(table[:, 1], gm.score_samples(x), rtol=1e-8)


def test_a_float64_run_is_loaded_in_float64(cfg_factory, tmp_path) -> None:
    from mixtures.predict import load_run

    run_dir, own = _trained_run(cfg_factory, tmp_path, ["model=gmm_em", "trainer.precision=64"])
    run = load_run(run_dir)
    assert run.module.dtype == torch.float64
    x = np.loadtxt(_points(tmp_path / "new.csv", n=20, seed=5), delimiter=",",
                   skiprows=1)[:, :3]
    torch.testing.assert_close(run.score_samples(x), _own_numbers(own, x)[0], rtol=0,
                               atol=1e-12)


def test_bad_arguments_name_the_fix(cfg_factory, tmp_path) -> None:
    from mixtures.predict import main

    with pytest.raises(SystemExit, match="unknown keys \\['dat.path'\\]"):
        main(["run=x", "dat.path=y"])
    with pytest.raises(SystemExit, match="run=<dir> and data.path=<file> are needed"):
        main(["data.path=y"])
    with pytest.raises(FileNotFoundError, match="run='nowhere' does not exist"):
        main(["run=nowhere", "data.path=y.csv"])


def test_python_m_mixtures_predict_and_the_console_script(tmp_path) -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["mixtures-predict"] == "mixtures.predict:main"
    result = subprocess.run([sys.executable, "-m", "mixtures.predict", "--help"], cwd=tmp_path,
                            env=clean_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage: mixtures-predict run=<run dir> data.path=<file>" in result.stdout
