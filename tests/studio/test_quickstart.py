"""The whole recipe runs end to end at toy scale, and a re-run skips the finished stages."""

import json

from artdiff.cli.main import main
from artdiff.models.factory import read_model_info


def test_tiny_quickstart_end_to_end(tmp_path, capsys):
    argv = ["quickstart", "--train", str(tmp_path / "qs"), "--scale", "tiny", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["seconds"]) == {"synth", "synth-heldout", "judge", "encoder", "vae", "embedding-ldm"}
    info = read_model_info(tmp_path / "qs" / "ldm" / "model")
    assert info.kind == "embedding-ldm" and info.conditioning["trained_on"] == "image"
    assert set(result["evaluation"]["text_adherence"]) == {"style", "palette", "ground"}
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["seconds"] == {}  # every stage was already complete
