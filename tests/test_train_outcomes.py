"""What a run reports and keeps on the documented paths (issue 15): testing a checkpoint with
``train=false``, the default configuration of exact EM checkpointing and resuming, runs that
train no epoch, and runs whose results cannot be represented (they fail, they never exit 0)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from mixtures.train import _report_mixture, metric_value, train

QUICK = ["data.num_samples=1500", "logger=csv"]


def _write_csv(path: Path, x: np.ndarray) -> Path:
    header = ",".join(f"f{j}" for j in range(x.shape[1]))
    np.savetxt(path, x, delimiter=",", header=header, comments="")
    return path


def _blobs(n: int = 600, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    return np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])[labels] + rng.normal(size=(n, 2))


def _mixture(cfg) -> dict[str, torch.Tensor]:
    return torch.load(Path(cfg.paths.output_dir) / "mixture.pt", weights_only=True)


def test_train_false_tests_the_checkpoint_not_an_untrained_model(cfg_factory):
    """``train=false ckpt_path=…/last.ckpt`` gave the untrained model's test/nll (4.6 vs 2.6),
    saved it as the fitted mixture and ended in KeyError on val/nll."""
    trained_cfg = cfg_factory(QUICK, sub="trained")
    trained, _ = train(trained_cfg)
    ckpt = Path(trained_cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    cfg = cfg_factory(QUICK + ["train=false", f"ckpt_path={ckpt}"], sub="tested")
    metrics, _ = train(cfg)
    assert metrics["test/nll"] == pytest.approx(trained["test/nll"], abs=1e-6)
    assert metrics["val/nll"] == pytest.approx(trained["val/nll"], abs=1e-6)
    assert metric_value(metrics, cfg.optimized_metric) == metrics["val/nll"]
    for name, value in _mixture(trained_cfg).items():
        assert torch.equal(_mixture(cfg)[name], value), name


def test_train_false_without_a_checkpoint_is_refused(cfg_factory):
    with pytest.raises(ValueError, match="ckpt_path is not set"):
        train(cfg_factory(QUICK + ["train=false"]))


def test_gmm_em_default_configuration_checkpoints_and_resumes(cfg_factory):
    """EM takes no optimizer step, so global_step stayed 0 and the default ModelCheckpoint
    callbacks never wrote last.ckpt: a killed model=gmm_em run could not resume. With the
    default callbacks (none replaced), 3 + 3 iterations equal 6 uninterrupted ones."""
    common = QUICK + ["model=gmm_em", "model.tol=0", "test=false", "model.net.init=random"]
    full_cfg = cfg_factory(common + ["trainer.max_epochs=6"], sub="full")
    _, full = train(full_cfg)
    assert full["trainer"].global_step == 6  # one step per EM iteration
    first = cfg_factory(common + ["trainer.max_epochs=3"], sub="first")
    train(first)
    ckpt = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    half = torch.load(ckpt, weights_only=True)["state_dict"]
    resumed_cfg = cfg_factory(common + ["trainer.max_epochs=6", f"ckpt_path={ckpt}"],
                              sub="resumed")
    _, resumed = train(resumed_cfg)
    assert int(resumed["model"].model.n_iter.max()) == 6
    final = full["model"].state_dict()
    assert not torch.allclose(half["model.means"], final["model.means"])  # it moved on
    for name, value in resumed["model"].state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(value, final[name], atol=1e-6, rtol=0), name


@pytest.mark.parametrize("how", ["max_epochs=0", "finished"])
def test_a_run_that_trains_no_epoch_reports_its_weights(cfg_factory, how):
    """``trainer.max_epochs=0``, or resuming a run that had already finished, exited 1 with
    KeyError: optimized_metric='val/nll' was not logged (after writing its outputs)."""
    if how == "max_epochs=0":
        cfg = cfg_factory(QUICK + ["trainer.max_epochs=0"])
    else:
        first = cfg_factory(QUICK, sub="first")
        done, _ = train(first)
        ckpt = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"
        cfg = cfg_factory(QUICK + [f"ckpt_path={ckpt}"], sub="again")
    metrics, _ = train(cfg)
    assert np.isfinite(metric_value(metrics, cfg.optimized_metric))
    if how == "finished":  # the finished run's weights, evaluated again
        assert metrics["val/nll"] == pytest.approx(done["val/nll"], abs=1e-6)
        assert metrics["test/nll"] == pytest.approx(done["test/nll"], abs=1e-6)


def test_data_beyond_float32_range_give_a_finite_exact_mixture(cfg_factory, tmp_path):
    """Data on a 1e30 scale: the model (standardised) is fine, but its covariances in the
    data's units (1e60) overflowed float32 — mixture.pt held inf and the run exited 0. The
    fitted mixture is now reported in float64: the same as at scale 1, times 1e30 / 1e60."""
    x = _blobs()
    runs = {}
    for scale in (1.0, 1e30):
        path = _write_csv(tmp_path / f"x{scale:g}.csv", x * scale)
        cfg = cfg_factory(["model=gmm_em", "data=file", f"data.path={path}", "logger=csv",
                           "trainer.max_epochs=3"], sub=f"s{scale:g}")
        train(cfg)
        runs[scale] = _mixture(cfg)
    big, unit = runs[1e30], runs[1.0]
    assert all(v.dtype == torch.float64 and bool(torch.isfinite(v).all()) for v in big.values())
    torch.testing.assert_close(big["weights"], unit["weights"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(big["means"] / 1e30, unit["means"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(big["covariances"] / 1e60, unit["covariances"],
                               rtol=1e-4, atol=1e-5)


def test_a_non_finite_mixture_is_never_saved(tmp_path):
    """A mixture that cannot be represented fails the run and leaves no mixture.pt."""

    class Diverged:
        def mixture_parameters(self, original_units: bool = False) -> dict[str, torch.Tensor]:
            return {"weights": torch.ones(2) / 2, "means": torch.zeros(2, 1),
                    "covariances": torch.tensor([[[1.0]], [[float("inf")]]])}

    with pytest.raises(FloatingPointError, match="non-finite.*covariances.*float64"):
        _report_mixture(Diverged(), str(tmp_path))
    assert not (tmp_path / "mixture.pt").exists()


def test_dpmm_with_more_features_than_points_names_the_fix(cfg_factory, tmp_path):
    """30 points in 100 dimensions in float32: the default prior (the data covariance) is
    singular and the Wishart scale lost positive definiteness — a raw LinAlgError from deep in
    the KL. Now a FloatingPointError naming float64 / covariance_prior / diag; float64 fits."""
    x = np.random.default_rng(0).normal(size=(30, 100))
    path = _write_csv(tmp_path / "wide.csv", x)
    common = ["model=dpmm_full", "data=file", f"data.path={path}", "logger=csv",
              "model.net.num_components=3", "test=false"]
    with pytest.raises(FloatingPointError, match=r"trainer\.precision=64.*covariance_prior"):
        train(cfg_factory(common, sub="f32"))
    metrics, _ = train(cfg_factory(common + ["trainer.precision=64"], sub="f64"))
    assert np.isfinite(metrics["val/nll"])


def test_gmm_em_warns_when_a_dense_covariance_has_fewer_points_than_features(
        cfg_factory, tmp_path):
    """D = 500, N = 60 ran to val/nll 1.4e8 without a word: a covariance fitted from N_k ≤ D
    points is singular but for reg_covar. It now warns (and does not for ordinary data)."""
    wide = _write_csv(tmp_path / "wide.csv", np.random.default_rng(0).normal(size=(40, 30)))
    tall = _write_csv(tmp_path / "tall.csv", _blobs())
    for path, expect in ((wide, True), (tall, False)):
        cfg = cfg_factory(["model=gmm_em", "data=file", f"data.path={path}", "logger=csv",
                           "model.net.num_components=3", "test=false"], sub=path.stem)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train(cfg)
        hits = [w for w in caught if "dense covariance was fitted from" in str(w.message)]
        assert bool(hits) == expect, path.stem


@pytest.mark.parametrize(("model", "module", "covariance"), [
    ("gmm_em", "GMMEM", "diag"), ("gmm_em", "GMMEM", "shared_scalar"),
    ("gmm_sgd", "GMMSGD", "scalar"), ("dpmm_diag", "MemoizedDPMMModule", None),
    ("dpmm_svi", "DPMMModule", "diag"),
    ("gmm_vi", "GMMVI", "diag"),
])
def test_load_from_checkpoint_rebuilds_the_model_it_holds(cfg_factory, model, module,
                                                          covariance):
    """``load_from_checkpoint`` failed for every covariance but full (``size mismatch … [8, 2]
    vs [8, 3]``): the model's config was not in the checkpoint. Now it is, and the loaded
    module — no ``net=`` given, weights_only — equals the trained one."""
    import inspect

    import mixtures.lit as lit

    cls = getattr(lit, module)
    assert inspect.signature(cls.load_from_checkpoint).parameters["weights_only"].default is True
    overrides = QUICK + [f"model={model}", "test=false"]
    if covariance:
        overrides.append(f"covariance={covariance}")
    cfg = cfg_factory(overrides)
    _, objects = train(cfg)
    loaded = cls.load_from_checkpoint(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt")
    assert type(loaded.model.cov) is type(objects["model"].model.cov)
    trained = objects["model"].state_dict()
    assert set(loaded.state_dict()) == set(trained)
    for name, value in loaded.state_dict().items():
        assert torch.equal(value, trained[name]), name


def test_a_runs_mixture_pt_loads_as_a_fitted_gaussian_mixture(cfg_factory, tmp_path):
    """``GaussianMixture.load`` on a run's mixture.pt raised KeyError 'params'. It now gives a
    fitted full-covariance model in the data's units: its log-densities of the file's raw
    points equal the run's (the module's, mapped to the file's units by the standardisation)."""
    from mixtures import GaussianMixture

    x = _blobs() * 10.0 + 100.0
    path = _write_csv(tmp_path / "x.csv", x)
    cfg = cfg_factory(["model=gmm_em", "covariance=diag", "data=file", f"data.path={path}",
                       "logger=csv", "test=false"])
    _, objects = train(cfg)
    gm = GaussianMixture.load(Path(cfg.paths.output_dir) / "mixture.pt")
    module = objects["model"]
    with torch.no_grad():
        z = module.x_standardizer.transform(torch.as_tensor(x, dtype=torch.float32))
        want = module.model.log_prob(z).double() - module.x_standardizer.log_scale_sum.double()
    np.testing.assert_allclose(gm.score_samples(x), want.numpy(), rtol=1e-4, atol=1e-4)
    assert gm.means_.shape == (module.num_components, 2) and gm.n_features_in_ == 2
    np.testing.assert_array_equal(gm.predict(x), module.model.predict(z).numpy())
    with pytest.raises(ValueError, match="neither"):
        torch.save({"other": torch.zeros(1)}, tmp_path / "bad.pt")
        GaussianMixture.load(tmp_path / "bad.pt")
