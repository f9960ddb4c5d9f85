"""Layer names as users write them: aliases, compiled submodules and typos at any depth."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo.testing
from torch import nn

from cam_audit import CamEngine, audit
from cam_audit.cam import resolve_target_layer, spatial_layers
from cam_audit.errors import TargetLayerError
from cam_audit.synthetic import SceneNet, make_scenes
from helpers.models import hook_count


class Aliased(nn.Module):
    """``self.features = self.net.features``: one module under two names."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = SceneNet(width=4)
        self.features = self.net.features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


@pytest.fixture(scope="module")
def probe():
    return make_scenes(6, image_size=32, watermark="correlated", seed=5).to_probe()


def test_a_module_registered_under_two_names_is_found_under_either(probe):
    model = Aliased()
    images = torch.rand(2, 3, 32, 32)
    for name in ("features", "net.features"):
        engine = CamEngine(model, name)
        assert engine.layer_name == name
        assert resolve_target_layer(model, name, images)[1] is model.net.features
    by_alias = audit(model, probe, target_layer="features", batch_size=3)
    by_path = audit(model, probe, target_layer="net.features", batch_size=3)
    plain = audit(model.net, probe, target_layer="features", batch_size=3)
    for report in (by_alias, by_path):
        assert report.samples["focus"].tolist() == plain.samples["focus"].tolist()
    # the traced forward records the shared module once, under its first name
    names = spatial_layers(model, images)
    assert names.count("net.features") == 1 and "features" not in names


def test_a_typo_next_to_an_alias_is_a_target_layer_error_with_the_closest_names():
    with pytest.raises(TargetLayerError) as error:
        CamEngine(Aliased(), "featurs")
    assert "target_layer 'featurs' not found in Aliased" in str(error.value)
    assert "did you mean 'features'" in str(error.value)


@pytest.mark.parametrize(
    ("typo", "suggested"),
    [("net.featurs", "net.features"), ("net.haed", "net.head"), ("net.stem.0.O", "net.stem.0.0")],
)
def test_a_nested_typo_suggests_the_closest_names_at_any_depth(typo, suggested):
    with pytest.raises(TargetLayerError) as error:
        CamEngine(Aliased(), typo)
    guesses = str(error.value).split("did you mean ")[1].split("?")[0]
    assert f"'{suggested}'" in guesses.split(" or ")


def test_a_name_far_from_every_layer_lists_the_candidate_blocks_without_guessing():
    with pytest.raises(TargetLayerError) as error:
        CamEngine(Aliased(), "transformer_block_11")
    message = str(error.value)
    assert "did you mean" not in message and "blocks holding convolutions:" in message


def test_a_compiled_submodule_is_audited_like_the_eager_model_without_recompiling(probe):
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager = SceneNet(width=4).eval()
    model = SceneNet(width=4).eval()
    model.load_state_dict(eager.state_dict())
    counter = torch._dynamo.testing.CompileCounter()
    model.features = torch.compile(model.features, backend=counter)
    images = torch.rand(2, 3, 32, 32)
    expected = model(images)
    assert counter.frame_count == 1
    hooks = hook_count(model)
    reference = audit(eager, probe, target_layer="features", batch_size=3)
    for name in ("features", "features._orig_mod", None):
        report = audit(model, probe, target_layer=name, batch_size=3)
        assert report.meta["target_layer"] == "features"
        assert report.samples["focus"].tolist() == reference.samples["focus"].tolist()
    assert CamEngine(model, model.features).layer_name == "features"  # the wrapper module itself
    assert hook_count(model) == hooks
    torch.testing.assert_close(model(images), expected)
    assert counter.frame_count == 1, "the audit forced a recompile of the compiled submodule"
