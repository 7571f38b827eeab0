"""Which parameters each term of the objective reaches, term by term and run by run with
autograd: the "trains" column of docs/method.md, "Objective" (the stop-gradients are the
method). The runs are a group of the four variants, trained side by side as one model: each
run's slice of every stacked parameter (index [r]) must get exactly its variant's gradients,
and a term the variant does not have must give that run exactly zero gradient."""
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
# One run of each variant, in this order: run r is VARIANT_NAMES[r].
VARIANT_NAMES = list(VARIANTS)
CFGS = [settings(*variant_flags(v), *LAMBDAS_OF_ONE) for v in VARIANT_NAMES]
R = len(CFGS)


# The architecture options beyond the paper (--location_hidden, --location_mean=tanh,
# --baseline_relu=False): each term must reach exactly the groups it reaches in the paper's
# architecture.
OPTIONS = {"paper": {}, "options": dict(location_hidden=16, location_mean="tanh",
                                        baseline_relu=False)}


def live_model(device, seed=0, runs=R, **options):
    """A small model in which every route of the gradient carries a signal, in every run."""
    model = tiny_model(seed, runs=runs, glimpse_hidden=16, loc_hidden=16, hidden_size=32,
                       **options)
    with torch.no_grad():
        if model.location.fc_hidden is not None:
            model.location.fc_hidden.bias.fill_(0.2)
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
    x = torch.randn(model.runs, B, 1, 28, 28).to(device)
    out = model(x, N)
    pred = out.log_probs[:, -1].argmax(-1)  # (R, B)
    # half of each run's batch right (R = 1), half wrong (R = 0)
    right = (torch.arange(B, device=device) % 2 == 0).expand_as(pred)
    y = torch.where(right, pred, (pred + 1) % 10)
    return out, y


def group_grads(model, term):
    """{group: [the gradient of each of its stacked parameters]}, every run's slice."""
    grads = {}
    for name in GROUPS:
        params = list(getattr(model, name).parameters())
        assert params, name
        gs = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
        grads[name] = [torch.zeros_like(p) if g is None else g for p, g in zip(params, gs)]
    return grads


def nonzero(gs, r):
    """Whether run r's slice of any of these gradients is nonzero."""
    return any(bool((g[r] != 0).any()) for g in gs)


def reached(grads, r):
    return {name for name, gs in grads.items() if nonzero(gs, r)}


@pytest.fixture(params=list(OPTIONS))
def terms_and_model(device, request):
    model = live_model(device, **OPTIONS[request.param])
    out, y = forward_with_mixed_rewards(model, device)
    terms, reward = trainer.loss_terms(out, y, trainer.loss_weights(CFGS, device))
    # every run's batch gives every signal: mixed rewards, live baselines and error estimates
    assert reward.shape == y.shape == (R, 8)
    assert ((0 < reward.sum(1)) & (reward.sum(1) < 8)).all()
    assert (out.baselines > 0).all() and (out.e_t > 0).all()
    return model, terms


@pytest.mark.parametrize("term", list(EXPECTED))
def test_gradient_routing(term, terms_and_model):
    """The term as it enters the loss of the group (summed over the runs): in the slice of each
    run whose variant has it, exactly the groups of EXPECTED; in the others, exactly zero."""
    model, terms = terms_and_model
    assert set(terms) == set(EXPECTED)
    assert terms[term].shape == (R,) and torch.isfinite(terms[term]).all()
    grads = group_grads(model, terms[term].sum())
    for r, (variant, cfg) in enumerate(zip(VARIANT_NAMES, CFGS)):
        want = EXPECTED[term] if trainer.has_term(cfg, term) else set()
        assert reached(grads, r) == want, (
            f"{term}, run {r} ({variant}): gradient reaches {sorted(reached(grads, r))}, "
            f"expected {sorted(want)}")
        if not trainer.has_term(cfg, term):
            assert terms[term][r].item() == 0.0
            assert all(torch.equal(g[r], torch.zeros_like(g[r]))
                       for gs in grads.values() for g in gs)


def test_reinforce_weight_scales_reinforce_alone_and_keeps_its_route(device):
    """--reinforce_weight (beyond the paper; the PyTorch port's recipe: 0.01), set run by run:
    REINFORCE still reaches the location network alone, its value and gradient scaled by
    the run's weight; every other term is what it is with weight 1."""
    model = live_model(device)
    out, y = forward_with_mixed_rewards(model, device)
    rw = (0.01, 1.0, 0.01, 0.5)
    scaled = [settings(*variant_flags(v), *LAMBDAS_OF_ONE, f"--reinforce_weight={w}")
              for v, w in zip(VARIANT_NAMES, rw)]
    plain, _ = trainer.loss_terms(out, y, trainer.loss_weights(CFGS, device))
    terms, _ = trainer.loss_terms(out, y, trainer.loss_weights(scaled, device))
    for name in EXPECTED:
        w = torch.tensor(rw, device=device) if name == "reinforce" else 1.0
        torch.testing.assert_close(terms[name], w * plain[name])
    got, ref = (group_grads(model, t["reinforce"].sum()) for t in (terms, plain))
    for r, w in enumerate(rw):
        assert reached(got, r) == {"location"}
        for g, g1 in zip(got["location"], ref["location"]):
            torch.testing.assert_close(g[r], w * g1[r])


