"""The command line as a whole: every --help is fast and imports no torch; Ctrl-C or a kill at any moment is one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from artdiff.cli.main import COMMANDS

# Each of these takes from a fraction of a second to seconds to import; --help needs none of them.
HEAVY = ("torch", "transformers", "diffusers", "accelerate", "safetensors")
# Runs `artdiff ARGS --help` in-process in a fresh interpreter and prints which heavy modules it imported.
HELP_PROBE = """
import json, sys
from artdiff.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted({name.split('.')[0] for name in sys.modules} & set(HEAVY))), file=sys.stderr)
""".replace("HEAVY", repr(HEAVY))
# Lists the nested commands (`train judge`, `evaluate encoder`, ...) of every command.
TREE_PROBE = """
import argparse, json
from artdiff.cli.main import COMMANDS, build_parser
paths = []
for name in COMMANDS:
    parser = build_parser(name, [name])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    paths.append([name])
    for action in sub._actions:
        if isinstance(action, argparse._SubParsersAction):
            paths += [[name, child] for child in action.choices]
print(json.dumps(paths))
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONWARNINGS": "ignore"}


def _command_paths() -> list[list[str]]:
    out = subprocess.run([sys.executable, "-c", TREE_PROBE], capture_output=True, text=True, env=_env(), timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def command_paths() -> list[list[str]]:
    return _command_paths()


def test_every_help_imports_no_torch_and_every_command_is_listed(command_paths):
    assert {path[0] for path in command_paths} == set(COMMANDS)
    assert ["train", "lora"] in command_paths and ["evaluate", "encoder"] in command_paths
    heavy = {}
    for path in [[]] + command_paths:
        out = subprocess.run([sys.executable, "-c", HELP_PROBE, *path, "--help"], capture_output=True, text=True,
                             env=_env(), timeout=120)
        assert "usage:" in out.stdout, (path, out.stderr[-2000:])
        imported = json.loads(out.stderr.strip().splitlines()[-1])
        if imported:
            heavy[" ".join(path)] = imported
    assert heavy == {}, f"--help imported heavy modules: {heavy}"


def _catches(pid: int, number: int) -> bool:
    """Whether the process has a handler for the signal (SigCgt in /proc): artdiff's main() has started."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (number - 1) & 1)
    return False


def _start(argv: list[str]) -> subprocess.Popen:
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    deadline = time.monotonic() + 30
    # Python itself catches SIGINT from the start but SIGTERM only once main() has installed its handler; before
    # that, no Python code of artdiff has run and the interpreter's own handling applies.
    while not _catches(process.pid, signal.SIGTERM) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    return process


ARTDIFF = str(Path(sys.executable).with_name("artdiff"))


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads signal dispositions from /proc")
@pytest.mark.parametrize("entry, number, delay", [
    ("script", signal.SIGINT, 0.0), ("script", signal.SIGTERM, 0.05), ("script", signal.SIGINT, 0.3),
    ("module", signal.SIGTERM, 0.0), ("module", signal.SIGINT, 0.05), ("module", signal.SIGTERM, 0.3),
    ("script", signal.SIGTERM, 1.0), ("module", signal.SIGINT, 1.0),
])
def test_ctrl_c_or_a_kill_at_any_moment_is_one_line_and_exit_130(tmp_path, entry, number, delay):
    program = [ARTDIFF] if entry == "script" else [sys.executable, "-m", "artdiff"]
    process = _start([*program, "generate", "a red circle on a dark ground", "--steps", "1000",
                      "--out", str(tmp_path / "out")])
    time.sleep(delay)
    process.send_signal(number)
    _, err = process.communicate(timeout=60)
    lines = err.strip().splitlines()
    assert process.returncode == 130, err[-3000:]
    assert "Traceback" not in err and 1 <= len(lines) <= 2 and "interrupted" in lines[-1], err[-3000:]
    assert not list(tmp_path.rglob("*.tmp*"))  # nothing half-written is left behind


# A stand-in command whose module import, run or exit is where the signal lands: deterministic, unlike timings.
FAKE_COMMAND = """
import atexit, os, signal, time
WHEN, NUMBER = os.environ["FAKE_WHEN"], getattr(signal, os.environ["FAKE_SIGNAL"])


def hit():
    os.kill(os.getpid(), NUMBER)
    time.sleep(2)  # the handler runs at once; without one the process would die here


if WHEN == "import":
    hit()


def add_parser(subparsers):
    return subparsers.add_parser("fake")


def run(args):
    if WHEN == "atexit":
        atexit.register(hit)
    if WHEN == "twice":
        try:
            hit()
        finally:
            hit()  # a second signal while the first one's clean-up runs
    if WHEN == "swallowed":
        try:
            hit()
        except BaseException:  # a library that swallows the interrupt and carries on
            pass
        time.sleep(30)
    print("done")
    return 0
"""
FAKE_MAIN = """
import sys
import artdiff.cli.main as cli
cli.COMMANDS["fake"] = ("fake_command", "a stand-in")
cli._Interrupts.grace = 0.5
sys.exit(cli.main())
"""


@pytest.mark.parametrize("when, name", [("import", "SIGTERM"), ("import", "SIGINT"), ("atexit", "SIGINT"),
                                        ("atexit", "SIGTERM"), ("twice", "SIGINT"), ("swallowed", "SIGINT"),
                                        ("swallowed", "SIGTERM")])
def test_a_signal_during_imports_at_exit_or_during_clean_up_is_one_line_and_exit_130(tmp_path, when, name):
    (tmp_path / "fake_command.py").write_text(FAKE_COMMAND)
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    env = {**_env(), "PYTHONPATH": path, "FAKE_WHEN": when, "FAKE_SIGNAL": name}
    out = subprocess.run([sys.executable, "-c", FAKE_MAIN, "fake"], capture_output=True, text=True, env=env,
                         timeout=60)
    assert out.returncode == 130, (out.returncode, out.stderr)
    assert out.stderr.strip().splitlines() == ["artdiff fake: interrupted"], out.stderr


def _surrogate_error() -> UnicodeEncodeError:
    try:
        "a prompt \udcff".encode()
    except UnicodeEncodeError as error:
        return error
    raise AssertionError("unreachable")


@pytest.mark.parametrize("error, expected", [
    (OSError(28, "No space left on device", "/tmp/artdiff-out/x.png"),
     "no space left on the device of / (writing /tmp/artdiff-out/x.png)"),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried to "
                  "allocate 147456000000 bytes"), "out of memory: ask for less at once: a smaller image (--size"),
    (RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB"), "--batch-size"),
    (MemoryError(), "out of memory"),
    (_surrogate_error(), r"an argument holds bytes that are not UTF-8 (e.g. '\udcff')"),
])
def test_resource_and_encoding_errors_are_one_line_user_errors(error, expected, tmp_path, capsys, monkeypatch):
    from artdiff.cli import main as cli

    module = type(sys)("failing_command")
    module.add_parser = lambda subparsers: subparsers.add_parser("failing")
    module.run = lambda args: (_ for _ in ()).throw(error)
    monkeypatch.setitem(sys.modules, "failing_command", module)
    monkeypatch.setitem(cli.COMMANDS, "failing", ("failing_command", "raises"))
    assert cli.main(["failing"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err and "bug in artdiff" not in err, err


def test_a_training_run_stands_for_its_model(tmp_path, capsys):
    import shutil

    from artdiff.models.factory import resolve_model_dir
    from artdiff.utils.assets import SHIPPED_MODEL

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("steps: 1\n")
    assert main_code(["generate", "x", "--model", str(run), "--out", str(tmp_path / "o")]) == 2
    assert "training run without a finished model" in capsys.readouterr().err
    shutil.copytree(SHIPPED_MODEL, run / "model")
    assert resolve_model_dir(run) == run / "model"
    from artdiff.generate.any_model import model_kind

    assert model_kind(str(run)) == "embedding-ldm"  # every loader starts from resolve_model_dir


def main_code(argv: list[str]) -> int:
    from artdiff.cli.main import main

    return main(argv)


def test_convert_refuses_a_dataset_and_demo_a_missing_artworks_folder(tmp_path, capsys):
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "manifest.jsonl").write_text('{"image": "images/a.png", "caption": "a"}\n')
    assert main_code(["convert", str(data), str(tmp_path / "out")]) == 2
    assert "is a dataset (it has manifest.jsonl), not a model directory" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main_code(["demo", "--artworks", str(tmp_path / "nope"), "--out", str(tmp_path / "demo")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err and not (tmp_path / "demo").exists()


def test_an_error_a_library_makes_of_a_swallowed_interrupt_is_still_an_interrupt(capsys, monkeypatch):
    from artdiff.cli import main as cli

    def run(args):
        try:  # what transformers' lazy import does with a Ctrl-C that lands inside an import
            os.kill(os.getpid(), signal.SIGINT)
        except BaseException:  # noqa: BLE001 - the library swallows it
            pass
        raise ModuleNotFoundError("Could not import module 'CLIPModel'")

    module = type(sys)("swallowing_command")
    module.add_parser = lambda subparsers: subparsers.add_parser("swallowing")
    module.run = run
    monkeypatch.setitem(sys.modules, "swallowing_command", module)
    monkeypatch.setitem(cli.COMMANDS, "swallowing", ("swallowing_command", "swallows a Ctrl-C"))
    assert cli.main(["swallowing"]) == 130
    assert capsys.readouterr().err.strip().splitlines() == ["artdiff swallowing: interrupted"]
