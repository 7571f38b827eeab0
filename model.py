"""RecurrentAttention: the networks of modules.py unrolled over N glimpses, for R runs at once.

One glimpse step t = 1..N (docs/method.md, "The model"):
    g_t = f_g(rho(x, l_{t-1}), l_{t-1})     glimpse network, sees the previous location
    h_t = f_h(g_t, h_{t-1})                 core network
    l_t ~ f_l(h_t)                          location network (the policy)
with l_0 ~ Uniform(-1, 1)^2 and h_0 = 0.

The steps are taken one by one (`rollout`): each location depends on the glimpses before it.
The heads that do not feed back into the recurrence, log p_t = f_a(h_t), b_t = f_b(h_t),
e_t = f_e(h_t, p_t) and log pi(l_t | h_t), are applied to all steps at once after the loop.
In training, the rollout runs inside `Unroll`, whose backward pass computes each weight
gradient of the glimpse and core networks once over all N steps instead of once per step.

A model holds the weights of R runs (a group that trains in one process; R = 1 for one run)
and every tensor carries a leading run dimension; run r's outputs depend on run r's weights,
images and noise only. Checkpoint files hold one run each, in the shapes of a single model
(`run_state`, `load_run_state`).
"""
from argparse import Namespace
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from config import ADDED_SETTINGS, seed_of
from modules import (ActionNetwork, BaselineNetwork, CoreNetwork, ErrorNetwork, GlimpseNetwork,
                     LocationNetwork, Retina, stacked_linear)
from utils import load_checkpoint


@dataclass
class Glimpses:
    """Everything an unroll of N glimpses produces, for R runs, stacked over the steps.

    log_probs (R, N, B, K): log p_t, the prediction after t glimpses.
    locations (R, N + 1, B, 2): l_0 .. l_N (glimpse t looks at l_{t-1}).
    log_pi (R, N, B): log pi(l_t | h_t) of the location each step chose.
    baselines (R, N, B): b_t.
    e_t (R, N, B, K): self-uncertainty, routed for L_unc (gradient to RAM, not to f_e; with
        --uncertainty_routing=released, to f_e too).
    e_t_fit (R, N, B, K): the same values, routed for L_fit (gradient to f_e only).
    """
    log_probs: torch.Tensor
    locations: torch.Tensor
    log_pi: torch.Tensor
    baselines: torch.Tensor
    e_t: torch.Tensor
    e_t_fit: torch.Tensor

    def run(self, r):
        """Run r's outputs, without the run dimension."""
        return Glimpses(*(getattr(self, f)[r] for f in self.__dataclass_fields__))


