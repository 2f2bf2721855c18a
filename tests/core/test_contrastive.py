"""CLIP and CLOOB losses against hand-computed values, symmetry and gradient flow."""

import math

import pytest
import torch

from artdiff.core.contrastive import clip_loss, cloob_loss, hopfield_retrieval, info_loob


def _unit(rows):
    return [[v / math.sqrt(sum(c * c for c in row)) for v in row] for row in rows]


def _dot(a, b):
    return sum(p * q for p, q in zip(a, b))


def _infonce_rows(anchors, samples, scale):
    """-log softmax of the matching sample, averaged over anchors, with explicit loops."""
    total = 0.0
    for i, a in enumerate(anchors):
        logits = [scale * _dot(a, s) for s in samples]
        total += -logits[i] + math.log(sum(math.exp(v) for v in logits))
    return total / len(anchors)


def _infoloob_rows(anchors, samples, inv_tau):
    """InfoLOOB with explicit loops: the positive is left out of the denominator."""
    total = 0.0
    for i, a in enumerate(anchors):
        logits = [inv_tau * _dot(a, s) for s in samples]
        total += -logits[i] + math.log(sum(math.exp(v) for j, v in enumerate(logits) if j != i))
    return total / len(anchors)


def _retrieve(states, stored, beta):
    """One modern-Hopfield update per state, normalised, with explicit loops."""
    out = []
    for s in states:
        weights = [math.exp(beta * _dot(s, m)) for m in stored]
        total = sum(weights)
        vector = [sum(w / total * m[k] for w, m in zip(weights, stored)) for k in range(len(s))]
        out.append(_unit([vector])[0])
    return out


X = _unit([[1.0, 0.2, 0.0], [0.1, 1.0, 0.3], [0.0, 0.4, 1.0]])
Y = _unit([[0.9, 0.0, 0.3], [0.2, 1.0, 0.0], [0.3, 0.1, 1.0]])
LOSSES = [lambda x, y: clip_loss(x, y, 14.3), lambda x, y: cloob_loss(x, y, 30.0, 8.0)]


def test_clip_loss_on_orthonormal_pairs_is_softplus_of_minus_scale():
    eye = torch.eye(2)
    # Each row: -log(e^s / (e^s + e^0)) = log(1 + e^-s), the same in both directions.
    assert clip_loss(eye, eye, 5.0).item() == pytest.approx(math.log1p(math.exp(-5.0)), rel=1e-6)


def test_clip_loss_matches_explicit_loops():
    # A small scale keeps the loss near 1, where float32 has digits to spare.
    expected = (_infonce_rows(X, Y, 3.0) + _infonce_rows(Y, X, 3.0)) / 2
    assert clip_loss(torch.tensor(X), torch.tensor(Y), 3.0).item() == pytest.approx(expected, rel=1e-5)


def test_clip_loss_normalises_its_inputs_and_takes_a_tensor_scale():
    x, y = torch.tensor(X), torch.tensor(Y)
    scaled = clip_loss(3 * x, 0.5 * y, torch.tensor(14.3))
    assert scaled.item() == pytest.approx(clip_loss(x, y, 14.3).item(), rel=1e-6)


def test_cloob_loss_on_orthonormal_pairs_by_hand():
    beta, inv_tau = 1.0, 10.0
    # x = y = I: every retrieval gives (p, 1-p) / norm with p = e / (e + 1), so the positive similarity is 1
    # and the only negative is c = 2p(1-p) / (p^2 + (1-p)^2); each row loses inv_tau * (c - 1).
    p = math.e / (math.e + 1)
    c = 2 * p * (1 - p) / (p * p + (1 - p) ** 2)
    loss = cloob_loss(torch.eye(2), torch.eye(2), inv_tau, beta)
    assert loss.item() == pytest.approx(inv_tau * (c - 1), rel=1e-5)
    assert loss.item() < 0  # InfoLOOB leaves the positive out, so it is not bounded below by zero


