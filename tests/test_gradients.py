"""Which parameters each term of the objective reaches, term by term with autograd: the
"trains" column of docs/method.md, "Objective" (the stop-gradients are the method)."""
import pytest
import torch

import trainer
from config import VARIANTS, variant_flags
from conftest import settings, tiny_model

GROUPS = ("glimpse", "core", "location", "action", "baseline", "error")

# term -> the parameter groups it must move; every other group must get no gradient.
EXPECTED = {
    "action": {"glimpse", "core", "action"},
    "baseline": {"baseline"},
    "reinforce": {"location"},
    "fit": {"error"},
    "uncertainty": {"glimpse", "core", "action"},
    "intrinsic": {"glimpse", "core", "action"},
}


# lambdas of 1 so that the weighted terms' gradients are far from rounding
LAMBDAS_OF_ONE = ("--lambda_uncertainty=1", "--lambda_intrinsic=1")
BOTH = settings(*variant_flags("both"), *LAMBDAS_OF_ONE)


def live_model(device, seed=0):
    """A small model in which every route of the gradient carries a signal."""
    model = tiny_model(seed, glimpse_hidden=16, loc_hidden=16, hidden_size=32)
    with torch.no_grad():
        # Positive biases keep the relu units alive, so that no route is silent by chance
        # (on any device's random numbers): b_t > 0 and e_t > 0 everywhere, h_t mostly active.
        model.baseline.fc.weight.mul_(0.1)
        model.baseline.fc.bias.fill_(0.5)
        model.error.fc.weight.mul_(0.1)
        model.error.fc.bias.fill_(0.5)
        model.core.i2h.bias.fill_(0.2)
        model.glimpse.fc3.bias.fill_(0.2)
    return model.to(device)


def forward_with_mixed_rewards(model, device, B=8, N=3):
    torch.manual_seed(1)
    x = torch.randn(B, 1, 28, 28).to(device)
    out = model(x, N)
    pred = out.log_probs[-1].argmax(1)
    # half the batch right (R = 1), half wrong (R = 0)
    y = torch.where(torch.arange(B, device=device) % 2 == 0, pred, (pred + 1) % 10)
    return out, y


def group_grads(model, term):
    grads = {}
    for name in GROUPS:
        params = list(getattr(model, name).parameters())
        assert params, name
        gs = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
        grads[name] = [g for g in gs if g is not None]
    return grads


def nonzero(gs):
    return any(bool((g != 0).any()) for g in gs)


@pytest.fixture
def terms_and_model(device):
    model = live_model(device)
    out, y = forward_with_mixed_rewards(model, device)
    terms, reward = trainer.loss_terms(out, y, BOTH)
    # the batch gives every signal: mixed rewards, live baselines and error estimates
    assert 0 < reward.sum() < len(reward)
    assert (out.baselines > 0).all() and (out.e_t > 0).all()
    return model, terms


@pytest.mark.parametrize("term", list(EXPECTED))
def test_gradient_routing(term, terms_and_model):
    model, terms = terms_and_model
    assert set(terms) == set(EXPECTED)
    assert terms[term].dim() == 0 and torch.isfinite(terms[term])
    grads = group_grads(model, terms[term])
    reached = {name for name, gs in grads.items() if nonzero(gs)}
    assert reached == EXPECTED[term], (
        f"{term}: gradient reaches {sorted(reached)}, expected {sorted(EXPECTED[term])}")


def test_total_loss_reaches_every_group(terms_and_model):
    model, terms = terms_and_model
    grads = group_grads(model, sum(terms.values()))
    assert all(nonzero(gs) for gs in grads.values()), {k: nonzero(v) for k, v in grads.items()}


def test_every_parameter_of_the_classifier_path_is_trained(terms_and_model):
    """L_action reaches every weight of glimpse (patch and location codes), core and action."""
    model, terms = terms_and_model
    for group in ("glimpse", "core", "action"):
        for name, p in getattr(model, group).named_parameters():
            (g,) = torch.autograd.grad(terms["action"], [p], retain_graph=True, allow_unused=True)
            assert g is not None and (g != 0).any(), f"{group}.{name}"


def test_uncertainty_reaches_the_action_network_through_p_t(device):
    """L_unc reaches the action network through p_t (the error network's input), even when
    h_t's route to e_t is cut: here the h_t columns of the error network are zero."""
    model = live_model(device)
    with torch.no_grad():
        model.error.fc.weight[:, :model.hidden_size].zero_()  # the columns for h_t
    out, y = forward_with_mixed_rewards(model, device)
    terms, _ = trainer.loss_terms(out, y, BOTH)
    grads = group_grads(model, terms["uncertainty"])
    assert nonzero(grads["action"])
    assert not nonzero(grads["error"])


@pytest.mark.parametrize("variant,keys", [
    ("original", {"action", "baseline", "reinforce"}),
    ("uncertainty", {"action", "baseline", "reinforce", "fit", "uncertainty"}),
    ("intrinsic", {"action", "baseline", "reinforce", "intrinsic"}),
    ("both", {"action", "baseline", "reinforce", "fit", "uncertainty", "intrinsic"}),
])
def test_terms_present_only_with_their_flags(variant, keys, device):
    assert VARIANTS[variant] == ("fit" in keys, "intrinsic" in keys)
    model = live_model(device)
    out, y = forward_with_mixed_rewards(model, device)
    terms, reward = trainer.loss_terms(out, y, settings(*variant_flags(variant),
                                                        *LAMBDAS_OF_ONE))
    assert set(terms) == keys
    assert reward.shape == y.shape


def test_original_variant_has_no_gradient_on_error_network(device):
    """Without the uncertainty flag nothing trains the error network."""
    model = live_model(device)
    out, y = forward_with_mixed_rewards(model, device)
    terms, _ = trainer.loss_terms(out, y, settings(*variant_flags("intrinsic"),
                                                   *LAMBDAS_OF_ONE))
    grads = group_grads(model, sum(terms.values()))
    assert not nonzero(grads["error"])
    assert all(nonzero(grads[g]) for g in GROUPS if g != "error")
