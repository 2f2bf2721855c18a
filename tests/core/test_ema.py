"""EMA averages with a warmup that starts from the current weights."""

import torch

from artdiff.core.ema import EMA, ema_decay


def test_decay_warms_up_and_caps():
    assert ema_decay(0, decay=0.999) == 0.0
    assert 0 < ema_decay(10, decay=0.999) < ema_decay(1000, decay=0.999) <= 0.999
    assert ema_decay(10**9, decay=0.999) == 0.999 and ema_decay(3, decay=0.9, warmup=False) == 0.9


def test_update_is_a_weighted_average_and_round_trips():
    param = torch.nn.Parameter(torch.zeros(3))
    ema = EMA([param])
    with torch.no_grad():
        param.fill_(1.0)
    ema.update([param], decay=0.75)
    assert torch.allclose(ema.shadow[0], torch.full((3,), 0.25))
    again = EMA([param])
    again.load_state_dict(ema.state_dict())
    again.copy_to([param])
    assert torch.allclose(param, torch.full((3,), 0.25))
