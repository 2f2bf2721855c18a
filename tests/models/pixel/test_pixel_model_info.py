"""artdiff.json of kind unconditional: class-label conditioning and the pixel fields are checked when read."""

import json

import pytest

from artdiff.errors import UserError
from artdiff.models.factory import read_model_info, write_model_info
from artdiff.models.pixel.openai_flags import parse_flags, pixel_model_info


def test_pixel_model_info_round_trips(tmp_path):
    info = pixel_model_info(parse_flags("--image_size 64 --class_cond True --learn_sigma True"), recipe={"lr": 1e-4})
    write_model_info(tmp_path, info)
    assert read_model_info(tmp_path) == info and info.conditioning == {"type": "class-label", "num_classes": 1000}


def test_pixel_range_minus_one_to_one_is_read(tmp_path):
    data = {**pixel_model_info(parse_flags("--image_size 64")).to_dict(), "pixel_range": [-1.0, 1.0]}
    (tmp_path / "artdiff.json").write_text(json.dumps(data))
    assert read_model_info(tmp_path).extra["pixel_range"] == [-1, 1]


@pytest.mark.parametrize("change,message", [
    ({"conditioning": {"type": "class-label", "num_classes": 0}}, "num_classes 0"),
    ({"variance": "learned"}, "variance 'learned' is not one of learned_range"),
    ({"image_size": "64"}, "image_size '64'"),
    ({"rescale_timesteps": "yes"}, "rescale_timesteps 'yes'"),
    ({"pixel_range": [1, -1]}, "pixel_range [1, -1]"),
    ({"pixel_range": [0, 1]}, "pixel_range [0, 1] is not supported; artdiff pixel models work in [-1, 1]"),
    ({"pixel_range": [-1.0, 2]}, "pixel_range [-1.0, 2] is not supported"),
])
def test_damaged_pixel_fields_are_one_line(tmp_path, change, message):
    data = {**pixel_model_info(parse_flags("--image_size 64")).to_dict(), **change}
    (tmp_path / "artdiff.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_model_info(tmp_path)
