"""A patch discriminator (Isola et al. 2017, as in Esser et al. 2021's VQGAN loss) for the autoencoder's adversarial term."""

from __future__ import annotations

import torch
from torch import nn


class PatchDiscriminator(nn.Module):
    """Strided convolutions ending in one realness logit per patch."""

    def __init__(self, *, channels: int = 32, layers: int = 3) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv2d(3, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        width = channels
        for _ in range(layers - 1):
            blocks += [nn.Conv2d(width, width * 2, 4, stride=2, padding=1), nn.GroupNorm(8, width * 2),
                       nn.LeakyReLU(0.2)]
            width *= 2
        blocks.append(nn.Conv2d(width, 1, 3, padding=1))
        self.net = nn.Sequential(*blocks)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (B, 1, h, w) for images in [-1, 1]."""
        return self.net(images)
