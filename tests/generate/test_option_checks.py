"""Every number and text option of generate and vary is checked where it enters, naming the flag."""

import subprocess
import sys

import pytest

from artdiff.cli.main import main
from artdiff.generate.options import GenerateOptions
from artdiff.generate.vary_options import VaryOptions


@pytest.mark.parametrize("argv, flag", [
    (["--cfg", "nan"], "--cfg"), (["--cfg", "inf"], "--cfg"), (["--cfg", "1e30"], "--cfg"), (["--cfg", "-1"], "--cfg"),
    (["--seed", str(2**64)], "--seed"), (["--seed", "-2"], "--seed"), (["--steps", "100000"], "--steps"),
    (["--steps", "0"], "--steps"), (["--size", "-8"], "--size"), (["--width", "0"], "--width"),
    (["--height", "99999"], "--height"), (["--strength", "nan"], "--strength"), (["--eta", "-1"], "--eta"),
    (["--eta", "inf", "--sampler", "ddim"], "--eta"), (["--eta", "0.5"], "--eta changes only"),
    (["-n", "0"], "-n"), (["--batch-size", "0"], "--batch-size"), (["--rescale", "nan"], "--rescale"),
    (["--clip-skip", "0"], "--clip-skip"),
])
@pytest.mark.parametrize("command", ["generate", "vary"])
def test_bad_numbers_are_one_line_naming_the_flag(command, argv, flag, tmp_path, capsys):
    if command == "vary" and argv[0] in ("--strength", "--rescale", "--clip-skip"):
        pytest.skip("generate only")
    head = ["generate", "rothko"] if command == "generate" else ["vary", "x.png", "--model", "m"]
    assert main([*head, *argv, "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and flag in error and "bug in artdiff" not in error
    assert not (tmp_path / "out").exists()


def test_invalid_utf8_in_a_prompt_is_one_line(tmp_path, capsys):
    prompt = b"caf\xe9 rothko".decode("utf-8", "surrogateescape")  # how Python decodes a Latin-1 argv
    assert main(["generate", prompt, "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "not valid UTF-8" in error
    with pytest.raises(ValueError, match="--negative .* not valid UTF-8"):
        GenerateOptions(negative=prompt)


def test_seed_range_is_a1111s():
    assert GenerateOptions(seed=2**32 - 1).seed == 2**32 - 1 and VaryOptions(image="x", model="m", seed=0).seed == 0
    with pytest.raises(ValueError, match="from 0 to 4294967295"):
        GenerateOptions(seed=2**32)


@pytest.mark.parametrize("command", ["generate", "vary"])
def test_help_imports_no_torch(command):
    code = (f"import sys\nfrom artdiff.cli.main import main\ntry:\n    main([{command!r}, '--help'])\n"
            "except SystemExit:\n    pass\nassert 'torch' not in sys.modules, 'torch imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--batch-size" in result.stdout and "--seed" in result.stdout


def test_eta_zero_is_accepted_for_every_sampler_and_recorded_only_where_it_acts():
    from artdiff.generate.options import recorded_eta, sampler_eta

    for sampler in ("dpm++2m", "euler", "heun", "ddpm", "plms", "ddim", "euler_a"):
        assert GenerateOptions(sampler=sampler, eta=0).eta == 0  # what a fed-back sidecar request carries
    assert recorded_eta("dpm++2m", sampler_eta("dpm++2m", None)) is None
    assert recorded_eta("euler_a", sampler_eta("euler_a", None)) == 1.0
    assert recorded_eta("ddim", sampler_eta("ddim", None)) == 0.0


def test_a_sidecar_request_runs_again_as_a_config(tmp_path, capsys):
    import json

    import yaml

    out = tmp_path / "out"
    assert main(["generate", "rothko", "--steps", "2", "-n", "1", "--seed", "3", "--out", str(out)]) == 0
    request = json.loads(next(out.glob("*.json")).read_text())["request"]
    (tmp_path / "again.yaml").write_text(yaml.safe_dump(request))
    assert main(["generate", "--config", str(tmp_path / "again.yaml")]) == 0, capsys.readouterr().err
    first, second = sorted(out.glob("*.png"))
    assert first.name.endswith("-3.png") and second.name.endswith("-3.png")
    assert first.read_bytes() != b"" and _pixels(first) == _pixels(second)


def _pixels(path):
    from PIL import Image

    with Image.open(path) as image:
        return image.tobytes()