class RecurrentAttention(nn.Module):
    """RAM (Mnih et al. 2014) with the error network of Lu (2019), R runs side by side.

    x: (R, B, C, H, W) -> Glimpses over num_glimpses steps (any number, also more than
    trained). The random numbers come from `noise` where it is given, else from the global
    generator.
    """

    def __init__(self, patch_size, num_patches, glimpse_scale, num_channels, glimpse_hidden,
                 loc_hidden, hidden_size, std, num_classes=10, runs=1, location_hidden=0,
                 location_mean="clamp", baseline_relu=True, uncertainty_routing="paper"):
        super().__init__()
        self.runs, self.hidden_size = runs, hidden_size
        self.retina = Retina(patch_size, num_patches, glimpse_scale)
        retina_size = num_patches * patch_size * patch_size * num_channels
        self.glimpse = GlimpseNetwork(runs, retina_size, glimpse_hidden, loc_hidden)
        self.core = CoreNetwork(runs, glimpse_hidden + loc_hidden, hidden_size)
        self.location = LocationNetwork(runs, hidden_size, std, location_hidden, location_mean)
        self.action = ActionNetwork(runs, hidden_size, num_classes)
        self.baseline = BaselineNetwork(runs, hidden_size, baseline_relu)
        self.error = ErrorNetwork(runs, hidden_size, num_classes,
                                  released_routing=uncertainty_routing == "released")

    @classmethod
    def from_config(cls, cfg, runs=1):
        """The model that config.py's settings (an argparse Namespace) describe."""
        return cls(patch_size=cfg.patch_size, num_patches=cfg.num_patches,
                   glimpse_scale=cfg.glimpse_scale, num_channels=1,
                   glimpse_hidden=cfg.glimpse_hidden, loc_hidden=cfg.loc_hidden,
                   hidden_size=cfg.hidden_size, std=cfg.std, runs=runs,
                   location_hidden=cfg.location_hidden, location_mean=cfg.location_mean,
                   baseline_relu=cfg.baseline_relu,
                   uncertainty_routing=cfg.uncertainty_routing)

    @classmethod
    def for_runs(cls, cfgs):
        """A model for the runs `cfgs`, run r initialised from its own seed exactly as a model
        of that run alone."""
        model = cls.from_config(cfgs[0], runs=len(cfgs))
        for r, cfg in enumerate(cfgs):
            torch.manual_seed(seed_of(cfg.random_seed, "weights"))
            model.load_run_state(r, cls.from_config(cfg).run_state(0))
        return model

    def run_state(self, r):
        """Run r's weights as the state dict of a model of that run alone."""
        return {name: p[r].clone() for name, p in self.state_dict().items()}

    @torch.no_grad()
    def load_run_state(self, r, state):
        """Put a single run's state dict (run_state, or a checkpoint's "model") in slot r."""
        own = self.state_dict()
        if set(state) != set(own):
            raise KeyError(f"the weights do not fit the model: {sorted(set(state) ^ set(own))}")
        for name, p in own.items():
            p[r].copy_(state[name])

    def rollout(self, x, num_glimpses, noise=None):
        """The unroll of the glimpse, core and location networks, step by step.

        x: (R, B, C, H, W); noise: None (l_0 and then each step's policy noise drawn from the
        global generator, in that order), or (l_0 (R, B, 2), eps (N, R, B, 2)) drawn by the
        caller. Returns, stacked over the steps: rho (R, N, B, k * g * g * C) the glimpses,
        g (R, N, B, glimpse_hidden + loc_hidden), h (R, N, B, hidden_size), and the locations
        l_0 .. l_N (R, N + 1, B, 2)."""
        R, B = x.shape[:2]
        h_t = x.new_zeros(R, B, self.hidden_size)
        if noise is None:
            l_t = torch.empty(R, B, 2, device=x.device, dtype=x.dtype).uniform_(-1, 1)
        else:
            l_t, eps = noise
        table = self.retina.prepare(x.flatten(0, 1))  # once for all N glimpses
        rhos, gs, hs, locations = [], [], [], [l_t]
        for t in range(num_glimpses):
            rho = self.retina.extract(table, l_t.reshape(R * B, 2)).view(R, B, -1)
            g_t = self.glimpse(rho, l_t)
            h_t = self.core(g_t, h_t)
            l_t = self.location(h_t, None if noise is None else eps[t])
            for seq, v in zip((rhos, gs, hs, locations), (rho, g_t, h_t, l_t)):
                seq.append(v)
        return tuple(torch.stack(seq, dim=1) for seq in (rhos, gs, hs, locations))

    def forward(self, x, num_glimpses, noise=None):
        """x: (R, B, C, H, W) -> Glimpses; noise as in `rollout`."""
        if torch.is_grad_enabled():
            h, locations = Unroll.apply(self, x, num_glimpses, noise, *self.unroll_weights())
        else:
            _, _, h, locations = self.rollout(x, num_glimpses, noise)
        log_probs = self.action(h)
        e_t, e_t_fit = self.error(h, log_probs.exp())
        return Glimpses(log_probs=log_probs, locations=locations,
                        log_pi=self.location.log_prob(h, locations[:, 1:]),
                        baselines=self.baseline(h), e_t=e_t, e_t_fit=e_t_fit)

    def unroll_weights(self):
        """The parameters that the states h_t depend on, in the order Unroll returns their
        gradients."""
        G, C = self.glimpse, self.core
        return tuple(p for layer in (G.fc1, G.fc2, G.fc3, G.fc4, C.i2h, C.h2h)
                     for p in (layer.weight, layer.bias))


def input_grad(dy, weight):
    """Gradient of a StackedLinear's input: dy (R, ..., out), weight (R, out, in)
    -> (R, ..., in)."""
    return torch.bmm(dy.flatten(1, -2), weight).view(*dy.shape[:-1], weight.shape[2])


