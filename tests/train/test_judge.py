"""The judge trains on labelled synthetic images, saves and reloads exactly, and is evaluated per label."""

import pytest
import torch

from artdiff.data.synthetic import SynthConfig, generate_dataset
from artdiff.errors import UserError
from artdiff.evaluate.judge_eval import evaluate_judge
from artdiff.models.judge import Judge, JudgeSpec, load_judge, save_judge
from artdiff.train.judge import JudgeTrainConfig, train_judge


@pytest.fixture(scope="module")
def grounds_set(tmp_path_factory):
    """A tiny set where only the ground varies, which a few steps can learn."""
    out = tmp_path_factory.mktemp("synth")
    generate_dataset(SynthConfig(out=out, n=48, size=16, seed=0, styles=["rothko"], palettes=["warm"],
                                 workers=1, progress=False))
    return out


def test_training_learns_the_ground_and_round_trips(grounds_set, tmp_path):
    cfg = JudgeTrainConfig(data=grounds_set, out=tmp_path / "judge", image_size=16, epochs=12, batch_size=16,
                           lr=1e-2, warmup_steps=2, val_fraction=0.25, progress=False)
    result = train_judge(cfg)
    assert result.accuracy["ground"] >= 0.9 and result.val_images == 12
    assert result.out == tmp_path / "judge" / "model" and (result.out / "accuracy.json").is_file()
    judge = load_judge(result.out)
    assert judge.spec.labels == {"ground": ["dark", "light"], "palette": ["warm"], "style": ["rothko"]}
    assert evaluate_judge(result.out, grounds_set)["ground"] >= 0.9


def test_save_load_is_exact(tmp_path):
    torch.manual_seed(0)
    judge = Judge(JudgeSpec(labels={"style": ["a", "b", "c"]}, image_size=16, widths=(8, 16), feature_dim=8)).eval()
    images = torch.rand(2, 3, 20, 20)
    again = load_judge(save_judge(judge, tmp_path / "j"))
    assert torch.equal(judge(images)["style"], again(images)["style"])
    assert judge.features(images).shape == (2, 8)


def test_unlabelled_data_and_unknown_labels_are_clear_errors(grounds_set, tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "manifest.jsonl").write_text('{"image": "images/x.png"}\n')
    with pytest.raises(UserError, match="no labelled images"):
        train_judge(JudgeTrainConfig(data=tmp_path / "plain", out=tmp_path / "j", progress=False))
    judge = Judge(JudgeSpec(labels={"style": ["pollock"]}, image_size=16, widths=(8,), feature_dim=8))
    save_judge(judge, tmp_path / "j2")
    with pytest.raises(UserError, match="rothko"):
        evaluate_judge(tmp_path / "j2", grounds_set)
    with pytest.raises(UserError, match="not a judge directory"):
        load_judge(tmp_path / "plain")
