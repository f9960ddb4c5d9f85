"""100 audits, some of which raise, leave no hook, no tensor and no resident memory behind."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from cam_audit import CamAudit
from helpers.models import NoisyClassifier, hook_count
from helpers.probes import tiny_probe
from helpers.trainers import make_trainer

pytestmark = pytest.mark.filterwarnings("ignore::cam_audit.lightning.ShortcutWarning", "ignore::UserWarning")

AUDITS = 100
RAISE_EVERY = 5  # every 5th audit raises inside the engine's forward, with its hook attached


class SometimesBroken(NoisyClassifier):
    """Raises in the head while the audit's gradient pass runs, when ``break_next`` was set.

    The fault is armed at the start of the validation epoch, after the callback's set-up check, so it
    hits the audit at the epoch's end (validation steps run in inference mode, without grad).
    """

    broken = False
    break_next = False

    def on_validation_epoch_start(self) -> None:
        self.broken = self.break_next

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.features(self.stem(images))
        if self.broken and torch.is_grad_enabled() and not self.training:
            raise RuntimeError("head failed during the audit")
        return self.head(self.dropout(self.pool(features).flatten(1)))


def resident_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not in /proc/self/status")


def live_tensors() -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, torch.Tensor))


@pytest.mark.slow
def test_hundred_audits_with_failures_leave_no_hook_and_no_memory(tmp_path, capsys):
    torch.manual_seed(0)
    model = SometimesBroken()
    callback = CamAudit(tiny_probe(16), target_layer="features", batch_size=8, log_images=False)
    trainer = make_trainer(tmp_path, callbacks=[callback], enable_checkpointing=False)
    images, labels = torch.rand(8, 3, 32, 32), torch.randint(0, 3, (8,))
    loader = DataLoader(TensorDataset(images, labels), batch_size=8)
    hooks_before = hook_count(model)

    raised = 0
    rss: list[float] = []
    tensors: list[int] = []
    for index in range(AUDITS):
        model.broken, model.break_next = False, index % RAISE_EVERY == RAISE_EVERY - 1
        try:
            trainer.validate(model, dataloaders=loader, verbose=False)
        except RuntimeError as error:
            assert "head failed during the audit" in str(error)
            raised += 1
        assert hook_count(model) == hooks_before, f"a hook is left after audit {index}"
        if index in (19, AUDITS - 1):  # after a warm-up, and at the end
            rss.append(resident_mib())
            tensors.append(live_tensors())

    assert raised == AUDITS // RAISE_EVERY
    assert callback.n_audits == AUDITS - raised
    assert all(p.grad is None for p in model.parameters())
    with capsys.disabled():
        print(
            f"\n{AUDITS} audits ({raised} raised): resident memory {rss[0]:.1f} MiB after 20, "
            f"{rss[1]:.1f} MiB after {AUDITS} ({rss[1] - rss[0]:+.1f} MiB); live tensors {tensors[0]} -> "
            f"{tensors[1]}"
        )
    assert tensors[1] <= tensors[0]  # nothing an audit made outlives it
    # one leaked copy of the probe's activations per audit would be 80 x 16 x 16 ch x 8 x 8 x 4 B = 5 MiB
    assert rss[1] - rss[0] < 5.0
