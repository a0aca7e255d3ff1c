"""scripts/gpu_check.py on the CPU at tiny sizes: every check runs and passes, one table."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT, clean_env


def test_gpu_check_runs_every_check_on_the_cpu(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--device", "cpu", "--quick"],
        cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert table[0] == "| check | device | s | status | detail |"
    rows = table[1:]  # the separator line starts with "|-"
    assert rows and all("| ok |" in row for row in rows), "\n".join(rows)
    models = sorted(p.stem for p in (ROOT / "conf" / "model").glob("*.yaml"))
    assert [f"model={m}" for m in models] == [r.split()[2] for r in rows[:len(models)]]
    assert any("GaussianMixture" in r and "float64" in r for r in rows)
    assert any("EM iteration" in r for r in rows) and any("k-means init" in r for r in rows)
