"""CLIP guidance losses and gradient guards against values worked out by hand."""

import math

import pytest
import torch

from artdiff.core.clip_losses import (
    clamp_gradient_rms,
    cos_spherical_distance,
    finite_or_zero,
    normalized_prompt_weights,
    prompt_loss,
    range_loss,
    saturation_loss,
    spherical_distance,
    tv_loss,
)

PI2 = math.pi**2
E1, E2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])  # (1, 2) unit vectors at 90 degrees


def test_spherical_distance_is_half_the_squared_angle():
    # 2 * arcsin(||x - y|| / 2)^2 = theta^2 / 2 for unit vectors:
    # same direction theta = 0 -> 0; orthogonal ||x - y|| = sqrt 2, arcsin(sqrt2 / 2) = pi/4 -> 2 (pi/4)^2 = pi^2/8;
    # 60 degrees -> (pi/3)^2 / 2 = pi^2/18; opposite ||x - y|| = 2, arcsin 1 = pi/2 -> pi^2/2.
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, math.sqrt(3) / 2], [-1.0, 0.0]])  # (4, 2)
    d = spherical_distance(E1, y)
    assert d.shape == (1, 4)
    assert torch.allclose(d[0], torch.tensor([0.0, PI2 / 8, PI2 / 18, PI2 / 2]), atol=1e-5)


def test_spherical_distance_normalises_its_inputs():
    scaled = spherical_distance(torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 0.25]]))
    assert float(scaled) == pytest.approx(PI2 / 8, abs=1e-6)


def test_distances_are_pairwise_and_broadcast_leading_dimensions():
    g = torch.Generator().manual_seed(0)
    cuts, prompts = torch.randn(5, 4, generator=g), torch.randn(3, 4, generator=g)
    d = spherical_distance(cuts, prompts)
    assert d.shape == (5, 3)
    assert float(d[2, 1]) == pytest.approx(float(spherical_distance(cuts[2:3], prompts[1:2])), abs=1e-6)
    assert spherical_distance(torch.randn(2, 5, 4, generator=g), prompts).shape == (2, 5, 3)
    assert cos_spherical_distance(torch.randn(2, 5, 4, generator=g), prompts).shape == (2, 5, 3)
    with pytest.raises(ValueError, match="same D"):
        spherical_distance(cuts, torch.randn(3, 6, generator=g))


