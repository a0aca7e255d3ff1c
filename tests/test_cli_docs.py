"""The README and the design guide describe what exists: every referenced file, command, config
choice and script is there (a fresh clone has no guide outside the repository)."""

from __future__ import annotations

import re
import tomllib

from tests.conftest import CONF, ROOT

README = (ROOT / "README.md").read_text()


def test_design_guide_is_in_the_repository_and_every_reference_resolves() -> None:
    assert (ROOT / "DESIGN.md").is_file()
    assert "](DESIGN.md)" in README
    for path in [*ROOT.glob("*.md"), *(ROOT / "mixtures").rglob("*.py"),
                 *(ROOT / "tests").rglob("*.py")]:
        for ref in re.findall(r"[\w./-]*DESIGN\.md", path.read_text()):
            assert (path.parent / ref).is_file() or (ROOT / ref).is_file(), (path, ref)


def test_every_command_the_readme_names_exists() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    named = set(re.findall(r"\b(mixtures-[a-z]+)\b", README))
    assert named and named <= set(scripts), named - set(scripts)
    for module in set(re.findall(r"python -m (mixtures(?:\.\w+)+)", README)):
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), module
    for script in set(re.findall(r"python ((?:scripts|experiments)/[\w/]+\.py)", README)):
        assert (ROOT / script).is_file(), script


def test_every_config_choice_the_readme_names_exists() -> None:
    groups = ("model", "data", "covariance", "trainer", "optimizer", "experiment",
              "hparams_search", "debug", "logger", "callbacks")
    found = 0
    for group, choice in re.findall(rf"(?<![\w.+])({'|'.join(groups)})=([\w,.]+)", README):
        for name in choice.split(","):
            # model=nope is the unknown-option example; a.b the next override of a list;
            # covariance=FullCovariance() is Python
            if name in ("null", "nope") or "." in name or not name or name[0].isupper():
                continue
            found += 1
            assert (CONF / group / f"{name}.yaml").is_file(), f"{group}={name}"
    assert found > 20
