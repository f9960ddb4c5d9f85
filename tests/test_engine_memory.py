"""Memory: nothing from a call outlives it, so streaming many batches keeps memory flat."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import warnings
import weakref

import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from cam_audit.cam import CamEngine


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return resnet18(num_classes=5).eval()


def test_no_autograd_graph_survives_a_call(resnet: nn.Module) -> None:
    """The head's input is the engine's clone of the layer4 leaf; both must be freed after the call."""
    seen = {}

    def keep_weak_references(_module: nn.Module, args: tuple) -> None:
        head_input = args[0]
        seen["head_input"] = weakref.ref(head_input)
        seen["leaf"] = weakref.ref(head_input.grad_fn.next_functions[0][0].variable)  # CloneBackward -> leaf

    handle = resnet.avgpool.register_forward_pre_hook(keep_weak_references)
    try:
        torch.manual_seed(1)
        res = CamEngine(resnet, "layer4")(torch.rand(2, 3, 64, 64))
    finally:
        handle.remove()
    gc.collect()
    assert seen["leaf"]() is None and seen["head_input"]() is None
    assert res.maps.grad_fn is None and res.logits.grad_fn is None  # the result holds no graph either


def _live_tensor_count() -> int:
    gc.collect()
    with warnings.catch_warnings():  # isinstance() on torch's deprecated module attributes warns
        warnings.simplefilter("ignore")
        return sum(1 for obj in gc.get_objects() if isinstance(obj, torch.Tensor))


def test_live_tensors_do_not_grow_with_the_number_of_batches(resnet: nn.Module) -> None:
    engine = CamEngine(resnet, "layer4")
    torch.manual_seed(2)
    batches = [torch.rand(2, 3, 64, 64) for _ in range(8)]
    focus = []

    def stream(count: int) -> int:
        for images in batches[:count]:
            focus.append(engine(images).maps.mean().item())
        return _live_tensor_count()

    after_two = stream(2)
    assert stream(8) == after_two


_STREAM_SCRIPT = textwrap.dedent(
    """
    import resource, sys, torch
    from torchvision.models import resnet18
    from cam_audit.cam import CamEngine
    torch.manual_seed(0)
    engine = CamEngine(resnet18(num_classes=10).eval(), "layer4")
    for _ in range(int(sys.argv[1])):
        engine(torch.rand(8, 3, 128, 128)).maps.sum().item()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
    """
)


@pytest.mark.slow  # two fresh interpreters importing torch
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss is in KiB on Linux only")
def test_peak_memory_is_flat_in_the_number_of_batches() -> None:
    def peak_mib(batches: int) -> float:
        run = subprocess.run(
            [sys.executable, "-c", _STREAM_SCRIPT, str(batches)], capture_output=True, text=True, check=True
        )
        return int(run.stdout.split()[-1]) / 1024

    two, twelve = peak_mib(2), peak_mib(12)
    # one batch's forward needs tens of MiB; keeping one graph per batch would add that ten times over
    assert twelve - two < 16, f"peak RSS grew from {two:.0f} MiB (2 batches) to {twelve:.0f} MiB (12 batches)"
