"""A user sees no warning from cam_audit on the happy path: audit(), the callback, the CLI's audit.

A verdict's ShortcutWarning or InconclusiveWarning is the product speaking, not noise: those are allowed.
Warnings that torch or Lightning raise because of how cam_audit calls them (a read-only NumPy array
handed to ``torch.as_tensor``, a metric logged without ``sync_dist``) count as cam_audit's.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytorch_lightning as pl

import cam_audit
from cam_audit import CamAudit, ShortcutPolicy, audit
from cam_audit.errors import InconclusiveWarning, ShortcutWarning
from helpers.models import NoisyClassifier
from helpers.probes import tiny_probe, unannotated_probe
from helpers.trainers import make_trainer, tiny_data

PACKAGE = Path(cam_audit.__file__).resolve().parent
#: Messages of warnings that third-party code raises about how it was called.
CAUSED_BY_THE_CALLER = ("not writable", "sync_dist")


def ours(caught: list[warnings.WarningMessage]) -> list[str]:
    """The warnings cam_audit is responsible for, as readable lines."""
    found = []
    for w in caught:
        if issubclass(w.category, (ShortcutWarning, InconclusiveWarning)):
            continue
        in_package = Path(w.filename).resolve().is_relative_to(PACKAGE)
        if in_package or any(text in str(w.message) for text in CAUSED_BY_THE_CALLER):
            found.append(f"{w.category.__name__} at {w.filename}:{w.lineno}: {w.message}")
    return found


def test_audit_warns_nothing():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = audit(NoisyClassifier(), tiny_probe(10), target_layer="features", batch_size=4)
    assert int(report.summary["n_samples"]) == 10
    assert ours(caught) == []


def test_a_fit_with_the_callback_warns_nothing(tmp_path):
    callback = CamAudit(tiny_probe(10), target_layer="features", batch_size=4, max_images=4)
    trainer = make_trainer(tmp_path, callbacks=[callback], max_epochs=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(NoisyClassifier(), datamodule=tiny_data())
    assert callback.n_audits == 2
    assert ours(caught) == []


def test_a_fit_with_discovery_warns_nothing(tmp_path):
    from pytorch_lightning.loggers import TensorBoardLogger

    pl.seed_everything(0, verbose=False)  # the model's first weights decide whether a cue gets tested
    callback = CamAudit(unannotated_probe(18, seed=5), target_layer="features", batch_size=9, max_images=4,
                        discover=True, policy=ShortcutPolicy(min_cue_samples=3))  # fmt: skip
    logger = TensorBoardLogger(tmp_path, name="tb", version="")  # the cue gallery is drawn for a logger
    # 16 steps an epoch: fewer leave the model deciding every scene as one class, whose flat map is no
    # testable cue
    trainer = make_trainer(
        tmp_path, callbacks=[callback], max_epochs=2, limit_train_batches=16, logger=logger
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(NoisyClassifier(), datamodule=tiny_data(n_train=256, image_size=64))
    assert callback.n_audits == 2 and callback.last_report.meta["discover"] is True
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert callback.last_report.cues["n_fill"].gt(0).any()  # a cue was tested, so its gallery was drawn
    assert ours(caught) == []


def test_the_filter_would_see_a_warning_raised_in_the_package():
    """The check above can fail: a warning raised from a cam_audit module is reported."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn_explicit("noise", UserWarning, str(PACKAGE / "pipeline" / "run.py"), 1)
    assert len(ours(caught)) == 1
