"""Shapes and value ranges of every module, the Gaussian policy, and the unrolled model."""
import math

import pytest
import torch
import torch.nn.functional as F

import modules
from conftest import MNIST_ARCH, TRANSLATED_ARCH, settings
from model import Glimpses, RecurrentAttention


def test_retina_shape(device):
    x = torch.randn(5, 3, 60, 60, device=device)
    l = torch.rand(5, 2, device=device) * 2 - 1
    assert modules.Retina(12, 3, 2)(x, l).shape == (5, 3 * 12 * 12 * 3)


def test_glimpse_network_shape_and_relu(device):
    net = modules.GlimpseNetwork(2, 64, 128, 32).to(device)
    g = net(torch.randn(2, 5, 64, device=device), torch.rand(2, 5, 2, device=device) * 2 - 1)
    assert g.shape == (2, 5, 128 + 32)
    assert (g >= 0).all()


def test_core_network_shape_and_relu(device):
    net = modules.CoreNetwork(2, 160, 64).to(device)
    h = net(torch.randn(2, 5, 160, device=device), torch.randn(2, 5, 64, device=device))
    assert h.shape == (2, 5, 64)
    assert (h >= 0).all()


def test_action_network_log_softmax(device):
    net = modules.ActionNetwork(2, 64, 10).to(device)
    out = net(torch.randn(2, 3, 5, 64, device=device))
    assert out.shape == (2, 3, 5, 10)
    assert torch.allclose(out.exp().sum(-1), torch.ones(2, 3, 5, device=device), atol=1e-5)
    h = torch.randn(2, 4, 64, device=device)
    torch.testing.assert_close(net(h), F.log_softmax(net.fc(h), dim=-1))


def test_baseline_network_shape_nonnegative(device):
    net = modules.BaselineNetwork(2, 64).to(device)
    b = net(torch.randn(2, 3, 5, 64, device=device))
    assert b.shape == (2, 3, 5)
    assert (b >= 0).all()
    with torch.no_grad():
        net.fc.bias.fill_(-100.0)  # relu clips a negative pre-activation to 0
    assert torch.equal(net(torch.randn(2, 5, 64, device=device)),
                       torch.zeros(2, 5, device=device))


def test_error_network_shapes_and_equal_routes(device):
    net = modules.ErrorNetwork(2, 64, 10).to(device)
    h = torch.randn(2, 3, 5, 64, device=device)
    p = F.softmax(torch.randn(2, 3, 5, 10, device=device), -1)
    e_t, e_fit = net(h, p)
    assert e_t.shape == e_fit.shape == (2, 3, 5, 10)
    assert (e_t >= 0).all()
    assert torch.equal(e_t, e_fit)
    torch.testing.assert_close(e_t, F.relu(net.fc(torch.cat([h, p], -1))))


