"""Zero-shot accuracy, retrieval and modality gap of a joint encoder on a captioned set (`artdiff evaluate encoder`).

Every measure uses the dataset's captioned images (records without a caption are skipped and counted):
- zero-shot accuracy per label kind (style, palette, ground of the procedural art set): each image goes to
  the class whose text embedding is the most cosine-similar; needs manifest "labels" (Radford et al. 2021 §3.1);
- retrieval R@1 and R@5 in both directions over the exact (image, caption) pairs;
- the modality gap (Liang et al. 2022, "Mind the Gap"): mean cosine of paired embeddings, and the distance
  between the image and the text centroids.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from artdiff.data.manifest import read_manifest
from artdiff.data.synthetic_labels import GROUNDS, LABEL_KEYS, PALETTES, STYLES, canonical_prompt, caption_for
from artdiff.errors import UserError
from artdiff.utils.images import ImageReadError, read_rgb
from artdiff.utils.progress import progress

VOCAB: dict[str, tuple[str, ...]] = {"style": STYLES, "palette": PALETTES, "ground": GROUNDS}
RECALL_AT = (1, 5)
CAPTIONS_PER_MIX = 2  # sampled captions per label mix, besides its canonical prompt


class Embedder(Protocol):
    """What is evaluated: a JointEncoder, or anything with its two embedding methods."""

    def embed_images(self, images: Any) -> Tensor: ...

    def embed_text(self, texts: Sequence[str]) -> Tensor: ...


@dataclass
class EncoderReport:
    """What evaluate_encoder measured; `zero_shot` is empty when it was not asked for."""

    images: int  # captioned images evaluated
    skipped: dict[str, int]  # records not used, by reason
    zero_shot: dict[str, float]  # label kind -> accuracy over the images labelled with that kind
    chance: dict[str, float]  # label kind -> 1 / number of classes
    image_to_text: dict[str, float]  # "R@1", "R@5"
    text_to_image: dict[str, float]
    paired_cosine: float  # mean cos(image_i, caption_i)
    centroid_distance: float  # || mean image embedding - mean text embedding ||_2

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON data, rounded to 4 decimals."""
        return _rounded(asdict(self))


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def class_prompts(kind: str, label: str) -> list[str]:
    """Prompts naming one class: captions of every mix of the other labels, as the training captions read.

    This is CLIP's prompt ensembling (Radford et al. 2021 §3.1.4) with the caption generator's templates and
    synonyms as the ensemble, and the other label kinds averaged out.
    """
    others = [k for k in LABEL_KEYS if k != kind]
    prompts = []
    for values in itertools.product(*(VOCAB[k] for k in others)):
        labels = {kind: label, **dict(zip(others, values))}
        # A fixed seed per mix: the same prompts every run, different wordings across mixes.
        rng = np.random.default_rng([LABEL_KEYS.index(kind), VOCAB[kind].index(label), len(prompts)])
        prompts += [canonical_prompt(labels), *(caption_for(rng, labels) for _ in range(CAPTIONS_PER_MIX))]
    return prompts


@torch.no_grad()
def class_embeddings(encoder: Embedder, kind: str, *, batch_size: int = 256) -> Tensor:
    """Return one unit-norm text embedding per class of `kind` (C, D): the mean over its prompts."""
    rows = []
    for label in VOCAB[kind]:
        prompts = class_prompts(kind, label)
        embedded = torch.cat([_unit(encoder.embed_text(prompts[i:i + batch_size]))
                              for i in range(0, len(prompts), batch_size)])
        rows.append(F.normalize(embedded.mean(0), dim=-1))
    return torch.stack(rows)


def recall_at(similarity: Tensor, ks: Sequence[int] = RECALL_AT) -> dict[str, float]:
    """Share of rows whose paired column (the diagonal) ranks in the top k; ties go to the lower index.

    The rank is the pair's place in a stable descending sort of its row: identical captions of different
    images tie exactly, and only the first of them in dataset order counts as retrieved.
    """
    ranks = []
    for start in range(0, similarity.shape[0], 1024):  # rows in chunks: an (N, N) bool mask per chunk only
        rows = similarity[start:start + 1024]  # (n, N)
        index = torch.arange(start, start + len(rows))
        paired = rows[torch.arange(len(rows)), index][:, None]  # (n, 1)
        before = torch.arange(similarity.shape[1])[None, :] < index[:, None]  # (n, N)
        ranks.append(((rows > paired) | ((rows == paired) & before)).sum(1))
    rank = torch.cat(ranks)
    return {f"R@{k}": int((rank < k).sum()) / len(rank) for k in ks}


