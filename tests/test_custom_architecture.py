"""The README's "Use your own architecture" example, run as written: any nn.Module trains and samples.

The diffusion core never imports ``unet``: a model is anything called as ``model(x, t_encoding)`` with
x = ``[B, C_cond + C, H, W]`` (condition channels first, then x_t) and t_encoding = ``[B, D]``,
returning the predicted noise ``[B, C, H, W]``.
"""

from __future__ import annotations

import torch
from torch import nn

from ddpm import Diffusion, SimpleSampler


# ---- README example starts ----
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
# ---- README example ends ----


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
