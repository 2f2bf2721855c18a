"""pixel_model's one rule for the sides a UNet2DModel can make (train and generate use it)."""

from types import SimpleNamespace

import pytest

from artdiff.errors import UserError
from artdiff.models.pixel.pixel_model import check_makeable_size, size_multiple


def _unet(levels: int) -> SimpleNamespace:
    return SimpleNamespace(config=SimpleNamespace(block_out_channels=[8] * levels))


def test_the_multiple_is_two_to_the_levels_minus_one():
    assert [size_multiple(_unet(n)) for n in (1, 2, 4)] == [1, 2, 8]


@pytest.mark.parametrize("side", [8, 16, 64, 72])
def test_multiples_of_it_pass(side):
    check_makeable_size(_unet(4), side)


@pytest.mark.parametrize(("side", "hint"), [(12, "e.g. 8 or 16"), (4, "e.g. 8 or 16"), (0, "e.g. 8 or 16")])
def test_other_sides_are_one_line_with_nearby_sizes(side, hint):
    with pytest.raises(UserError) as caught:
        check_makeable_size(_unet(4), side, what="--size")
    message = str(caught.value)
    assert message.startswith(f"--size {side}: this model makes sizes that are multiples of 8 px")
    assert "halves the image 3 times" in message and hint in message and "\n" not in message
