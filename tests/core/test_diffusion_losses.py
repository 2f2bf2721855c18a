"""The hybrid objective's maths against values worked out by hand from the closed forms (Nichol & Dhariwal 2021)."""

import math

import pytest
import torch

from artdiff.core.diffusion_losses import (
    approx_standard_normal_cdf,
    discretized_gaussian_log_likelihood,
    hybrid_loss,
    learned_range_log_variance_at,
    min_snr_weight,
    normal_kl,
    q_sample,
    training_tables,
)


def scalar(value):
    return torch.tensor([[[[value]]]], dtype=torch.float64)  # (1, 1, 1, 1)


def phi(x):
    """The tanh approximation of the normal CDF, written out."""
    return 0.5 * (1 + math.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def test_normal_kl_matches_the_closed_form():
    # KL(N(1, 1) || N(0, 4)) = log(2 / 1) + (1 + 1) / (2 * 4) - 1/2 = log 2 - 0.25
    kl = normal_kl(torch.tensor(1.0), torch.tensor(0.0), torch.tensor(0.0), torch.tensor(math.log(4.0)))
    assert float(kl) == pytest.approx(math.log(2) - 0.25, abs=1e-7)
    assert float(normal_kl(torch.tensor(0.3), torch.tensor(0.2), torch.tensor(0.3), torch.tensor(0.2))) == 0.0


def test_the_cdf_approximation_is_close_to_the_normal_cdf():
    x = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0])
    exact = 0.5 * (1 + torch.erf(x / math.sqrt(2)))
    assert torch.allclose(approx_standard_normal_cdf(x), exact, atol=2e-4)
    assert float(approx_standard_normal_cdf(torch.tensor(0.0))) == 0.5


def test_decoder_likelihood_bins_and_open_end_bins():
    s = 1 / 255  # one standard deviation = half a bin
    x = torch.tensor([0.0, -1.0, 1.0])
    log_p = discretized_gaussian_log_likelihood(x, means=torch.tensor([0.0, -1.0, 1.0]),
                                                log_scales=torch.full((3,), math.log(s)))
    # middle bin [-1/255, 1/255] is +-1 std: Phi(1) - Phi(-1); the end bins reach to -inf / +inf: Phi(1)
    expected = [math.log(phi(1) - phi(-1)), math.log(phi(1)), math.log(1 - phi(-1))]
    assert log_p.tolist() == pytest.approx(expected, abs=1e-6)


def tables():
    return training_tables(torch.tensor([0.1, 0.2], dtype=torch.float64))


def test_tables_by_hand():
    tab = tables()
    # a = (0.9, 0.72); beta-tilde_1 = 0.2 * (1 - 0.9) / (1 - 0.72); t = 0 takes t = 1's (beta-tilde_0 = 0)
    assert tab.alphas_cumprod.tolist() == pytest.approx([0.9, 0.72])
    assert tab.posterior_log_variance_clipped.exp().tolist() == pytest.approx([0.02 / 0.28, 0.02 / 0.28])
    assert tab.posterior_mean_coef1.tolist() == pytest.approx([1.0, 0.2 * math.sqrt(0.9) / 0.28])
    assert tab.posterior_mean_coef2.tolist() == pytest.approx([0.0, 0.1 * math.sqrt(0.8) / 0.28])


def test_learned_range_interpolates_between_the_two_variances():
    tab, t = tables(), torch.tensor([1, 1, 1])
    v = torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64).reshape(3, 1, 1, 1)
    log_var = learned_range_log_variance_at(tab, v, t).flatten().tolist()
    low, high = math.log(0.02 / 0.28), math.log(0.2)
    assert log_var == pytest.approx([high, low, (high + low) / 2])


def test_hybrid_loss_at_t1_is_mse_plus_the_kl_in_bits():
    tab, t = tables(), torch.tensor([1])
    x0, eps = scalar(0.5), scalar(1.0)
    x_t = q_sample(tab, x0, t, eps)
    output = torch.cat([scalar(0.0), scalar(0.0)], dim=1)  # eps prediction 0, v = 0
    terms = hybrid_loss(tab, output, x0=x0, x_t=x_t, eps=eps, t=t)
    # by hand: x_t = sqrt(.72) * .5 + sqrt(.28); the model's x0 = x_t / sqrt(.72); both means by the posterior coefs
    xt = math.sqrt(0.72) * 0.5 + math.sqrt(0.28)
    c1, c2 = 0.2 * math.sqrt(0.9) / 0.28, 0.1 * math.sqrt(0.8) / 0.28
    mu, mu_model = c1 * 0.5 + c2 * xt, c1 * xt / math.sqrt(0.72) + c2 * xt
    var_true, log_var_model = 0.02 / 0.28, 0.5 * math.log(0.2) + 0.5 * math.log(0.02 / 0.28)
    kl = 0.5 * (-1 + log_var_model - math.log(var_true) + var_true / math.exp(log_var_model)
                + (mu - mu_model) ** 2 / math.exp(log_var_model))
    assert float(terms.mse) == pytest.approx(1.0)
    assert float(terms.vb) == pytest.approx(kl / math.log(2), rel=1e-9)
    assert float(terms.loss) == pytest.approx(1.0 + kl / math.log(2), rel=1e-9)
    rescaled = hybrid_loss(tab, output, x0=x0, x_t=x_t, eps=eps, t=t, rescale_learned_sigmas=True)
    assert float(rescaled.vb) == pytest.approx(kl / math.log(2) * 2 / 1000, rel=1e-9)  # T / 1000


