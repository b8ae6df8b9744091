"""docs/architecture.md's "Use your own architecture" section, run as written: any nn.Module trains and samples,
and a network registered in ``unet/`` trains, evaluates and predicts through the three commands.

The diffusion core never imports ``unet``: a model is anything called as ``model(x, t_encoding)`` with
x = ``[B, C_cond + C, H, W]`` (condition channels first, then x_t) and t_encoding = ``[B, D]``,
returning the predicted noise ``[B, C, H, W]``.
"""

from __future__ import annotations

import importlib
import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from torch import nn

from ddpm import Diffusion, SimpleSampler
from experiments.checkpoint import read_checkpoint
from experiments.config.presets import DEMO
from experiments.inference.loading import load_for_inference
from training_helpers import IMAGE_SIZE, make_tiny_data
from unet import ResNet

ROOT = Path(__file__).resolve().parents[1]


# ---- docs/architecture.md example starts ----
class TinyDenoiser(nn.Module):
    """Predicts the noise of x_t from [condition, x_t] ([B, 2, H, W]) and the time encoding [B, D]."""

    def __init__(self, time_encoding_dim: int = 256, width: int = 16) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(2, width, kernel_size=3, padding=1)
        self.time = nn.Linear(time_encoding_dim, width)
        self.conv_out = nn.Conv2d(width, 1, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor, t_encoding: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv_in(x) + self.time(t_encoding)[:, :, None, None])
        return self.conv_out(h)


def train_and_sample(low_res, high_res, diffusion: Diffusion, steps: int, seed: int = 0):
    """low_res, high_res: [B, 1, H, W] in [-1, 1]. Returns the trained model and super-resolved images."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = TinyDenoiser(diffusion.time_encoding_dim)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = diffusion.training_loss(model, high_res, condition=low_res, generator=generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    images = SimpleSampler()(diffusion, model, condition=low_res, generator=generator, progress=False)
    return model, images
# ---- docs/architecture.md example ends ----


def _pair(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    high_res = torch.rand(4, 1, 16, 16, generator=generator) * 2 - 1
    low_res = nn.functional.avg_pool2d(high_res, 4).repeat_interleave(4, -1).repeat_interleave(4, -2)
    return low_res, high_res


def _mean_loss(model, diffusion, low_res, high_res) -> float:
    generator = torch.Generator().manual_seed(123)  # the same t and noise for every model compared
    with torch.no_grad():
        return sum(
            diffusion.training_loss(model, high_res, condition=low_res, generator=generator).item()
            for _ in range(20)
        ) / 20


def test_custom_module_trains_and_samples_with_the_diffusion_core():
    diffusion = Diffusion(steps=20, beta_start=1e-3, beta_end=0.4, time_encoding_dim=32)
    low_res, high_res = _pair()
    untrained, _ = train_and_sample(low_res, high_res, diffusion, steps=0)
    trained, images = train_and_sample(low_res, high_res, diffusion, steps=20)

    assert _mean_loss(trained, diffusion, low_res, high_res) < 0.6 * _mean_loss(untrained, diffusion, low_res, high_res)
    assert images.shape == high_res.shape
    assert torch.isfinite(images).all()
    _, again = train_and_sample(low_res, high_res, diffusion, steps=20)
    torch.testing.assert_close(again, images, rtol=0, atol=0)  # seeded end to end


# ------------------------------------------------------------------ the fork recipe
def _docs_section() -> str:
    text = (ROOT / "docs" / "architecture.md").read_text()
    start = text.index("## Use your own architecture")
    return text[start:text.index("\n## ", start + 1)]


def test_the_docs_quote_the_fork_file_and_its_import_line_as_they_are():
    section = _docs_section()
    fork_code = next(block for block in re.findall(r"```python\n(.*?)```", section, re.S) if "@register_network" in block)
    assert fork_code in (ROOT / "unet" / "resnet.py").read_text()
    import_line = re.search(r"`(from unet\.resnet import [^`]+)`", section).group(1)
    assert import_line in (ROOT / "unet" / "__init__.py").read_text().splitlines()


# Appended to the documented commands (later flags win): tiny data, network and schedule, seconds on a CPU.
TINY = {
    "train": "--crop none --train.epochs 1 --train.batch_size 4 --steps 10 --sampling-steps 3 --eval.batch_size 2 "
             "--max-test-images 2 --validation-images 2 --figure-images 1 --every 1 --device cpu "
             "--network.width 8 --network.blocks 2 --network.time_encoding_dim 8 --no-progress",
    "evaluate": "--max-images 2 --device cpu --no-progress",
    "predict": "--tile 16 --overlap 4 --quiet --device cpu",
}


def _run_documented_command(line: str) -> int:
    """``python -m experiments.X ARGS`` in-process: ``experiments.X.main(ARGS + TINY[X])``."""
    program, *args = shlex.split(line)[2:]
    return importlib.import_module(program).main(args + TINY[program.split(".")[1]].split())


@pytest.mark.slow
def test_the_documented_fork_trains_evaluates_and_predicts_through_the_commands(tmp_path, monkeypatch, capsys):
    commands = re.findall(r"^python -m experiments\.\w+ .*$", _docs_section(), re.M)
    assert [shlex.split(c)[2] for c in commands] == ["experiments.train", "experiments.evaluate", "experiments.predict"]
    monkeypatch.chdir(tmp_path)
    make_tiny_data(tmp_path / DEMO.data.root)  # where the demo preset reads
    (tmp_path / "my_cells").mkdir()
    tifffile.imwrite(tmp_path / "my_cells" / "cell.tif", np.random.default_rng(0).random((IMAGE_SIZE, 21), dtype=np.float32))

    for line in commands:
        assert _run_documented_command(line) == 0, capsys.readouterr().err

    config = json.loads((tmp_path / "runs" / "resnet" / "config.json").read_text())
    assert config["network"] == {"kind": "resnet", "in_channels": 2, "out_channels": 1, "width": 8, "blocks": 2,
                                 "time_encoding_dim": 8}
    predictor = load_for_inference(tmp_path / "runs" / "resnet" / "best.pt", "cpu")
    assert isinstance(predictor.model, ResNet)
    # The documented --network.width 32 was overridden by the appended 8: 2 blocks of two 3x3 convs and a
    # time projection, plus the input and output convolutions (weights and biases).
    width, blocks, time = 8, 2, 8
    expected = (2 * 9 * width + width) + blocks * (2 * (width * 9 * width + width) + time * width + width) + (width * 9 + 1)
    assert sum(p.numel() for p in predictor.model.parameters()) == expected
    assert set(read_checkpoint(tmp_path / "runs" / "resnet" / "best.pt").weights["model"]) == set(ResNet(predictor.config.network).state_dict())
    assert (tmp_path / "runs" / "resnet" / "evaluation" / "evaluation.json").is_file()
    prediction = tifffile.imread(next((tmp_path / "predictions").glob("cell*.tif")))
    assert prediction.shape == (IMAGE_SIZE, 21) and np.isfinite(prediction).all()
