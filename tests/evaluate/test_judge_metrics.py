"""Adherence counts the labels a prompt asked for; FD-judge is reported beside a real-vs-real baseline."""

import pytest
import torch

from artdiff.evaluate.judge_metrics import adherence, fd_judge
from artdiff.models.judge import Judge, JudgeSpec


@pytest.fixture
def brightness_judge():
    """A judge whose 'ground' head reads mean brightness: light when bright, dark otherwise."""
    torch.manual_seed(0)
    judge = Judge(JudgeSpec(labels={"ground": ["dark", "light"], "style": ["a", "b"]}, image_size=8,
                            widths=(8,), feature_dim=8)).eval()
    judge.features = lambda images: images.float().mean((1, 2, 3))[:, None].repeat(1, 8)  # (B, 8)
    with torch.no_grad():
        judge.heads["ground"].weight.copy_(torch.tensor([[-1.0] * 8, [1.0] * 8]))
        judge.heads["ground"].bias.copy_(torch.tensor([4.0, -4.0]))  # light when the mean exceeds 0.5
    return judge


def test_adherence_scores_only_named_kinds(brightness_judge):
    images = torch.stack([torch.full((3, 8, 8), v) for v in (0.9, 0.1, 0.8, 0.2)])
    wanted = [{"ground": "light"}, {"ground": "light"}, {"ground": "light"}, {}]
    assert adherence(brightness_judge, images, wanted) == {"ground": 2 / 3}
    with pytest.raises(ValueError, match="label sets"):
        adherence(brightness_judge, images, wanted[:2])


def test_fd_judge_beside_its_baseline(brightness_judge):
    generator = torch.Generator().manual_seed(1)
    real = torch.rand(400, 3, 8, 8, generator=generator) * 0.5 + 0.25
    close = torch.rand(100, 3, 8, 8, generator=generator) * 0.5 + 0.25
    far = torch.rand(100, 3, 8, 8, generator=generator) * 0.2 + 0.75
    near_report, far_report = fd_judge(brightness_judge, close, real), fd_judge(brightness_judge, far, real)
    assert near_report.samples == 100 and near_report.baseline == far_report.baseline
    assert far_report.ratio > 10 * near_report.ratio
    with pytest.raises(ValueError, match="at least 800"):
        fd_judge(brightness_judge, real, real)
