"""LoRA files and scales that would overflow or cannot be read: one line naming the file or the --lora option."""

import pickle

import pytest
import torch
from safetensors.torch import save_file

from artdiff.errors import UserError
from artdiff.models.lora import parse_lora_spec, read_lora_file

KEY = "unet.down_blocks.0.attentions.0.proj_in.lora_A.weight"


def lora(tmp_path, value=0.01, name="style.safetensors", metadata=None):
    path = tmp_path / name
    state = {KEY: torch.full((4, 32), 0.01), KEY.replace("lora_A", "lora_B"): torch.zeros(32, 4)}
    state[KEY][1, 2] = value
    save_file(state, str(path), metadata=metadata)
    return path


def one_line(error):
    message = str(error.value)
    assert "\n" not in message and len(message) < 400
    return message


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 1e38])
def test_non_finite_or_absurd_values_are_refused_naming_the_file(tmp_path, value):
    path = lora(tmp_path, value)
    with pytest.raises(UserError, match="style.safetensors") as caught:
        read_lora_file(path)
    assert "proj_in" in one_line(caught)  # names the tensor too


def test_ordinary_values_read(tmp_path):
    state, metadata = read_lora_file(lora(tmp_path, 3.0))
    assert state[KEY][1, 2] == 3.0 and metadata is None


@pytest.mark.parametrize("scale", ["1e30", "nan", "inf", "-101", "150"])
def test_a_scale_that_would_overflow_is_refused(tmp_path, scale):
    path = lora(tmp_path)
    with pytest.raises(UserError, match=r"--lora .*scale") as caught:
        parse_lora_spec(f"{path}:{scale}")
    one_line(caught)


def test_sane_scales_parse(tmp_path):
    path = lora(tmp_path)
    assert [parse_lora_spec(f"{path}:{s}").scale for s in ("-1", "0.8", "100")] == [-1.0, 0.8, 100.0]
    assert parse_lora_spec(str(path)).scale == 1.0


def test_a_damaged_safetensors_is_one_line(tmp_path):
    path = lora(tmp_path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(UserError, match="style.safetensors cannot be read") as caught:
        read_lora_file(path)
    one_line(caught)


def test_invalid_adapter_metadata_json_is_one_line(tmp_path):
    path = lora(tmp_path, metadata={"lora_adapter_metadata": "{not json"})
    with pytest.raises(UserError, match="lora_adapter_metadata") as caught:
        read_lora_file(path)
    one_line(caught)


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_pickled_bin_with_code_is_refused_without_running_it(tmp_path, capsys):
    path = tmp_path / "style.bin"
    torch.save({KEY: torch.zeros(4, 32), "extra": Payload()}, path)
    with pytest.raises(UserError, match="style.bin holds pickled objects artdiff will not execute") as caught:
        read_lora_file(path)
    assert ".safetensors" in one_line(caught) and "must never run" not in capsys.readouterr().out
    path.write_bytes(pickle.dumps([1, 2]))  # an old-style pickle that is no torch file at all
    with pytest.raises(UserError, match="style.bin") as caught:
        read_lora_file(path)
    one_line(caught)
