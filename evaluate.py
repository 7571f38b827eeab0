"""Evaluation of a trained RecurrentAttention: fixed N, accuracy against N = 1..N_max, and the
dynamic number of glimpses of Lu (2019), all from one pass over the test set.

One pass runs N_max glimpses on every copy of every test image and keeps log p_t and e_t of
every step; every number below is computed from those. The first N steps of a run of N_max
glimpses are exactly a run of N glimpses (the random numbers of step t do not depend on how
many steps follow), so the curve at N equals a separate fixed-N evaluation.

Two evaluation protocols (README, "Evaluation protocols"):
  ours    each evaluation batch of EVAL_BATCH images reseeds the generator from (seed, batch
          index); copy m of image b is row b * M + m; the M copies are averaged (log p_t and
          e_t) before a dynamic rule looks at them, so an image stops as one.
  author  the released code's: the generator is reset to the same seed before every batch of
          batch_size images, so every batch reuses the same draws; copy m of image b is row
          m * B + b; each of the B * M rows applies the dynamic rule on its own, answers at
          its own step, and the image's prediction is the mean of its rows' log p at those
          steps; mean glimpses are averaged over rows.
"""
import torch

EVAL_BATCH = 1000  # images per evaluation batch of our protocol
PROTOCOLS = ("ours", "author")


def test_batch_size(protocol, batch_size):
    """Images per evaluation batch: the author's protocol draws per batch of the training
    batch size, so its numbers depend on it; ours uses EVAL_BATCH."""
    return batch_size if protocol == "author" else EVAL_BATCH


@torch.no_grad()
def run_glimpses(model, loader, num_glimpses, M=1, seed=0, protocol="ours"):
    """log p_t and e_t of every step for every copy of every image of `loader`, in order.

    Returns log_probs (N, n, M, K), e_t (N, n, M, K) and labels (n,): copy m of image i is
    [:, i, m]. The protocol decides how the generator is seeded and how the copies are laid
    out in the batch (module docstring)."""
    model.eval()
    log_probs, errors, labels = [], [], []
    for i, (x, y) in enumerate(loader):
        B = len(y)
        if protocol == "author":
            torch.manual_seed(seed)
            out = model(x.repeat(M, 1, 1, 1), num_glimpses)  # row m * B + b
            rows = lambda t: t.view(t.shape[0], M, B, -1).transpose(1, 2)
        else:
            torch.manual_seed(seed * 1_000_003 + i)
            out = model(x.repeat_interleave(M, dim=0), num_glimpses)  # row b * M + m
            rows = lambda t: t.view(t.shape[0], B, M, -1)
        log_probs.append(rows(out.log_probs))
        errors.append(rows(out.e_t))
        labels.append(y)
    return torch.cat(log_probs, dim=1), torch.cat(errors, dim=1), torch.cat(labels)


def monte_carlo(log_probs, errors):
    """Our protocol's Monte Carlo average: the M copies' log p_t and e_t averaged, kept as one
    copy: (N, n, M, K) -> (N, n, 1, K) each."""
    return log_probs.mean(dim=2, keepdim=True), errors.mean(dim=2, keepdim=True)


def accuracy_curve(log_probs, labels):
    """Accuracy after t glimpses for t = 1..N, predicting with the mean of the M copies' log p_t
    (both protocols do): log_probs (N, n, M, K) -> a list of N floats."""
    prediction = log_probs.mean(dim=2).argmax(dim=-1)
    return (prediction == labels).float().mean(dim=1).tolist()


def stop_condition(p, e, eps, rule="spec"):
    """Whether each sample may stop at each step: (N, n) bool, from p_t, e_t (N, n, K).

    Both rules take the best class a* = argmax p_t and the runner-up a' = argmax_{a != a*}
    (p_t[a] + eps e_t[a]), the class with the highest upper bound, and compare the lower
    bound of a* with
      spec:     the upper bound of a':  p_t[a*] - eps e_t[a*] >= p_t[a'] + eps e_t[a'];
      released: the lower bound of a' (as the released code does):
                                        p_t[a*] - eps e_t[a*] >= p_t[a'] - eps e_t[a'].
    In float64, as the released code compares Python floats: a bound that ties in float32 may
    not tie there.
    """
    p, e = p.double(), e.double()
    best = p.argmax(dim=-1, keepdim=True)
    upper, lower = p + eps * e, p - eps * e
    runner_up = upper.scatter(-1, best, float("-inf")).argmax(dim=-1, keepdim=True)
    bound = (upper if rule == "spec" else lower).gather(-1, runner_up).squeeze(-1)
    return lower.gather(-1, best).squeeze(-1) >= bound


