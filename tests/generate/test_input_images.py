"""Images named on the command line are checked before they are read: a FIFO or folder is one line, never a hang."""

import os

import pytest

from artdiff.cli.main import main
from iv_fixtures import tiny_iv
from sd_fixtures import tiny_sd


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return tiny_sd(root / "sd"), tiny_iv(root / "iv")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
@pytest.mark.parametrize("kind", ["fifo", "folder", "missing"])
def test_every_input_image_flag_refuses_what_is_not_an_image_file(models, tmp_path, capsys, kind):
    sd, iv = models
    bad = tmp_path / "pipe.png"
    if kind == "fifo":
        os.mkfifo(bad)  # reading it whole would wait forever for a writer
    elif kind == "folder":
        bad.mkdir()
    commands = [
        ["generate", "--image", str(bad), "--steps", "2", "-n", "1"],
        ["generate", "--model", str(sd), "a lighthouse", "--init-image", str(bad), "--steps", "2", "-n", "1"],
        ["vary", str(bad), "--model", str(iv), "--steps", "2", "-n", "1"],
    ]
    for command in commands:
        out = tmp_path / "out"
        assert main([*command, "--out", str(out)]) == 2, command
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(bad) in err and "bug in artdiff" not in err, err
        assert not out.exists() or not any(out.glob("*.png"))
