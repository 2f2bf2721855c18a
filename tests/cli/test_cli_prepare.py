"""`artdiff prepare` from the command line: results, --json, --config/--set precedence, one-line errors."""

import json
import subprocess
import sys

import pytest

from artdiff.cli.main import main

from helpers import pattern, save


@pytest.fixture
def folder(tmp_path):
    for i in range(3):
        save(pattern(40, 40, seed=i), tmp_path / "src" / f"a{i}.png")
    return tmp_path / "src"


def test_prepare_json_summary(folder, tmp_path, capsys):
    code = main(["prepare", str(folder), str(tmp_path / "dst"), "--size", "24x16", "--workers", "1", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["outputs"] == 3 and summary["skipped"] == {}
    first = json.loads((tmp_path / "dst" / "manifest.jsonl").read_text().splitlines()[0])
    assert (first["width"], first["height"]) == (24, 16)


def test_prepare_prints_where_results_are(folder, tmp_path, capsys):
    assert main(["prepare", str(folder), str(tmp_path / "dst"), "--size", "32", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "prepared 3 images" in out and f"manifest: {tmp_path / 'dst' / 'manifest.jsonl'}" in out


def test_config_file_then_set_then_flags(folder, tmp_path, capsys):
    (tmp_path / "opts.yaml").write_text("size: 20\ncrop: pad\nflip: true\n")
    argv = ["prepare", str(folder), str(tmp_path / "dst"), "--config", str(tmp_path / "opts.yaml"),
            "--set", "size=18", "--workers", "1", "--json"]
    assert main(argv + ["--no-flip"]) == 0
    record = json.loads((tmp_path / "dst" / "manifest.jsonl").read_text().splitlines()[0])
    assert (record["width"], record["flipped"], "pad_box" in record) == (18, False, True)


@pytest.mark.parametrize("argv,message", [
    (["--size", "big"], "--size 'big'"),
    (["--kernel", "lanczos", "--no-antialias"], "always antialiases"),
    (["--set", "colour=red"], "unknown option(s) colour"),
    (["--workers", "-1"], "--workers"),
    (["--captions", "metadata"], "needs --metadata"),
    (["--crop", "pad", "--pad-color", "notacolour"], "--pad-color 'notacolour' is not a colour"),
    (["--background", "#12345"], "--background '#12345' is not a colour"),
    (["--max-file-size", "lots"], "--max-file-size 'lots'"),
    (["--max-file-size", "0"], "--max-file-size"),
    (["--max-pixels", "0"], "--max-pixels"),
])
def test_wrong_options_give_one_line(folder, tmp_path, capsys, argv, message):
    assert main(["prepare", str(folder), str(tmp_path / "dst"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "dst").exists()


def test_colours_as_pillow_reads_them(folder, tmp_path, capsys):
    for i, colour in enumerate(["navy", "#abc", "#a0b0c0", "rgb(10, 20, 30)"]):
        argv = ["prepare", str(folder), str(tmp_path / f"dst{i}"), "--crop", "pad", "--pad-color", colour,
                "--size", "16", "--workers", "1", "--json"]
        assert main(argv) == 0, capsys.readouterr().err


def test_destination_naming_a_file_is_one_line(folder, tmp_path, capsys):
    (tmp_path / "taken.txt").write_text("keep me")
    assert main(["prepare", str(folder), str(tmp_path / "taken.txt"), "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "taken.txt is a file" in err and len(err.splitlines()) == 1
    assert (tmp_path / "taken.txt").read_text() == "keep me"


def test_filename_caption_fallbacks_are_counted(folder, tmp_path, capsys):
    (folder / "a0.txt").write_text("a sidecar caption")
    assert main(["prepare", str(folder), str(tmp_path / "dst"), "--size", "16", "--workers", "1"]) == 0
    assert "captions: 1 from sidecar files, 2 fell back to file names" in capsys.readouterr().out
    report = json.loads((tmp_path / "dst" / "report.json").read_text())
    assert report["captions"] == {"filename": 2, "sidecar": 1}
    assert report["summary"]["captions"] == {"filename": 2, "sidecar": 1}


def test_max_file_size_takes_units(folder, tmp_path, capsys):
    argv = ["prepare", str(folder), str(tmp_path / "dst"), "--size", "16", "--workers", "1", "--json",
            "--max-file-size", "1k"]
    assert main(argv) == 2  # every 40x40 pattern PNG is over a kilobyte
    assert "3 too-large" in capsys.readouterr().err


def test_help_of_data_commands_does_not_import_torch():
    for command in ("prepare", "embed", "synth"):
        code = ("import sys, contextlib, io\n"
                "from artdiff.cli.main import main\n"
                "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
                f"    main(['{command}', '--help'])\n"
                f"assert 'torch' not in sys.modules, '{command} --help imported torch'\n")
        subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_choice_is_one_line(folder, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare", str(folder), str(tmp_path / "dst"), "--crop", "diagonal"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and "invalid choice: 'diagonal'" in err


def test_missing_source_and_empty_source(tmp_path, capsys):
    assert main(["prepare", str(tmp_path / "nope"), str(tmp_path / "dst")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["prepare", str(tmp_path / "empty"), str(tmp_path / "dst")]) == 2
    assert "no usable images" in capsys.readouterr().err


def test_help_lists_commands_without_importing_torch():
    code = ("import sys, contextlib, io\n"
            "from artdiff.cli.main import main\n"
            "out = io.StringIO()\n"
            "with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):\n"
            "    main(['--help'])\n"
            "assert 'torch' not in sys.modules, 'artdiff --help imported torch'\n"
            "print(out.getvalue())\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "prepare" in result.stdout


def test_python_dash_m_runs(tmp_path):
    result = subprocess.run([sys.executable, "-m", "artdiff", "prepare", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--crop" in result.stdout
