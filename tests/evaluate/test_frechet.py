"""The Fréchet distance matches its closed form for Gaussians and is zero for identical sets."""

import torch

from artdiff.evaluate.frechet import frechet_between, frechet_distance


def test_closed_form_for_diagonal_gaussians():
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    var1, var2 = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 9.0])
    expected = ((mu1 - mu2) ** 2).sum() + ((var1.sqrt() - var2.sqrt()) ** 2).sum()  # 5 + 1 + 1 + 0
    got = frechet_distance(mu1.double(), torch.diag(var1).double(), mu2.double(), torch.diag(var2).double())
    assert abs(got - float(expected)) < 1e-9


def test_identical_sets_are_at_distance_zero_and_order_does_not_matter():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(200, 8, generator=generator)
    b = torch.randn(200, 8, generator=generator) * 2 + 1
    assert frechet_between(a, a) < 1e-8
    assert abs(frechet_between(a, b) - frechet_between(b, a)) < 1e-6
    assert frechet_between(a, b) > frechet_between(a, torch.randn(200, 8, generator=generator))


def test_non_commuting_covariances_match_the_scalar_formula():
    rotation = torch.tensor([[0.6, -0.8], [0.8, 0.6]], dtype=torch.float64)
    s1 = torch.diag(torch.tensor([4.0, 1.0], dtype=torch.float64))
    s2 = rotation @ s1 @ rotation.T  # same spectrum, rotated: FD = tr(S1 + S2 - 2 (S1^½ S2 S1^½)^½)
    m = torch.linalg.cholesky(s1).T
    middle = m @ s2 @ m.T
    eig = torch.linalg.eigvalsh(middle).clamp_min(0).sqrt().sum()
    expected = float(torch.trace(s1) + torch.trace(s2) - 2 * eig)
    got = frechet_distance(torch.zeros(2, dtype=torch.float64), s1, torch.zeros(2, dtype=torch.float64), s2)
    assert abs(got - expected) < 1e-9 and got > 0