@torch.no_grad()
def evaluate_encoder(encoder: Embedder, data: Path, *, max_images: int | None = None, zero_shot: bool = True,
                     batch_size: int = 256, show_progress: bool = False) -> EncoderReport:
    """Evaluate a joint encoder on a dataset's captioned images (the first `max_images` of the manifest).

    Zero-shot accuracy needs manifest "labels" from the procedural art set's vocabulary; a set without them
    is an error unless `zero_shot=False`, which reports retrieval and the modality gap only.
    """
    if max_images is not None and max_images < 1:
        raise UserError(f"max_images must be at least 1, got {max_images}")
    records, skipped = _captioned(Path(data), max_images)
    kinds = _label_kinds(records, data) if zero_shot else []
    image_emb, skipped_images = _embed_images(encoder, Path(data), records, batch_size, show_progress)
    if skipped_images:
        skipped["unreadable image"] = len(skipped_images)
        records = [r for i, r in enumerate(records) if i not in skipped_images]
    captions = [str(r["caption"]).strip() for r in records]
    text_emb = torch.cat([_unit(encoder.embed_text(captions[i:i + batch_size]))
                          for i in range(0, len(captions), batch_size)])
    accuracy, chance = {}, {}
    for kind in kinds:
        labelled = [i for i, r in enumerate(records) if kind in (r.get("labels") or {})]
        if not labelled:
            continue
        targets = torch.tensor([VOCAB[kind].index(records[i]["labels"][kind]) for i in labelled])
        predicted = (image_emb[labelled] @ class_embeddings(encoder, kind, batch_size=batch_size).T).argmax(1)
        accuracy[kind] = int((predicted == targets).sum()) / len(labelled)
        chance[kind] = 1 / len(VOCAB[kind])
    similarity = image_emb @ text_emb.T  # (N, N): row i = image i against every caption
    return EncoderReport(
        images=len(records), skipped=skipped, zero_shot=accuracy, chance=chance,
        image_to_text=recall_at(similarity), text_to_image=recall_at(similarity.T),
        paired_cosine=(image_emb * text_emb).sum(1).mean().item(),
        centroid_distance=(image_emb.mean(0) - text_emb.mean(0)).norm().item())


def _unit(embeddings: Tensor) -> Tensor:
    # JointEncoder already returns unit vectors; other embedders might not, and cosine needs them.
    return F.normalize(embeddings.detach().float().cpu(), dim=-1)


def _captioned(data: Path, max_images: int | None) -> tuple[list[dict[str, Any]], dict[str, int]]:
    records = read_manifest(data)
    kept = [r for r in records if str(r.get("caption") or "").strip() and r.get("image")]
    skipped = {"no caption": len(records) - len(kept)} if len(kept) < len(records) else {}
    if len(kept) < 2:
        raise UserError(f"{data} has {len(kept)} captioned image(s); evaluating an encoder needs image-caption "
                        "pairs (manifest 'caption'), for instance from `artdiff synth` or `artdiff prepare`")
    return kept[:max_images], skipped


def _label_kinds(records: list[dict[str, Any]], data: Path) -> list[str]:
    """The label kinds present, checked against the procedural art set's vocabulary."""
    kinds = [k for k in LABEL_KEYS if any(k in (r.get("labels") or {}) for r in records)]
    if not kinds:
        raise UserError(f"{data} has no labels (manifest 'labels' with style/palette/ground, as artdiff synth "
                        "writes) for zero-shot accuracy; evaluate retrieval only with zero_shot=False")
    for kind in kinds:
        unknown = sorted({str(r["labels"][kind]) for r in records if kind in (r.get("labels") or {})}
                         - set(VOCAB[kind]))
        if unknown:
            raise UserError(f"{data}: {kind} label(s) {', '.join(unknown)} have no zero-shot prompts (known: "
                            f"{', '.join(VOCAB[kind])}); evaluate retrieval only with zero_shot=False")
    return kinds


def _embed_images(encoder: Embedder, data: Path, records: list[dict[str, Any]], batch_size: int,
                  show_progress: bool) -> tuple[Tensor, set[int]]:
    """Embed the images in batches; return the unit embeddings and the indices of unreadable images."""
    chunks, unreadable = [], set()
    starts = range(0, len(records), batch_size)
    for start in progress(starts, total=len(starts), desc="embedding images", enabled=show_progress):
        pixels = []
        for offset, record in enumerate(records[start:start + batch_size]):
            try:
                array = np.asarray(read_rgb(data / record["image"]).image, dtype=np.float32) / 255  # never a FIFO
            except (OSError, ImageReadError):
                unreadable.add(start + offset)
                continue
            pixels.append(torch.from_numpy(array).permute(2, 0, 1))  # (3, H, W) in [0, 1]
        if pixels:
            same_size = len({p.shape for p in pixels}) == 1
            # One tensor when the sizes agree (one resize for the batch), else a list the encoder resizes one by one.
            chunks.append(_unit(encoder.embed_images(torch.stack(pixels) if same_size else pixels)))
    if len(records) - len(unreadable) < 2:
        raise UserError(f"{data}: fewer than two readable captioned images to evaluate")
    return torch.cat(chunks), unreadable
