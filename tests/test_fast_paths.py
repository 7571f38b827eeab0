"""The fast paths compute what the plain ones do: R runs' layers stacked into batched products
(two layers summed in one buffer), heads applied after the loop, StackedAdam (fused Adam with
one learning rate per run), the compiled training step. Each is compared with a plain
reference written here from docs/method.md ("The model", "Objective"), one run at a time with
plain nn.Linear layers and torch.optim.Adam, on values and on gradients."""
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import MNIST_ARCH, TRANSLATED_ARCH, group_settings, settings, tiny_model
from model import Glimpses, RecurrentAttention, Unroll
from modules import CoreNetwork, GlimpseNetwork
from trainer import Schedule, StackedAdam, loss_terms, loss_weights

# Two runs with different variants and loss weights: every term on for the first.
CFGS = [SimpleNamespace(uncertainty=True, intrinsic=True, lambda_uncertainty=1e-2,
                        lambda_intrinsic=0.1, reinforce_weight=1.0),
        SimpleNamespace(uncertainty=False, intrinsic=True, lambda_uncertainty=1e-2,
                        lambda_intrinsic=0.3, reinforce_weight=0.5)]


def grads(outputs, params):
    return torch.autograd.grad(outputs, params, allow_unused=True)


def linear(stacked, r):
    """Run r's copy of a StackedLinear as a plain nn.Linear of its own (a copy of the
    weights: its gradients are its own)."""
    out_features, in_features = stacked.weight.shape[1:]
    layer = nn.Linear(in_features, out_features).to(stacked.weight.device)
    with torch.no_grad():
        layer.weight.copy_(stacked.weight[r])
        layer.bias.copy_(stacked.bias[r])
    return layer


def test_stacked_glimpse_layers_equal_R_separate_layers(device):
    R = 3
    torch.manual_seed(0)
    net = GlimpseNetwork(R, 64, 128, 128).to(device)
    rho, l = torch.randn(R, 16, 64, device=device), torch.rand(R, 16, 2, device=device) * 2 - 1
    stacked = net(rho, l)
    w = torch.randn_like(stacked)
    stacked_grads = grads((stacked * w).sum(), list(net.parameters()))
    names = [n for n, _ in net.named_parameters()]
    for r in range(R):
        fc1, fc2, fc3, fc4 = (linear(getattr(net, f"fc{i}"), r) for i in (1, 2, 3, 4))
        plain = F.relu(fc3(F.relu(fc1(rho[r]))) + fc4(F.relu(fc2(l[r]))))
        torch.testing.assert_close(stacked[r], plain, atol=1e-6, rtol=1e-5)
        layers = {"fc1": fc1, "fc2": fc2, "fc3": fc3, "fc4": fc4}
        plain_params = [getattr(layers[n.split(".")[0]], n.split(".")[1]) for n in names]
        for name, a, b in zip(names, stacked_grads, grads((plain * w[r]).sum(), plain_params)):
            torch.testing.assert_close(a[r], b, atol=1e-5, rtol=1e-5, msg=name)


def test_stacked_core_layers_equal_R_separate_layers(device):
    R = 3
    torch.manual_seed(1)
    net = CoreNetwork(R, 256, 256).to(device)
    g = torch.randn(R, 16, 256, device=device, requires_grad=True)
    h = torch.randn(R, 16, 256, device=device, requires_grad=True)
    stacked = net(g, h)
    w = torch.randn_like(stacked)
    stacked_grads = grads((stacked * w).sum(), [net.i2h.weight, net.i2h.bias, net.h2h.weight,
                                                net.h2h.bias, g, h])
    for r in range(R):
        i2h, h2h = linear(net.i2h, r), linear(net.h2h, r)
        plain = F.relu(i2h(g[r]) + h2h(h[r]))
        torch.testing.assert_close(stacked[r], plain, atol=1e-6, rtol=1e-5)
        plain_grads = grads((plain * w[r]).sum(), [i2h.weight, i2h.bias, h2h.weight, h2h.bias,
                                                   g, h])
        for a, b in zip(stacked_grads[:4], plain_grads[:4]):
            torch.testing.assert_close(a[r], b, atol=1e-5, rtol=1e-5)
        for a, b in zip(stacked_grads[4:], plain_grads[4:]):  # the inputs' gradients
            torch.testing.assert_close(a[r], b[r], atol=1e-5, rtol=1e-5)


