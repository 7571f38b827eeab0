"""RecurrentAttention: the networks of modules.py unrolled over N glimpses, for R runs at once.

One glimpse step t = 1..N (docs/method.md, "The model"):
    g_t = f_g(rho(x, l_{t-1}), l_{t-1})     glimpse network, sees the previous location
    h_t = f_h(g_t, h_{t-1})                 core network
    l_t, log_pi_t = f_l(h_t)                location network (the policy)
with l_0 ~ Uniform(-1, 1)^2 and h_0 = 0. The heads that do not feed back into the recurrence,
log p_t = f_a(h_t), b_t = f_b(h_t) and e_t = f_e(h_t, p_t), are applied to all steps at once
after the loop: the same values as applying them inside it, in three operations instead of 3N.

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

from modules import (ActionNetwork, BaselineNetwork, CoreNetwork, ErrorNetwork, GlimpseNetwork,
                     LocationNetwork, Retina)
from utils import load_checkpoint


@dataclass
class Glimpses:
    """Everything an unroll of N glimpses produces, for R runs, stacked over the steps.

    log_probs (R, N, B, K): log p_t, the prediction after t glimpses.
    locations (R, N + 1, B, 2): l_0 .. l_N (glimpse t looks at l_{t-1}).
    log_pi (R, N, B): log pi(l_t | h_t) of the location each step chose.
    baselines (R, N, B): b_t.
    e_t (R, N, B, K): self-uncertainty, routed for L_unc (gradient to RAM, not to f_e).
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
                 loc_hidden, hidden_size, std, num_classes=10, runs=1):
        super().__init__()
        self.runs, self.hidden_size = runs, hidden_size
        self.retina = Retina(patch_size, num_patches, glimpse_scale)
        retina_size = num_patches * patch_size * patch_size * num_channels
        self.glimpse = GlimpseNetwork(runs, retina_size, glimpse_hidden, loc_hidden)
        self.core = CoreNetwork(runs, glimpse_hidden + loc_hidden, hidden_size)
        self.location = LocationNetwork(runs, hidden_size, std)
        self.action = ActionNetwork(runs, hidden_size, num_classes)
        self.baseline = BaselineNetwork(runs, hidden_size)
        self.error = ErrorNetwork(runs, hidden_size, num_classes)

    @classmethod
    def from_config(cls, cfg, runs=1):
        """The model that config.py's settings (an argparse Namespace) describe."""
        return cls(patch_size=cfg.patch_size, num_patches=cfg.num_patches,
                   glimpse_scale=cfg.glimpse_scale, num_channels=1,
                   glimpse_hidden=cfg.glimpse_hidden, loc_hidden=cfg.loc_hidden,
                   hidden_size=cfg.hidden_size, std=cfg.std, runs=runs)

    @classmethod
    def for_runs(cls, cfgs):
        """A model for the runs `cfgs`, run r initialised from its own seed exactly as a model
        of that run alone."""
        model = cls.from_config(cfgs[0], runs=len(cfgs))
        for r, cfg in enumerate(cfgs):
            torch.manual_seed(cfg.random_seed)
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

    def step(self, x_padded, image_hw, l_prev, h_prev, eps_t=None):
        """One glimpse: (h_t (R, B, hidden), l_t (R, B, 2), log_pi (R, B)) from l_{t-1} and
        h_{t-1}. x_padded is the image batch (R * B, C, H', W') after self.retina.pad,
        image_hw its original (H, W); eps_t (R, B, 2) the policy's noise, or None."""
        R, B = l_prev.shape[:2]
        rho = self.retina.extract(x_padded, l_prev.reshape(R * B, 2), image_hw).view(R, B, -1)
        h_t = self.core(self.glimpse(rho, l_prev), h_prev)
        l_t, log_pi = self.location(h_t, eps_t)
        return h_t, l_t, log_pi

    def forward(self, x, num_glimpses, noise=None):
        """noise: None (l_0 and then each step's policy noise drawn from the global generator,
        in that order), or (l_0 (R, B, 2), eps (N, R, B, 2)) drawn by the caller."""
        R, B = x.shape[:2]
        h_t = x.new_zeros(R, B, self.hidden_size)
        if noise is None:
            l_t = torch.empty(R, B, 2, device=x.device, dtype=x.dtype).uniform_(-1, 1)
        else:
            l_t, eps = noise
        x_padded = self.retina.pad(x.flatten(0, 1))
        hs, locations, log_pis = [], [l_t], []
        for t in range(num_glimpses):
            h_t, l_t, log_pi = self.step(x_padded, x.shape[-2:], l_t, h_t,
                                         None if noise is None else eps[t])
            hs.append(h_t)
            locations.append(l_t)
            log_pis.append(log_pi)
        h = torch.stack(hs, dim=1)  # (R, N, B, hidden_size)
        log_probs = self.action(h)
        e_t, e_t_fit = self.error(h, log_probs.exp())
        return Glimpses(log_probs=log_probs, locations=torch.stack(locations, dim=1),
                        log_pi=torch.stack(log_pis, dim=1), baselines=self.baseline(h),
                        e_t=e_t, e_t_fit=e_t_fit)


class Pretrained(NamedTuple):
    """A checkpoint ready for testing: the model (one run) in eval mode, the settings of the run that
    wrote it (an argparse Namespace, as config.get_config gives) and the epoch it is from."""
    model: RecurrentAttention
    settings: Namespace
    epoch: int


def load_pretrained(path, cfg=None, keys=(), device="cpu"):
    """The model stored in a checkpoint file (a training checkpoint or a slimmed one of
    pretrained/), with its settings; `keys` of them must agree with cfg (utils.load_checkpoint).
    """
    ckpt = load_checkpoint(path, cfg, keys)
    settings = Namespace(**ckpt["config"])
    model = RecurrentAttention.from_config(settings)
    model.load_run_state(0, ckpt["model"])
    return Pretrained(model.to(device).eval(), settings, ckpt["epoch"])
