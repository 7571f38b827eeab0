"""Evaluation: the dynamic stopping rules on hand-made tensors, the curve against fixed-N
evaluations, Monte Carlo averaging, and the two evaluation protocols."""
import pytest
import torch

from types import SimpleNamespace

from evaluate import (accuracy_curve, dynamic_glimpses, dynamic_sweep, measure, monte_carlo,
                      run_glimpses, stop_condition, stop_profile)
from conftest import tiny_model


def probs(*rows):
    """(N, n, K) from per-step lists of per-sample probability rows."""
    return torch.tensor(rows, dtype=torch.float32)


def dynamic(p, e, eps, rule, **kw):
    """dynamic_glimpses on probabilities (N, n, K), one copy per image."""
    return dynamic_glimpses(p.log()[:, :, None], e[:, :, None], eps, rule, **kw)


def test_eps_zero_stops_every_sample_after_the_first_glimpse():
    torch.manual_seed(0)
    p = torch.softmax(torch.randn(7, 50, 10), dim=-1)
    e = torch.rand(7, 50, 10)
    for rule in ("spec", "released"):
        steps, answer, _ = dynamic(p, e, 0.0, rule)
        assert steps.tolist() == [1] * 50
        assert torch.equal(answer, p[0].argmax(-1))


def test_a_sample_whose_bounds_never_separate_answers_at_the_cap():
    # Two classes tied in every step: the lower bound of a* never clears the runner-up's.
    p = probs(*[[[0.5, 0.5, 0.0]]] * 4, )
    e = torch.full_like(p, 0.1)
    steps, answer, _ = dynamic(p, e, 0.5, "spec")
    assert steps.tolist() == [4]
    assert answer.tolist() == [0]  # argmax at the last step (the first of the tie)


def test_the_first_stopping_step_is_taken_not_a_later_one():
    # Sample 0: confident at step 2 and again at step 4 (with another answer); step 3 unsure.
    p = probs([[0.4, 0.6, 0.0]], [[0.9, 0.1, 0.0]], [[0.5, 0.5, 0.0]], [[0.05, 0.95, 0.0]])
    e = torch.full_like(p, 0.1)
    eps = 0.5  # stops where p[a*] - p[a'] >= 2 * eps * 0.1 = 0.1
    cond = stop_condition(p, e, eps, "spec")
    assert cond[:, 0].tolist() == [True, True, False, True]
    p2 = probs([[0.52, 0.48, 0.0]], [[0.9, 0.1, 0.0]], [[0.5, 0.5, 0.0]], [[0.05, 0.95, 0.0]])
    steps, answer, _ = dynamic(p2, e, eps, "spec")
    assert steps.tolist() == [2] and answer.tolist() == [0]


def test_spec_rule_uses_the_runner_up_upper_bound():
    # p = (0.6, 0.4), e = (0.1, 0.1), eps = 1: lower(a*) = 0.5.
    # spec: runner-up upper bound 0.5 -> stops (0.5 >= 0.5); with e' = 0.2, 0.6 -> not.
    p = probs([[0.6, 0.4]])
    assert stop_condition(p, torch.tensor([[[0.1, 0.1]]]), 1.0, "spec").item()
    assert not stop_condition(p, torch.tensor([[[0.1, 0.2]]]), 1.0, "spec").item()
    # released: the runner-up's lower bound 0.4 - 0.2 = 0.2 -> stops even with the larger e'.
    assert stop_condition(p, torch.tensor([[[0.1, 0.2]]]), 1.0, "released").item()
    # a* with a large uncertainty: spec lower(a*) = 0.6 - 0.5 = 0.1 < 0.4 + 0 -> no stop,
    # released the same (0.1 < 0.4).
    assert not stop_condition(p, torch.tensor([[[0.5, 0.0]]]), 1.0, "spec").item()
    assert not stop_condition(p, torch.tensor([[[0.5, 0.0]]]), 1.0, "released").item()


def _uncertain_where_tied(p):
    """e_t = 0.01, but 0.3 on class 0 where p_t is (0.5, 0.5): those samples cannot stop."""
    e = torch.full_like(p, 0.01)
    e[..., 0] = torch.where(p[..., 0] == 0.5, 0.3, 0.01)
    return e