def dynamic_glimpses(log_probs, errors, eps, rule="spec", batch_size=32):
    """Per-row number of glimpses and the answer of each image.

    log_probs, errors: (N, n, R, K), R rows (copies) per image, each applying the rule on its
    own (R = 1 after `monte_carlo`). Returns steps (n * R,) in 1..N, image-major, and
    answer (n,): argmax of the mean over an image's rows of log p at each row's own step.
    spec: each row stops at the first step at which `stop_condition` holds; a row that never
    stops answers at step N.
    released: the images are cut into minibatches of `batch_size` (in order, as the released
    code's loader does); a minibatch runs until the first step by which every row of its
    batch_size * R has met the condition at least once (or N), and each row answers at the
    *last* step up to then at which the condition held (step N if it never held).
    """
    N, n, R, K = log_probs.shape
    rows = n * R
    log_probs, errors = log_probs.reshape(N, rows, K), errors.reshape(N, rows, K)
    cond = stop_condition(log_probs.exp(), errors, eps, rule)  # (N, rows)
    t = torch.arange(1, N + 1, device=cond.device)[:, None].expand(N, rows)
    never = torch.full_like(t, N + 1)
    if rule == "spec":
        steps = torch.where(cond, t, never).min(dim=0).values.clamp(max=N)
    else:
        met = cond.cummax(dim=0).values  # (N, rows): met at least once by step t
        per_batch = batch_size * R
        pad = (-rows) % per_batch
        met_b = torch.cat([met, met.new_ones(N, pad)], dim=1).view(N, -1, per_batch)
        all_met = torch.where(met_b.all(dim=2), t[:, :1], never[:, :1]).min(dim=0).values
        batch_stop = all_met.clamp(max=N).repeat_interleave(per_batch)[:rows]  # (rows,)
        held = cond & (t <= batch_stop)
        steps = torch.where(held, t, torch.zeros_like(t)).max(dim=0).values
        steps = torch.where(steps == 0, torch.full_like(steps, N), steps)
    chosen = log_probs.gather(0, (steps - 1)[None, :, None].expand(1, rows, K))[0]
    answer = chosen.view(n, R, K).mean(dim=1).argmax(dim=-1)
    return steps, answer


def dynamic_sweep(log_probs, errors, labels, rates, rule="spec", batch_size=32):
    """[(eps, mean glimpses over rows, accuracy)] for each exploration rate eps; log_probs and
    errors (N, n, R, K) as in `dynamic_glimpses`."""
    points = []
    for eps in rates:
        steps, answer = dynamic_glimpses(log_probs, errors, eps, rule, batch_size)
        points.append({"exploration_rate": eps, "mean_glimpses": steps.float().mean().item(),
                       "accuracy": (answer == labels).float().mean().item()})
    return points


def stop_profile(log_probs, errors, labels, eps, rule="spec"):
    """Step by step, whether a dynamic rule would stop on right answers: for t = 1..N, the
    accuracy of p_t, the fraction of samples whose stopping condition holds at t, and the
    accuracy of those samples at t (nan where none). log_probs, errors: (N, n, M, K), the M
    copies averaged as our protocol does. A list of N dicts."""
    log_probs, errors = (t.squeeze(2) for t in monte_carlo(log_probs, errors))
    holds = stop_condition(log_probs.exp(), errors, eps, rule)  # (N, n)
    correct = log_probs.argmax(dim=-1) == labels  # (N, n)
    n_holds = holds.sum(dim=1)
    right_and_holds = (correct & holds).sum(dim=1)
    return [{"step": t + 1, "accuracy": correct[t].float().mean().item(),
             "may_stop": n_holds[t].item() / holds.shape[1],
             "accuracy_of_those": (right_and_holds[t] / n_holds[t]).item()
             if n_holds[t] else float("nan")} for t in range(holds.shape[0])]