def test_stacked_layers_keep_the_paper_parameterisation():
    """fc3/fc4 and i2h/h2h stay separate parameters, R copies of each, initialised as
    nn.Linear would; a run's state has the shapes of a single model."""
    torch.manual_seed(3)
    model = RecurrentAttention(**MNIST_ARCH, runs=2)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["glimpse.fc3.weight"] == shapes["glimpse.fc4.weight"] == (2, 256, 128)
    assert shapes["core.i2h.weight"] == shapes["core.h2h.weight"] == (2, 256, 256)
    assert shapes["glimpse.fc3.bias"] == shapes["glimpse.fc4.bias"] == (2, 256)
    one = {k: tuple(v.shape) for k, v in model.run_state(1).items()}
    assert one == {k: v[1:] for k, v in shapes.items()}
    assert one["glimpse.fc3.weight"] == (256, 128)
    bound = 1 / math.sqrt(128)
    for name in ("fc3", "fc4"):
        layer = getattr(model.glimpse, name)
        for r in range(2):
            assert layer.bias[r].abs().max() <= bound and layer.bias[r].abs().max() > 0.9 * bound
    assert not torch.equal(model.glimpse.fc3.weight[0], model.glimpse.fc3.weight[1])


def plain_unroll(model, r, x, T, std, l_0, eps):
    """Run r of the model, by the step of docs/method.md ("The model"): every network applied
    inside the loop, run r's copy of each layer as a plain nn.Linear of its own, log pi
    computed per step, the given l_0 (B, 2) and noise eps (T, B, 2). Returns Glimpses with a
    run dimension of one, and the plain layers by the model's parameter names."""
    B = x.shape[0]
    layers = {name: linear(module, r) for name, module in model.named_modules()
              if hasattr(module, "weight") and name}
    G = {k.split(".")[1]: v for k, v in layers.items() if k.startswith("glimpse.")}
    C = {k.split(".")[1]: v for k, v in layers.items() if k.startswith("core.")}
    loc, act, base, err = (layers[f"{n}.fc"] for n in ("location", "action", "baseline", "error"))
    h = torch.zeros(B, model.hidden_size, device=x.device)
    l = l_0
    locations, log_probs, log_pis, baselines, e_ts, e_fits = [l], [], [], [], [], []
    for t in range(T):
        rho = model.retina(x, l)
        g = F.relu(G["fc3"](F.relu(G["fc1"](rho))) + G["fc4"](F.relu(G["fc2"](l))))
        h = F.relu(C["i2h"](g) + C["h2h"](h))
        mu = torch.clamp(loc(h.detach()), -1, 1)
        l = torch.clamp(mu + std * eps[t], -1, 1).detach()
        locations.append(l)
        log_pis.append(torch.distributions.Normal(mu, std).log_prob(l).sum(-1))
        log_p = F.log_softmax(act(h), dim=-1)
        log_probs.append(log_p)
        baselines.append(F.relu(base(h.detach())).squeeze(-1))
        z = torch.cat([h, log_p.exp()], dim=-1)
        e_ts.append(F.relu(F.linear(z, err.weight.detach(), err.bias.detach())))
        e_fits.append(F.relu(err(z.detach())))
    out = Glimpses(*(torch.stack(v)[None] for v in (log_probs, locations, log_pis, baselines,
                                                     e_ts, e_fits)))
    params = {f"{name}.{kind}": getattr(layer, kind) for name, layer in layers.items()
              for kind in ("weight", "bias")}
    return out, params


@pytest.mark.parametrize("arch,size", [(MNIST_ARCH, 28), (TRANSLATED_ARCH, 60)],
                         ids=["mnist", "translated"])
