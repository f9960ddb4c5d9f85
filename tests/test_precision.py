"""CamAudit under mixed precision, with torch.compile'd modules and channels_last weights."""

from __future__ import annotations

import pytest
import torch

import cam_audit.pipeline.scoring as scoring_module
from cam_audit import CamAudit
from cam_audit.keys import SUMMARY_KEYS
from cam_audit.pipeline import audit
from helpers.models import NoisyClassifier
from helpers.probes import tiny_probe
from helpers.trainers import make_trainer, tiny_data

pytestmark = pytest.mark.filterwarnings("ignore::cam_audit.lightning.ShortcutWarning")


@pytest.fixture()
def audit_batches(monkeypatch):
    """For each audited batch: the dtype of the target layer's output and of the map."""
    seen: list[tuple[torch.dtype, torch.dtype]] = []
    real = scoring_module.score_probe

    def spy(engine, *args, **kwargs):
        layer_dtypes: list[torch.dtype] = []
        handle = engine.model.features.register_forward_hook(lambda m, a, out: layer_dtypes.append(out.dtype))
        user_on_batch = kwargs["on_batch"]

        def on_batch(batch, maps, rows):
            seen.append((layer_dtypes[-1], maps.dtype))
            if user_on_batch is not None:  # audit() of the reference passes none
                user_on_batch(batch, maps, rows)

        try:
            return real(engine, *args, **{**kwargs, "on_batch": on_batch})
        finally:
            handle.remove()

    monkeypatch.setattr(scoring_module, "score_probe", spy)
    return seen


def _fit(tmp_path, model, **overrides) -> CamAudit:
    callback = CamAudit(tiny_probe(), target_layer="features", batch_size=6, log_images=False)
    trainer = make_trainer(tmp_path, callbacks=[callback], max_epochs=1, **overrides)
    trainer.fit(model, datamodule=tiny_data())
    assert callback.n_audits == 1 and callback.last_report is not None
    return callback


def test_bf16_mixed_runs_the_model_in_bf16_and_scores_float32_maps(tmp_path, audit_batches):
    torch.manual_seed(0)
    model = NoisyClassifier()
    callback = _fit(tmp_path, model, precision="bf16-mixed")
    assert audit_batches and all(layer == torch.bfloat16 for layer, _ in audit_batches)  # autocast was on
    assert all(maps == torch.float32 for _, maps in audit_batches)
    summary = callback.last_report.summary
    reference = audit(model, tiny_probe(), target_layer="features", batch_size=6).summary  # float32
    # bf16 keeps 8 significant bits (relative step 2**-8 = 0.4%); a few such roundings per layer
    for key in ("focus", "focus_lift", "spurious_mass", "relevance_rank"):
        assert summary[key] == pytest.approx(reference[key], rel=0.05), key


def test_16_mixed_on_cpu_is_turned_into_bf16_mixed_by_lightning_and_audits(tmp_path, audit_batches):
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="bf16-mixed"):
        callback = _fit(tmp_path, NoisyClassifier(), precision="16-mixed")
    assert all(layer == torch.bfloat16 and maps == torch.float32 for layer, maps in audit_batches)
    assert callback.last_report.summary["n_samples"] == len(tiny_probe())


def test_channels_last_model_gives_the_same_audit(tmp_path):
    torch.manual_seed(0)
    model = NoisyClassifier().to(memory_format=torch.channels_last)
    callback = _fit(tmp_path, model)
    dense = NoisyClassifier()
    dense.load_state_dict({k: v.contiguous() for k, v in model.state_dict().items()})
    reference = audit(dense, tiny_probe(), target_layer="features", batch_size=6).summary
    for key in SUMMARY_KEYS:  # only the memory layout differs: every number agrees
        assert callback.last_report.summary[key] == pytest.approx(reference[key], rel=1e-4, nan_ok=True), key


@pytest.mark.slow
def test_compiled_submodule_is_audited_without_changing_the_compiled_forward(tmp_path):
    torch.manual_seed(0)
    model = NoisyClassifier()
    model.features = torch.compile(model.features)
    callback = _fit(tmp_path, model)
    assert callback.last_report.summary["n_samples"] == len(tiny_probe())
    eager = NoisyClassifier()
    eager.load_state_dict({k.replace("._orig_mod", ""): v for k, v in model.state_dict().items()})
    reference = audit(eager, tiny_probe(), target_layer="features", batch_size=6).summary
    assert callback.last_report.summary["focus_lift"] == pytest.approx(reference["focus_lift"], rel=1e-4)