def test_released_rule_keeps_the_last_step_and_stops_whole_minibatches():
    # Batch of 2 (batch_size=2). Condition, per step (rows) and sample (columns):
    #   step 1: T F    step 2: T F    step 3: F T    step 4: T T
    # The minibatch stops at step 3 (by then both have met it once): sample 0 answers at
    # the last step <= 3 where it held (2), sample 1 at 3. A spec-rule run stops at 1 and 3.
    confident, unsure = [0.9, 0.1], [0.5, 0.5]
    p = probs([confident, unsure], [[0.1, 0.9], unsure], [unsure, confident],
              [confident, confident])
    e = _uncertain_where_tied(p)
    cond = stop_condition(p, e, 1.0, "released")
    assert cond.T.tolist() == [[True, True, False, True], [False, False, True, True]]
    steps, answer, batch_stops = dynamic(p, e, 1.0, "released", batch_size=2)
    assert steps.tolist() == [2, 3] and answer.tolist() == [1, 0]
    assert batch_stops.tolist() == [3]
    steps, answer, batch_stops = dynamic(p, e, 1.0, "spec")
    assert steps.tolist() == [1, 3] and answer.tolist() == [0, 0] and batch_stops is None
    # With a batch of one sample each, every sample stops at its own first step.
    steps, _, batch_stops = dynamic(p, e, 1.0, "released", batch_size=1)
    assert steps.tolist() == [1, 3] and batch_stops.tolist() == [1, 3]
    # The sweep counts the minibatches by the step at which they stopped.
    labels = torch.tensor([0, 0])
    (point,) = dynamic_sweep(p.log()[:, :, None], e[:, :, None], labels, [1.0], "released", 1)
    assert point["batch_stops"] == {"1": 1, "3": 1}
    (point,) = dynamic_sweep(p.log()[:, :, None], e[:, :, None], labels, [1.0], "spec", 1)
    assert "batch_stops" not in point


def test_released_rule_sample_that_never_meets_the_rule_answers_at_the_cap():
    unsure = [0.5, 0.5]
    p = probs([unsure, [0.9, 0.1]], [unsure, unsure], [unsure, unsure])
    e = _uncertain_where_tied(p)
    steps, answer, _ = dynamic(p, e, 1.0, "released", batch_size=32)
    assert steps.tolist() == [3, 1]
    assert answer.tolist() == [0, 0]


def test_released_rule_picks_the_runner_up_by_its_upper_bound():
    """Three classes. Step 1: p = (0.45, 0.35, 0.20), e = (0.15, 0, 0.30), eps = 1. The
    runner-up by upper bound is class 2 (0.50 > 0.35), whose lower bound is -0.10: the released
    rule stops (0.30 >= -0.10). Choosing the runner-up by lower bound instead (class 1, 0.35)
    would not stop (0.30 < 0.35) until step 2, where a* is certain."""
    p = probs([[0.45, 0.35, 0.20]], [[0.80, 0.15, 0.05]])
    e = torch.tensor([[[0.15, 0.0, 0.30]], [[0.0, 0.0, 0.0]]])
    assert stop_condition(p, e, 1.0, "released")[:, 0].tolist() == [True, True]
    assert stop_condition(p, e, 1.0, "spec")[:, 0].tolist() == [False, True]  # 0.30 < 0.50
    lower = p - e
    by_lower = lower[0, 0, 0] >= lower[0, 0, 1:].max()  # the other reading, for contrast
    assert not by_lower
    steps, answer, _ = dynamic(p, e, 1.0, "released", batch_size=1)
    assert steps.tolist() == [1] and answer.tolist() == [0]
    steps, _, _ = dynamic(p, e, 1.0, "spec")
    assert steps.tolist() == [2]


