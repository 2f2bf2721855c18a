"""A damaged judge folder is one line naming the file and the fix, never an internal error."""

import pytest
import torch

from artdiff.errors import UserError
from artdiff.models.judge import Judge, JudgeSpec, load_judge, save_judge


@pytest.fixture
def judge_dir(tmp_path):
    torch.manual_seed(0)
    return save_judge(Judge(JudgeSpec(labels={"style": ["a", "b"]}, image_size=16, widths=(8,), feature_dim=8)),
                      tmp_path / "judge")


@pytest.mark.parametrize("name, damage", [
    ("judge.safetensors", lambda data: data[: len(data) // 2]),
    ("judge.safetensors", lambda data: b""),
    ("judge.safetensors", lambda data: b"\x08" + b"\x00" * 7 + b"{junk}   "),
    ("config.json", lambda data: data[:10]),
    ("config.json", lambda data: b'{"kind": "judge", "labels": {"style": ["a"]}, "unknown": 1}'),
    ("config.json", lambda data: b'{"kind": "judge", "labels": {"style": ["a", "b", "c"]}, "image_size": 16, '
                                 b'"widths": [8], "feature_dim": 8}'),  # weights for another vocabulary
])
def test_a_damaged_judge_names_the_file(judge_dir, name, damage):
    path = judge_dir / name
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(UserError, match=name.replace(".", r"\.")) as info:
        load_judge(judge_dir)
    message = str(info.value)
    assert len(message.splitlines()) == 1 and "artdiff train judge" in message
