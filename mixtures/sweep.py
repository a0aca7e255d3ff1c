"""A summary table of every run and sweep: overrides and final metrics, best first.

:class:`SummaryCallback` (a Hydra callback, ``conf/hydra/default.yaml``) writes
``summary.csv`` and ``summary.md`` when a run ends (in its directory) and when a sweep ends (at
the sweep's root, one row per job). Rows are sorted by the run's ``optimized_metric`` (lowest
first; highest with ``hydra.sweeper.direction=maximize``); a job that failed has no
``metrics.json`` and is listed last with status ``failed``. Each job's overrides come from its
``.hydra/overrides.yaml`` and its metrics from the ``metrics.json`` that ``train`` writes.

The table of a finished sweep can be (re)written by hand::

    python -m mixtures.sweep logs/train/multiruns/<time> [optimized_metric]
"""

from __future__ import annotations

import csv
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mixtures.console import final_metrics

try:
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover - hydra is a dependency
    Callback = object  # type: ignore[misc,assignment]

__all__ = ["SummaryCallback", "collect_runs", "write_summary"]

log = logging.getLogger(__name__)


def _overrides(job: Path) -> dict[str, str]:
    path = job / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    items = OmegaConf.to_container(OmegaConf.load(path)) or []
    out = {}
    for item in items:
        key, _, value = str(item).partition("=")
        out[key.lstrip("+~")] = value
    return out


def collect_runs(root: str | Path) -> list[dict[str, Any]]:
    """One record per run under ``root`` (``root`` itself when it is a run): ``job`` (its
    path relative to ``root``), ``status``, ``overrides`` (a dict) and ``metrics`` (a dict)."""
    root = Path(root)
    jobs = [root] if (root / ".hydra").is_dir() or (root / "metrics.json").is_file() else sorted(
        (p for p in root.iterdir() if p.is_dir() and (p / ".hydra").is_dir()),
        key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))
    runs = []
    for job in jobs:
        metrics_file = job / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        runs.append({"job": "." if job == root else str(job.relative_to(root)),
                     "status": "ok" if metrics_file.is_file() else "failed",
                     "overrides": _overrides(job), "metrics": metrics})
    return runs


def _sort(runs: list[dict[str, Any]], metric: str | None, maximize: bool) -> list[dict]:
    def key(run: dict[str, Any]) -> tuple[int, float]:
        value = run["metrics"].get(metric) if metric else None
        if value is None or not math.isfinite(float(value)):
            return (1, 0.0)
        return (0, -float(value) if maximize else float(value))

    return sorted(runs, key=key) if metric else runs


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def write_summary(root: str | Path, optimized_metric: str | None = None,
                  maximize: bool = False) -> tuple[Path, Path] | None:
    """Write ``summary.csv`` (every override and metric) and ``summary.md`` (the overrides
    that differ between runs, then the metrics) into ``root``; best run first."""
    root = Path(root)
    if not root.is_dir():
        return None
    runs = _sort(collect_runs(root), optimized_metric, maximize)
    if not runs:
        return None
    keys = sorted({k for r in runs for k in r["overrides"]})
    varying = [k for k in keys if len({r["overrides"].get(k) for r in runs}) > 1]
    common = {k: runs[0]["overrides"][k] for k in keys if k not in varying
              and k in runs[0]["overrides"]}
    metrics = sorted({k for r in runs for k in r["metrics"]})
    # the Markdown shows a metric logged per step and per epoch once (its epoch value)
    shown = sorted({k for r in runs for k in final_metrics(r["metrics"])})
    for names in (metrics, shown):
        if optimized_metric in names:
            names.remove(optimized_metric)
            names.insert(0, optimized_metric)

    csv_path = root / "summary.csv"
    with csv_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["job", "status", *keys, *metrics])
        for r in runs:
            writer.writerow([r["job"], r["status"], *(r["overrides"].get(k, "") for k in keys),
                             *(repr(r["metrics"][m]) if m in r["metrics"] else ""
                               for m in metrics)])

    header = ["job", *varying, *shown] + (["status"] if any(
        r["status"] != "ok" for r in runs) else [])
    lines = [f"# {root.name}", ""]
    if optimized_metric:
        order = "highest" if maximize else "lowest"
        lines += [f"Sorted by `{optimized_metric}` ({order} first).", ""]
    if common:
        lines += ["Common overrides: " + " ".join(f"`{k}={v}`" for k, v in common.items()), ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in runs:
        readable = final_metrics(r["metrics"])
        cells = [r["job"], *(r["overrides"].get(k, "") for k in varying),
                 *(_fmt(readable.get(m, "")) for m in shown)]
        if "status" in header:
            cells.append(r["status"])
        lines.append("| " + " | ".join(cells) + " |")
    md_path = root / "summary.md"
    md_path.write_text("\n".join(lines) + "\n")
    return csv_path, md_path


def _maximize(config: DictConfig) -> bool:
    direction = OmegaConf.select(config, "hydra.sweeper.direction", default=None)
    if isinstance(direction, list | tuple) or OmegaConf.is_list(direction):
        direction = direction[0] if len(direction) else None
    return str(direction).lower().startswith("max")


class SummaryCallback(Callback):
    """Hydra callback: the summary table of a run (its directory) and of a sweep (its root)."""

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        ret = kwargs.get("job_return")
        root = OmegaConf.select(getattr(ret, "hydra_cfg", None) or {},
                                "hydra.runtime.output_dir", default=None)
        self._write(root or OmegaConf.select(config, "hydra.run.dir"), config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._write(OmegaConf.select(config, "hydra.sweep.dir"), config)

    @staticmethod
    def _write(root: Any, config: DictConfig) -> None:
        if not root:
            return
        try:
            written = write_summary(root, OmegaConf.select(config, "optimized_metric"),
                                    _maximize(config))
        except Exception as err:  # a summary never turns a finished run into a failure
            log.warning("could not write the summary table in %s: %s", root, err)
            return
        if written:  # stdout only: Hydra's console log handler would print it a second time
            print(f"summary: {written[1]}")


def main(argv: list[str] | None = None) -> int:
    """``python -m mixtures.sweep <sweep dir> [optimized_metric] [--maximize]``."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(main.__doc__)
        return 0
    maximize = "--maximize" in args
    args = [a for a in args if a != "--maximize"]
    written = write_summary(args[0], args[1] if len(args) > 1 else None, maximize)
    if not written:
        print(f"no runs under {args[0]}")
        return 1
    print(written[1].read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