def test_copies_stop_on_their_own_under_the_author_protocol():
    """One image, two copies, three classes, two steps, eps 1; e_t = 0.05, but 0.2 on the best
    class where a copy is unsure. Copy 0 may stop at step 1 only, copy 1 at step 2 only.
    Row by row (author): steps 1 and 2, 1.5 glimpses, and the answer is the mean of copy 0's
    log p_1 (class 0) and copy 1's log p_2 (class 1): class 0. Averaged first (ours): the
    mean log p is unsure at step 1 and stops at step 2 with class 1."""
    p = torch.tensor([[[[0.90, 0.05, 0.05], [0.02, 0.49, 0.49]]],
                      [[[0.45, 0.45, 0.10], [0.30, 0.60, 0.10]]]])  # (N=2, n=1, R=2, K=3)
    e = torch.full_like(p, 0.05)
    e[0, 0, 1, 1] = e[1, 0, 0, 0] = 0.2
    steps, answer, _ = dynamic_glimpses(p.log(), e, 1.0, "spec")
    assert steps.tolist() == [1, 2] and answer.tolist() == [0]
    lp, err = monte_carlo(p.log(), e)
    steps, answer, _ = dynamic_glimpses(lp, err, 1.0, "spec")
    assert steps.tolist() == [2] and answer.tolist() == [1]
    # released rule, one image per batch: the batch waits for both copies (step 2); each
    # copy answers at the last step by then at which it could stop.
    steps, answer, _ = dynamic_glimpses(p.log(), e, 1.0, "released", batch_size=1)
    assert steps.tolist() == [1, 2] and answer.tolist() == [0]


class _ListLoader(list):
    pass


def test_curve_at_n_equals_a_separate_fixed_n_evaluation():
    torch.manual_seed(1)
    batches = _ListLoader((torch.randn(20, 1, 28, 28), torch.randint(0, 10, (20,)))
                          for _ in range(3))
    model = tiny_model().eval()
    lp50, _, labels = run_glimpses(model, batches, 12, M=2, seed=5)
    curve = accuracy_curve(lp50, labels)
    for n in (1, 4, 12):
        lp_n, _, _ = run_glimpses(model, batches, n, M=2, seed=5)
        assert torch.equal(lp_n, lp50[:n])
        assert accuracy_curve(lp_n, labels)[-1] == curve[n - 1]


def test_measure_counts_the_exact_zeros_of_e_t_at_n_only():
    """fixed.e_t_zero: the share of e_t's entries (images x copies x classes) exactly 0 after
    N glimpses; the zeros of other steps do not count, nor do tiny positive values."""
    N, n, M, K = 3, 4, 2, 5
    errors = torch.full((N, n, M, K), 0.5)
    errors[0] = 0  # another step's zeros
    errors[N - 1, :3, 0, :] = 0  # 15 of the 40 entries at N
    errors[N - 1, 3, 1, :] = 1e-30
    log_probs = torch.zeros(N, n, M, K).log_softmax(-1)
    cfg = SimpleNamespace(test_glimpses=N, curve=False, dynamic=False)
    fixed = measure(cfg, M, log_probs, errors, torch.zeros(n, dtype=torch.long))["fixed"]
    assert fixed["e_t_zero"] == pytest.approx(15 / 40)
    assert fixed["accuracy"] == 1.0  # all-equal p_t: argmax takes class 0, every label


def test_monte_carlo_average_of_identical_copies_equals_a_single_sample(monkeypatch):
    model = tiny_model(std=1e-12).eval()  # a deterministic policy: l_t = mu_t
    l_0 = torch.tensor([0.2, -0.3])
    forward = model.forward

    def fixed_l_0(x, num_glimpses, noise=None):  # every copy starts at l_0
        assert noise is None  # run_glimpses draws from the global generator
        R, B = x.shape[:2]
        return forward(x, num_glimpses, (l_0.expand(R, B, 2).clone(),
                                         torch.randn(num_glimpses, R, B, 2)))

    monkeypatch.setattr(model, "forward", fixed_l_0)
    torch.manual_seed(2)
    batches = [(torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,)))]
    for protocol in ("ours", "author"):
        lp1, e1 = monte_carlo(*run_glimpses(model, batches, 6, M=1, protocol=protocol)[:2])
        lp5, e5 = monte_carlo(*run_glimpses(model, batches, 6, M=5, protocol=protocol)[:2])
        torch.testing.assert_close(lp5, lp1, rtol=0, atol=1e-6)
        torch.testing.assert_close(e5, e1, rtol=0, atol=1e-6)
    # ... whereas a stochastic policy makes the copies differ.
    stochastic = tiny_model(std=0.5).eval()
    lp1, _ = monte_carlo(*run_glimpses(stochastic, batches, 6, M=1)[:2])
    lp5, _ = monte_carlo(*run_glimpses(stochastic, batches, 6, M=5)[:2])
    assert not torch.allclose(lp5, lp1, atol=1e-4)


