"""ChannelsLastAdamW: torch's AdamW, bit for bit, without the copies of channels_last weights."""
import copy

import pytest
import torch
from torch import nn

from litemono.optim import ChannelsLastAdamW

OPTIONS = dict(lr=1e-2, weight_decay=0.05, fused=True)


def _net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 4, 1), nn.Conv2d(4, 5, 3, padding=1))
    return net.to(memory_format=torch.channels_last)


def _batch(seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, 6, 7, generator=generator).contiguous(
        memory_format=torch.channels_last)


def _train(net, optimizer, steps, first_seed=0):
    for seed in range(first_seed, first_seed + steps):
        optimizer.zero_grad(set_to_none=True)
        net(_batch(seed)).square().mean().backward()
        optimizer.step()


def test_same_updates_and_state_as_adamw_bit_for_bit():
    plain_net, ours_net = _net(), _net()
    plain = torch.optim.AdamW(plain_net.parameters(), **OPTIONS)
    ours = ChannelsLastAdamW(ours_net.parameters(), **OPTIONS)
    # the 3x3 weights are channels_last only (aliased); 1x1 weights, biases, BN are not
    assert len(ours._aliases) == 2
    _train(plain_net, plain, 3)
    _train(ours_net, ours, 3)
    for a, b in zip(plain_net.parameters(), ours_net.parameters()):
        assert torch.equal(a, b) and a.stride() == b.stride()
    want, got = plain.state_dict(), ours.state_dict()
    assert want["param_groups"] == got["param_groups"]
    assert want["state"].keys() == got["state"].keys()
    for index, moments in want["state"].items():
        for key, value in moments.items():
            assert got["state"][index][key].shape == value.shape  # the parameters' own shapes
            assert torch.equal(got["state"][index][key], value)


@pytest.mark.parametrize("direction", ["ours_to_plain", "plain_to_ours"])
def test_state_round_trips_with_plain_adamw(direction):
    source_net, target_net, reference_net = _net(), _net(), _net()
    make_source, make_target = ((ChannelsLastAdamW, torch.optim.AdamW)
                                if direction == "ours_to_plain"
                                else (torch.optim.AdamW, ChannelsLastAdamW))
    source = make_source(source_net.parameters(), **OPTIONS)
    reference = torch.optim.AdamW(reference_net.parameters(), **OPTIONS)
    _train(source_net, source, 2)
    _train(reference_net, reference, 2)
    target_net.load_state_dict(source_net.state_dict())
    target = make_target(target_net.parameters(), **OPTIONS)
    target.load_state_dict(copy.deepcopy(source.state_dict()))
    _train(target_net, target, 2, first_seed=2)
    _train(reference_net, reference, 2, first_seed=2)
    for a, b in zip(reference_net.parameters(), target_net.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("set_to_none", [True, False])
def test_zero_grad_clears_the_parameters_too(set_to_none):
    net = _net()
    optimizer = ChannelsLastAdamW(net.parameters(), **OPTIONS)
    net(_batch(0)).sum().backward()
    optimizer.zero_grad(set_to_none=set_to_none)
    for param in net.parameters():
        assert param.grad is None if set_to_none else not param.grad.any()


def test_gradients_set_by_hand_and_the_grad_scaler_reach_the_aliases():
    net, reference_net = _net(), _net()
    optimizer = ChannelsLastAdamW(net.parameters(), **OPTIONS)
    reference = torch.optim.AdamW(reference_net.parameters(), **OPTIONS)
    for param, ref in zip(net.parameters(), reference_net.parameters()):
        grad = torch.randn_like(param)  # channels_last like the parameter
        param.grad, ref.grad = grad.clone(), grad.clone()
    optimizer.step()
    reference.step()
    for a, b in zip(reference_net.parameters(), net.parameters()):
        assert torch.equal(a, b)
    # GradScaler.unscale_ divides the gradients the optimiser holds: the parameters' own
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    optimizer.zero_grad()
    net(_batch(1)).square().mean().backward()
    scaled = [p.grad.clone() for p in net.parameters()]
    optimizer.zero_grad()
    scaler.scale(net(_batch(1)).square().mean()).backward()
    scaler.unscale_(optimizer)
    for param, grad in zip(net.parameters(), scaled):
        torch.testing.assert_close(param.grad, grad)


def test_refuses_groups_and_parameters_that_moved():
    net = _net()
    with pytest.raises(TypeError, match="not groups"):
        ChannelsLastAdamW([{"params": list(net.parameters())}], **OPTIONS)
    optimizer = ChannelsLastAdamW(net.parameters(), **OPTIONS)
    net.to(memory_format=torch.contiguous_format)  # replaces every weight's .data
    net(_batch(0).contiguous()).sum().backward()
    with pytest.raises(RuntimeError, match="no longer uses the memory"):
        optimizer.step()