def test_fast_unroll_gives_the_plain_losses_and_gradients(arch, size, device):
    """The paper's two models, a group of two runs with different variants and loss weights:
    each run's locations, every loss term and every parameter's gradient equal those of a
    plain unroll of that run alone, given the same l_0 and policy noise."""
    R, B, T = len(CFGS), 32, 6
    torch.manual_seed(4)
    model = RecurrentAttention(**arch, runs=R).to(device)
    std = arch["std"]
    x = torch.randn(R, B, 1, size, size, device=device)
    y = torch.randint(0, 10, (R, B), device=device)
    l_0 = torch.rand(R, B, 2, device=device) * 2 - 1
    eps = torch.randn(T, R, B, 2, device=device)
    out = model(x, T, (l_0, eps))
    fast, r_fast = loss_terms(out, y, loss_weights(CFGS, device))
    assert set(fast) == {"action", "baseline", "reinforce", "fit", "uncertainty", "intrinsic"}
    assert all(v.shape == (R,) for v in fast.values())
    names = [n for n, _ in model.named_parameters()]
    g_fast = dict(zip(names, grads(sum(fast.values()).sum(), list(model.parameters()))))
    for r in range(R):
        plain_out, plain_params = plain_unroll(model, r, x[r], T, std, l_0[r], eps[:, r])
        plain, r_plain = loss_terms(plain_out, y[r:r + 1], loss_weights(CFGS[r:r + 1], device))
        torch.testing.assert_close(out.locations[r], plain_out.locations[0], atol=1e-6, rtol=0)
        assert torch.equal(r_fast[r], r_plain[0])
        for name in plain:
            torch.testing.assert_close(fast[name][r], plain[name][0], atol=1e-5, rtol=1e-4,
                                       msg=name)
        g_plain = grads(sum(plain.values()).sum(), [plain_params[n] for n in names])
        for name, b in zip(names, g_plain):
            a = g_fast[name][r]
            b = torch.zeros_like(a) if b is None else b
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=f"run {r}: {name}")


def test_unroll_backward_equals_numerical_gradients():
    """Unroll's hand-written backward against finite differences in float64, for a group of
    two runs and four glimpses: every weight of the glimpse and core networks, h_{t-1} -> h_t
    included. The policy's weights are zeroed so that the locations, which the backward pass
    treats as constants, do not move with the weights."""
    model = tiny_model(seed=2, glimpse_hidden=6, loc_hidden=6, hidden_size=8, runs=2).double()
    with torch.no_grad():
        model.location.fc.weight.zero_()
    x = torch.randn(2, 3, 1, 28, 28, dtype=torch.float64)
    noise = (torch.rand(2, 3, 2, dtype=torch.float64) * 2 - 1,
             torch.randn(4, 2, 3, 2, dtype=torch.float64))
    probe = torch.randn(2, 4, 3, 8, dtype=torch.float64)

    def h_dot_probe(*weights):  # the weights are the model's own, perturbed in place
        h, _ = Unroll.apply(model, x, 4, noise, *weights)
        return (h * probe).sum()

    assert torch.autograd.gradcheck(h_dot_probe, model.unroll_weights(), eps=1e-6, atol=1e-6)


def test_testing_reads_the_values_that_training_differentiates(device):
    """Under torch.no_grad the model skips Unroll and runs the rollout alone: every output is
    bitwise the one the training path gives for the same noise."""
    model = tiny_model(seed=1, runs=2).to(device)
    x = torch.randn(2, 5, 1, 28, 28, device=device)
    noise = (torch.rand(2, 5, 2, device=device) * 2 - 1, torch.randn(6, 2, 5, 2, device=device))
    trained = model(x, 6, noise)
    with torch.no_grad():
        tested = model(x, 6, noise)
    assert trained.log_probs.requires_grad and not tested.log_probs.requires_grad
    for field in Glimpses.__dataclass_fields__:
        assert torch.equal(getattr(trained, field), getattr(tested, field)), field


