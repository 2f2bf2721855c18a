"""Encoder evaluation on embedders whose vectors are set by hand: exact zero-shot, recall and gap figures."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from artdiff.data.synthetic import SynthConfig, generate_dataset
from artdiff.data.synthetic_labels import LABEL_KEYS, canonical_prompt, labels_in_text
from artdiff.errors import UserError
from artdiff.evaluate.encoder_eval import VOCAB, class_prompts, evaluate_encoder, recall_at
from artdiff.models import factory
from artdiff.models.encoders import JointEncoder
from artdiff.models.specs import build_clip_model, clip_preset
from artdiff.models.tokenizer import build_tokenizer

SLOTS = [(kind, label) for kind in LABEL_KEYS for label in VOCAB[kind]]  # 8 styles + 6 palettes + 2 grounds


def one_hot_labels(labels: dict[str, str]) -> torch.Tensor:
    """A 16-d vector with a one in the slot of each label it names."""
    vector = torch.zeros(len(SLOTS))
    for kind, label in labels.items():
        vector[SLOTS.index((kind, label))] = 1.0
    return vector


class FakeEncoder:
    """Image i (a flat PNG of grey level 40 i) embeds to image_vectors[i]; a text to text_vectors[text], or
    else to the one-hot code of the labels it names."""

    def __init__(self, image_vectors, text_vectors=None):
        self.image_vectors = image_vectors
        self.text_vectors = text_vectors or {}

    def embed_images(self, images):
        return torch.stack([self.image_vectors[round(float(x[0, 0, 0]) * 255 / 40)] for x in images])

    def embed_text(self, texts):
        return torch.stack([self.text_vectors[t] if t in self.text_vectors else one_hot_labels(labels_in_text(t))
                            for t in texts])


def write_set(root, captions, labels=None):
    """A dataset of flat 8 px images, image i at grey level 40 i, with the given captions and labels."""
    (root / "images").mkdir(parents=True)
    records = []
    for i, caption in enumerate(captions):
        Image.new("RGB", (8, 8), (40 * i,) * 3).save(root / "images" / f"{i}.png")
        record = {"image": f"images/{i}.png", "caption": caption}
        if labels is not None:
            record["labels"] = labels[i]
        records.append(record)
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


def test_zero_shot_accuracy_counts_the_images_nearest_their_class_prompts(tmp_path):
    truth = [{"style": "mondrian", "palette": "warm", "ground": "light"},
             {"style": "rothko", "palette": "cool", "ground": "dark"},
             {"style": "pollock", "palette": "pastel", "ground": "light"},
             {"style": "op-art", "palette": "primary", "ground": "dark"}]
    # What each image "looks like" to the encoder: image 1 has the wrong palette, image 2 wrong style and palette.
    seen = [truth[0], {**truth[1], "palette": "earth"},
            {**truth[2], "style": "kandinsky", "palette": "monochrome"}, truth[3]]
    data = write_set(tmp_path / "set", [canonical_prompt(t) for t in truth], truth)
    encoder = FakeEncoder([one_hot_labels(s) for s in seen])
    report = evaluate_encoder(encoder, data)
    assert report.zero_shot == {"style": 0.75, "palette": 0.5, "ground": 1.0}
    assert report.chance == {"style": 1 / 8, "palette": 1 / 6, "ground": 1 / 2}
    assert report.images == 4 and report.to_json()["chance"]["palette"] == 0.1667


def test_class_prompts_name_their_class_under_every_mix_of_the_others():
    prompts = class_prompts("palette", "earth")
    assert len(prompts) == 8 * 2 * 3  # styles x grounds x (canonical + two sampled captions)
    assert all(labels_in_text(p)["palette"] == "earth" for p in prompts)
    assert class_prompts("palette", "earth") == prompts  # fixed seeds: the same prompts every run


def test_recall_and_modality_gap_by_hand(tmp_path):
    # Image i is e_i; caption j is (e_s(j) + e_6) / sqrt(2) with s swapping 4 and 5, so pairs 4 and 5 miss.
    images = [torch.eye(7)[i] for i in range(6)]
    swap = [0, 1, 2, 3, 5, 4]
    captions = [f"caption {j}" for j in range(6)]
    texts = {captions[j]: (torch.eye(7)[swap[j]] + torch.eye(7)[6]) / math.sqrt(2) for j in range(6)}
    data = write_set(tmp_path / "set", captions)  # no labels: retrieval and gap only
    report = evaluate_encoder(FakeEncoder(images, texts), data, zero_shot=False)
    # Row 4: caption 5 is closer and captions 0-3 tie with caption 4 at 0 but come first, so rank 5 (R@5 misses).
    assert report.image_to_text == {"R@1": 4 / 6, "R@5": 4 / 6}
    assert report.text_to_image == {"R@1": 4 / 6, "R@5": 4 / 6}
    assert report.paired_cosine == pytest.approx(4 / 6 / math.sqrt(2))
    # Centroids: images 1/6 on dims 0-5; texts 1/(6 sqrt 2) there and 1/sqrt 2 on dim 6.
    assert report.centroid_distance == pytest.approx(math.sqrt((1 - 2 ** -0.5) ** 2 / 6 + 0.5))
    assert report.zero_shot == {} and report.skipped == {}


def test_recall_ties_go_to_the_lower_index():
    similarity = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.5, 0.2]])
    # Row 0: tie with column 1, itself first -> rank 0. Row 1: tie with column 0, which comes first -> rank 1.
    # Row 2: column 1 is closer -> rank 1.
    assert recall_at(similarity, ks=(1, 2)) == {"R@1": pytest.approx(1 / 3), "R@2": 1.0}


def test_max_images_and_skipped_records(tmp_path):
    data = write_set(tmp_path / "set", [f"caption {j}" for j in range(5)])
    with open(data / "manifest.jsonl", "a") as manifest:
        manifest.write(json.dumps({"image": "images/none.png", "caption": ""}) + "\n")
        manifest.write(json.dumps({"image": "images/gone.png", "caption": "a missing file"}) + "\n")
    encoder = FakeEncoder([torch.eye(5)[i] for i in range(5)],
                          {**{f"caption {j}": torch.eye(5)[j] for j in range(5)}, "a missing file": torch.ones(5)})
    report = evaluate_encoder(encoder, data, zero_shot=False)
    assert report.images == 5 and report.skipped == {"no caption": 1, "unreadable image": 1}
    assert report.image_to_text["R@1"] == 1.0 and report.paired_cosine == pytest.approx(1.0)
    assert evaluate_encoder(encoder, data, max_images=3, zero_shot=False).images == 3


def test_bad_inputs_are_one_line_errors(tmp_path):
    plain = write_set(tmp_path / "plain", ["a", "b"])
    encoder = FakeEncoder([torch.eye(2)[0], torch.eye(2)[1]], {"a": torch.eye(2)[0], "b": torch.eye(2)[1]})
    with pytest.raises(UserError, match="no labels.*zero_shot=False"):
        evaluate_encoder(encoder, plain)
    odd = write_set(tmp_path / "odd", ["a", "b"], [{"style": "cubism"}, {"style": "rothko"}])
    with pytest.raises(UserError, match="cubism"):
        evaluate_encoder(encoder, odd)
    uncaptioned = write_set(tmp_path / "uncaptioned", ["", ""])
    with pytest.raises(UserError, match="0 captioned image"):
        evaluate_encoder(encoder, uncaptioned, zero_shot=False)
    with pytest.raises(UserError, match="max_images"):
        evaluate_encoder(encoder, plain, max_images=0, zero_shot=False)
    with pytest.raises(UserError, match="not an artdiff dataset"):
        evaluate_encoder(encoder, tmp_path)


def test_a_real_joint_encoder_is_evaluated_end_to_end(tmp_path):
    data = tmp_path / "synth"
    generate_dataset(SynthConfig(out=data, n=12, size=24, workers=1, progress=False))  # resized to 32 by the contract
    captions = [json.loads(line)["caption"] for line in (data / "manifest.jsonl").read_text().splitlines()]
    info = build_tokenizer(captions * 2, tmp_path / "tok", vocab_size=600)
    torch.manual_seed(0)
    model = build_clip_model(clip_preset("tiny"), vocab_size=info.vocab_size, bos_token_id=info.bos_token_id,
                             eos_token_id=info.eos_token_id)
    encoder = JointEncoder.from_clip_model(model.eval(), factory.load_clip_tokenizer(info.path))
    report = evaluate_encoder(encoder, data, batch_size=5).to_json()
    assert report["images"] == 12 and set(report["zero_shot"]) == {"style", "palette", "ground"}
    values = [*report["zero_shot"].values(), *report["image_to_text"].values(), *report["text_to_image"].values()]
    assert all(0 <= v <= 1 for v in values) and -1 <= report["paired_cosine"] <= 1
    assert np.isfinite(report["centroid_distance"])
