"""What a run prints: Lightning's lines once, progress only on a terminal, torch threads for
small problems, and a final summary without Lightning's ``_step`` / ``_epoch`` duplicates.

Used by :func:`mixtures.train.train` and the ``mixtures-train`` entry point.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import torch

__all__ = ["final_metrics", "progress_enabled", "route_lightning_logs", "torch_threads"]

log = logging.getLogger(__name__)

#: below this many values (N × D of the training points) one CPU thread is the default: the
#: fits are too small to gain from more, and on a busy 2-core machine two threads made them
#: 10–20× slower (issue 16)
SMALL_PROBLEM = 200_000


def route_lightning_logs() -> None:
    """Print each Lightning line once: when the application has configured logging (Hydra's
    console and ``<task>.log`` handlers on the root logger), Lightning's own console handlers
    are removed and its records propagate to those handlers — they printed every line twice,
    once as ``INFO: …`` and once in Hydra's format. Without root handlers nothing changes."""
    root = logging.getLogger()
    if not root.handlers:
        return
    for name in list(logging.root.manager.loggerDict):
        if not (name == "lightning" or name.startswith(("lightning.", "lightning_fabric",
                                                        "pytorch_lightning"))):
            continue
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:  # not file handlers
                logger.removeHandler(handler)
        logger.propagate = True


def progress_enabled(setting: Any) -> bool:
    """``trainer.enable_progress_bar``: ``auto`` (the default) shows progress bars only when
    stdout is a terminal — in a log file, a pipe or a sweep's job they are thousands of
    carriage-return lines; true / false force it."""
    if isinstance(setting, str):
        if setting.lower() != "auto":
            raise ValueError(f"trainer.enable_progress_bar={setting!r}: use auto, true or false.")
        stream = sys.stdout
        return bool(getattr(stream, "isatty", lambda: False)())
    return bool(setting)


def torch_threads(setting: Any, num_values: int | None, accelerator: Any) -> int | None:
    """The torch CPU thread count for a run (``threads`` in ``conf/train.yaml``), or None to
    keep torch's default: an integer is taken as it is; ``auto`` gives 1 for a CPU run on
    fewer than :data:`SMALL_PROBLEM` values (N × D) and torch's default otherwise."""
    if setting is None or (isinstance(setting, str) and setting.lower() == "auto"):
        if str(accelerator) != "cpu" or num_values is None or num_values >= SMALL_PROBLEM:
            return None
        return 1
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
        raise ValueError(f"threads={setting!r}: use auto or a positive number of threads.")
    return setting


def final_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The final metrics as a person reads them: a key logged per step and per epoch
    (``train/nll_step``, ``train/nll_epoch``) once, as its epoch value under its own name."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if key.endswith("_step") and (key[:-5] in metrics or f"{key[:-5]}_epoch" in metrics):
            continue
        if key.endswith("_epoch"):
            base = key[:-6]
            out.setdefault(base, metrics.get(base, value))
            continue
        out[key] = value
    return dict(sorted(out.items()))


def threads_note(threads: int | None, num_values: int | None) -> str | None:
    """The line that says which thread count a run uses and how to change it."""
    if threads is None:
        return None
    why = (f"small problem: {num_values} values" if num_values is not None else "threads=")
    return f"torch threads: {threads} ({why}; change with threads=N)"


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (None: unchanged); return the previous count."""
    previous = torch.get_num_threads()
    if threads is not None and threads != previous:
        torch.set_num_threads(threads)
    return previous