def test_stacked_adam_follows_plain_adam_per_run():
    """StackedAdam with three runs and three learning rates (one of them 0, as for a run that
    stopped early) follows three separate plain torch.optim.Adam, one per run (not fused, not
    foreach): the fused step at lr 1 scaled by each run's lr is Adam's update at that lr."""
    R, B, T = 3, 16, 4
    lrs = [1e-3, 3e-4, 0.0]
    cfgs = [CFGS[0], CFGS[1], CFGS[0]]
    group = tiny_model(6, runs=R, glimpse_hidden=64, loc_hidden=64, hidden_size=128)
    start = [group.run_state(r) for r in range(R)]
    singles = []
    for r in range(R):
        single = tiny_model(0, glimpse_hidden=64, loc_hidden=64, hidden_size=128)
        single.load_run_state(0, start[r])
        singles.append(single)
    stacked = StackedAdam(group.named_parameters())
    assert stacked.adam.defaults["fused"]
    plain = [torch.optim.Adam(m.parameters(), lr=lr, fused=False, foreach=False)
             for m, lr in zip(singles, lrs)]
    torch.manual_seed(0)
    x, y = torch.randn(R, B, 1, 28, 28), torch.randint(0, 10, (R, B))
    for step in range(20):
        noise = (torch.rand(R, B, 2) * 2 - 1, torch.randn(T, R, B, 2))
        terms, _ = loss_terms(group(x, T, noise), y, loss_weights(cfgs))
        stacked.zero_grad()
        sum(terms.values()).sum().backward()
        stacked.step(lrs)
        for r, (model, opt) in enumerate(zip(singles, plain)):
            terms, _ = loss_terms(model(x[r:r + 1], T, (noise[0][r:r + 1], noise[1][:, r:r + 1])),
                                  y[r:r + 1], loss_weights(cfgs[r:r + 1]))
            opt.zero_grad()
            sum(terms.values()).sum().backward()
            opt.step()
    for r in range(R):
        got, want = group.run_state(r), singles[r].run_state(0)
        for name in want:
            torch.testing.assert_close(got[name], want[name], atol=1e-5, rtol=1e-4,
                                       msg=f"run {r}: {name}")
        moved = {name for name in got if not torch.equal(got[name], start[r][name])}
        if lrs[r] == 0:
            assert moved == set()  # not moved at all, not even by rounding
        else:  # every weight that gets a gradient: the error network only with L_fit
            assert moved == {n for n in got if cfgs[r].uncertainty or not n.startswith("error")}
    # A run's Adam state is that of its own plain Adam.
    for r in (0, 1):
        state = stacked.run_state(r)
        assert state["step"] == 20
        for name, p in singles[r].named_parameters():
            torch.testing.assert_close(state["exp_avg"][name], plain[r].state[p]["exp_avg"][0],
                                       atol=1e-6, rtol=1e-4)
            torch.testing.assert_close(state["exp_avg_sq"][name],
                                       plain[r].state[p]["exp_avg_sq"][0], atol=1e-9, rtol=1e-4)


@pytest.mark.parametrize("kind", ["exp", "plateau", "plateau_acc"])
def test_schedule_follows_torchs_schedulers(kind):
    """Schedule, one run's learning rate, follows torch's LambdaLR (x0.95 per epoch) or
    ReduceLROnPlateau (patience 2, its default factor 0.1 and relative threshold 1e-4) over
    validation losses that improve, stall, improve by less than the threshold, and stall;
    plateau_acc steps it on minus the accuracy 1 - loss (the port's scheduler.step(-valid_acc))."""
    cfg = SimpleNamespace(lr_schedule=kind, init_lr=3e-4, lr_patience=2)
    ours = Schedule(cfg)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=cfg.init_lr)
    theirs = (torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 0.95 ** epoch)
              if kind == "exp" else
              torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=cfg.lr_patience))
    lrs = []
    for loss in [1.0, 0.9, 0.9, 0.9, 0.9, 0.89999, 0.9, 0.9, 0.5, 0.6, 0.6, 0.6, 0.6]:
        acc = 1 - loss
        ours.step(loss, acc)
        opt.step()  # no gradient: nothing moves, but torch wants its step before the schedule's
        theirs.step(*{"exp": [], "plateau": [loss], "plateau_acc": [-acc]}[kind])
        lrs.append(ours.lr)
        assert ours.lr == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
    # exp: 0.95^13 of the start; plateau: cut tenfold three times; plateau_acc: once, after
    # the fall from 0.5 (the relative threshold on a negative metric counts a tie as better)
    expected = {"exp": 0.95 ** 13, "plateau": 1e-3, "plateau_acc": 0.1}[kind]
    assert lrs[-1] == pytest.approx(cfg.init_lr * expected)


