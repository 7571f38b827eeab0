"""The networks of the Recurrent Attention Model, one small module per box of the paper's figure.

Notation (docs/method.md): B batch, C channels, H x W image, g patch size, k patches, s scale,
l_t in [-1, 1]^2 with l[..., 0] the column (x) and l[..., 1] the row (y), (-1, -1) the top-left.

Every network with weights holds R independent copies of them, one per run of a group that
trains in one process (R = 1 for a single run): its inputs and outputs carry a leading run
dimension R, and copy r only ever sees run r's inputs. The R copies go through batched matrix
products (`StackedLinear`), so R runs cost about as many operations as one.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Retina(nn.Module):
    """rho(x, l): k concentric square patches around l, each s times wider than the last,
    every one average-pooled back to g x g, concatenated and flattened.

    The centre pixel is floor((l + 1) / 2 * H) (row from l_y, column from l_x with W); a patch
    of side n covers [c - n // 2, c - n // 2 + n); pixels outside the image read as 0.

    Read from a summed-area table: `prepare` computes S[i, j] = sum of x[:i, :j] once per
    image, and each pooled pixel, the sum of an r x r block (r = n // g), is then
    S[y1, x1] - S[y0, x1] - S[y1, x0] + S[y0, x0]: (g + 1)^2 lookups a patch, whatever its
    size, where gathering the pixels costs n^2 (96^2 for the 100x100 retina's widest patch).
    Clamping the corners to [0, H] x [0, W] makes the pixels outside read as 0. The table is
    float64, so a block's sum errs far below float32's precision and a pooled pixel is the
    block's mean rounded once to l's dtype. For MNIST's normalised pixels the sums are exact,
    and a patch with r = 1 returns the pixels bit for bit.

    x: (B, C, H, W), l: (B, 2) -> (B, k * g * g * C), ordered patch-major, then C, g, g.
    """

    def __init__(self, g, k, s):
        super().__init__()
        self.g, self.k, self.s = g, k, s
        self.sizes = [g * s**i for i in range(k)]

    @staticmethod
    @torch.compiler.disable
    def prepare(x):
        """The summed-area table of x (B, C, H, W): (B, C, H + 1, W + 1), float64.

        Separate from forward so that an unroll of N glimpses builds it only once. Left out of
        torch.compile: its code for the two float64 scans made a compiled training step on
        translated MNIST slower than the eager one."""
        return F.pad(x, (1, 0, 1, 0)).double().cumsum_(-1).cumsum_(-2)

    def extract(self, table, l):
        """The glimpse vector from a table made by `prepare`: (B, k * g * g * C)."""
        B, C, H1, W1 = table.shape
        H, W = H1 - 1, W1 - 1
        col = torch.floor((l[:, 0] + 1) / 2 * W).long()
        row = torch.floor((l[:, 1] + 1) / 2 * H).long()
        flat = table.reshape(B, C, H1 * W1)
        steps = torch.arange(self.g + 1, device=l.device)
        patches = []
        for n in self.sizes:
            r = n // self.g  # the pooling kernel
            edges = steps * r - n // 2  # block boundaries, relative to the centre
            ys = (row[:, None] + edges).clamp_(0, H)  # (B, g + 1)
            xs = (col[:, None] + edges).clamp_(0, W)
            idx = (ys[:, :, None] * W1 + xs[:, None, :]).view(B, 1, -1).expand(B, C, -1)
            corners = flat.gather(2, idx).view(B, C, self.g + 1, self.g + 1)
            sums = (corners[:, :, 1:, 1:] - corners[:, :, :-1, 1:]
                    - corners[:, :, 1:, :-1] + corners[:, :, :-1, :-1])
            patches.append((sums / (r * r)).to(l.dtype))
        return torch.cat([p.reshape(B, -1) for p in patches], dim=1)

    def forward(self, x, l):
        return self.extract(self.prepare(x), l)


class StackedLinear(nn.Module):
    """R independent linear layers: y[r] = x[r] W[r]^T + b[r].

    weight (R, out, in), bias (R, out): copy r is the weight and bias of an nn.Linear(in, out),
    initialised the same way. x: (R, ..., in) -> (R, ..., out).
    """

    def __init__(self, runs, in_features, out_features):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(runs, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(runs, out_features))
        for r in range(runs):
            self.reset_run(r)

    @torch.no_grad()
    def reset_run(self, r):
        """Draw copy r from the global generator as nn.Linear.reset_parameters does."""
        nn.init.kaiming_uniform_(self.weight[r], a=math.sqrt(5))
        bound = 1 / math.sqrt(self.weight.shape[2])
        nn.init.uniform_(self.bias[r], -bound, bound)

    def forward(self, x):
        return stacked_linear(x, self.weight, self.bias)


def stacked_linear(x, weight, bias, accumulate=None):
    """x (R, ..., in) times weight (R, out, in)^T plus bias (R, out), as one batched product;
    with `accumulate` (R, ..., out) the product is added to it in place instead (one buffer
    and one operation fewer than adding two products)."""
    R, inner = x.shape[0], x.shape[1:-1]
    flat = x.reshape(R, -1, x.shape[-1])
    if accumulate is None:
        out = torch.baddbmm(bias.unsqueeze(1), flat, weight.transpose(1, 2))
    else:
        out = accumulate.view(R, -1, weight.shape[1]).baddbmm_(flat, weight.transpose(1, 2))
    return out.view(R, *inner, weight.shape[1])


class GlimpseNetwork(nn.Module):
    """f_g: g_t = relu(fc3(h_phi) + fc4(h_l)), h_phi = relu(fc1(rho(x, l))), h_l = relu(fc2(l)).

    It sees the previous location l_{t-1}.
    rho: (R, B, k * g * g * C), l_{t-1}: (R, B, 2) -> g_t: (R, B, glimpse_hidden + loc_hidden).
    """

    def __init__(self, runs, retina_size, glimpse_hidden, loc_hidden):
        super().__init__()
        out = glimpse_hidden + loc_hidden
        self.fc1 = StackedLinear(runs, retina_size, glimpse_hidden)
        self.fc2 = StackedLinear(runs, 2, loc_hidden)
        self.fc3 = StackedLinear(runs, glimpse_hidden, out)
        self.fc4 = StackedLinear(runs, loc_hidden, out)

    def forward(self, rho, l_prev):
        h_phi = F.relu(self.fc1(rho))
        h_l = F.relu(self.fc2(l_prev))
        # fc3(h_phi) + fc4(h_l), the second product accumulated into the first one's output.
        g_t = stacked_linear(h_phi, self.fc3.weight, self.fc3.bias + self.fc4.bias)
        return F.relu(stacked_linear(h_l, self.fc4.weight, None, accumulate=g_t))


class CoreNetwork(nn.Module):
    """f_h: h_t = relu(i2h(g_t) + h2h(h_{t-1})).

    g_t: (R, B, input_size), h_{t-1}: (R, B, hidden_size) -> h_t: (R, B, hidden_size).
    """

    def __init__(self, runs, input_size, hidden_size):
        super().__init__()
        self.i2h = StackedLinear(runs, input_size, hidden_size)
        self.h2h = StackedLinear(runs, hidden_size, hidden_size)

    def forward(self, g_t, h_prev):
        # i2h(g_t) + h2h(h_{t-1}) accumulated in one buffer, as in GlimpseNetwork.
        h_t = stacked_linear(g_t, self.i2h.weight, self.i2h.bias + self.h2h.bias)
        return F.relu(stacked_linear(h_prev, self.h2h.weight, None, accumulate=h_t))


class LocationNetwork(nn.Module):
    """f_l: the Gaussian policy pi(l_t | h_t) with fixed std.

    mu_t = clamp(fc(h_t), -1, 1), or with a hidden layer of `hidden` units (--location_hidden,
    beyond the paper) mu_t = clamp(fc(relu(fc_hidden(h_t))), -1, 1), or with mean="tanh"
    (--location_mean=tanh, beyond the paper) tanh in place of the clamp;
    l_t = clamp(mu_t + std * eps_t, -1, 1), eps_t ~ N(0, 1);
    log pi(l_t | h_t) = sum over (x, y) of log N(l_t; mu_t, std).
    """

    def __init__(self, runs, hidden_size, std, hidden=0, mean="clamp"):
        super().__init__()
        self.std = std
        # clamp: REINFORCE stops moving mu_t once fc's output leaves [-1, 1]; tanh: never
        self.tanh = mean == "tanh"
        self.fc_hidden = StackedLinear(runs, hidden_size, hidden) if hidden else None
        self.fc = StackedLinear(runs, hidden or hidden_size, 2)

    def mu(self, h_t):
        # detach h_t: the policy is trained by REINFORCE only, and REINFORCE must not reach the
        # core or glimpse networks (the stop-gradient of the original RAM).
        z = h_t.detach()
        if self.fc_hidden is not None:
            z = F.relu(self.fc_hidden(z))
        z = self.fc(z)
        return torch.tanh(z) if self.tanh else torch.clamp(z, -1, 1)

    def forward(self, h_t, eps_t=None):
        """Draw l_t: h_t (R, B, hidden_size), eps_t (R, B, 2) or None (drawn from the global
        generator) -> l_t (R, B, 2)."""
        mu = self.mu(h_t)
        noise = torch.randn_like(mu) if eps_t is None else eps_t
        # detach l_t: a sampled location is an action, not a differentiable function of mu.
        return torch.clamp(mu + self.std * noise, -1, 1).detach()

    def log_prob(self, h, l):
        """log pi(l | h), with gradients to the location network only (fc, and fc_hidden where
        there is one): h (R, ..., hidden_size), l (R, ..., 2) -> (R, ...)."""
        return (-(l - self.mu(h)) ** 2 / (2 * self.std**2)
                - math.log(self.std) - 0.5 * math.log(2 * math.pi)).sum(dim=-1)


class ActionNetwork(nn.Module):
    """f_a: log p_t = log_softmax(fc(h_t)).  h_t: (R, ..., hidden_size) -> (R, ..., num_classes)."""

    def __init__(self, runs, hidden_size, num_classes):
        super().__init__()
        self.fc = StackedLinear(runs, hidden_size, num_classes)

    def forward(self, h_t):
        return F.log_softmax(self.fc(h_t), dim=-1)


class BaselineNetwork(nn.Module):
    """f_b: b_t = relu(fc(h_t)), the REINFORCE baseline, or b_t = fc(h_t) with relu=False
    (--baseline_relu=False, beyond the paper).  h_t: (R, ..., hidden_size) -> (R, ...)."""

    def __init__(self, runs, hidden_size, relu=True):
        super().__init__()
        self.relu = relu
        self.fc = StackedLinear(runs, hidden_size, 1)

    def forward(self, h_t):
        # detach h_t: the baseline only tracks the expected reward; its regression loss must
        # not shape the representation that the classifier uses.
        b_t = self.fc(h_t.detach()).squeeze(-1)
        return F.relu(b_t) if self.relu else b_t


class ErrorNetwork(nn.Module):
    """f_e (Lu 2019): e_t = relu(fc([h_t, p_t])), the self-uncertainty, an estimate of the
    per-class absolute error |onehot(y) - p_t|.

    h_t: (R, ..., hidden_size), p_t: (R, ..., num_classes) -> e_t, e_t_fit: (R, ..., num_classes).

    The same value is returned twice with different gradient routes (docs/method.md,
    "Objective"):
    e_t for L_unc, whose gradient reaches RAM through h_t and p_t but not these weights;
    e_t_fit for L_fit, whose gradient reaches these weights only.
    With released_routing (--uncertainty_routing=released, the released code's), L_unc's
    gradient reaches these weights too.
    """

    def __init__(self, runs, hidden_size, num_classes, released_routing=False):
        super().__init__()
        self.released_routing = released_routing
        self.fc = StackedLinear(runs, hidden_size + num_classes, num_classes)

    def forward(self, h_t, p_t):
        z = torch.cat([h_t, p_t], dim=-1)
        if self.released_routing:
            e_t = F.relu(self.fc(z))
        else:
            # detach the weights: minimising the predicted error must move RAM, not shrink
            # the estimator that makes the prediction.
            e_t = F.relu(stacked_linear(z, self.fc.weight.detach(), self.fc.bias.detach()))
        # detach the input: fitting the estimator must not move RAM towards easier-to-predict
        # states.
        e_t_fit = F.relu(self.fc(z.detach()))
        return e_t, e_t_fit