def linear_grads(dy, x):
    """Gradients of a StackedLinear's weight and bias from all its uses at once:
    dy (R, ..., out) the gradients of its outputs, x (R, ..., in) its inputs."""
    dy, x = dy.flatten(1, -2), x.flatten(1, -2)
    return torch.bmm(dy.transpose(1, 2), x), dy.sum(dim=1)


class Unroll(torch.autograd.Function):
    """The rollout with gradients for the glimpse and core networks' weights: the states
    h_1 .. h_N (R, N, B, hidden_size) and the locations l_0 .. l_N.

    Autograd would compute each shared weight's gradient once per step, a small product whose
    (R, out, in) result is then added up over the steps: at 256 x 256 this traffic is most of
    a training step on a CPU. The only path of gradients between steps is h_{t-1} -> h_t (the
    glimpse network reads l_{t-1}, an action without gradient), so the backward pass below
    walks that path step by step and then computes every weight gradient once over all N
    steps. tests/test_fast_paths.py compares it with autograd on a plain unroll.
    """

    @staticmethod
    def forward(ctx, model, x, num_glimpses, noise, *weights):
        """weights: model.unroll_weights(), the tensors the backward pass differentiates."""
        rho, g, h, locations = model.rollout(x, num_glimpses, noise)
        # Saved with the weights: autograd then refuses a backward pass after any of them
        # changed in place.
        ctx.save_for_backward(rho, g, h, locations, *weights)
        ctx.mark_non_differentiable(locations)
        return h, locations

    @staticmethod
    def backward(ctx, dh, _):
        rho, g, h, locations, *weights = ctx.saved_tensors
        (w1, b1), (w2, b2), (w3, _), (w4, _), (w_ih, _), (w_hh, _) = zip(weights[::2],
                                                                         weights[1::2])
        # Core: h_t = relu(i2h(g_t) + h2h(h_{t-1})); dz_t is the gradient of the sum inside.
        dz = torch.empty_like(h)
        carry = torch.zeros_like(dh[:, 0])  # the gradient reaching h_t from h_{t+1}
        for t in reversed(range(h.shape[1])):
            dz[:, t] = (dh[:, t] + carry) * (h[:, t] > 0)
            carry = torch.bmm(dz[:, t], w_hh)
        h2h_w, _ = linear_grads(dz[:, 1:], h[:, :-1])  # h_0 = 0 adds nothing to the weight
        i2h_w, core_b = linear_grads(dz, g)
        # Glimpse network: g_t = relu(fc3(h_phi) + fc4(h_l)) over all steps at once, its two
        # hidden layers recomputed from the saved inputs rho_t and l_{t-1}.
        l_prev = locations[:, :-1]
        h_phi = F.relu(stacked_linear(rho, w1, b1))
        h_l = F.relu(stacked_linear(l_prev, w2, b2))
        du = input_grad(dz, w_ih) * (g > 0)
        fc3_w, glimpse_b = linear_grads(du, h_phi)
        fc4_w, _ = linear_grads(du, h_l)
        fc1 = linear_grads(input_grad(du, w3) * (h_phi > 0), rho)
        fc2 = linear_grads(input_grad(du, w4) * (h_l > 0), l_prev)
        # The two bias pairs enter as sums (fc3.b + fc4.b, i2h.b + h2h.b): equal gradients.
        return (None, None, None, None, *fc1, *fc2, fc3_w, glimpse_b, fc4_w, glimpse_b,
                i2h_w, core_b, h2h_w, core_b)


class Pretrained(NamedTuple):
    """A checkpoint ready for testing: the model (one run) in eval mode, the settings of the run
    that wrote it (an argparse Namespace, as config.get_config gives) and the epoch it is
    from."""
    model: RecurrentAttention
    settings: Namespace
    epoch: int


def load_pretrained(path, cfg=None, keys=(), device="cpu"):
    """The model stored in a checkpoint file (a training checkpoint or a slimmed one of
    pretrained/), with its settings; `keys` of them must agree with cfg (utils.load_checkpoint).
    """
    ckpt = load_checkpoint(path, cfg, keys, ADDED_SETTINGS)
    settings = Namespace(**ckpt["config"])
    model = RecurrentAttention.from_config(settings)
    model.load_run_state(0, ckpt["model"])
    return Pretrained(model.to(device).eval(), settings, ckpt["epoch"])