def test_cos_spherical_adds_an_exponential_cosine_term():
    # spherical + 0.5 exp(2 (1 - cos)): same -> 0 + 0.5 e^0 = 0.5; orthogonal -> pi^2/8 + 0.5 e^2;
    # opposite -> pi^2/2 + 0.5 e^4.
    y = torch.tensor([[2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    d = cos_spherical_distance(E1, y)[0]
    expected = torch.tensor([0.5, PI2 / 8 + 0.5 * math.e**2, PI2 / 2 + 0.5 * math.e**4])
    assert torch.allclose(d, expected, atol=1e-4)


def test_antipodal_and_identical_embeddings_give_finite_values_and_gradients():
    x = torch.tensor([[1.0, 0.0], [1.0, 1e-8]], requires_grad=True)
    d = spherical_distance(x, torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
    assert torch.isfinite(d).all()
    spherical_distance(x[:1], E1).sum().backward()  # identical: the chord norm's gradient at 0
    assert torch.isfinite(x.grad).all()


def test_prompt_loss_weights_the_prompts_and_averages_the_cuts():
    # Cuts (1, 0) and (0, 1) against prompts (1, 0) and (0, 1): each prompt is 0 from one cut and pi^2/8 from
    # the other, so each prompt's cut mean is pi^2/16. Weights [3, 1] -> [0.75, 0.25] -> pi^2/16.
    cuts = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # (B=1, N=2, D=2)
    prompts = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # (P=2, D=2)
    assert prompt_loss(cuts, prompts, [3.0, 1.0]).shape == (1,)
    assert float(prompt_loss(cuts, prompts, [3.0, 1.0])[0]) == pytest.approx(PI2 / 16, abs=1e-6)
    # Both cuts at (1, 0): prompt means [0, pi^2/8]; weights [3, 1] -> 0.25 * pi^2/8 = pi^2/32.
    same = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    assert float(prompt_loss(same, prompts, [3.0, 1.0])[0]) == pytest.approx(PI2 / 32, abs=1e-6)
    # Weights [2, -1] sum to 1 and stay as they are: 2 * 0 - 1 * pi^2/8; the negative prompt pushes away.
    assert float(prompt_loss(same, prompts, [2.0, -1.0])[0]) == pytest.approx(-PI2 / 8, abs=1e-6)
    # Weights [-1, -1]: |sum| = 2 -> [-0.5, -0.5] (the sign is kept) -> -0.5 * pi^2/8.
    assert float(prompt_loss(same, prompts, torch.tensor([-1.0, -1.0]))[0]) == pytest.approx(
        -PI2 / 16, abs=1e-6
    )
    # cos_spherical: prompt means [0.5, pi^2/8 + 0.5 e^2]; weights [1, 1] -> [0.5, 0.5].
    cos = prompt_loss(same, prompts, [1.0, 1.0], loss="cos_spherical")
    assert float(cos[0]) == pytest.approx(0.5 * (0.5 + PI2 / 8 + 0.5 * math.e**2), abs=1e-4)


def test_prompt_loss_matches_discos_order_and_keeps_images_independent():
    g = torch.Generator().manual_seed(1)
    cuts, prompts = torch.randn(3, 4, 8, generator=g), torch.randn(2, 8, generator=g)  # (B, N, D), (P, D)
    weights = torch.tensor([1.5, -0.5])
    # Disco: per cut, the weighted sum over prompts of distances, then the mean over cuts.
    w = weights / weights.sum().abs()
    disco = torch.stack([spherical_distance(cuts[b], prompts).mul(w).sum(1).mean(0) for b in range(3)])
    ours = prompt_loss(cuts, prompts, weights)
    assert torch.allclose(ours, disco, atol=1e-6)
    assert torch.allclose(prompt_loss(cuts[1:2], prompts, weights), ours[1:2], atol=1e-6)


def test_weights_that_sum_to_zero_and_bad_shapes_are_refused():
    cuts, prompts = torch.randn(1, 2, 4), torch.randn(2, 4)
    with pytest.raises(ValueError, match="prompt weights must not sum to 0"):
        prompt_loss(cuts, prompts, [1.0, -1.0])
    with pytest.raises(ValueError, match="prompt weights must not sum to 0"):
        normalized_prompt_weights(torch.tensor([0.0]), like=cuts)
    with pytest.raises(ValueError, match="one weight per prompt"):
        prompt_loss(cuts, prompts, [1.0])
    with pytest.raises(ValueError, match=r"\(B, N, D\)"):
        prompt_loss(cuts[0], prompts, [1.0, 1.0])
    with pytest.raises(ValueError, match="unknown CLIP loss"):
        prompt_loss(cuts, prompts, [1.0, 1.0], loss="l2")


def test_tv_loss_by_hand():
    # [[0, 1], [2, 3]] padded right/down by replication: [[0, 1, 1], [2, 3, 3], [2, 3, 3]].
    # Right differences 1, 0, 1, 0 (squares sum 2); down differences 2, 2, 0, 0 (squares sum 8): 10 / 4 = 2.5.
    img = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    assert float(tv_loss(img[None, None])[0]) == pytest.approx(2.5)
    # A second, flat channel adds zero over twice as many elements: 1.25. A flat image has none.
    two = torch.stack([img, torch.full((2, 2), 7.0)])[None]  # (1, 2, 2, 2)
    batch = torch.cat([two, torch.zeros(1, 2, 2, 2)])
    assert tv_loss(batch).tolist() == pytest.approx([1.25, 0.0])


def test_range_and_saturation_losses_by_hand():
    # Values -2, 0, 0.5, 1.5: excess over [-1, 1] is -1, 0, 0, 0.5.
    # Range: (1 + 0.25) / 4 = 0.3125; saturation: (1 + 0.5) / 4 = 0.375. An image within range: 0 for both.
    x = torch.stack([torch.tensor([[[-2.0, 0.0], [0.5, 1.5]]]), torch.full((1, 2, 2), 0.9)])  # (2, 1, 2, 2)
    assert range_loss(x).tolist() == pytest.approx([0.3125, 0.0])
    assert saturation_loss(x).tolist() == pytest.approx([0.375, 0.0])
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        tv_loss(x[0])


def test_clamp_caps_large_gradients_per_image_and_leaves_small_ones():
    small = torch.full((1, 3, 4, 4), 0.01)  # RMS 0.01 <= 0.05: unchanged
    large = torch.full((1, 3, 4, 4), 1.0)  # RMS 1 -> scaled by 0.05 to 0.05 everywhere
    g = torch.Generator().manual_seed(2)
    noisy = torch.randn(1, 3, 4, 4, generator=g) * 10
    zero = torch.zeros(1, 3, 4, 4)
    out = clamp_gradient_rms(torch.cat([small, large, noisy, zero]), 0.05)
    assert torch.equal(out[0], small[0])
    assert torch.allclose(out[1], torch.full((3, 4, 4), 0.05))
    assert float(out[2].pow(2).mean().sqrt()) == pytest.approx(0.05, rel=1e-5)
    assert torch.allclose(out[2] / out[2].norm(), noisy[0] / noisy[0].norm(), atol=1e-6)  # same direction
    assert torch.equal(out[3], zero[0])  # no 0/0
    with pytest.raises(ValueError, match="positive"):
        clamp_gradient_rms(small, 0.0)


def test_non_finite_images_are_zeroed_and_reported():
    grad = torch.ones(3, 1, 2, 2)
    grad[1, 0, 0, 1] = float("nan")
    grad[2, 0, 1, 0] = float("-inf")
    out, skipped = finite_or_zero(grad)
    assert skipped.tolist() == [False, True, True]
    assert torch.equal(out[0], torch.ones(1, 2, 2))
    assert torch.equal(out[1:], torch.zeros(2, 1, 2, 2))
    assert not finite_or_zero(torch.ones(2, 3))[1].any()
