"""RecurrentAttention: the networks of modules.py unrolled over N glimpses.

One glimpse step t = 1..N (docs/method.md, "The model"):
    g_t = f_g(rho(x, l_{t-1}), l_{t-1})     glimpse network, sees the previous location
    h_t = f_h(g_t, h_{t-1})                 core network
    l_t, log_pi_t = f_l(h_t)                location network (the policy)
with l_0 ~ Uniform(-1, 1)^2 and h_0 = 0. The heads that do not feed back into the recurrence,
log p_t = f_a(h_t), b_t = f_b(h_t) and e_t = f_e(h_t, p_t), are applied to all steps at once
after the loop: the same values as applying them inside it, in three operations instead of 3N.
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
    """Everything an unroll of N glimpses produces, stacked over the steps.

    log_probs (N, B, K): log p_t, the prediction after t glimpses.
    locations (N + 1, B, 2): l_0 .. l_N (glimpse t looks at l_{t-1}).
    log_pi (N, B): log pi(l_t | h_t) of the location each step chose.
    baselines (N, B): b_t.
    e_t (N, B, K): self-uncertainty, routed for L_unc (gradient to RAM, not to f_e).
    e_t_fit (N, B, K): the same values, routed for L_fit (gradient to f_e only).
    """
    log_probs: torch.Tensor
    locations: torch.Tensor
    log_pi: torch.Tensor
    baselines: torch.Tensor
    e_t: torch.Tensor
    e_t_fit: torch.Tensor


class RecurrentAttention(nn.Module):
    """RAM (Mnih et al. 2014) with the error network of Lu (2019).

    x: (B, C, H, W) -> Glimpses over num_glimpses steps (any number, also more than trained).
    """

    def __init__(self, patch_size, num_patches, glimpse_scale, num_channels, glimpse_hidden,
                 loc_hidden, hidden_size, std, num_classes=10):
        super().__init__()
        self.hidden_size = hidden_size
        self.retina = Retina(patch_size, num_patches, glimpse_scale)
        retina_size = num_patches * patch_size * patch_size * num_channels
        self.glimpse = GlimpseNetwork(retina_size, glimpse_hidden, loc_hidden)
        self.core = CoreNetwork(glimpse_hidden + loc_hidden, hidden_size)
        self.location = LocationNetwork(hidden_size, std)
        self.action = ActionNetwork(hidden_size, num_classes)
        self.baseline = BaselineNetwork(hidden_size)
        self.error = ErrorNetwork(hidden_size, num_classes)

    @classmethod
    def from_config(cls, cfg):
        """The model that config.py's settings (an argparse Namespace) describe."""
        return cls(patch_size=cfg.patch_size, num_patches=cfg.num_patches,
                   glimpse_scale=cfg.glimpse_scale, num_channels=1,
                   glimpse_hidden=cfg.glimpse_hidden, loc_hidden=cfg.loc_hidden,
                   hidden_size=cfg.hidden_size, std=cfg.std)

    def initial_state(self, x):
        """h_0 = 0 (B, hidden_size) and l_0 ~ Uniform(-1, 1)^2 (B, 2)."""
        B = x.shape[0]
        h_0 = x.new_zeros(B, self.hidden_size)
        l_0 = torch.empty(B, 2, device=x.device, dtype=x.dtype).uniform_(-1, 1)
        return h_0, l_0

    def step(self, x_padded, image_hw, l_prev, h_prev):
        """One glimpse: (h_t (B, hidden), l_t (B, 2), log_pi (B,)) from l_{t-1} and h_{t-1}.

        x_padded is the image after self.retina.pad, image_hw its original (H, W)."""
        rho = self.retina.extract(x_padded, l_prev, image_hw)
        h_t = self.core(self.glimpse(rho, l_prev), h_prev)
        l_t, log_pi = self.location(h_t)
        return h_t, l_t, log_pi

    def forward(self, x, num_glimpses):
        h_t, l_t = self.initial_state(x)
        x_padded = self.retina.pad(x)
        hs, locations, log_pis = [], [l_t], []
        for _ in range(num_glimpses):
            h_t, l_t, log_pi = self.step(x_padded, x.shape[-2:], l_t, h_t)
            hs.append(h_t)
            locations.append(l_t)
            log_pis.append(log_pi)
        h = torch.stack(hs)  # (N, B, hidden_size)
        log_probs = self.action(h)
        e_t, e_t_fit = self.error(h, log_probs.exp())
        return Glimpses(log_probs=log_probs, locations=torch.stack(locations),
                        log_pi=torch.stack(log_pis), baselines=self.baseline(h),
                        e_t=e_t, e_t_fit=e_t_fit)


class Pretrained(NamedTuple):
    """A checkpoint ready for testing: the model in eval mode, the settings of the run that
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
    model.load_state_dict(ckpt["model"])
    return Pretrained(model.to(device).eval(), settings, ckpt["epoch"])
