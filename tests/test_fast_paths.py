"""The fast paths compute what the plain ones do: two layers summed in one buffer, heads applied
after the loop, fused Adam, the compiled training step. Each is compared with a plain reference
written here from docs/method.md ("The model", "Objective"), on values and on gradients."""
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from conftest import MNIST_ARCH, TRANSLATED_ARCH, settings, tiny_model
from model import RecurrentAttention
from modules import CoreNetwork, GlimpseNetwork
from trainer import loss_terms, make_optimizer

CFG = SimpleNamespace(uncertainty=True, intrinsic=True, lambda_uncertainty=1e-2,
                      lambda_intrinsic=0.1)


def grads(outputs, params):
    return torch.autograd.grad(outputs, params, allow_unused=True)


def test_merged_glimpse_layers_equal_two_separate_layers(device):
    torch.manual_seed(0)
    net = GlimpseNetwork(64, 128, 128).to(device)
    rho, l = torch.randn(16, 64, device=device), torch.rand(16, 2, device=device) * 2 - 1
    plain = F.relu(net.fc3(F.relu(net.fc1(rho))) + net.fc4(F.relu(net.fc2(l))))
    merged = net(rho, l)
    torch.testing.assert_close(merged, plain, atol=1e-6, rtol=1e-5)
    w = torch.randn_like(plain)
    params = list(net.parameters())
    for a, b in zip(grads((merged * w).sum(), params), grads((plain * w).sum(), params)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_merged_core_layers_equal_two_separate_layers(device):
    torch.manual_seed(1)
    net = CoreNetwork(256, 256).to(device)
    g = torch.randn(16, 256, device=device, requires_grad=True)
    h = torch.randn(16, 256, device=device, requires_grad=True)
    plain = F.relu(net.i2h(g) + net.h2h(h))
    merged = net(g, h)
    torch.testing.assert_close(merged, plain, atol=1e-6, rtol=1e-5)
    w = torch.randn_like(plain)
    inputs = list(net.parameters()) + [g, h]
    for a, b in zip(grads((merged * w).sum(), inputs), grads((plain * w).sum(), inputs)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_merged_layers_keep_the_paper_parameterisation():
    """fc3/fc4 and i2h/h2h stay separate parameters, initialised as nn.Linear would."""
    torch.manual_seed(3)
    model = RecurrentAttention(**MNIST_ARCH)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["glimpse.fc3.weight"] == shapes["glimpse.fc4.weight"] == (256, 128)
    assert shapes["core.i2h.weight"] == shapes["core.h2h.weight"] == (256, 256)
    assert shapes["glimpse.fc3.bias"] == shapes["glimpse.fc4.bias"] == (256,)
    bound = 1 / math.sqrt(128)
    for name in ("fc3", "fc4"):
        layer = getattr(model.glimpse, name)
        assert layer.bias.abs().max() <= bound and layer.bias.abs().max() > 0.9 * bound


def plain_unroll(model, x, T, std):
    """The step of docs/method.md ("The model") with every network applied inside the loop,
    separate layers throughout, log pi computed per step: the reference for the model's fast
    unroll."""
    B = x.shape[0]
    h = torch.zeros(B, model.hidden_size, device=x.device)
    l = torch.empty(B, 2, device=x.device).uniform_(-1, 1)
    G, C = model.glimpse, model.core
    log_probs, log_pis, baselines, e_ts, e_fits = [], [], [], [], []
    for _ in range(T):
        rho = model.retina(x, l)
        g = F.relu(G.fc3(F.relu(G.fc1(rho))) + G.fc4(F.relu(G.fc2(l))))
        h = F.relu(C.i2h(g) + C.h2h(h))
        mu = torch.clamp(model.location.fc(h.detach()), -1, 1)
        l = torch.clamp(mu + std * torch.randn_like(mu), -1, 1).detach()
        log_pis.append(torch.distributions.Normal(mu, std).log_prob(l).sum(-1))
        log_p = F.log_softmax(model.action.fc(h), dim=-1)
        log_probs.append(log_p)
        baselines.append(F.relu(model.baseline.fc(h.detach())).squeeze(-1))
        e_t, e_fit = model.error(h, log_p.exp())
        e_ts.append(e_t)
        e_fits.append(e_fit)
    return SimpleNamespace(log_probs=torch.stack(log_probs), log_pi=torch.stack(log_pis),
                           baselines=torch.stack(baselines), e_t=torch.stack(e_ts),
                           e_t_fit=torch.stack(e_fits))


@pytest.mark.parametrize("arch,size", [(MNIST_ARCH, 28), (TRANSLATED_ARCH, 60)],
                         ids=["mnist", "translated"])
def test_fast_unroll_gives_the_plain_losses_and_gradients(arch, size, device):
    """The paper's two models: every loss term and every parameter's gradient."""
    torch.manual_seed(4)
    model = RecurrentAttention(**arch).to(device)
    std = arch["std"]
    x = torch.randn(32, 1, size, size, device=device)
    y = torch.randint(0, 10, (32,), device=device)
    params = list(model.parameters())
    results = []
    for unroll in (lambda: model(x, 6), lambda: plain_unroll(model, x, 6, std)):
        torch.manual_seed(5)  # the same l_0 and policy noise for both
        terms, reward = loss_terms(unroll(), y, CFG)
        results.append((terms, reward, grads(sum(terms.values()), params)))
    (fast, r_fast, g_fast), (plain, r_plain, g_plain) = results
    assert torch.equal(r_fast, r_plain)
    for name in plain:
        torch.testing.assert_close(fast[name], plain[name], atol=1e-5, rtol=1e-4)
    for (name, _), a, b in zip(model.named_parameters(), g_fast, g_plain):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=name)


def test_fused_adam_follows_plain_adam():
    models = [tiny_model(6, glimpse_hidden=64, loc_hidden=64, hidden_size=128)
              for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    opts = [make_optimizer(models[0], 1e-3), torch.optim.Adam(models[1].parameters(), lr=1e-3)]
    assert opts[0].defaults["fused"] and not opts[1].defaults["fused"]
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    for step in range(20):
        for model, opt in zip(models, opts):
            torch.manual_seed(step)
            terms, _ = loss_terms(model(x, 4), y, CFG)
            opt.zero_grad()
            sum(terms.values()).backward()
            opt.step()
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_compiled_training_step_equals_eager(tmp_path):
    """--compile=True: the compiled forward and loss give the eager locations, loss terms and
    gradients (the same random draws: inductor falls back to eager's generator). One glimpse
    and small layers keep the compilation short; every network and loss term is in the graph."""
    from trainer import Trainer
    cfg = settings("--glimpse_hidden=16", "--loc_hidden=16", "--hidden_size=32",
                   "--num_glimpses=1", "--uncertainty=True", "--intrinsic=True",
                   "--compile=True", f"--ckpt_dir={tmp_path}", f"--logs_dir={tmp_path}")
    torch.manual_seed(0)
    trainer = Trainer(cfg, "cpu")
    assert trainer.forward_loss is not trainer._forward_loss
    x, y = torch.randn(cfg.batch_size, 1, 28, 28), torch.randint(0, 10, (cfg.batch_size,))
    params = list(trainer.model.parameters())
    results = []
    for forward_loss in (trainer._forward_loss, trainer.forward_loss):
        torch.manual_seed(7)
        locations, terms, reward = forward_loss(x, y)
        results.append((locations, terms, reward, grads(sum(terms.values()), params)))
    (l_e, t_e, r_e, g_e), (l_c, t_c, r_c, g_c) = results
    torch.testing.assert_close(l_c, l_e)
    torch.testing.assert_close(r_c, r_e)
    assert t_c.keys() == t_e.keys() == {"action", "baseline", "reinforce", "fit", "uncertainty",
                                         "intrinsic"}
    for k in t_e:
        torch.testing.assert_close(t_c[k], t_e[k], atol=1e-6, rtol=1e-5)
    for a, b in zip(g_c, g_e):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