def test_stacked_linear_is_one_linear_layer_per_run(device):
    """Copy r of a StackedLinear applies run r's weight and bias to run r's inputs only, and
    `accumulate` adds the product (without the bias) to a given output."""
    torch.manual_seed(0)
    layer = modules.StackedLinear(3, 6, 4).to(device)
    assert layer.weight.shape == (3, 4, 6) and layer.bias.shape == (3, 4)
    x = torch.randn(3, 2, 5, 6, device=device)
    y = layer(x)
    assert y.shape == (3, 2, 5, 4)
    acc = torch.randn(3, 2, 5, 4, device=device)
    summed = modules.stacked_linear(x, layer.weight, None, accumulate=acc.clone())
    for r in range(3):
        want = F.linear(x[r], layer.weight[r], layer.bias[r])
        torch.testing.assert_close(y[r], want, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(summed[r], acc[r] + F.linear(x[r], layer.weight[r]),
                                   atol=1e-6, rtol=1e-5)


def test_stacked_linear_copies_are_initialised_as_nn_linear():
    """Copy r is drawn as the r-th of R nn.Linear layers made one after the other."""
    torch.manual_seed(5)
    stacked = modules.StackedLinear(3, 20, 7)
    torch.manual_seed(5)
    plain = [torch.nn.Linear(20, 7) for _ in range(3)]
    for r, layer in enumerate(plain):
        assert torch.equal(stacked.weight[r], layer.weight)
        assert torch.equal(stacked.bias[r], layer.bias)


class TestLocationNetwork:
    @pytest.mark.parametrize("std", [0.03, 0.1, 1.0, 1e3])
    def test_locations_in_range_and_log_pi(self, std, device):
        torch.manual_seed(0)
        net = modules.LocationNetwork(2, 64, std).to(device)
        h = torch.randn(2, 500, 64, device=device) * 10
        l_t = net(h)
        log_pi = net.log_prob(h, l_t)
        assert l_t.shape == (2, 500, 2) and log_pi.shape == (2, 500)
        assert (l_t >= -1).all() and (l_t <= 1).all()
        assert not l_t.requires_grad  # a sampled location is an action, no gradient
        mu = torch.clamp(net.fc(h), -1, 1)
        want = torch.distributions.Normal(mu, std).log_prob(l_t).sum(-1)
        torch.testing.assert_close(log_pi, want, rtol=1e-5, atol=1e-4)

    @pytest.mark.parametrize("bias", [1e6, -1e6])
    def test_extreme_fc_outputs_are_clamped(self, bias, device):
        torch.manual_seed(0)
        net = modules.LocationNetwork(1, 64, 0.1).to(device)
        with torch.no_grad():
            net.fc.bias.fill_(bias)
        h = torch.randn(1, 200, 64, device=device)
        l_t = net(h)
        log_pi = net.log_prob(h, l_t)
        assert (l_t >= -1).all() and (l_t <= 1).all()
        assert torch.isfinite(log_pi).all()
        # mu is clamped to the edge: l_t = clamp(edge + noise) is the edge or inside it
        edge = math.copysign(1.0, bias)
        mu = torch.full_like(l_t, edge)
        expected = torch.distributions.Normal(mu, 0.1).log_prob(l_t).sum(-1)
        torch.testing.assert_close(log_pi, expected, rtol=1e-5, atol=1e-4)
        # about half of the samples fall outside and are clipped to the edge exactly
        frac_on_edge = (l_t == edge).float().mean().item()
        assert 0.3 < frac_on_edge < 0.7

    def test_tanh_mean_keeps_the_policy_gradient_where_the_clamp_loses_it(self, device):
        """--location_mean=tanh: mu_t = tanh(fc(h_t)); with fc's output past the edge, log pi
        still moves fc under tanh, and not at all under the clamp."""
        h = torch.randn(1, 100, 8, device=device)
        moved = {}
        for mean in ("clamp", "tanh"):
            torch.manual_seed(0)
            net = modules.LocationNetwork(1, 8, 0.05, mean=mean).to(device)
            with torch.no_grad():
                net.fc.weight.zero_()
                net.fc.bias.fill_(2.0)  # fc(h_t) = 2 for every h_t
            l_t = net(h)
            if mean == "tanh":
                torch.testing.assert_close(net.mu(h), torch.tanh(net.fc(h)))
            net.log_prob(h, l_t).sum().backward()
            moved[mean] = net.fc.bias.grad.abs().max().item()
        assert moved["clamp"] == 0 and moved["tanh"] > 0

    def test_l_t_is_noisy_around_mu(self, device):
        """l_t = mu + N(0, std^2) (inside the square): mean mu, spread std."""
        torch.manual_seed(0)
        std = 0.05
        net = modules.LocationNetwork(1, 8, std).to(device)
        with torch.no_grad():
            net.fc.weight.zero_()
            net.fc.bias.copy_(torch.tensor([[0.3, -0.2]]))
        l_t = net(torch.randn(1, 20000, 8, device=device))
        torch.testing.assert_close(l_t[0].mean(0).cpu(), torch.tensor([0.3, -0.2]), atol=2e-3,
                                   rtol=0)
        torch.testing.assert_close(l_t[0].std(0).cpu(), torch.tensor([std, std]), atol=2e-3,
                                   rtol=0)

    def test_given_noise_is_the_noise_used(self, device):
        """eps_t given: l_t = clamp(mu + std * eps_t), and the global generator is not drawn."""
        torch.manual_seed(0)
        net = modules.LocationNetwork(2, 8, 0.3).to(device)
        h = torch.randn(2, 50, 8, device=device)
        eps = torch.randn(2, 50, 2, device=device) * 3  # some fall outside the square
        state = torch.get_rng_state()
        l_t = net(h, eps)
        log_pi = net.log_prob(h, l_t)
        assert torch.equal(torch.get_rng_state(), state)
        mu = torch.clamp(net.fc(h), -1, 1)
        torch.testing.assert_close(l_t, torch.clamp(mu + 0.3 * eps, -1, 1))
        torch.testing.assert_close(log_pi, torch.distributions.Normal(mu, 0.3).log_prob(l_t)
                                   .sum(-1), rtol=1e-5, atol=1e-4)


def _check_glimpses(out, N, B, K=10, R=1):
    assert isinstance(out, Glimpses)
    assert out.log_probs.shape == (R, N, B, K)
    assert out.locations.shape == (R, N + 1, B, 2)
    assert out.log_pi.shape == (R, N, B)
    assert out.baselines.shape == (R, N, B)
    assert out.e_t.shape == (R, N, B, K) and out.e_t_fit.shape == (R, N, B, K)
    ones = torch.ones(R, N, B, device=out.log_probs.device)
    torch.testing.assert_close(out.log_probs.exp().sum(-1), ones, atol=1e-5, rtol=0)
    assert (out.locations >= -1).all() and (out.locations <= 1).all()
    assert (out.baselines >= 0).all()
    assert (out.e_t >= 0).all() and (out.e_t_fit >= 0).all()
    assert torch.equal(out.e_t, out.e_t_fit)
    for t in (out.log_probs, out.log_pi, out.baselines, out.e_t):
        assert torch.isfinite(t).all()
    one = out.run(R - 1)  # a run's outputs, without the run dimension
    assert one.log_probs.shape == (N, B, K) and one.locations.shape == (N + 1, B, 2)
    assert torch.equal(one.log_pi, out.log_pi[R - 1])


@pytest.mark.parametrize("R", [1, 2])
@pytest.mark.parametrize("N", [1, 6, 20])
@pytest.mark.parametrize("arch,size", [(MNIST_ARCH, 28), (TRANSLATED_ARCH, 60)],
                         ids=["mnist", "translated"])
def test_recurrent_attention_shapes(N, arch, size, R, device):
    torch.manual_seed(0)
    model = RecurrentAttention(**arch, runs=R).to(device)
    B = 4
    out = model(torch.randn(R, B, 1, size, size, device=device), N)
    _check_glimpses(out, N, B, R=R)


def test_recurrent_attention_batch_of_one_and_multichannel(device):
    torch.manual_seed(0)
    model = RecurrentAttention(**dict(MNIST_ARCH, num_channels=3)).to(device)
    _check_glimpses(model(torch.randn(1, 1, 3, 28, 28, device=device), 3), 3, 1)


def test_recurrent_attention_is_seeded(device):
    model = RecurrentAttention(**MNIST_ARCH).to(device)
    x = torch.randn(1, 4, 1, 28, 28, device=device)
    torch.manual_seed(3)
    a = model(x, 6)
    torch.manual_seed(3)
    b = model(x, 6)
    torch.manual_seed(4)
    c = model(x, 6)
    assert torch.equal(a.locations, b.locations) and torch.equal(a.log_probs, b.log_probs)
    assert not torch.equal(a.locations[:, 0], c.locations[:, 0])  # l_0 is random


def test_given_noise_replaces_the_global_generator(device):
    """noise=(l_0, eps): l_0 is the first location and eps the policy's noise; without it the
    same numbers come from the global generator, l_0 first, then each step's eps."""
    torch.manual_seed(0)
    R, B, N = 2, 4, 3
    model = RecurrentAttention(**dict(MNIST_ARCH, std=0.2), runs=R).to(device)
    x = torch.randn(R, B, 1, 28, 28, device=device)
    torch.manual_seed(6)
    drawn = model(x, N)
    torch.manual_seed(6)
    l_0 = torch.empty(R, B, 2, device=device).uniform_(-1, 1)
    eps = torch.stack([torch.randn(R, B, 2, device=device) for _ in range(N)])
    state = torch.get_rng_state()
    given = model(x, N, (l_0, eps))
    assert torch.equal(torch.get_rng_state(), state)  # nothing drawn
    assert torch.equal(given.locations[:, 0], l_0)
    assert torch.equal(given.locations, drawn.locations)
    assert torch.equal(given.log_probs, drawn.log_probs)


def test_initial_locations_uniform(device):
    """l_0 ~ Uniform(-1, 1)^2."""
    torch.manual_seed(0)
    model = RecurrentAttention(**dict(MNIST_ARCH, glimpse_hidden=8, loc_hidden=8,
                                      hidden_size=8)).to(device)
    l0 = model(torch.zeros(1, 4000, 1, 28, 28, device=device), 1).locations[0, 0].cpu()
    assert l0.min() >= -1 and l0.max() <= 1
    torch.testing.assert_close(l0.mean(0), torch.zeros(2), atol=0.05, rtol=0)
    torch.testing.assert_close(l0.var(0), torch.full((2,), 1 / 3), atol=0.03, rtol=0)


@pytest.mark.parametrize("arch,size", [(MNIST_ARCH, 28), (TRANSLATED_ARCH, 60)],
                         ids=["mnist", "translated"])
def test_unroll_matches_step_by_step_reference(arch, size, device):
    """The model equals a hand-written unroll of its own modules (the step of docs/method.md,
    "The model"), for each run of a group of two: glimpse t reads l_{t-1} (starting from the
    returned l_0), h_0 = 0, l_t = mu_t (the policy's noise is made negligible), and the heads
    log p_t, b_t, e_t are applied to h_t of every step."""
    torch.manual_seed(0)
    R, B, N = 2, 5, 7
    model = RecurrentAttention(**dict(arch, std=1e-12), runs=R).to(device)
    x = torch.randn(R, B, 1, size, size, device=device)
    with torch.no_grad():
        out = model(x, N)
        l = out.locations[:, 0]
        h = torch.zeros(R, B, arch["hidden_size"], device=device)
        for t in range(N):
            rho = torch.stack([model.retina(x[r], l[r]) for r in range(R)])
            g = model.glimpse(rho, l)
            h = model.core(g, h)
            l = torch.clamp(model.location.fc(h), -1, 1)
            log_p = model.action(h)
            torch.testing.assert_close(out.locations[:, t + 1], l, atol=1e-6, rtol=0)
            torch.testing.assert_close(out.log_probs[:, t], log_p, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(out.baselines[:, t], model.baseline(h), atol=1e-5,
                                       rtol=1e-5)
            e_t, _ = model.error(h, log_p.exp())
            torch.testing.assert_close(out.e_t[:, t], e_t, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch,flags", [(MNIST_ARCH, []),
                                        (TRANSLATED_ARCH, ["--dataset=translated"])],
                         ids=["mnist", "translated"])
def test_named_architectures_are_the_default_models(arch, flags):
    """The architectures the tests name are the models the command line builds by default
    (RecurrentAttention.from_config): same parameters, same policy std."""
    named = RecurrentAttention(**arch)
    configured = RecurrentAttention.from_config(settings(*flags))
    assert {k: v.shape for k, v in named.state_dict().items()} == \
        {k: v.shape for k, v in configured.state_dict().items()}
    assert named.location.std == configured.location.std
    assert (named.retina.g, named.retina.k, named.retina.s) == \
        (configured.retina.g, configured.retina.k, configured.retina.s)
