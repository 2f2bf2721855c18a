"""Contrastive objectives for joint text-image encoders: CLIP's InfoNCE and CLOOB's Hopfield + InfoLOOB.

Notation (Fürst et al. 2021, "CLOOB: Modern Hopfield Networks with InfoLOOB Outperform CLIP"):
x_i image embeddings, y_i caption embeddings (pairs share the index i), U = stored images, V = stored
captions. U_x / U_y are the images retrieved by images / by captions, V_x / V_y the captions retrieved by
images / by captions; tau is the temperature and beta the Hopfield inverse temperature.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# Defaults of the official code: ml-jku/cloob's README trains with --init-inv-tau 30 --scale-hopfield 8
# (Conceptual Captions; the paper uses beta = 14.3 for YFCC, crowsonkb/cloob-training beta = 15 for LAION).
CLOOB_INV_TAU = 30.0
CLOOB_HOPFIELD_BETA = 8.0


def _unit_pairs(image_emb: Tensor, text_emb: Tensor, *, min_batch: int) -> tuple[Tensor, Tensor]:
    if image_emb.ndim != 2 or image_emb.shape != text_emb.shape:
        raise ValueError(f"expected two (B, D) embeddings of one shape, got {tuple(image_emb.shape)} and "
                         f"{tuple(text_emb.shape)}")
    if image_emb.shape[0] < min_batch:
        raise ValueError(f"the loss needs a batch of at least {min_batch} pairs, got {image_emb.shape[0]}")
    # float32 whatever the autocast dtype: logits reach inv_tau = 30 and logsumexp over the batch.
    return F.normalize(image_emb.float(), dim=-1), F.normalize(text_emb.float(), dim=-1)


def clip_loss(image_emb: Tensor, text_emb: Tensor, logit_scale: float | Tensor) -> Tensor:
    """Return CLIP's symmetric InfoNCE loss (Radford et al. 2021), the mean of both directions.

    `logit_scale` is the multiplier itself (about 14.3 = 1/0.07 at CLIP's initialisation), that is
    `CLIPModel.logit_scale.exp()`, not the log-parameter. Embeddings are L2-normalised first.
    """
    x, y = _unit_pairs(image_emb, text_emb, min_batch=1)
    logits = logit_scale * x @ y.T  # (B, B): row i = image i against every caption
    labels = torch.arange(x.shape[0], device=x.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def hopfield_retrieval(state: Tensor, stored: Tensor, beta: float | Tensor) -> Tensor:
    """Retrieve with one update of a modern Hopfield network (Ramsauer et al. 2021), L2-normalised as in CLOOB.

    Each row of `state` (N, D) queries the rows of `stored` (M, D): `softmax(beta * state @ stored.T) @ stored`.
    """
    weights = torch.softmax(beta * state @ stored.T, dim=-1)  # (N, M)
    return F.normalize(weights @ stored, dim=-1)  # (N, D)


def info_loob(anchors: Tensor, samples: Tensor, inv_tau: float | Tensor) -> Tensor:
    """Return the InfoLOOB loss (Poole et al. 2019, as used by CLOOB) of row-aligned positive pairs.

    For anchor a_i: `-log(exp(inv_tau a_i.s_i) / sum_{j != i} exp(inv_tau a_i.s_j))`, averaged over i. The
    positive is left out of the denominator, so the loss does not saturate and may go below zero.
    """
    logits = inv_tau * anchors @ samples.T  # (B, B)
    eye = torch.eye(logits.shape[0], dtype=torch.bool, device=logits.device)
    # -inf rather than the official code's large negative constant: exactly leave-one-out.
    negatives = logits.masked_fill(eye, float("-inf")).logsumexp(dim=1)
    return (negatives - logits.diagonal()).mean()


def cloob_loss(image_emb: Tensor, text_emb: Tensor, inv_tau: float | Tensor = CLOOB_INV_TAU,
               hopfield_beta: float | Tensor = CLOOB_HOPFIELD_BETA) -> Tensor:
    """Return the CLOOB loss (Fürst et al. 2021): InfoLOOB on Hopfield-retrieved embeddings, both directions.

    The value is the mean of the two InfoLOOB terms (crowsonkb/cloob-training's scale); ml-jku/cloob
    reports `tau * (sum of both terms)`, which is this value times `2 / inv_tau`. Embeddings are
    L2-normalised first; the batch must hold at least two pairs.
    """
    x, y = _unit_pairs(image_emb, text_emb, min_batch=2)
    u_x = hopfield_retrieval(x, x, hopfield_beta)  # images retrieve from the stored images U
    u_y = hopfield_retrieval(y, x, hopfield_beta)  # captions retrieve from U
    v_x = hopfield_retrieval(x, y, hopfield_beta)  # images retrieve from the stored captions V
    v_y = hopfield_retrieval(y, y, hopfield_beta)  # captions retrieve from V
    # Term 1 anchors U_x and contrasts U_y; term 2 anchors V_y and contrasts V_x (ml-jku/cloob methods.py).
    return (info_loob(u_x, u_y, inv_tau) + info_loob(v_y, v_x, inv_tau)) / 2
