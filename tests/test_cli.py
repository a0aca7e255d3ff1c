"""The packaged command line: ``mixtures-train`` with the configs inside the package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

from tests.conftest import CONF, ROOT, clean_env

SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("scripts", {})


def _run_entry(name: str, args: list[str], cwd: Path, env: dict[str, str] | None = None,
               python: str = sys.executable) -> subprocess.CompletedProcess:
    """Run the console script ``name`` as pip would (``module:function()``), in ``cwd``."""
    module, func = SCRIPTS[name].split(":")
    code = f"import sys; from {module} import {func} as f; sys.argv[0] = {name!r}; sys.exit(f())"
    return subprocess.run([python, "-c", code, *args], cwd=cwd, env=env or clean_env(),
                          capture_output=True, text=True, timeout=300)


def test_the_package_holds_every_config() -> None:
    """``mixtures/conf`` is the checkout's ``conf/`` and the package data covers every file."""
    from mixtures.cli import CONF_DIR

    assert CONF_DIR.resolve() == CONF.resolve()
    shipped = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["mixtures"]
    package = ROOT / "mixtures"
    matched = {p for pattern in shipped for p in package.glob(pattern)}
    assert {p.relative_to(package) for p in matched} == {
        Path("conf") / p.relative_to(CONF) for p in CONF.rglob("*.yaml")}


def test_mixtures_train_composes_the_configs_from_another_directory(tmp_path) -> None:
    """The console script prints the composed config (``--cfg job``) wherever it is run."""
    assert "mixtures-train" in SCRIPTS
    result = _run_entry("mixtures-train", ["--cfg", "job", "model=gmm_em", "covariance=diag"],
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "_target_: mixtures.lit.GMMEM" in result.stdout
    assert "_target_: mixtures.distributions.DiagCovariance" in result.stdout


def test_mixtures_train_runs_with_the_same_overrides_as_train_py(tmp_path) -> None:
    """A fast_dev_run through the console script writes its run under the caller's cwd."""
    result = _run_entry("mixtures-train", ["trainer.fast_dev_run=true", "logger=csv",
                                           "trainer.enable_progress_bar=false",
                                           "data.num_samples=300"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "final metrics" in result.stdout
    assert list((tmp_path / "logs" / "train" / "runs").glob("*/mixture.pt"))


def _copy_source(dest: Path) -> Path:
    top = {".venv", ".git", "logs", "data", "build", "multirun", "outputs", ".hypothesis"}

    def skip(folder: str, names: list[str]) -> set[str]:
        drop = {n for n in names if n == "__pycache__" or n.endswith((".egg-info", "_cache"))}
        return drop | (top & set(names) if Path(folder) == ROOT else set())

    shutil.copytree(ROOT, dest, symlinks=True, ignore=skip)
    return dest


@pytest.mark.slow
def test_pip_install_into_a_fresh_venv_gives_a_working_command(tmp_path) -> None:
    """``pip install .`` (not editable) in a new venv: ``mixtures-train`` runs from the wheel.

    Offline and cheap: the new venv sees this environment's dependencies through a ``.pth``
    line (torch is never downloaded) and installs only the project, ``--no-deps``.
    """
    venv = tmp_path / "venv"
    # no pip of its own: this environment's pip installs into it (--python), and the build
    # backend is this environment's setuptools, seen through the .pth line
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print("
                              "sysconfig.get_paths()['purelib'])"], capture_output=True,
                             text=True, check=True).stdout.strip()
    (Path(purelib) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    src = _copy_source(tmp_path / "src")
    env = {**clean_env(), "PIP_NO_INDEX": "1"}
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps",
                    "--no-build-isolation", "--no-index", str(src)], check=True, env=env,
                   cwd=tmp_path, timeout=300)
    shutil.rmtree(src)  # the installed copy must not need the source tree
    script = venv / "bin" / "mixtures-train"
    assert script.is_file() and (venv / "bin" / "mixtures-predict").is_file()
    where = subprocess.run([str(python), "-c", "import mixtures.cli as c; print(c.CONF_DIR)"],
                           capture_output=True, text=True, cwd=tmp_path, env=env, check=True)
    assert Path(where.stdout.strip()).is_relative_to(Path(purelib))
    assert Path(where.stdout.strip(), "train.yaml").is_file()
    assert str(ROOT) not in where.stdout
    run = tmp_path / "work"
    run.mkdir()
    result = subprocess.run([str(script), "trainer.fast_dev_run=true", "logger=csv",
                             "trainer.enable_progress_bar=false", "data.num_samples=300"],
                            cwd=run, env={**env, "PATH": f"{venv / 'bin'}{os.pathsep}"
                                          f"{env.get('PATH', '')}"},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "final metrics" in result.stdout
    assert list((run / "logs" / "train" / "runs").glob("*/mixture.pt"))