def test_cloob_loss_matches_explicit_loops():
    beta, inv_tau = 8.0, 30.0
    u_x, u_y = _retrieve(X, X, beta), _retrieve(Y, X, beta)
    v_x, v_y = _retrieve(X, Y, beta), _retrieve(Y, Y, beta)
    expected = (_infoloob_rows(u_x, u_y, inv_tau) + _infoloob_rows(v_y, v_x, inv_tau)) / 2
    loss = cloob_loss(torch.tensor(X), torch.tensor(Y), inv_tau, beta)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_hopfield_retrieval_matches_explicit_loops():
    got = hopfield_retrieval(torch.tensor(Y), torch.tensor(X), 3.0)
    assert torch.allclose(got, torch.tensor(_retrieve(Y, X, 3.0)), atol=1e-6)


def test_info_loob_matches_explicit_loops():
    got = info_loob(torch.tensor(X), torch.tensor(Y), 7.0)
    assert got.item() == pytest.approx(_infoloob_rows(X, Y, 7.0), rel=1e-5)


def test_cloob_with_sharp_retrieval_is_plain_infoloob():
    # A huge beta retrieves the nearest stored pattern; pairs are near-duplicates, so U_x = U_y = X and
    # V_x = V_y = Y, and CLOOB reduces to InfoLOOB(X, X) and InfoLOOB(Y, Y).
    x = torch.tensor(X)
    y = torch.nn.functional.normalize(x + 0.01 * torch.tensor(Y), dim=-1)
    expected = (_infoloob_rows(X, X, 4.0) + _infoloob_rows(y.tolist(), y.tolist(), 4.0)) / 2
    assert cloob_loss(x, y, 4.0, 1e4).item() == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("loss_fn", LOSSES, ids=["clip", "cloob"])
def test_losses_are_symmetric_and_permutation_invariant(loss_fn):
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 8, generator=generator), torch.randn(5, 8, generator=generator)
    order = torch.tensor([3, 0, 4, 1, 2])
    assert loss_fn(x, y).item() == pytest.approx(loss_fn(y, x).item(), rel=1e-5)
    assert loss_fn(x, y).item() == pytest.approx(loss_fn(x[order], y[order]).item(), rel=1e-5)


@pytest.mark.parametrize("loss_fn", LOSSES, ids=["clip", "cloob"])
def test_gradients_reach_both_towers_and_lower_the_loss(loss_fn):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(4, 6, generator=generator, requires_grad=True)
    y = torch.randn(4, 6, generator=generator, requires_grad=True)
    loss = loss_fn(x, y)
    loss.backward()
    for grad in (x.grad, y.grad):
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    with torch.no_grad():
        stepped = loss_fn(x - 0.05 * x.grad, y - 0.05 * y.grad)
    assert stepped < loss


def test_matched_pairs_score_lower_than_shuffled_ones():
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(6, 16, generator=generator)
    y = x + 0.1 * torch.randn(6, 16, generator=generator)
    shuffled = y[torch.tensor([1, 2, 3, 4, 5, 0])]
    assert clip_loss(x, y, 14.3) < clip_loss(x, shuffled, 14.3)
    assert cloob_loss(x, y) < cloob_loss(x, shuffled)


def test_learnable_temperatures_get_gradients():
    inv_tau = torch.tensor(30.0, requires_grad=True)
    beta = torch.tensor(8.0, requires_grad=True)
    cloob_loss(torch.tensor(X), torch.tensor(Y), inv_tau, beta).backward()
    assert inv_tau.grad is not None and beta.grad is not None and beta.grad != 0


def test_bad_shapes_and_single_pair_batches_are_refused():
    with pytest.raises(ValueError, match="one shape"):
        clip_loss(torch.randn(3, 4), torch.randn(2, 4), 1.0)
    with pytest.raises(ValueError, match="at least 2"):
        cloob_loss(torch.randn(1, 4), torch.randn(1, 4))


def test_half_precision_inputs_give_float32_losses():
    x, y = torch.tensor(X).half(), torch.tensor(Y).half()
    assert cloob_loss(x, y).dtype == torch.float32
    assert clip_loss(x, y, 14.3).item() == pytest.approx(clip_loss(x.float(), y.float(), 14.3).item(), rel=1e-5)
