"""CamAudit under ``strategy="ddp"`` on two CPU processes: sliced probe, synced values, no lone collective.

The fits run ``tests/ddp_script.py`` in a subprocess (Lightning's "ddp" starts the second rank by running
the script again); each rank writes what it logged to a JSON file that the tests compare.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cam_audit import audit
from cam_audit.errors import CamAuditError
from cam_audit.keys import PER_CLASS_LOGGED_KEYS, SCORES, is_discovery
from cam_audit.lightning import CamAudit
from cam_audit.report import AuditReport
from helpers.models import NoisyClassifier
from helpers.probes import tiny_probe, unannotated_probe

SCRIPT = Path(__file__).with_name("ddp_script.py")
TIMEOUT_S = 400  # a deadlock fails the test instead of hanging the suite

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::cam_audit.lightning.ShortcutWarning"),
    pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available"),
]


def _run_ddp(out: Path, *args: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(out), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=SCRIPT.parent.parent,
    )
    ranks = [json.loads(p.read_text()) for p in sorted(out.glob("rank*.json"))]
    return proc, ranks


def _same(a: float, b: float, rel: float = 0.0) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == pytest.approx(b, rel=rel, abs=rel * 1e-2)


@pytest.fixture(scope="module")
def ddp_fit(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    proc, ranks = _run_ddp(out)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out, ranks


def test_every_rank_logs_the_same_values(ddp_fit):
    _, ranks = ddp_fit
    assert [r["rank"] for r in ranks] == [0, 1]
    assert all(r["world_size"] == 2 and r["error"] is None for r in ranks)
    zero, one = (r["logged"] for r in ranks)
    assert "cam_audit/focus_lift" in zero and zero.keys() == one.keys()
    for key in zero:
        assert _same(zero[key], one[key]), (key, zero[key], one[key])  # bit-equal, not just close
    assert [r["n_audits"] for r in ranks] == [2, 2]
    # the values are synced before they are logged, and Lightning is told so: no sync_dist warning
    assert [r["warnings_from_cam_audit"] for r in ranks] == [[], []]
    assert ranks[0]["best_focus_lift"] == ranks[1]["best_focus_lift"]


def test_synced_values_equal_a_single_process_audit_of_the_same_weights(ddp_fit):
    out, ranks = ddp_fit
    probe = tiny_probe(13)
    model = NoisyClassifier()
    model.load_state_dict(torch.load(out / "weights.pt"))
    # batches unlike the ranks' (4): the paste partners come from all samples in probe order either way
    report = audit(model, probe, target_layer="features", batch_size=5)
    logged = ranks[0]["logged"]
    assert logged["cam_audit/n_samples"] == len(probe) == 13  # both ranks' batches (8 + 5 samples) counted
    assert ranks[0]["report_samples"] == ranks[1]["report_samples"] == 13  # rows gathered on every rank
    for key, value in report.summary.items():
        if is_discovery(key):  # an audit without discovery logs none of its keys
            assert f"cam_audit/{key}" not in logged and math.isnan(value), key
            continue
        # logged values pass through float32
        assert _same(logged[f"cam_audit/{key}"], value, rel=1e-5), (key, logged[f"cam_audit/{key}"], value)
    for name, row in report.per_class.iterrows():
        for key in PER_CLASS_LOGGED_KEYS:
            tag = f"cam_audit/per_class/{name}/{key}"
            assert _same(logged[tag], row[key], rel=1e-5), tag
    expected = report.samples
    assert expected["cf_paste"].notna().sum() > 0  # some samples had a paste partner to compare
    for rank in (0, 1):
        rows = AuditReport.from_json(out / f"report_rank{rank}.json").samples
        assert rows["sample_id"].tolist() == expected["sample_id"].tolist()
        for column in ("label", "target", "prediction", "has_spurious", "cf_flip", "cf_paste"):
            pd.testing.assert_series_equal(rows[column], expected[column], check_dtype=False, obj=column)
        for column in (entry.column for entry in SCORES if entry.per_sample):
            np.testing.assert_allclose(rows[column], expected[column], rtol=1e-5, atol=1e-7, err_msg=column)


def test_discovery_under_ddp_finds_the_cues_of_a_single_process_audit_and_draws_them_once(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from ddp_script import DISCOVER_POLICY, DISCOVER_SEED, PROBE_SIZE

    proc, ranks = _run_ddp(tmp_path, "--discover")
    assert proc.returncode == 0, proc.stderr[-4000:]
    zero, one = (r["logged"] for r in ranks)
    assert zero["cam_audit/n_cues"] == one["cam_audit/n_cues"] >= 1
    assert _same(zero["cam_audit/bg_gap"], one["cam_audit/bg_gap"])
    assert [r["warnings_from_cam_audit"] for r in ranks] == [[], []]
    model = NoisyClassifier()
    model.load_state_dict(torch.load(tmp_path / "weights.pt"))
    probe = unannotated_probe(PROBE_SIZE, seed=DISCOVER_SEED)
    # other batches than the ranks' (4 each, split between them): the cues do not depend on them
    report = audit(model, probe, target_layer="features", batch_size=5, policy=DISCOVER_POLICY, discover=True)
    for rank in (0, 1):
        cues = AuditReport.from_json(tmp_path / f"report_rank{rank}.json").cues
        pd.testing.assert_frame_equal(cues, report.cues, check_exact=False, rtol=1e-6)
    assert report.cues["n_fill"].gt(0).any()  # a cue was tested: its gallery was drawn, on rank 0 alone
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0}).Reload()
    assert len(events.Images("cam_audit/cues")) == ranks[0]["n_audits"] == 2


def test_model_checkpoint_saves_on_the_audited_focus_lift(ddp_fit):
    _, ranks = ddp_fit
    paths = {r["best_model_path"] for r in ranks}
    assert len(paths) == 1 and Path(paths.pop()).is_file()
    assert ranks[0]["best_model_score"] == pytest.approx(ranks[0]["best_focus_lift"])


@pytest.mark.parametrize("fail_rank", [0, 1])
def test_a_failure_on_one_rank_stops_every_rank_instead_of_hanging(tmp_path, fail_rank):
    proc, ranks = _run_ddp(tmp_path, "--fail-on-rank", str(fail_rank))  # TimeoutExpired = deadlock
    assert proc.returncode != 0
    errors = {r["rank"]: r["error"] for r in ranks}
    assert f"simulated failure on rank {fail_rank}" in (errors.get(fail_rank) or proc.stderr)
    other = errors[1 - fail_rank]  # the healthy rank got out of the audit and wrote its result
    assert other is not None and "another rank failed while scoring" in other, other


def test_setup_refuses_sharded_strategies(scene_probe):
    class FSDPStrategy:  # stands in for Lightning's sharded strategies, recognised by name
        pass

    class Trainer:
        strategy = FSDPStrategy()

    with pytest.raises(CamAuditError, match="does not support FSDPStrategy"):
        CamAudit(scene_probe, target_layer="features").setup(Trainer(), NoisyClassifier(), "fit")


def test_the_budget_is_decided_once_for_every_rank(tmp_path):
    """Each rank times itself, so each would decide differently; every rank follows rank 0's decision and
    all audit (or skip) together, the last epoch in full."""
    proc, ranks = _run_ddp(tmp_path, "--max-overhead", "0.5")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert ranks[0]["decisions"] == ranks[1]["decisions"]
    assert [epoch for epoch, _ in ranks[0]["decisions"]] == [0, 1]
    assert ranks[0]["decisions"][-1][1] == "full"
    assert ranks[0]["n_audits"] == ranks[1]["n_audits"] >= 1
    assert ranks[0]["logged"]["cam_audit/overhead"] == ranks[1]["logged"]["cam_audit/overhead"] > 0
    assert ranks[0]["warnings_from_cam_audit"] == [] and ranks[1]["warnings_from_cam_audit"] == []
