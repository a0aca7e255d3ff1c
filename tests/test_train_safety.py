"""Untrusted checkpoints never run code: every load in ``train()`` is ``weights_only=True``
(issue 15, safety). Our own checkpoints load that way (tests/lit resume tests)."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import torch

from mixtures.train import train

ROOT = Path(__file__).resolve().parents[1]


class _Payload:
    """Pickles to a call that creates a marker file when unpickled without weights_only."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def test_a_crafted_checkpoint_is_refused_and_runs_nothing(cfg_factory, tmp_path):
    """``ckpt_path=<crafted file>``: refused, the payload never runs (Lightning already loads
    local files for ``fit`` with weights_only; this pins it — the ``trainer.test`` path had
    ``weights_only=False``, caught by the static test below)."""
    marker = tmp_path / "payload_ran"
    ckpt = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "payload": _Payload(marker)}, ckpt)
    cfg = cfg_factory(["logger=csv", "trainer.max_epochs=1", f"+ckpt_path={ckpt}"])
    with pytest.raises(Exception, match="(?i)weights.only|unpickl|unsupported global"):
        train(cfg)
    assert not marker.exists()


def test_every_trainer_load_in_the_package_is_weights_only():
    """``trainer.fit`` / ``trainer.test`` / ``trainer.validate`` / ``trainer.predict`` with a
    ``ckpt_path`` and every ``torch.load`` pass ``weights_only=True`` explicitly."""
    bad = []
    for path in (ROOT / "mixtures").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            name = node.func.attr
            loads = name == "load" and getattr(node.func.value, "id", "") == "torch"
            trainer = name in ("fit", "test", "validate", "predict") and any(
                k.arg == "ckpt_path" for k in node.keywords)
            if loads or trainer:
                kw = {k.arg: k.value for k in node.keywords}
                ok = isinstance(kw.get("weights_only"), ast.Constant) and \
                    kw["weights_only"].value is True
                if not ok:
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    assert not bad
