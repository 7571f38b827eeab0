"""Each term of trainer.loss_terms against values computed by hand from tiny tensors."""
import math

import pytest
import torch

import trainer
from config import variant_flags
from conftest import settings
from model import Glimpses

LAMBDA_UNC, LAMBDA_INTR = 0.3, 0.7
LAMBDAS = (f"--lambda_uncertainty={LAMBDA_UNC}", f"--lambda_intrinsic={LAMBDA_INTR}")
BOTH = settings(*variant_flags("both"), *LAMBDAS)  # every term on

# N = 2 steps, B = 3 samples, K = 4 classes.
LOGITS = [[[2.0, 1.0, 0.0, -1.0], [0.5, 0.2, 3.0, 0.1], [1.0, 1.0, 0.0, 2.5]],   # t = 1
          [[0.1, 2.0, 0.3, -0.5], [1.5, 0.2, 0.1, 0.0], [0.0, 0.3, 2.0, 0.1]]]   # t = T = 2
Y = [1, 3, 2]  # argmax p_T = [1, 0, 2] -> R = [1, 0, 1]; argmax p_1 = [0, 2, 3] -> all wrong
LOG_PI = [[-0.5, 1.2, 0.3], [0.7, -1.1, 2.0]]
BASELINES = [[0.2, 0.9, 0.0], [0.6, 0.1, 1.3]]
E = [[[0.1, 0.5, 0.0, 0.3], [0.2, 0.2, 0.7, 0.05], [0.9, 0.0, 0.4, 0.6]],
     [[0.3, 0.1, 0.2, 0.0], [0.8, 0.1, 0.3, 0.95], [0.0, 0.2, 0.1, 0.4]]]


def log_softmax(row):
    m = max(row)
    lse = m + math.log(sum(math.exp(v - m) for v in row))
    return [v - lse for v in row]


LOGP = [[log_softmax(r) for r in step] for step in LOGITS]
N, B, K = len(LOGITS), len(Y), len(LOGITS[0][0])


def make_glimpses(requires_grad=False, R=1):
    """The hand example as the Glimpses of a group of R runs, each with the same values."""
    t = lambda v: torch.tensor([v] * R, dtype=torch.float32, requires_grad=requires_grad)
    return Glimpses(log_probs=t(LOGP), locations=torch.zeros(R, N + 1, B, 2), log_pi=t(LOG_PI),
                    baselines=t(BASELINES), e_t=t(E), e_t_fit=t(E))


def hand_terms(logp=LOGP, y=Y, log_pi=LOG_PI, baselines=BASELINES, e=E,
               lambda_unc=LAMBDA_UNC, lambda_intr=LAMBDA_INTR):
    T = N - 1
    R = [1.0 if max(range(K), key=lambda k: logp[T][b][k]) == y[b] else 0.0 for b in range(B)]
    action = sum(-logp[T][b][y[b]] for b in range(B)) / B
    baseline = sum((baselines[t][b] - R[b]) ** 2 for t in range(N) for b in range(B)) / (N * B)
    reinforce = sum(sum(-log_pi[t][b] * (R[b] - baselines[t][b]) for t in range(N))
                    for b in range(B)) / B
    fit = sum((e[t][b][k] - abs((1.0 if k == y[b] else 0.0) - math.exp(logp[t][b][k]))) ** 2
              for t in range(N) for b in range(B) for k in range(K)) / (N * B * K)
    uncertainty = lambda_unc * sum(e[t][b][k] for t in range(N) for b in range(B)
                                   for k in range(K))
    intrinsic = lambda_intr * sum(-(1 / K) * logp[T][b][k] for b in range(B) for k in range(K))
    return dict(action=action, baseline=baseline, reinforce=reinforce, fit=fit,
                uncertainty=uncertainty, intrinsic=intrinsic), R


def weights(*cfgs):
    return trainer.loss_weights(list(cfgs))


def test_hand_example_is_not_degenerate():
    want, R = hand_terms()
    assert R == [1.0, 0.0, 1.0]
    assert all(abs(v) > 1e-3 for v in want.values())


def test_reward_from_last_step():
    _, reward = trainer.loss_terms(make_glimpses(), torch.tensor([Y]), weights(BOTH))
    assert reward.tolist() == [[1.0, 0.0, 1.0]]


@pytest.mark.parametrize("name", ["action", "baseline", "reinforce", "fit", "uncertainty",
                                  "intrinsic"])
def test_term_value(name):
    terms, _ = trainer.loss_terms(make_glimpses(), torch.tensor([Y]), weights(BOTH))
    want, _ = hand_terms()
    assert terms[name].shape == (1,)
    assert terms[name].item() == pytest.approx(want[name], rel=1e-5, abs=1e-6)


def test_terms_without_flags():
    """A run without the optional terms has them, weighted 0; the others as by hand."""
    terms, _ = trainer.loss_terms(make_glimpses(), torch.tensor([Y]),
                                  weights(settings(*variant_flags("original"), *LAMBDAS)))
    want, _ = hand_terms()
    assert set(terms) == set(want)
    assert set(trainer.OPTIONAL_TERMS) == {"fit", "uncertainty", "intrinsic"}
    for name in terms:
        if name in trainer.OPTIONAL_TERMS:
            assert terms[name].item() == 0.0, name
        else:
            assert terms[name].item() == pytest.approx(want[name], rel=1e-5, abs=1e-6)


# A second example for a second run: other labels, policy, baselines, uncertainties and
# predictions (the steps in the other order), so that a term that mixed the runs would show.
Y2 = [0, 3, 3]
LOGP2 = [LOGP[1], LOGP[0]]  # argmax p_T = [0, 2, 3] -> R = [1, 0, 1]
LOG_PI2 = [[-v for v in row] for row in LOG_PI]
BASELINES2 = [[0.5 * v + 0.1 for v in row] for row in BASELINES]
E2 = [E[1], E[0]]


