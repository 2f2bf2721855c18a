"""Cutouts for CLIP guidance: shapes, range, seeded determinism, gradients, greyscale, fixed mode and bad input."""

import pytest
import torch
import torch.nn.functional as F

from artdiff.generate.cutouts import CdaCutouts, DiscoCutouts, cda_pad, pad_to_square

S = 16


def images(requires_grad: bool = False) -> torch.Tensor:
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1  # (B, 3, H, W) in [-1, 1]
    return x.requires_grad_(requires_grad)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def makers(**kw):
    return [CdaCutouts(cutn=8, size=S, **kw), DiscoCutouts(overview=3, innercut=5, size=S, ic_grey_p=0.2, **kw)]


def equal_channels(cuts: torch.Tensor) -> torch.Tensor:
    """Return (..., ) bool: whether each cut's three channels agree."""
    return (cuts[..., 0, :, :] - cuts[..., 1, :, :]).abs().amax((-2, -1)).lt(1e-6) & (
        cuts[..., 0, :, :] - cuts[..., 2, :, :]).abs().amax((-2, -1)).lt(1e-6)


@pytest.mark.parametrize("cutn", [1, 3, 4, 9])
def test_cda_shape_and_count(cutn):
    maker = CdaCutouts(cutn=cutn, size=S)
    assert maker.count == cutn
    assert maker(images(), generator=gen(0)).shape == (2, cutn, 3, S, S)


@pytest.mark.parametrize("overview, innercut", [(0, 3)] + [(o, i) for o in range(1, 6) for i in (0, 3)])
def test_disco_shape_and_count(overview, innercut):
    maker = DiscoCutouts(overview=overview, innercut=innercut, size=S)
    assert maker.count == overview + innercut
    assert maker(images(), generator=gen(0)).shape == (2, overview + innercut, 3, S, S)


def test_non_square_images_and_upsampling():
    x = torch.rand(1, 3, 20, 36) * 2 - 1
    for maker in [CdaCutouts(cutn=5, size=24), DiscoCutouts(overview=2, innercut=3, size=24)]:
        cuts = maker(x, generator=gen(1))
        assert cuts.shape == (1, 5, 3, 24, 24)
        assert cuts.min() >= -1 and cuts.max() <= 1


@pytest.mark.parametrize("skip_augs", [False, True])
def test_values_stay_in_range(skip_augs):
    # Disco's noise is bounded by its colour jitter's clamp (torchvision clamps too), so every cut stays in range.
    for maker in makers(skip_augs=skip_augs):
        cuts = maker(images(), generator=gen(3))
        assert cuts.min() >= -1 and cuts.max() <= 1


def test_seed_gives_same_cuts_and_another_seed_differs():
    for maker in makers():
        a, b, c = (maker(images(), generator=gen(s)) for s in (5, 5, 6))
        assert torch.equal(a, b)
        assert not torch.allclose(a, c)


def test_global_rng_is_not_used():
    for maker in makers():
        torch.manual_seed(0)
        a = maker(images(), generator=gen(5))
        torch.manual_seed(1)
        assert torch.equal(a, maker(images(), generator=gen(5)))


def test_skip_augs_still_draws_positions_but_fixed_draws_nothing():
    cda = CdaCutouts(cutn=8, size=S, skip_augs=True)
    assert not torch.allclose(cda(images(), generator=gen(1)), cda(images(), generator=gen(2)))
    for maker in makers(fixed=True):
        a = maker(images(), generator=gen(1))
        assert torch.equal(a, maker(images(), generator=gen(2)))
        assert torch.equal(a, maker(images()))  # the fixed mode needs no generator


def test_augmentations_change_a_crop_only_through_the_generator():
    # With one crop layout, augs on and off differ, and two seeds' augs differ from each other.
    plain = DiscoCutouts(overview=4, innercut=0, size=S, skip_augs=True)(images(), generator=gen(0))
    aug = DiscoCutouts(overview=4, innercut=0, size=S)
    first, second = aug(images(), generator=gen(0)), aug(images(), generator=gen(1))
    assert not torch.allclose(plain, first)
    assert not torch.allclose(first, second)


@pytest.mark.parametrize("kw", [{}, {"skip_augs": True}, {"fixed": True}])
def test_gradient_reaches_every_image(kw):
    for maker in makers(**kw):
        x = images(requires_grad=True)
        cuts = maker(x, generator=gen(0))
        weights = torch.rand(cuts.shape, generator=gen(9))
        (cuts * weights).sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
        assert (x.grad.abs().flatten(1).sum(1) > 0).all()


