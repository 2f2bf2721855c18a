"""Re-running prepare skips finished work, completes interrupted runs, and rebuilds when options change."""

import json

import pytest

from artdiff.data import prepare_image
from artdiff.errors import UserError

from helpers import pattern, save, solid
from prepare_utils import records, run


def make_folder(src, count=4):
    for i in range(count):
        save(pattern(48, 40, seed=i), src / f"art{i}.png")


def test_rerun_reuses_everything(tmp_path):
    make_folder(tmp_path / "src")
    first = run(tmp_path / "src", tmp_path / "dst")
    manifest = (tmp_path / "dst" / "manifest.jsonl").read_text()
    second = run(tmp_path / "src", tmp_path / "dst")
    assert (first.reused, second.reused) == (0, 4)
    assert (tmp_path / "dst" / "manifest.jsonl").read_text() == manifest


def test_interrupted_run_completes(tmp_path, monkeypatch):
    make_folder(tmp_path / "src")
    real = prepare_image.process_source
    calls = []

    def crash_on_third(cfg, job):
        calls.append(job.key)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(cfg, job)

    monkeypatch.setattr("artdiff.data.prepare.process_source", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "src", tmp_path / "dst")
    assert not (tmp_path / "dst" / "manifest.jsonl").exists()
    monkeypatch.setattr("artdiff.data.prepare.process_source", real)
    result = run(tmp_path / "src", tmp_path / "dst")
    assert result.reused == 2 and result.outputs == 4
    assert len(list((tmp_path / "dst" / "images").iterdir())) == 4


def test_missing_output_is_redone(tmp_path):
    make_folder(tmp_path / "src")
    run(tmp_path / "src", tmp_path / "dst")
    victim = tmp_path / "dst" / records(tmp_path / "dst")[0]["image"]
    victim.unlink()
    assert run(tmp_path / "src", tmp_path / "dst").reused == 3 and victim.is_file()


def test_changed_source_and_caption_are_picked_up(tmp_path):
    make_folder(tmp_path / "src")
    run(tmp_path / "src", tmp_path / "dst")
    save(solid(48, 40, (9, 9, 9)), tmp_path / "src" / "art0.png")  # edited picture
    (tmp_path / "src" / "art1.txt").write_text("new words")  # new caption
    result = run(tmp_path / "src", tmp_path / "dst")
    captions = {r["source"]: r["caption"] for r in records(tmp_path / "dst")}
    assert result.reused == 2 and captions["art1.png"] == "new words"
    assert len(list((tmp_path / "dst" / "images").iterdir())) == 4  # the old art0 output is gone


def test_changed_options_rebuild(tmp_path):
    make_folder(tmp_path / "src")
    run(tmp_path / "src", tmp_path / "dst", size=32)
    result = run(tmp_path / "src", tmp_path / "dst", size=24)
    assert result.reused == 0 and {(r["width"], r["height"]) for r in records(tmp_path / "dst")} == {(24, 24)}
    assert len(list((tmp_path / "dst" / "images").iterdir())) == 4


def test_foreign_destination_is_refused(tmp_path):
    make_folder(tmp_path / "src")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.doc").write_text("precious")
    with pytest.raises(UserError, match="not empty"):
        run(tmp_path / "src", tmp_path / "mine")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["thesis.doc"]


def test_destination_inside_source_is_excluded_from_the_scan(tmp_path):
    make_folder(tmp_path / "src")
    run(tmp_path / "src", tmp_path / "src" / "prepared")
    assert run(tmp_path / "src", tmp_path / "src" / "prepared").found == 4


def test_two_workers_give_the_same_dataset(tmp_path):
    make_folder(tmp_path / "src", count=6)
    run(tmp_path / "src", tmp_path / "one", workers=1)
    run(tmp_path / "src", tmp_path / "two", workers=2)
    strip = lambda path: [{k: v for k, v in r.items()} for r in records(path)]  # noqa: E731
    assert strip(tmp_path / "one") == strip(tmp_path / "two")
    report = json.loads((tmp_path / "two" / "report.json").read_text())
    assert report["summary"]["outputs"] == 6


def test_ctrl_c_with_workers_stops_promptly_and_resumes(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    for i in range(300):
        save(pattern(64, 64, seed=i), tmp_path / "src" / f"art{i:03d}.png")
    command = [sys.executable, "-m", "artdiff", "prepare", str(tmp_path / "src"), str(tmp_path / "dst"),
               "--size", "32", "--workers", "2", "--no-dedup"]
    process = subprocess.Popen(command, start_new_session=True, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    scan_cache = tmp_path / "dst" / ".prepare" / "scan.jsonl"
    deadline = time.monotonic() + 60
    while not (scan_cache.is_file() and scan_cache.stat().st_size) and process.poll() is None:
        assert time.monotonic() < deadline, "prepare never started scanning"
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole group
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130 and err.strip() == "artdiff prepare: interrupted"
    result = run(tmp_path / "src", tmp_path / "dst", dedup=False)
    assert result.outputs == 300
