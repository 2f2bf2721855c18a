"""`artdiff convert guided-diffusion FILE OUT --flags ...` in-process; the folder loads and equals the source."""

import json
import subprocess
import sys

import torch
from test_pixel_model_loading import GUIDED, IMPROVED, reference_file, same_function

from artdiff.cli.convert import FORMATS, PRESET_NAMES
from artdiff.cli.main import main
from artdiff.models.pixel.openai_flags import CODEBASES, PRESETS
from artdiff.models.pixel.pixel_model import load_pixel_model


def test_convert_writes_a_model_directory_equal_to_the_source(tmp_path, capsys):
    reference = reference_file(tmp_path / "model.pt")
    assert main(["convert", "guided-diffusion", str(tmp_path / "model.pt"), str(tmp_path / "out"),
                 "--flags", GUIDED]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"wrote {tmp_path / 'out'}: guided-diffusion UNet") and "16 px" in printed
    assert same_function(reference, load_pixel_model(tmp_path / "out"))
    assert not list((tmp_path / "out").rglob("*.pt")) and not (tmp_path / ".out.tmp").exists()


def test_improved_diffusion_form_takes_its_defaults_and_json(tmp_path, capsys):
    reference_file(tmp_path / "model.pt", IMPROVED.replace("--codebase improved ", ""))
    flags = IMPROVED.replace("--codebase improved ", "") + " --diffusion_steps 4000"
    assert main(["convert", "improved-diffusion", str(tmp_path / "model.pt"), str(tmp_path / "out"),
                 "--flags", flags, "--dtype", "fp16", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["format"] == "improved-diffusion" and result["dtype"] == "fp16"
    info = json.loads((tmp_path / "out" / "artdiff.json").read_text())
    assert info["rescale_timesteps"] is True and info["schedule"]["num_train_timesteps"] == 4000
    assert load_pixel_model(tmp_path / "out").unet.dtype == torch.float32


def test_bad_command_lines_are_one_line_with_status_2(tmp_path, capsys):
    reference_file(tmp_path / "model.pt")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x.png").write_bytes(b"x")
    file = str(tmp_path / "model.pt")
    cases = {
        "does not describe its own architecture": ["guided-diffusion", file, str(tmp_path / "a")],
        "already exists and is not empty": ["guided-diffusion", file, str(tmp_path / "taken"), "--flags", GUIDED],
        "unexpected 'garbage'": ["guided-diffusion", file, str(tmp_path / "b"), "--flags", "garbage --x 1"],
        "none.pt does not exist": ["guided-diffusion", str(tmp_path / "none.pt"), str(tmp_path / "c"), "--flags", GUIDED],
        "give the checkpoint file and a new folder OUT": ["guided-diffusion", file],
        "is not a checkpoint format": ["stable-diffusion", file, str(tmp_path / "d")],
        "is a checkpoint file, not a model directory": [file, str(tmp_path / "e")],
        "--flags describes an original checkpoint": [str(tmp_path / "taken"), str(tmp_path / "f"), "--flags", GUIDED],
    }
    for expected, argv in cases.items():
        assert main(["convert", *argv]) == 2, expected
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, (expected, err)
    assert not any((tmp_path / name).exists() for name in "abcdef")


def test_cli_names_match_the_library():
    assert set(FORMATS) == set(CODEBASES) and tuple(PRESETS) == PRESET_NAMES


def test_convert_help_imports_no_torch():
    code = ("import sys\nfrom artdiff.cli.main import main\ntry:\n    main(['convert', '--help'])\nexcept SystemExit:\n"
            "    pass\nprint('TORCH' if 'torch' in sys.modules else 'LIGHT')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "guided-diffusion" in done.stdout and done.stdout.strip().endswith("LIGHT")