def test_author_protocol_reuses_the_same_draws_in_every_batch():
    """The released code resets the generator to the run's seed before every batch: two batches
    of the same images get the same locations, so the same outputs. Our protocol draws anew."""
    torch.manual_seed(3)
    x, y = torch.randn(6, 1, 28, 28), torch.randint(0, 10, (6,))
    model = tiny_model(std=0.5).eval()
    lp, err, _ = run_glimpses(model, [(x, y), (x, y)], 5, M=3, seed=7, protocol="author")
    assert lp.shape == (5, 12, 3, 10)
    assert torch.equal(lp[:, :6], lp[:, 6:]) and torch.equal(err[:, :6], err[:, 6:])
    lp, _, _ = run_glimpses(model, [(x, y), (x, y)], 5, M=3, seed=7, protocol="ours")
    assert not torch.allclose(lp[:, :6], lp[:, 6:], atol=1e-4)


@pytest.mark.parametrize("protocol, layout", [("author", "repeat"), ("ours", "interleave")])
def test_copy_m_of_image_b_is_the_row_the_protocol_puts_it_in(protocol, layout):
    """author: the released x.repeat(M), copy m of image b in row m * B + b; ours:
    repeat_interleave, row b * M + m. Each seeded as its protocol seeds batch 0."""
    torch.manual_seed(4)
    x, y = torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,))
    model = tiny_model(std=0.5).eval()
    lp, _, _ = run_glimpses(model, [(x, y)], 3, M=2, seed=9, protocol=protocol)
    torch.manual_seed(9 if protocol == "author" else 9 * 1_000_003)
    rows = x.repeat(2, 1, 1, 1) if layout == "repeat" else x.repeat_interleave(2, dim=0)
    direct = model(rows[None], 3).log_probs[0]  # (N, B * M, K): a group of one run
    for b in range(4):
        for m in range(2):
            row = m * 4 + b if layout == "repeat" else b * 2 + m
            assert torch.equal(lp[:, b, m], direct[:, row])


def test_a_centre_start_puts_l_0_at_the_centre_and_leaves_p_1_to_no_random_number():
    torch.manual_seed(5)
    x, y = torch.randn(6, 1, 28, 28), torch.randint(0, 10, (6,))
    model = tiny_model(std=0.5).eval()
    runs = {seed: run_glimpses(model, [(x, y)], 3, M=2, seed=seed, start="centre")[0]
            for seed in (1, 2)}
    assert torch.equal(runs[1][0], runs[2][0])  # p_1: no random number
    assert not torch.allclose(runs[1][1:], runs[2][1:], atol=1e-4)  # later steps draw noise
    direct = model(x[None], 1, (torch.zeros(1, 6, 2), torch.zeros(1, 1, 6, 2))).log_probs[0, 0]
    for m in range(2):
        assert torch.equal(runs[1][0, :, m], direct)
    random = run_glimpses(model, [(x, y)], 1, M=2, seed=1)[0]
    assert not torch.allclose(random[0], runs[1][0], atol=1e-4)


def test_stop_profile_counts_who_may_stop_and_whether_they_are_right():
    """Two steps, three samples with labels 0, 1, 2. At step 1, sample 2 is uncertain (its
    bounds overlap) and the two others may stop, one of them right; at step 2 all three may
    stop and are right."""
    p = probs([[0.9, 0.1, 0.0], [0.45, 0.4, 0.15], [0.5, 0.25, 0.25]],
              [[0.9, 0.1, 0.0], [0.1, 0.9, 0.0], [0.1, 0.1, 0.8]])
    e = torch.zeros_like(p)
    e[0, 1] = 0.1  # sample 2, step 1: 0.45 - 0.05 < 0.4 + 0.05 at eps 0.5
    profile = stop_profile(p.log()[:, :, None], e[:, :, None], torch.tensor([0, 1, 2]), eps=0.5)
    assert [round(s["accuracy"], 4) for s in profile] == [round(1 / 3, 4), 1.0]
    assert [round(s["may_stop"], 4) for s in profile] == [round(2 / 3, 4), 1.0]
    assert [s["accuracy_of_those"] for s in profile] == [0.5, 1.0]
    # with large uncertainties nobody may stop, and the accuracy of those is undefined
    nobody = stop_profile(p.log()[:, :, None], torch.ones_like(p)[:, :, None],
                          torch.tensor([0, 1, 2]), eps=1.0)
    assert [s["may_stop"] for s in nobody] == [0.0, 0.0]
    assert all(s["accuracy_of_those"] != s["accuracy_of_those"] for s in nobody)  # nan
