"""`artdiff train METHOD --help` is fast: it imports no torch, transformers, diffusers, accelerate or peft."""

import subprocess
import sys

import pytest

from artdiff.cli.main import main
from artdiff.cli.train import METHODS

HEAVY = ("torch", "transformers", "diffusers", "accelerate", "peft")
_PROBE = """
import sys
from artdiff.cli.main import main
try:
    main(["train", sys.argv[1], "--help"])
except SystemExit:
    pass
print("heavy:" + ",".join(m for m in {heavy!r} if m in sys.modules))
"""


@pytest.mark.parametrize("method", list(METHODS))
def test_help_imports_no_heavy_library(method):
    done = subprocess.run([sys.executable, "-c", _PROBE.format(heavy=HEAVY), method], capture_output=True,
                          text=True, timeout=60, check=True)
    last = done.stdout.strip().splitlines()[-1]
    assert "--max-steps" in done.stdout and last == "heavy:", f"{method} --help imported {last}"


def test_the_encoder_takes_the_shared_option_names_and_the_old_ones_with_a_note(tmp_path, capsys, monkeypatch):
    import artdiff.train.encoder as encoder

    seen = []
    monkeypatch.setattr(encoder, "train_encoder", lambda cfg: seen.append(cfg) or _Done())
    assert main(["train", "encoder", "--data", str(tmp_path), "--max-steps", "7", "--warmup-steps", "3"]) == 0
    assert main(["train", "encoder", "--data", str(tmp_path), "--steps", "9", "--warmup", "4"]) == 0
    assert [(c.max_steps, c.warmup_steps) for c in seen] == [(7, 3), (9, 4)]
    notes = [line for line in capsys.readouterr().err.splitlines() if "is now" in line]
    assert notes == ["artdiff train: --steps is now --max-steps; the old name still works for now",
                     "artdiff train: --warmup is now --warmup-steps; the old name still works for now"]
    with pytest.raises(SystemExit):
        main(["train", "encoder", "--help"])
    assert "--steps " not in capsys.readouterr().out  # hidden


def test_light_constants_match_the_libraries():
    from artdiff.core.contrastive import CLOOB_HOPFIELD_BETA, CLOOB_INV_TAU
    from artdiff.models.specs import CLIP_PRESETS
    from artdiff.train import encoder_config

    assert (encoder_config.CLOOB_INV_TAU, encoder_config.CLOOB_HOPFIELD_BETA) == (CLOOB_INV_TAU, CLOOB_HOPFIELD_BETA)
    assert encoder_config.PRESET_NAMES == tuple(CLIP_PRESETS)


class _Done:
    def to_json(self):
        return {"out": "x"}


def test_quickstart_help_imports_no_heavy_library():
    probe = _PROBE.format(heavy=HEAVY).replace('main(["train", sys.argv[1], "--help"])', 'main(["quickstart", "--help"])')
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert "--encoder-steps" in done.stdout and done.stdout.strip().splitlines()[-1] == "heavy:"