def test_compiled_training_step_equals_eager(tmp_path):
    """--compile=True: the compiled forward and loss give the eager locations, loss terms and
    gradients of every run of a group of the four variants, given the same noise (drawn by
    trainer.draw_noise). Two glimpses and small layers keep the compilation short; every
    network and loss term is in the graph."""
    from trainer import Trainer
    cfgs = group_settings("--glimpse_hidden=16", "--loc_hidden=16", "--hidden_size=32",
                          "--num_glimpses=2", "--uncertainty=False,True",
                          "--intrinsic=False,True", "--compile=True",
                          f"--ckpt_dir={tmp_path}", f"--logs_dir={tmp_path}")
    trainer = Trainer(cfgs, "cpu")
    assert trainer.forward_loss is not trainer._forward_loss
    torch.manual_seed(0)
    R, B, N = len(cfgs), cfgs[0].batch_size, cfgs[0].num_glimpses
    x, y = torch.randn(R, B, 1, 28, 28), torch.randint(0, 10, (R, B))
    noise = trainer.draw_noise(B)
    assert noise[0].shape == (R, B, 2) and noise[1].shape == (N, R, B, 2)
    params = list(trainer.model.parameters())
    results = []
    for forward_loss in (trainer._forward_loss, trainer.forward_loss):
        locations, terms, reward = forward_loss(x, y, noise)
        results.append((locations, terms, reward, grads(sum(terms.values()).sum(), params)))
    (l_e, t_e, r_e, g_e), (l_c, t_c, r_c, g_c) = results
    torch.testing.assert_close(l_c, l_e)
    torch.testing.assert_close(r_c, r_e)
    assert t_c.keys() == t_e.keys() == {"action", "baseline", "reinforce", "fit", "uncertainty",
                                         "intrinsic"}
    for k in t_e:
        torch.testing.assert_close(t_c[k], t_e[k], atol=1e-6, rtol=1e-5)
    for a, b in zip(g_c, g_e):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_a_run_whose_loss_is_not_finite_does_not_move_and_the_others_do_as_before():
    """StackedAdam.step with `finite`: the run marked False keeps its weights and a finite
    Adam state although its gradient is NaN; the other runs take exactly the step they take
    without the mask. Decided on the device: nothing to read."""
    R = 3
    models = [tiny_model(6, runs=R) for _ in range(2)]
    opts = [StackedAdam(m.named_parameters()) for m in models]
    start = [models[0].run_state(r) for r in range(R)]
    torch.manual_seed(0)
    grads = [torch.randn_like(p) for p in models[0].parameters()]
    for g in grads:
        g[1] = float("nan")
    for m, opt in zip(models, opts):
        opt.zero_grad()
        for p, g in zip(m.parameters(), grads):
            p.grad = g.clone()
    opts[0].step([1e-3] * R, finite=torch.tensor([True, False, True]))
    for p in models[1].parameters():
        p.grad[1] = 0.0  # the reference: run 1 without gradient and with lr 0
    opts[1].step([1e-3, 0.0, 1e-3])
    for r in range(R):
        got, want = models[0].run_state(r), models[1].run_state(r)
        assert all(torch.equal(got[k], want[k]) for k in want), r
    assert all(torch.equal(models[0].run_state(1)[k], start[1][k]) for k in start[1])
    state = opts[0].run_state(1)
    assert all(torch.isfinite(t).all() for t in state["exp_avg"].values())