def test_the_location_options_hidden_layer_is_trained_by_reinforce_only(device):
    """--location_hidden: REINFORCE reaches both layers of the location network in every
    run, and no other term reaches either."""
    model = live_model(device, **OPTIONS["options"])
    out, y = forward_with_mixed_rewards(model, device)
    terms, _ = trainer.loss_terms(out, y, trainer.loss_weights(CFGS, device))
    for layer in (model.location.fc_hidden, model.location.fc):
        for name, term in terms.items():
            gs = torch.autograd.grad(term.sum(), list(layer.parameters()), retain_graph=True,
                                     allow_unused=True)
            for r in range(R):
                moved = any(g is not None and bool((g[r] != 0).any()) for g in gs)
                assert moved == (name == "reinforce"), (name, r)


@pytest.mark.parametrize("term", list(EXPECTED))
def test_released_routing_lets_the_uncertainty_term_move_the_error_network(term, device):
    """--uncertainty_routing=released: L_unc reaches the error network's weights as well, in
    the runs that have it; every other term reaches what it reaches in the paper's routing."""
    model = live_model(device, uncertainty_routing="released")
    out, y = forward_with_mixed_rewards(model, device)
    terms, _ = trainer.loss_terms(out, y, trainer.loss_weights(CFGS, device))
    grads = group_grads(model, terms[term].sum())
    for r, cfg in enumerate(CFGS):
        want = EXPECTED[term] | ({"error"} if term == "uncertainty" else set())
        assert reached(grads, r) == (want if trainer.has_term(cfg, term) else set()), (term, r)


def test_total_loss_reaches_every_group(terms_and_model):
    """Every group of every run that has a term for it: all six for the runs with L_fit, all
    but the error network for the others."""
    model, terms = terms_and_model
    grads = group_grads(model, sum(terms.values()).sum())
    for r, cfg in enumerate(CFGS):
        want = set(GROUPS) if cfg.uncertainty else set(GROUPS) - {"error"}
        assert reached(grads, r) == want, (r, reached(grads, r))


def test_every_parameter_of_the_classifier_path_is_trained(terms_and_model):
    """L_action reaches every weight of glimpse (patch and location codes), core and action,
    in every run."""
    model, terms = terms_and_model
    for group in ("glimpse", "core", "action"):
        for name, p in getattr(model, group).named_parameters():
            (g,) = torch.autograd.grad(terms["action"].sum(), [p], retain_graph=True,
                                       allow_unused=True)
            assert g is not None
            for r in range(R):
                assert (g[r] != 0).any(), f"run {r}: {group}.{name}"


def test_uncertainty_reaches_the_action_network_through_p_t(device):
    """L_unc reaches the action network through p_t (the error network's input), even when
    h_t's route to e_t is cut: here the h_t columns of the error network are zero."""
    model = live_model(device)
    with torch.no_grad():
        model.error.fc.weight[:, :, :model.hidden_size].zero_()  # the columns for h_t
    out, y = forward_with_mixed_rewards(model, device)
    terms, _ = trainer.loss_terms(out, y, trainer.loss_weights(CFGS, device))
    grads = group_grads(model, terms["uncertainty"].sum())
    for r, cfg in enumerate(CFGS):
        assert nonzero(grads["action"], r) == cfg.uncertainty, r
        assert not nonzero(grads["error"], r)


@pytest.mark.parametrize("variant,keys", [
    ("original", {"action", "baseline", "reinforce"}),
    ("uncertainty", {"action", "baseline", "reinforce", "fit", "uncertainty"}),
    ("intrinsic", {"action", "baseline", "reinforce", "intrinsic"}),
    ("both", {"action", "baseline", "reinforce", "fit", "uncertainty", "intrinsic"}),
])
def test_terms_present_only_with_their_flags(variant, keys, terms_and_model):
    """Every run has all six entries; those of the terms its variant lacks are exactly 0."""
    assert VARIANTS[variant] == ("fit" in keys, "intrinsic" in keys)
    r = VARIANT_NAMES.index(variant)
    assert {t for t in EXPECTED if trainer.has_term(CFGS[r], t)} == keys
    _, terms = terms_and_model
    assert set(terms) == set(EXPECTED)
    assert {name for name, t in terms.items() if t[r] != 0} == keys


def test_original_variant_has_no_gradient_on_error_network(device):
    """Without the uncertainty flag nothing trains the error network: in a group of the runs
    without it (the same seed and weights as the group of four), every group but the error
    network is reached."""
    model = live_model(device)
    out, y = forward_with_mixed_rewards(model, device)
    cfgs = [settings(*variant_flags(v), *LAMBDAS_OF_ONE) for v in ("original", "intrinsic")]
    weights = trainer.loss_weights(cfgs + cfgs, device)  # R = 4: no run has L_fit or L_unc
    terms, _ = trainer.loss_terms(out, y, weights)
    grads = group_grads(model, sum(terms.values()).sum())
    for r in range(R):
        assert not nonzero(grads["error"], r)
        assert all(nonzero(grads[g], r) for g in GROUPS if g != "error")
    assert all(torch.equal(g, torch.zeros_like(g)) for g in grads["error"])


def test_loss_weights_zero_the_terms_a_variant_lacks():
    weights = trainer.loss_weights(CFGS)
    assert set(weights) == set(trainer.OPTIONAL_TERMS) | {"reinforce"}
    assert weights["reinforce"].tolist() == [1.0] * R  # the paper's
    for term, (flag, _) in trainer.OPTIONAL_TERMS.items():
        assert weights[term].shape == (R,)
        for r, cfg in enumerate(CFGS):
            assert (weights[term][r] != 0) == getattr(cfg, flag), (term, r)
    assert weights["fit"].tolist() == [0.0, 1.0, 0.0, 1.0]
    assert weights["uncertainty"].tolist() == [0.0, 1.0, 0.0, 1.0]  # lambda_1 = 1 here
    assert weights["intrinsic"].tolist() == [0.0, 0.0, 1.0, 1.0]