def test_cda_full_cuts_equal_a_plain_resize_of_the_padded_image():
    x = images()
    for fixed in (False, True):
        cuts = CdaCutouts(cutn=8, size=S, skip_augs=True, fixed=fixed)(x, generator=gen(0))
        padded = cda_pad((x + 1) / 2)
        assert padded.shape[-1] == 48  # a quarter of 32 on each side
        expected = F.adaptive_avg_pool2d(padded, S) * 2 - 1
        for k in (6, 7):  # the last quarter of 8
            torch.testing.assert_close(cuts[:, k], expected)
        assert not torch.allclose(cuts[:, 5], expected)


def test_cda_greyscale_augmentation_gives_equal_channels():
    cuts = CdaCutouts(cutn=40, size=S)(images(), generator=gen(4))  # grey p 0.15 of 80 cuts
    grey = equal_channels(cuts)
    assert 1 <= int(grey.sum()) <= 30
    assert not equal_channels(CdaCutouts(cutn=40, size=S, skip_augs=True)(images(), generator=gen(4))).any()


def test_disco_overview_pattern_and_grey_inner_cuts():
    x = images()
    maker = DiscoCutouts(overview=5, innercut=10, size=S, ic_grey_p=0.25, skip_augs=True)
    assert maker.n_grey_inner == 3  # 2.5 rounded half up
    cuts = maker(x, generator=gen(0))
    view = F.adaptive_avg_pool2d(pad_to_square((x + 1) / 2), S) * 2 - 1
    torch.testing.assert_close(cuts[:, 0], view)
    torch.testing.assert_close(cuts[:, 2], view.flip(-1))
    torch.testing.assert_close(cuts[:, 4], view)  # the pattern repeats past 4
    assert equal_channels(cuts).tolist() == [[False, True, False, True, False] + [True] * 3 + [False] * 7] * 2
    assert not equal_channels(DiscoCutouts(overview=0, innercut=4, size=S, ic_grey_p=0.0, skip_augs=True)(
        x, generator=gen(0))).any()


def test_disco_ic_pow_sizes_inner_cuts():
    # One fixed inner cut sits at the centre with r = 0.5: side = 0.5 ** ic_pow * (32 - 16) + 16.
    x = images()
    mid = DiscoCutouts(overview=0, innercut=1, size=S, ic_pow=1.0, fixed=True)(x)  # side 24
    torch.testing.assert_close(mid[:, 0], F.adaptive_avg_pool2d(x[:, :, 4:28, 4:28], S))
    small = DiscoCutouts(overview=0, innercut=1, size=S, ic_pow=50.0, fixed=True)(x)  # side min(S, 32) = 16
    torch.testing.assert_close(small[:, 0], x[:, :, 8:24, 8:24])


@pytest.mark.parametrize("build, fragment", [
    (lambda: CdaCutouts(cutn=0, size=S), "cutn"),
    (lambda: CdaCutouts(cutn=2.5, size=S), "cutn"),
    (lambda: CdaCutouts(cutn=4, size=0), "size"),
    (lambda: DiscoCutouts(overview=2, innercut=2, size=0), "size"),
    (lambda: DiscoCutouts(overview=-1, innercut=2, size=S), "overview"),
    (lambda: DiscoCutouts(overview=0, innercut=0, size=S), "at least one cut"),
    (lambda: DiscoCutouts(overview=1, innercut=2, size=S, ic_pow=0), "ic-pow"),
    (lambda: DiscoCutouts(overview=1, innercut=2, size=S, ic_pow=-1.0), "ic-pow"),
    (lambda: DiscoCutouts(overview=1, innercut=2, size=S, ic_grey_p=1.5), "icgray-p"),
    (lambda: DiscoCutouts(overview=1, innercut=2, size=S, ic_grey_p=-0.1), "icgray-p"),
])
def test_bad_arguments_raise_one_line(build, fragment):
    with pytest.raises(ValueError, match=fragment) as info:
        build()
    assert "\n" not in str(info.value)


def test_bad_calls_raise_one_line():
    maker = CdaCutouts(cutn=2, size=S)
    with pytest.raises(ValueError, match="generator"):
        maker(images())
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        maker(torch.zeros(3, 8, 8), generator=gen(0))
