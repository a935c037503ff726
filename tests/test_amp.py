"""--amp bf16 on CPU: the backbone under bf16 autocast, the head and the loss in float32, weights
moving; refused with the flag named on a CPU without bf16 instructions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import geoposenet.devices as devices
from geoposenet.cli import main
from geoposenet.config import resolve_config
from geoposenet.devices import check_amp
from geoposenet.distributed import Objective, World
from geoposenet.errors import InputError
from geoposenet.losses import make_loss
from geoposenet.machine import cpu_has_bf16
from geoposenet.models import PoseNet
from geoposenet.step import TrainingStep

needs_bf16 = pytest.mark.skipif(
    not cpu_has_bf16(), reason="this CPU has no bf16 instructions (avx512_bf16, amx_bf16)"
)


@needs_bf16
@pytest.mark.parametrize("loss", ["learned", "reprojection"])
def test_a_bf16_training_step_on_cpu_changes_the_weights(loss: str) -> None:
    config = resolve_config(
        "cpu", backbone="mobilenet_v3_small", pretrained="none", resize=32, crop=(32, 32),
        batch_size=4, amp="bf16", jitter=0.2, loss=loss,
    )  # fmt: skip
    torch.manual_seed(0)
    model = PoseNet(config.model_config()).train()
    objective = Objective(model, make_loss(loss, "l1", 500.0, 0.0, -3.0))
    groups = [{"params": list(model.parameters())}, {"params": list(objective.loss.parameters())}]
    optimizer = torch.optim.Adam(groups, lr=1e-3)
    step = TrainingStep(objective, optimizer, (1.0, 1.0), config, World())
    dtypes: dict[str, torch.dtype] = {}
    first_conv = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d))

    def record(name: str) -> Any:
        def hook(module: torch.nn.Module, inputs: object, out: torch.Tensor) -> None:
            dtypes.setdefault(name, out.dtype)

        return hook

    first_conv.register_forward_hook(record("conv"))
    model.head.register_forward_hook(record("head"))
    points = torch.randn(4, 8, 3) + torch.tensor([0.0, 0.0, 5.0])
    batch = {
        "image": torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8),
        "position": torch.randn(4, 3),
        "quaternion": torch.nn.functional.normalize(torch.randn(4, 4), dim=1),
        "points": points,
        "points_mask": torch.ones(4, 8, dtype=torch.bool),
    }
    before = {k: v.detach().clone() for k, v in objective.state_dict().items()}
    result = step(batch, lr=1e-3, seed=1)
    assert result.finite and all(torch.isfinite(torch.tensor(v)) for v in result.parts.values())
    assert dtypes == {"conv": torch.bfloat16, "head": torch.float32}
    after = objective.state_dict()
    assert all(after[k].dtype == v.dtype for k, v in before.items())  # float32 weights
    assert not torch.equal(before["model.head.weight"], after["model.head.weight"])
    assert not torch.equal(before["model.backbone.features.0.0.weight"],
                           after["model.backbone.features.0.0.weight"])  # fmt: skip


@needs_bf16
def test_train_with_amp_bf16_on_cpu(tiny_scene_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    flags = [
        "--preset", "cpu", "--backbone", "mobilenet_v3_small", "--pretrained", "none",
        "--resize", "48", "--crop", "48x64", "--batch-size", "4", "--epochs", "1",
        "--no-progress", "--val", "none", "--amp", "bf16", "--device", "cpu",
    ]  # fmt: skip
    assert main(["train", str(tiny_scene_dir), "--out", str(run), *flags]) == 0
    assert (run / "last.pt").is_file()


def test_bf16_is_refused_on_a_cpu_without_it(
    tiny_scene_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: False)
    with pytest.raises(InputError, match=r"--amp bf16: this CPU .* no bf16 instructions"):
        check_amp("bf16", "cpu")
    check_amp("bf16", "cuda")  # a GPU's bf16 does not depend on the CPU
    run = tmp_path / "run"
    code = main(
        ["train", str(tiny_scene_dir), "--out", str(run), "--preset", "cpu", "--amp", "bf16",
         "--device", "cpu", "--pretrained", "none"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert "error: --amp bf16: this CPU" in err and "use --amp none" in err
    assert "Traceback" not in err and not run.exists()
