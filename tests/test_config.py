"""Typed configs: strict keys, type coercion with named errors, YAML round trip."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from artdiff.config import from_dict, load_yaml, parse_override, save_yaml, to_dict
from artdiff.errors import UserError


@dataclass
class Inner:
    rate: float = 1e-3


@dataclass
class Example:
    steps: int = 10
    name: str = "x"
    mode: Literal["a", "b"] = "a"
    path: Path | None = None
    tags: list[str] = field(default_factory=list)
    inner: Inner = field(default_factory=Inner)
    flag: bool = False


def test_round_trip_through_yaml(tmp_path):
    cfg = Example(steps=3, path=Path("/tmp/a"), tags=["p", "q"], inner=Inner(rate=0.5), flag=True)
    save_yaml(cfg, tmp_path / "c.yaml")
    assert from_dict(Example, load_yaml(tmp_path / "c.yaml")) == cfg
    assert to_dict(cfg)["path"] == "/tmp/a"


@pytest.mark.parametrize("data,message", [
    ({"stepz": 1}, "unknown option(s) stepz"),
    ({"steps": "many"}, "config.steps: expected an integer"),
    ({"steps": 1.5}, "expected an integer"),
    ({"mode": "c"}, "'c' is not one of a, b"),
    ({"tags": "p,q"}, "expected a list"),
    ({"inner": {"rat": 1}}, "config.inner: unknown option(s) rat"),
    ({"flag": "maybe"}, "expected true or false"),
])
def test_bad_values_name_the_option(data, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        from_dict(Example, data)


def test_overrides_parse_yaml_values():
    assert parse_override("inner.rate=2e-4") == (["inner", "rate"], 2e-4)
    assert parse_override("flag=true") == (["flag"], True)
    with pytest.raises(UserError, match="KEY=VALUE"):
        parse_override("flag")


def test_malformed_yaml_is_one_clear_error(tmp_path):
    (tmp_path / "bad.yaml").write_text("steps: [1,\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_yaml(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(UserError, match="mapping"):
        load_yaml(tmp_path / "list.yaml")
