"""Evaluation of a trained RecurrentAttention: fixed N, accuracy against N = 1..N_max, and the
dynamic number of glimpses of Lu (2019), all from one pass over the test set.

One pass runs N_max glimpses on every test image and keeps p_t and e_t of every step; every
number below is computed from those. Each evaluation batch reseeds the random generator from
(seed, batch index), so the first N steps of a run of N_max glimpses are exactly a run of N
glimpses: the curve at N equals a separate fixed-N evaluation.
"""
import torch


@torch.no_grad()
def run_glimpses(model, loader, num_glimpses, M=1, seed=0):
    """p_t and e_t of every step for every image of `loader`, in loader order.

    With M > 1 every image is repeated M times and the M log-probabilities (and the M
    uncertainties) are averaged. Returns log_probs (N, n, K), e_t (N, n, K), labels (n,)."""
    model.eval()
    log_probs, errors, labels = [], [], []
    for i, (x, y) in enumerate(loader):
        torch.manual_seed(seed * 1_000_003 + i)
        out = model(x.repeat_interleave(M, dim=0), num_glimpses)
        N, K = out.log_probs.shape[0], out.log_probs.shape[-1]
        log_probs.append(out.log_probs.view(N, len(y), M, K).mean(dim=2))
        errors.append(out.e_t.view(N, len(y), M, K).mean(dim=2))
        labels.append(y)
    return torch.cat(log_probs, dim=1), torch.cat(errors, dim=1), torch.cat(labels)


def accuracy_curve(log_probs, labels):
    """Accuracy after t glimpses for t = 1..N: a list of N floats."""
    return (log_probs.argmax(dim=-1) == labels).float().mean(dim=1).tolist()


def stop_condition(p, e, eps, rule="spec"):
    """Whether each sample may stop at each step: (N, n) bool, from p_t, e_t (N, n, K).

    spec: the lower bound of the best class a* = argmax p_t is at least the upper bound of
    the runner-up a' = argmax_{a != a*} (p_t[a] + eps e_t[a]):
        p_t[a*] - eps e_t[a*] >= p_t[a'] + eps e_t[a'].
    released (our reading of the released code): both sides are lower bounds, the runner-up
    a' = argmax_{a != a*} (p_t[a] - eps e_t[a]):
        p_t[a*] - eps e_t[a*] >= p_t[a'] - eps e_t[a'].
    """
    best = p.argmax(dim=-1, keepdim=True)
    lower_best = (p - eps * e).gather(-1, best).squeeze(-1)
    other = p + eps * e if rule == "spec" else p - eps * e
    runner_up = other.scatter(-1, best, float("-inf")).max(dim=-1).values
    return lower_best >= runner_up


def dynamic_glimpses(p, e, eps, rule="spec", batch_size=32):
    """Per-sample number of glimpses and the answer it gives: (steps (n,) in 1..N, answer (n,)).

    spec: each sample stops at the first step at which `stop_condition` holds, and answers
    argmax p_t there; a sample that never stops answers at step N.
    released: the test set is cut into minibatches of `batch_size` (in order, as the released
    code's loader does); a minibatch runs until the first step by which every sample in it
    has met the condition at least once (or N), and each sample answers at the *last* step
    up to then at which the condition held (step N if it never held).
    """
    N, n, _ = p.shape
    cond = stop_condition(p, e, eps, rule)  # (N, n)
    t = torch.arange(1, N + 1, device=p.device)[:, None].expand(N, n)
    never = torch.full_like(t, N + 1)
    if rule == "spec":
        steps = torch.where(cond, t, never).min(dim=0).values.clamp(max=N)
    else:
        met = cond.cummax(dim=0).values  # (N, n): met at least once by step t
        pad = (-n) % batch_size
        met_b = torch.cat([met, met.new_ones(N, pad)], dim=1).view(N, -1, batch_size)
        all_met = torch.where(met_b.all(dim=2), t[:, :1], never[:, :1]).min(dim=0).values
        batch_stop = all_met.clamp(max=N).repeat_interleave(batch_size)[:n]  # (n,)
        held = cond & (t <= batch_stop)
        steps = torch.where(held, t, torch.zeros_like(t)).max(dim=0).values
        steps = torch.where(steps == 0, torch.full_like(steps, N), steps)
    answer = p.argmax(dim=-1).gather(0, (steps - 1)[None]).squeeze(0)
    return steps, answer


def dynamic_sweep(log_probs, errors, labels, rates, rule="spec", batch_size=32):
    """[(eps, mean glimpses, accuracy)] for each exploration rate eps."""
    p = log_probs.exp()
    points = []
    for eps in rates:
        steps, answer = dynamic_glimpses(p, errors, eps, rule, batch_size)
        points.append({"exploration_rate": eps, "mean_glimpses": steps.float().mean().item(),
                       "accuracy": (answer == labels).float().mean().item()})
    return points


def stop_profile(log_probs, errors, labels, eps, rule="spec"):
    """Step by step, whether a dynamic rule would stop on right answers: for t = 1..N, the
    accuracy of p_t, the fraction of samples whose stopping condition holds at t, and the
    accuracy of those samples at t (nan where none). A list of N dicts."""
    holds = stop_condition(log_probs.exp(), errors, eps, rule)  # (N, n)
    correct = log_probs.argmax(dim=-1) == labels  # (N, n)
    n_holds = holds.sum(dim=1)
    right_and_holds = (correct & holds).sum(dim=1)
    return [{"step": t + 1, "accuracy": correct[t].float().mean().item(),
             "may_stop": n_holds[t].item() / holds.shape[1],
             "accuracy_of_those": (right_and_holds[t] / n_holds[t]).item()
             if n_holds[t] else float("nan")} for t in range(holds.shape[0])]
