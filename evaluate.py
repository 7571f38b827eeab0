"""Evaluation of a trained RecurrentAttention: fixed N, accuracy against N = 1..N_max, and the
dynamic number of glimpses of Lu (2019), all from one pass over the test set; the testing of a
checkpoint (`test_checkpoint`), and its results files, which this module both writes and reads.

One pass runs N_max glimpses on every copy of every test image and keeps log p_t and e_t of
every step; every number below is computed from those. The first N steps of a run of N_max
glimpses are exactly a run of N glimpses (the random numbers of step t do not depend on how
many steps follow), so the curve at N equals a separate fixed-N evaluation.

Two evaluation protocols (docs/method.md, "Evaluation protocols"):
  ours    each evaluation batch of EVAL_BATCH images reseeds the generator from (seed, batch
          index); copy m of image b is row b * M + m; the M copies are averaged (log p_t and
          e_t) before a dynamic rule looks at them, so an image stops as one.
  author  the released code's: the generator is reset to the same seed before every batch of
          batch_size images, so every batch reuses the same draws; copy m of image b is row
          m * B + b; each of the B * M rows applies the dynamic rule on its own, answers at
          its own step, and the image's prediction is the mean of its rows' log p at those
          steps; mean glimpses are averaged over rows.
"""
import glob
import json
import os

import torch

from config import ARCHITECTURE, TRAINING, adopt_settings, run_name, seed_of
from data_loader import get_test_loader
from model import load_pretrained
from utils import in_repository, recorded_settings, save_glimpse_trace, write_json

EVAL_BATCH = 1000  # images per evaluation batch of our protocol
PROTOCOLS = ("ours", "author")


def test_batch_size(protocol, batch_size):
    """Images per evaluation batch: the author's protocol draws per batch of the training
    batch size, so its numbers depend on it; ours uses EVAL_BATCH."""
    return batch_size if protocol == "author" else EVAL_BATCH


def batch_seed(seed, protocol, i):
    """The seed of the generator for evaluation batch i (module docstring): the run's seed
    for every batch under the author's protocol, one per (seed, batch) under ours."""
    return seed_of(seed, f"test_{protocol}", i)


