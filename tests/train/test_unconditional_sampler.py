"""Timestep samplers: uniform draws from example seeds; loss-second-moment weights, history and saved state."""

import pytest
import torch

from artdiff.train.timestep_sampler import LossSecondMomentSampler, UniformSampler, make_timestep_sampler


def draws(sampler, seeds):
    return [sampler.draw(torch.Generator().manual_seed(s)) for s in seeds]


def warm(sampler, losses_per_t, *, seed0=0):
    """Ten losses at every t (sampler.history), recorded as one step and folded in."""
    seeds, ts, losses = [], [], []
    for t, value in enumerate(losses_per_t):
        for k in range(sampler.history):
            seeds.append(seed0 + t * 100 + k)
            ts.append(t)
            losses.append(value)
    sampler.record(seeds, ts, losses)
    sampler.begin_step()


def test_uniform_draws_depend_only_on_the_seed():
    sampler = UniformSampler(5)
    assert draws(sampler, [3, 4, 5]) == draws(UniformSampler(5), [3, 4, 5])
    ts = [t for t, _ in draws(sampler, range(200))]
    assert set(ts) == {0, 1, 2, 3, 4} and all(w == 1.0 for _, w in draws(sampler, range(5)))


def test_second_moment_is_uniform_until_every_t_has_ten_losses():
    sampler = LossSecondMomentSampler(4)
    warm(sampler, [1.0, 2.0, 3.0])  # t = 3 has none yet
    sampler.record([0], [3], [4.0])
    sampler.begin_step()
    assert not sampler.warmed_up() and sampler.probabilities().tolist() == [0.25] * 4
    assert draws(sampler, [7, 8]) == draws(UniformSampler(4), [7, 8])


def test_second_moment_weights_by_hand():
    sampler = LossSecondMomentSampler(4)
    warm(sampler, [1.0, 2.0, 3.0, 4.0])
    # sqrt(E[L^2]) = L; normalised by 10, times 0.999, plus 0.001 / 4
    expected = [value / 10 * 0.999 + 0.00025 for value in (1, 2, 3, 4)]
    assert sampler.warmed_up() and sampler.probabilities().tolist() == pytest.approx(expected)
    t, weight = sampler.draw(torch.Generator().manual_seed(0))
    assert weight == pytest.approx(1 / (4 * expected[t]))


def test_draws_follow_the_weights_and_the_history_keeps_the_last_ten():
    sampler = LossSecondMomentSampler(4)
    warm(sampler, [0.0, 0.0, 0.0, 100.0])
    ts = [t for t, _ in draws(sampler, range(100))]
    assert ts.count(3) >= 95  # p = 0.99925
    sampler.record([5, 1], [0, 0], [7.0, 9.0])  # folded in seed order: 9 (seed 1) then 7 (seed 5)
    assert sampler.losses[0, -1] == 0.0  # nothing changes before the next step begins
    sampler.begin_step()
    assert sampler.losses[0, -2:].tolist() == [9.0, 7.0] and sampler.counts[0] == 10


def test_all_zero_losses_keep_it_uniform():
    sampler = LossSecondMomentSampler(3)
    warm(sampler, [0.0, 0.0, 0.0])
    assert sampler.warmed_up() and sampler.probabilities().tolist() == pytest.approx([1 / 3] * 3)


def test_non_finite_losses_are_not_kept():
    sampler = LossSecondMomentSampler(2)
    sampler.record([0, 1, 2], [0, 0, 1], [float("nan"), 1.0, float("inf")])
    sampler.begin_step()
    assert sampler.counts.tolist() == [1, 0]


def test_state_round_trip_includes_the_finished_step():
    sampler = LossSecondMomentSampler(3)
    warm(sampler, [1.0, 5.0, 2.0])
    sampler.record([10, 11], [1, 2], [3.0, 4.0])  # a finished step whose losses are still pending
    state = sampler.state_dict()
    restored = LossSecondMomentSampler(3)
    restored.load_state_dict(state)
    assert torch.equal(restored.losses, sampler.losses) and torch.equal(restored.counts, sampler.counts)
    assert restored.losses[1, -1] == 3.0
    assert draws(restored, range(20)) == draws(sampler, range(20))
    with pytest.raises(ValueError, match="loss history"):
        LossSecondMomentSampler(4).load_state_dict(state)


def test_unknown_sampler_name():
    assert isinstance(make_timestep_sampler("loss-second-moment", 3), LossSecondMomentSampler)
    with pytest.raises(ValueError, match="uniform or loss-second-moment"):
        make_timestep_sampler("importance", 3)
