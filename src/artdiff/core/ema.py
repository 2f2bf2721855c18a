"""Exponential moving average of weights with warmup (Karras et al. 2022, appendix; diffusers' EMAModel)."""

from __future__ import annotations

import torch


def ema_decay(step: int, *, decay: float, warmup: bool = True, inv_gamma: float = 1.0, power: float = 2 / 3) -> float:
    """Decay at optimizer step `step`: with warmup 1 - (1 + step / inv_gamma)^-power, capped at `decay`."""
    if not warmup:
        return decay
    if step <= 0:
        return 0.0
    return min(decay, 1 - (1 + step / inv_gamma) ** -power)


class EMA:
    """A float32 shadow of a model's trainable parameters, updated in place after each optimizer step."""

    def __init__(self, parameters: list[torch.nn.Parameter]) -> None:
        self.shadow = [p.detach().to(torch.float32).clone() for p in parameters]

    @torch.no_grad()
    def update(self, parameters: list[torch.nn.Parameter], decay: float) -> None:
        """shadow = decay * shadow + (1 - decay) * parameter."""
        for shadow, param in zip(self.shadow, parameters, strict=True):
            shadow.lerp_(param.detach().to(torch.float32), 1 - decay)

    @torch.no_grad()
    def copy_to(self, parameters: list[torch.nn.Parameter]) -> None:
        """Write the averaged weights into the parameters."""
        for shadow, param in zip(self.shadow, parameters, strict=True):
            param.copy_(shadow.to(param.dtype))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors by index, for safetensors."""
        return {f"ema.{i}": t for i, t in enumerate(self.shadow)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Inverse of state_dict."""
        if len(state) != len(self.shadow):
            raise ValueError(f"EMA state has {len(state)} tensors, the model {len(self.shadow)}")
        self.shadow = [state[f"ema.{i}"].to(torch.float32).clone() for i in range(len(self.shadow))]
