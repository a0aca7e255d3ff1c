"""The layering rules of DESIGN.md, checked on the source: no import cycle in ``mixtures/``, no
covariance-type branch outside ``mixtures/distributions/``, no model family named in
``mixtures/train.py``, and a test file for every source file (tests/ mirrors mixtures/)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mixtures"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every module of ours that ``name`` imports, at module level or inside a function."""
    is_pkg = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = name.split(".") if is_pkg else name.split(".")[:-1]
            if node.level:
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in modules and t != name}
    return found


def test_no_import_cycle() -> None:
    modules = _modules()
    graph = {m: _imports(m, p, modules) for m, p in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            assert state.get(nxt) != 1, "import cycle: " + " → ".join([*path, node, nxt])
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


_COVARIANCE_BRANCH = re.compile(
    r"isinstance\([^)]*Covariance|==\s*[\"'](unit|full|diag|scalar|tied|spherical|shared_\w+)[\"']"
)


def test_only_distributions_branch_on_a_covariance_type() -> None:
    hits = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
            for p in PACKAGE.rglob("*.py") if "distributions" not in p.parts
            for i, line in enumerate(p.read_text().splitlines(), 1)
            if _COVARIANCE_BRANCH.search(line)]
    assert hits == []


def test_train_knows_no_model_family() -> None:
    text = (PACKAGE / "train.py").read_text()
    families = ("DPMM", "GMMEM", "GMMSGD", "GMMVI", "MDN", "Classifier", "num_targets",
                "regression", "exact_statistics")
    assert [f for f in families if f in text] == []


def test_every_source_file_has_its_test_file() -> None:
    """``mixtures/a/b.py`` → ``tests/a/test_b.py`` (a package such as ``covariance/`` → one
    ``test_covariance.py``); topic files ``test_b_<topic>.py`` may add to it."""
    missing = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "__init__.py":
            continue
        rel = path.relative_to(PACKAGE)
        if rel.parent.name == "covariance":
            expected = ROOT / "tests" / "distributions" / "test_covariance.py"
        else:
            expected = ROOT / "tests" / rel.parent / f"test_{path.stem}.py"
        if not expected.is_file():
            missing.append(str(expected.relative_to(ROOT)))
    assert missing == []