@torch.no_grad()
def run_glimpses(model, loader, num_glimpses, M=1, seed=0, protocol="ours", start="random"):
    """log p_t and e_t of every step for every copy of every image of `loader`, in order.

    Returns log_probs (N, n, M, K), e_t (N, n, M, K) and labels (n,): copy m of image b is
    [:, b, m]. The protocol decides how the generator is seeded and how the copies are laid
    out in the batch (module docstring). start: where the first glimpse goes, "random" (l_0 ~
    U(-1, 1)^2, as trained) or "centre" (l_0 = 0, so that p_1 depends on no random number)."""
    model.eval()
    log_probs, errors, labels = [], [], []
    for i, (x, y) in enumerate(loader):
        B = len(y)
        torch.manual_seed(batch_seed(seed, protocol, i))
        if protocol == "author":
            x = x.repeat(M, 1, 1, 1)  # row m * B + b
            rows = lambda t: t.view(t.shape[0], M, B, -1).transpose(1, 2)
        else:
            x = x.repeat_interleave(M, dim=0)  # row b * M + m
            rows = lambda t: t.view(t.shape[0], B, M, -1)
        noise = None if start == "random" else (
            x.new_zeros(1, len(x), 2), torch.randn(num_glimpses, 1, len(x), 2, device=x.device))
        out = model(x[None], num_glimpses, noise).run(0)
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

    log_probs, errors: (N, n, M, K), M rows (copies) per image, each applying the rule on its
    own (M = 1 after `monte_carlo`). Returns steps (n * M,) in 1..N, image-major, and
    answer (n,): argmax of the mean over an image's rows of log p at each row's own step.
    spec: each row stops at the first step at which `stop_condition` holds; a row that never
    stops answers at step N.
    released: the images are cut into minibatches of `batch_size` (in order, as the released
    code's loader does); a minibatch runs until the first step by which every row of its
    batch_size * M has met the condition at least once (or N), and each row answers at the
    *last* step up to then at which the condition held (step N if it never held).
    Also returns, for the released rule, the step at which each minibatch stopped (None for
    spec).
    """
    N, n, M, K = log_probs.shape
    rows = n * M
    log_probs, errors = log_probs.reshape(N, rows, K), errors.reshape(N, rows, K)
    cond = stop_condition(log_probs.exp(), errors, eps, rule)  # (N, rows)
    t = torch.arange(1, N + 1, device=cond.device)[:, None].expand(N, rows)
    never = torch.full_like(t, N + 1)
    batch_stops = None
    if rule == "spec":
        steps = torch.where(cond, t, never).min(dim=0).values.clamp(max=N)
    else:
        met = cond.cummax(dim=0).values  # (N, rows): met at least once by step t
        per_batch = batch_size * M
        pad = (-rows) % per_batch
        met_b = torch.cat([met, met.new_ones(N, pad)], dim=1).view(N, -1, per_batch)
        all_met = torch.where(met_b.all(dim=2), t[:, :1], never[:, :1]).min(dim=0).values
        batch_stops = all_met.clamp(max=N)  # (number of minibatches,)
        batch_stop = batch_stops.repeat_interleave(per_batch)[:rows]  # (rows,)
        held = cond & (t <= batch_stop)
        steps = torch.where(held, t, torch.zeros_like(t)).max(dim=0).values
        steps = torch.where(steps == 0, torch.full_like(steps, N), steps)
    chosen = log_probs.gather(0, (steps - 1)[None, :, None].expand(1, rows, K))[0]
    answer = chosen.view(n, M, K).mean(dim=1).argmax(dim=-1)
    return steps, answer, batch_stops


def dynamic_sweep(log_probs, errors, labels, rates, rule="spec", batch_size=32):
    """[(eps, mean glimpses over rows, accuracy)] for each exploration rate eps, and for the
    released rule how many minibatches stopped at each step ({step: count}, the steps at
    which some did); log_probs and errors (N, n, R, K) as in `dynamic_glimpses`."""
    points = []
    for eps in rates:
        steps, answer, batch_stops = dynamic_glimpses(log_probs, errors, eps, rule, batch_size)
        points.append({"exploration_rate": eps, "mean_glimpses": steps.float().mean().item(),
                       "accuracy": (answer == labels).float().mean().item()})
        if batch_stops is not None:
            at, count = batch_stops.unique(return_counts=True)
            points[-1]["batch_stops"] = dict(zip(map(str, at.tolist()), count.tolist()))
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


# ------------------------------------------------------------------ testing a checkpoint
def test_checkpoint(cfg, device):
    """Evaluate a checkpoint on the test set, once for every M in --M, and write the numbers
    of each to a results file (`results_path`), and where it looks on the first test images
    beside them (`trace_path`). Returns the accuracy after N glimpses with the first M.

    The checkpoint: --checkpoint (its settings then replace the command line's training
    settings), else the run's best (or, with --best=False, latest). Always: accuracy after
    N = test_glimpses glimpses with M Monte Carlo copies, and after one glimpse placed at the
    centre. With --curve: after every N = 1..max_glimpses. With --dynamic: (mean glimpses,
    accuracy) for every exploration rate and stopping rule, glimpses capped at max_glimpses.
    --protocol decides the seeding and how copies stop."""
    if cfg.checkpoint:
        path = cfg.checkpoint
        kind = next((k for k in ("best", "latest") if path.endswith(f"_{k}.pt")), "checkpoint")
        pretrained = load_pretrained(path, device=device)
        adopt_settings(cfg, vars(pretrained.settings), TRAINING)
    else:
        kind = "best" if cfg.best else "latest"
        path = os.path.join(cfg.ckpt_dir, f"{run_name(cfg)}_{kind}.pt")
        pretrained = load_pretrained(path, cfg, ARCHITECTURE, device)
    loader = get_test_loader(cfg, device, test_batch_size(cfg.protocol, cfg.batch_size),
                             cfg.num_test)
    N = cfg.test_glimpses
    n_run = max(N, cfg.max_glimpses) if (cfg.curve or cfg.dynamic) else N
    # N = 1 with the first glimpse at the centre: a property of the checkpoint (no random
    # number enters p_1), against which the curve's N = 1 shows what the random l_0 costs.
    centre, _, centre_labels = run_glimpses(pretrained.model, loader, 1, start="centre")
    centre_start = {"N": 1, "accuracy": accuracy_curve(centre, centre_labels)[0]}
    accuracies = []
    for M in cfg.M:
        log_probs, errors, labels = run_glimpses(pretrained.model, loader, n_run, M,
                                                 cfg.random_seed, cfg.protocol)
        record = {"run": run_name(cfg), "checkpoint": in_repository(path),
                  "checkpoint_kind": kind, "epoch": pretrained.epoch, "dataset": cfg.dataset,
                  "seed": cfg.random_seed, "protocol": cfg.protocol,
                  "eval_batch_size": loader.batch_size, "num_test_images": len(labels),
                  "config": recorded_settings(cfg),
                  **measure(cfg, M, log_probs, errors, labels), "centre_start": centre_start}
        accuracies.append(record["fixed"]["accuracy"])
        out = results_path(cfg.results_dir, record)
        write_json(record, out)
        _print(record)
        print(f"[*] results written to {out}")
    save_test_glimpses(pretrained.model, loader, cfg, trace_path(cfg.results_dir, record))
    return accuracies[0]


def measure(cfg, M, log_probs, errors, labels):
    """The numbers of one evaluation, from log p_t and e_t of every copy (N, n, M, K):
    {"fixed": {N, M, accuracy, e_t_zero (the share of e_t's entries at N that are exactly
    0)}} and, as the flags ask, {"curve": ...} and {"dynamic": ...}."""
    N = cfg.test_glimpses
    curve = accuracy_curve(log_probs, labels)
    # e_t is relu(...): a share of exact zeros near 1 is the collapse of a too large lambda_1
    numbers = {"fixed": {"N": N, "M": M, "accuracy": curve[N - 1],
                         "e_t_zero": (errors[N - 1] == 0).float().mean().item()}}
    if cfg.curve:
        numbers["curve"] = {"N": list(range(1, cfg.max_glimpses + 1)),
                            "accuracy": curve[:cfg.max_glimpses]}
    if cfg.dynamic:
        if cfg.protocol == "ours":  # an image's copies stop as one
            log_probs, errors = monte_carlo(log_probs, errors)
        numbers["dynamic"] = {"max_glimpses": cfg.max_glimpses, "batch_size": cfg.batch_size}
        for rule in cfg.stopping_rule:
            numbers["dynamic"][rule] = dynamic_sweep(
                log_probs[:cfg.max_glimpses], errors[:cfg.max_glimpses], labels,
                cfg.exploration_rate, rule, cfg.batch_size)
    return numbers


def _print(r):
    fixed = r["fixed"]
    print(f"[*] {r['run']} ({r['checkpoint_kind']}, epoch {r['epoch']}, {r['protocol']} "
          f"protocol): test accuracy {100 * fixed['accuracy']:.2f}% with N={fixed['N']} "
          f"glimpses, M={fixed['M']} ({r['num_test_images']} images)")
    if "centre_start" in r:
        print(f"    N=1 with the first glimpse at the centre: "
              f"{100 * r['centre_start']['accuracy']:.2f}%")
    if "curve" in r:
        print("    accuracy after N glimpses: " + " ".join(
            f"{n}:{100 * a:.1f}" for n, a in zip(r["curve"]["N"], r["curve"]["accuracy"])))
    for rule, points in r.get("dynamic", {}).items():
        for pt in points if rule in ("spec", "released") else ():
            print(f"    dynamic ({rule} rule) eps {pt['exploration_rate']:g}: "
                  f"{pt['mean_glimpses']:.2f} glimpses, {100 * pt['accuracy']:.2f}%")


@torch.no_grad()
def save_test_glimpses(model, loader, cfg, path, n=9):
    """Where the model looks on the first n test images in N = cfg.test_glimpses glimpses,
    for figures.plot_glimpses: one copy of each, its generator seeded as the first
    evaluation batch of cfg.protocol is (`batch_seed`)."""
    x, _ = next(iter(loader))
    torch.manual_seed(batch_seed(cfg.random_seed, cfg.protocol, 0))
    out = model(x[None, :n], cfg.test_glimpses).run(0)
    save_glimpse_trace(path, x[:n], out.locations, cfg, run_name(cfg))


# ------------------------------------------------------------------ results files
def results_path(results_dir, r):
    """results_dir/<run>/<kind>-epoch<E>_N<N>_M<M>[_curve<N_max>][_dynamic-<rules>]
    [_first<K>][_author].json: one file per measurement of a checkpoint."""
    name = f"{r['checkpoint_kind']}-epoch{r['epoch']}_N{r['fixed']['N']}_M{r['fixed']['M']}"
    if "curve" in r:
        name += f"_curve{len(r['curve']['N'])}"
    rules = [rule for rule in r.get("dynamic", {}) if rule in ("spec", "released")]
    if rules:
        name += f"_dynamic-{'-'.join(rules)}"
    if r["config"]["num_test"]:
        name += f"_first{r['num_test_images']}"
    if r["protocol"] == "author":
        name += "_author"
    return os.path.join(results_dir, r["run"], name + ".json")


def has_results(results_dir, run, kind, epoch, M, max_glimpses, protocol):
    """Whether results_dir holds a measurement of run's `kind` checkpoint (best, latest) from
    `epoch` (None: any epoch) with M copies and the curve up to max_glimpses, under
    `protocol`."""
    pattern = os.path.join(results_dir, run, f"{kind}-epoch{'*' if epoch is None else epoch}_"
                           f"N*_M{M}_curve{max_glimpses}*.json")
    return any(path.endswith("_author.json") == (protocol == "author")
               for path in glob.glob(pattern))


def trace_path(results_dir, r):
    """results_dir/<run>/glimpses_<kind>-epoch<E>_N<N>[_first<K>][_author].pt: where
    test_checkpoint saves the glimpses of the first test images (`save_test_glimpses`) beside
    the results file `r` (its contents). Named by what decides the trace: the checkpoint, N,
    the test images and the protocol's seed; not M (the trace is of one copy)."""
    name = f"glimpses_{r['checkpoint_kind']}-epoch{r['epoch']}_N{r['fixed']['N']}"
    if r["config"]["num_test"]:
        name += f"_first{r['num_test_images']}"
    if r["protocol"] == "author":
        name += "_author"
    return os.path.join(results_dir, r["run"], name + ".pt")


def measurement(r):
    """What a results file measured, whichever checkpoint it measured it on: (run, protocol,
    N, M, number of test images, with a curve, the dynamic rules)."""
    return (r["run"], r["protocol"], r["fixed"]["N"], r["fixed"]["M"], r["num_test_images"],
            "curve" in r,
            tuple(rule for rule in ("spec", "released") if rule in r.get("dynamic", {})))


def read_results(results_dir):
    """Every results file, keeping per run and measurement only the latest epoch's."""
    found = {}
    for path in sorted(glob.glob(os.path.join(results_dir, "*", "*.json"))):
        with open(path) as f:
            r = json.load(f)
        key = measurement(r)
        if key not in found or r["epoch"] > found[key]["epoch"]:
            found[key] = r
    return list(found.values())
