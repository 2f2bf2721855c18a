"""A tiny regression task for testing the training loop: fast, deterministic, with noise from example seeds."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file


class ToyTask:
    """Fit a linear map with a small MLP; inputs are jittered by per-example noise."""

    def __init__(self, size: int = 37, nan_at: set[int] | None = None, interrupt_at: int | None = None,
                 dropout: float = 0.1) -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(torch.nn.Linear(2, 32), torch.nn.Tanh(), torch.nn.Dropout(dropout),
                                         torch.nn.Linear(32, 2))
        generator = torch.Generator().manual_seed(1)
        self.x = torch.randn(size, 2, generator=generator)
        self.y = self.x @ torch.tensor([[0.5, -1.0], [1.0, 0.3]])  # easy to fit in a few dozen steps
        self.nan_at, self.interrupt_at, self.calls = nan_at or set(), interrupt_at, 0

    def trainable(self):
        return list(self.model.parameters())

    def dataset_size(self):
        return len(self.x)

    def batch(self, indices):
        return self.x[indices], self.y[indices]

    def loss(self, model, batch, seeds, step_index):
        x, y = batch
        noise = torch.stack([torch.randn(2, generator=torch.Generator().manual_seed(s)) for s in seeds])
        step = self.calls
        self.calls += 1
        if self.interrupt_at is not None and step == self.interrupt_at:
            import signal

            signal.raise_signal(signal.SIGINT)  # what Ctrl-C does mid-step
        loss = ((model(x + 0.05 * noise) - y) ** 2).mean()
        return loss * float("nan") if step in self.nan_at else loss

    def sample(self, model):
        grid = torch.linspace(-1, 1, 8)
        points = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
        out = model(points).reshape(8, 8, 2).permute(2, 0, 1)
        return (torch.cat([out, out[:1]]) * 0.5 + 0.5).clamp(0, 1)[None].repeat(2, 1, 1, 1)

    def save(self, model, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(directory / "model.safetensors"))
