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


def make_glimpses(requires_grad=False):
    t = lambda v: torch.tensor(v, dtype=torch.float32, requires_grad=requires_grad)
    return Glimpses(log_probs=t(LOGP), locations=torch.zeros(N + 1, B, 2), log_pi=t(LOG_PI),
                    baselines=t(BASELINES), e_t=t(E), e_t_fit=t(E))


def hand_terms():
    T = N - 1
    R = [1.0 if max(range(K), key=lambda k: LOGP[T][b][k]) == Y[b] else 0.0 for b in range(B)]
    action = sum(-LOGP[T][b][Y[b]] for b in range(B)) / B
    baseline = sum((BASELINES[t][b] - R[b]) ** 2 for t in range(N) for b in range(B)) / (N * B)
    reinforce = sum(sum(-LOG_PI[t][b] * (R[b] - BASELINES[t][b]) for t in range(N))
                    for b in range(B)) / B
    fit = sum((E[t][b][k] - abs((1.0 if k == Y[b] else 0.0) - math.exp(LOGP[t][b][k]))) ** 2
              for t in range(N) for b in range(B) for k in range(K)) / (N * B * K)
    uncertainty = LAMBDA_UNC * sum(E[t][b][k] for t in range(N) for b in range(B)
                                   for k in range(K))
    intrinsic = LAMBDA_INTR * sum(-(1 / K) * LOGP[T][b][k] for b in range(B) for k in range(K))
    return dict(action=action, baseline=baseline, reinforce=reinforce, fit=fit,
                uncertainty=uncertainty, intrinsic=intrinsic), R


def test_hand_example_is_not_degenerate():
    want, R = hand_terms()
    assert R == [1.0, 0.0, 1.0]
    assert all(abs(v) > 1e-3 for v in want.values())


def test_reward_from_last_step():
    _, reward = trainer.loss_terms(make_glimpses(), torch.tensor(Y), BOTH)
    assert reward.tolist() == [1.0, 0.0, 1.0]


@pytest.mark.parametrize("name", ["action", "baseline", "reinforce", "fit", "uncertainty",
                                  "intrinsic"])
def test_term_value(name):
    terms, _ = trainer.loss_terms(make_glimpses(), torch.tensor(Y), BOTH)
    want, _ = hand_terms()
    assert terms[name].dim() == 0
    assert terms[name].item() == pytest.approx(want[name], rel=1e-5, abs=1e-6)


def test_terms_without_flags():
    terms, _ = trainer.loss_terms(make_glimpses(), torch.tensor(Y),
                                  settings(*variant_flags("original"), *LAMBDAS))
    want, _ = hand_terms()
    assert set(terms) == {"action", "baseline", "reinforce"}
    for name in terms:
        assert terms[name].item() == pytest.approx(want[name], rel=1e-5, abs=1e-6)


def test_duplicated_batch_doubles_only_summed_terms():
    """Intrinsic (summed over the batch, as in the released code) and uncertainty (summed over
    b, t, k) double when every sample is duplicated; the means do not change."""
    g = make_glimpses()
    dup = Glimpses(**{f: torch.cat([getattr(g, f)] * 2, dim=1) for f in
                      ("log_probs", "locations", "log_pi", "baselines", "e_t", "e_t_fit")})
    y = torch.tensor(Y)
    one, _ = trainer.loss_terms(g, y, BOTH)
    two, reward = trainer.loss_terms(dup, torch.cat([y, y]), BOTH)
    assert reward.tolist() == [1.0, 0.0, 1.0] * 2
    for name in ("action", "baseline", "reinforce", "fit"):
        assert two[name].item() == pytest.approx(one[name].item(), rel=1e-5), name
    for name in ("intrinsic", "uncertainty"):
        assert two[name].item() == pytest.approx(2 * one[name].item(), rel=1e-5), name


def test_lambdas_scale_their_terms():
    y = torch.tensor(Y)
    a, _ = trainer.loss_terms(make_glimpses(), y, BOTH)
    b, _ = trainer.loss_terms(make_glimpses(), y, settings(
        *variant_flags("both"), f"--lambda_uncertainty={2 * LAMBDA_UNC}",
        f"--lambda_intrinsic={3 * LAMBDA_INTR}"))
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
    terms, _ = trainer.loss_terms(g, torch.tensor(Y), BOTH)
    assert _none_or_zero(_grad(terms["reinforce"], g.baselines))
    assert not _none_or_zero(_grad(terms["reinforce"], g.log_pi))
    assert not _none_or_zero(_grad(terms["baseline"], g.baselines))
    assert _none_or_zero(_grad(terms["fit"], g.log_probs))
    assert _none_or_zero(_grad(terms["fit"], g.e_t))
    assert not _none_or_zero(_grad(terms["fit"], g.e_t_fit))
    assert _none_or_zero(_grad(terms["uncertainty"], g.e_t_fit))
    gu = _grad(terms["uncertainty"], g.e_t)
    torch.testing.assert_close(gu, torch.full((N, B, K), LAMBDA_UNC))
    # the prediction terms read only the last step
    ga = _grad(terms["action"], g.log_probs)
    gi = _grad(terms["intrinsic"], g.log_probs)
    assert _none_or_zero(ga[:-1]) and _none_or_zero(gi[:-1])
    torch.testing.assert_close(gi[-1], torch.full((B, K), -LAMBDA_INTR / K))
    want = torch.zeros(B, K)
    want[torch.arange(B), torch.tensor(Y)] = -1 / B
    torch.testing.assert_close(ga[-1], want)