@pytest.mark.parametrize("variant2", ["both", "original", "uncertainty", "intrinsic"])
def test_each_run_of_a_group_gets_its_own_terms(variant2):
    """Two runs with their own outputs, labels, variants and loss weights: each entry of each
    term is the hand value of its run alone."""
    lambdas2 = (0.05, 2.0)
    cfg2 = settings(*variant_flags(variant2), f"--lambda_uncertainty={lambdas2[0]}",
                    f"--lambda_intrinsic={lambdas2[1]}")
    t = lambda a, b: torch.tensor([a, b], dtype=torch.float32)
    g = Glimpses(log_probs=t(LOGP, LOGP2), locations=torch.zeros(2, N + 1, B, 2),
                 log_pi=t(LOG_PI, LOG_PI2), baselines=t(BASELINES, BASELINES2), e_t=t(E, E2),
                 e_t_fit=t(E, E2))
    terms, reward = trainer.loss_terms(g, torch.tensor([Y, Y2]), weights(BOTH, cfg2))
    want1, r1 = hand_terms()
    want2, r2 = hand_terms(LOGP2, Y2, LOG_PI2, BASELINES2, E2, *lambdas2)
    assert r2 == [1.0, 0.0, 1.0] and want2 != want1
    assert reward.tolist() == [r1, r2]
    for name in want1:
        assert terms[name].shape == (2,)
        assert terms[name][0].item() == pytest.approx(want1[name], rel=1e-5, abs=1e-6), name
        has = trainer.has_term(cfg2, name)
        assert terms[name][1].item() == pytest.approx(want2[name] if has else 0.0, rel=1e-5,
                                                      abs=1e-6), name


def test_duplicated_batch_doubles_only_summed_terms():
    """Intrinsic (summed over the batch, as in the released code) and uncertainty (summed over
    b, t, k) double when every sample is duplicated; the means do not change."""
    g = make_glimpses()
    dup = Glimpses(**{f: torch.cat([getattr(g, f)] * 2, dim=2) for f in
                      ("log_probs", "locations", "log_pi", "baselines", "e_t", "e_t_fit")})
    y = torch.tensor([Y])
    one, _ = trainer.loss_terms(g, y, weights(BOTH))
    two, reward = trainer.loss_terms(dup, torch.cat([y, y], dim=1), weights(BOTH))
    assert reward.tolist() == [[1.0, 0.0, 1.0] * 2]
    for name in ("action", "baseline", "reinforce", "fit"):
        assert two[name].item() == pytest.approx(one[name].item(), rel=1e-5), name
    for name in ("intrinsic", "uncertainty"):
        assert two[name].item() == pytest.approx(2 * one[name].item(), rel=1e-5), name


def test_lambdas_scale_their_terms():
    """Two runs of the same outputs, the second with lambda_1 doubled and lambda_2 tripled."""
    y = torch.tensor([Y, Y])
    scaled = settings(*variant_flags("both"), f"--lambda_uncertainty={2 * LAMBDA_UNC}",
                      f"--lambda_intrinsic={3 * LAMBDA_INTR}")
    t, _ = trainer.loss_terms(make_glimpses(R=2), y, weights(BOTH, scaled))
    a = {k: v[0] for k, v in t.items()}
    b = {k: v[1] for k, v in t.items()}
    assert b["uncertainty"].item() == pytest.approx(2 * a["uncertainty"].item(), rel=1e-6)
    assert b["intrinsic"].item() == pytest.approx(3 * a["intrinsic"].item(), rel=1e-6)
    for name in ("action", "baseline", "reinforce", "fit"):
        assert b[name].item() == pytest.approx(a[name].item(), rel=1e-6)


def _grad(term, tensor):
    (g,) = torch.autograd.grad(term, [tensor], retain_graph=True, allow_unused=True)
    return g


def _none_or_zero(g):
    return g is None or not bool((g != 0).any())


def test_stop_gradients_inside_loss_terms():
    """REINFORCE treats b_t as a constant; L_fit's target |onehot - p_t| is a constant;
    L_unc and L_fit use their own routes of e_t."""
    g = make_glimpses(requires_grad=True)
    terms, _ = trainer.loss_terms(g, torch.tensor([Y]), weights(BOTH))
    terms = {k: v.sum() for k, v in terms.items()}
    assert _none_or_zero(_grad(terms["reinforce"], g.baselines))
    assert not _none_or_zero(_grad(terms["reinforce"], g.log_pi))
    assert not _none_or_zero(_grad(terms["baseline"], g.baselines))
    assert _none_or_zero(_grad(terms["fit"], g.log_probs))
    assert _none_or_zero(_grad(terms["fit"], g.e_t))
    assert not _none_or_zero(_grad(terms["fit"], g.e_t_fit))
    assert _none_or_zero(_grad(terms["uncertainty"], g.e_t_fit))
    gu = _grad(terms["uncertainty"], g.e_t)
    torch.testing.assert_close(gu, torch.full((1, N, B, K), LAMBDA_UNC))
    # the prediction terms read only the last step
    ga = _grad(terms["action"], g.log_probs)[0]
    gi = _grad(terms["intrinsic"], g.log_probs)[0]
    assert _none_or_zero(ga[:-1]) and _none_or_zero(gi[:-1])
    torch.testing.assert_close(gi[-1], torch.full((B, K), -LAMBDA_INTR / K))
    want = torch.zeros(B, K)
    want[torch.arange(B), torch.tensor(Y)] = -1 / B
    torch.testing.assert_close(ga[-1], want)
