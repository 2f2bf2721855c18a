"""Rules kept once: the precision map and the OpenAI schedule are one definition each, which every user imports."""

import pytest

from artdiff.errors import UserError
from artdiff.models import components, convert_dtype
from artdiff.models.pixel import openai_unet_config, pixel_model
from artdiff.train import unconditional
from artdiff.utils.dtypes import DTYPES


def test_every_precision_map_is_the_one_in_utils():
    assert components.PRECISIONS is DTYPES and convert_dtype.DTYPES is DTYPES and pixel_model.DTYPES is DTYPES


def test_training_from_scratch_records_the_schedule_conversion_records():
    assert unconditional.schedule_of is openai_unet_config.schedule_of


def test_the_schedule_scales_linear_betas_by_1000_over_t():
    linear = openai_unet_config.schedule_of("linear", 250)
    assert linear["beta_start"] == pytest.approx(0.0004) and linear["beta_end"] == pytest.approx(0.08)
    assert openai_unet_config.schedule_of("cosine", 100) == {
        "type": "discrete", "beta_schedule": "squaredcos_cap_v2", "num_train_timesteps": 100}
    with pytest.raises(UserError, match="'sqrt' is not linear or cosine"):
        openai_unet_config.schedule_of("sqrt", 1000)
