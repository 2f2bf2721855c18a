"""The shipped CLOOB encoder loads from the package and names unseen synthetic images from text zero-shot."""

from artdiff.data.synthetic import SynthConfig, generate_dataset
from artdiff.evaluate.encoder_eval import evaluate_encoder
from artdiff.models.encoders import load_encoder
from artdiff.models.factory import read_model_info
from artdiff.utils.assets import SHIPPED_ENCODER


def test_shipped_cloob_encoder_zero_shot(tmp_path):
    generate_dataset(SynthConfig(out=tmp_path, n=64, size=64, seed=999, workers=1, progress=False))
    encoder = load_encoder(SHIPPED_ENCODER)
    report = evaluate_encoder(encoder, tmp_path, max_images=None).to_json()
    # 64 unseen images: the held-out figures (0.95+) leave room for a few mistakes in a small sample.
    assert report["zero_shot"]["style"] >= 0.8 and report["zero_shot"]["palette"] >= 0.8
    assert read_model_info(SHIPPED_ENCODER).extra["objective"] == "cloob" and encoder.dim == 128