def test_hybrid_loss_at_t0_is_the_decoder_nll():
    tab, t = tables(), torch.tensor([0])
    x0, eps = scalar(0.0), scalar(0.01)
    x_t = q_sample(tab, x0, t, eps)
    output = torch.cat([scalar(0.0), scalar(-1.0)], dim=1)  # v = -1: the variance is beta-tilde (clipped)
    terms = hybrid_loss(tab, output, x0=x0, x_t=x_t, eps=eps, t=t)
    mean = math.sqrt(0.1) * 0.01 / math.sqrt(0.9)  # coef1 = 1 and coef2 = 0 at t = 0: the mean is the model's x0
    std = math.sqrt(0.02 / 0.28)
    nll = -math.log(phi((0 - mean + 1 / 255) / std) - phi((0 - mean - 1 / 255) / std))
    assert float(terms.vb) == pytest.approx(nll / math.log(2), rel=1e-6)


def test_the_vb_term_trains_only_the_variance_channels():
    tab, t = tables(), torch.tensor([1, 0])
    generator = torch.Generator().manual_seed(0)
    x0 = torch.rand(2, 3, 4, 4, generator=generator, dtype=torch.float64) * 2 - 1
    eps = torch.randn(2, 3, 4, 4, generator=generator, dtype=torch.float64)
    output = torch.randn(2, 6, 4, 4, generator=generator, dtype=torch.float64).requires_grad_()
    terms = hybrid_loss(tab, output, x0=x0, x_t=q_sample(tab, x0, t, eps), eps=eps, t=t)
    (vb_grad,) = torch.autograd.grad(terms.vb.sum(), output, retain_graph=True)
    (mse_grad,) = torch.autograd.grad(terms.mse.sum(), output)
    assert vb_grad[:, :3].abs().max() == 0 and vb_grad[:, 3:].abs().min() > 0
    assert mse_grad[:, 3:].abs().max() == 0 and mse_grad[:, :3].abs().max() > 0


def test_fixed_variance_is_the_simple_loss_and_x0_targets_x0():
    tab, t = tables(), torch.tensor([1])
    x0, eps = scalar(0.5), scalar(1.0)
    x_t = q_sample(tab, x0, t, eps)
    fixed = hybrid_loss(tab, scalar(0.25), x0=x0, x_t=x_t, eps=eps, t=t, learn_sigma=False)
    assert (float(fixed.loss), float(fixed.vb)) == (pytest.approx(0.5625), 0.0)
    x0_model = hybrid_loss(tab, scalar(0.25), x0=x0, x_t=x_t, eps=eps, t=t, learn_sigma=False,
                           parameterization="x0")
    assert float(x0_model.loss) == pytest.approx(0.0625)
    with pytest.raises(ValueError, match="must output 2 channels"):
        hybrid_loss(tab, scalar(0.0), x0=x0, x_t=x_t, eps=eps, t=t)


def test_v_targets_v_and_its_vb_term_sees_the_same_x0_as_eps():
    tab, t = tables(), torch.tensor([1])
    x0, eps = scalar(0.5), scalar(1.0)
    x_t = q_sample(tab, x0, t, eps)
    # by hand at a = 0.72: v = sqrt(.72) * 1 - sqrt(.28) * .5; a prediction of 0 scores v^2
    v = math.sqrt(0.72) - math.sqrt(0.28) * 0.5
    fixed = hybrid_loss(tab, scalar(0.0), x0=x0, x_t=x_t, eps=eps, t=t, learn_sigma=False, parameterization="v")
    assert float(fixed.mse) == pytest.approx(v**2, rel=1e-9)
    # the exact v and the exact eps both mean the true x0, so their vb terms agree (same variance channel)
    by_v = hybrid_loss(tab, torch.cat([scalar(v), scalar(0.3)], 1), x0=x0, x_t=x_t, eps=eps, t=t,
                       parameterization="v")
    by_eps = hybrid_loss(tab, torch.cat([eps, scalar(0.3)], 1), x0=x0, x_t=x_t, eps=eps, t=t)
    assert float(by_v.mse) == pytest.approx(0.0, abs=1e-12)
    assert float(by_v.vb) == pytest.approx(float(by_eps.vb), rel=1e-9)
    with pytest.raises(ValueError, match="unknown parameterization"):
        hybrid_loss(tab, scalar(0.0), x0=x0, x_t=x_t, eps=eps, t=t, learn_sigma=False, parameterization="score")


def test_min_snr_weights_cap_the_nearly_clean_steps():
    tab, t = tables(), torch.tensor([0, 1])
    snr = [0.9 / 0.1, 0.72 / 0.28]  # 9 and about 2.57
    weights = {name: min_snr_weight(tab, t, name, 5.0).tolist() for name in ("eps", "v", "x0")}
    assert weights["eps"] == pytest.approx([5 / snr[0], 1.0])
    assert weights["v"] == pytest.approx([5 / (snr[0] + 1), snr[1] / (snr[1] + 1)])
    assert weights["x0"] == pytest.approx([5.0, snr[1]])
    x0, eps = scalar(0.5).expand(2, 1, 1, 1), scalar(1.0).expand(2, 1, 1, 1)
    x_t = q_sample(tab, x0, t, eps)
    plain = hybrid_loss(tab, torch.zeros_like(x0), x0=x0, x_t=x_t, eps=eps, t=t, learn_sigma=False)
    weighted = hybrid_loss(tab, torch.zeros_like(x0), x0=x0, x_t=x_t, eps=eps, t=t, learn_sigma=False,
                           snr_gamma=5.0)
    assert weighted.mse.tolist() == pytest.approx([plain.mse[0].item() * 5 / 9, plain.mse[1].item()], rel=1e-6)
