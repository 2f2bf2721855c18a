"""The shipped judge loads from the package and names fresh synthetic images correctly."""

from artdiff.data.synthetic import SynthConfig, generate_dataset
from artdiff.evaluate.judge_eval import evaluate_judge
from artdiff.utils.assets import SHIPPED_JUDGE


def test_shipped_judge_on_unseen_images(tmp_path):
    generate_dataset(SynthConfig(out=tmp_path, n=96, size=64, seed=777, workers=1, progress=False))
    scores = evaluate_judge(SHIPPED_JUDGE, tmp_path)
    # 96 images: the held-out figures (0.99+) leave room for a few mistakes in a small sample.
    assert scores["images"] == 96 and scores["style"] >= 0.93 and scores["palette"] >= 0.93
    assert scores["ground"] >= 0.97
