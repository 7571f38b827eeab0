"""The report of test_script.sh: the figures, results/tables.md and the pretrained export,
from the results files and the first-epoch logs. `python report.py --help`."""
import argparse
import csv
import glob
import json
import os
from argparse import Namespace

import numpy as np

from config import VARIANTS, parse_run_name, variant_name
from data_loader import get_test_loader
from evaluate import EVAL_BATCH, accuracy_curve, read_results, run_glimpses, trace_path
from figures import (DATASET_TITLES, LABELS, plot_accuracy_vs_glimpses, plot_first_epoch,
                     plot_glimpses)
from model import load_pretrained
from utils import (CheckpointError, load_checkpoint, load_glimpse_trace, replacing,
                   save_checkpoint, write_json)


# The first-epoch study as it was run before runs trained in groups, one process per run:
# the running train accuracy at the end of the epoch of each run (its logs are not kept).
SINGLE_RUN_FIRST_EPOCH = "first_epoch_single_runs.json"
# The 100-epoch runs trained one process per run before groups, and their evaluations: a
# results folder of their own, which read_results(results_dir) does not descend into.
SINGLE_RUNS = "single_runs"
# Original RAM trained again, seeds 6-10 as one group of 5 with the final code: a third
# study of its accuracy past T, beside the grid and the single runs (_past_T_studies).
SECOND_GROUP = "second_group"


def _read_json(path):
    """The contents of a JSON file, {} where there is none."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def read_running_accuracy(csv_path, epoch=1):
    """The running train accuracy at each iteration of one epoch, from a train_iterations.csv."""
    with open(csv_path, newline="") as f:
        return [float(row["running_acc"]) for row in csv.DictReader(f)
                if int(row["epoch"]) == epoch]


def first_epoch_logs(logs_dir):
    """{dataset: {variant: {seed: train_iterations.csv}}} of the runs logged in logs_dir."""
    found = {}
    for run_dir in sorted(glob.glob(os.path.join(logs_dir, "*"))):
        run = parse_run_name(os.path.basename(run_dir))
        path = os.path.join(run_dir, "train_iterations.csv")
        if run and os.path.exists(path):
            found.setdefault(run["dataset"], {}).setdefault(run["variant"], {})[
                run["random_seed"]] = path
    return found


def make_figures(results_dir, logs_dir, plots_dir, gifs=True):
    """Every figure of the paper from the files of test_script.sh; returns the paths written.

    - first_epoch_<dataset>.png: running train accuracy over the first epoch, per variant;
    - glimpses_<dataset>.png: test accuracy against N = 1..N_max, with the dynamic points, a
      panel per evaluation protocol;
    - where_<run>.png / .gif: where each run looks on a few test images (its latest
      evaluated checkpoint)."""
    written = []
    single = _read_json(os.path.join(results_dir, SINGLE_RUN_FIRST_EPOCH))
    for dataset, by_variant in sorted(first_epoch_logs(logs_dir).items()):
        running = {v: [read_running_accuracy(p) for p in seeds.values()]
                   for v, seeds in by_variant.items()}
        reference = {v: list(seeds.values()) for v, seeds in single.get(dataset, {}).items()}
        title = f"First epoch on {DATASET_TITLES.get(dataset, dataset)}: running train accuracy"
        written.append(plot_first_epoch(running, title,
                                        os.path.join(plots_dir, f"first_epoch_{dataset}.png"),
                                        reference))
    results = read_results(results_dir)
    for dataset in sorted({r["dataset"] for r in results}):
        of_dataset = [r for r in results if r["dataset"] == dataset]
        panels = [p for p in (_protocol_panel(of_dataset, protocol, dataset)
                              for protocol in PROTOCOL_TITLES) if p]
        if not panels:
            continue  # only fixed-N evaluations: nothing to plot against N
        c = of_dataset[0]["config"]
        title = (f"{DATASET_TITLES.get(dataset, dataset)}, trained with T={c['num_glimpses']} "
                 f"glimpses of {c['patch_size']}x{c['patch_size']} (k={c['num_patches']})")
        written.append(plot_accuracy_vs_glimpses(
            panels, title, os.path.join(plots_dir, f"glimpses_{dataset}.png")))
    latest = {}  # run -> the glimpse trace of its latest evaluated checkpoint
    for r in sorted(results, key=lambda r: r["epoch"]):
        path = trace_path(results_dir, r["run"], r["checkpoint_kind"], r["epoch"])
        if os.path.exists(path):
            latest[r["run"]] = path
    for run, path in sorted(latest.items()):
        png = os.path.join(plots_dir, f"where_{run}.png")
        plot_glimpses(load_glimpse_trace(path), png, png[:-4] + ".gif" if gifs else None)
        written += [png, png[:-4] + ".gif"] if gifs else [png]
    return written


PROTOCOL_TITLES = {
    "ours": "our protocol: best checkpoint, M = 1 (M = 10 dashed)",
    "author": "the author's protocol: M = 10, the same draws for every batch of 32",
}


def _protocol_panel(results, protocol, dataset):
    """The figure's panel of one protocol: the curves and dynamic points of its results, and
    under the author's protocol the author's own points (None where there are no curves).

    Our protocol: every M's curve, and the M = 1 sweeps of the spec rule (one sample per
    step). The author's: the M = 10 curves and sweeps of the released rule, as the author
    measured them."""
    curves, dynamic = {}, {}
    for r in (r for r in results if r["protocol"] == protocol and not r["config"]["num_test"]):
        variant = _variant(r)
        M = r["fixed"]["M"]
        if protocol == "author" and M != 10:
            continue
        if "curve" in r:
            label = variant + ("" if protocol == "author" or M == 1 else f" M={M}")
            curves.setdefault(label, []).append(r["curve"])
        if protocol == "author" or M == 1:
            # each protocol's own rule: the figure would be unreadable with both
            rule = "released" if protocol == "author" else "spec"
            if rule in r.get("dynamic", {}):
                dynamic.setdefault(f"{variant} ({rule} rule)", []).append(r["dynamic"][rule])
    if not curves:
        return None
    order = lambda d: dict(sorted(d.items(), key=lambda kv: (list(VARIANTS).index(
        kv[0].split()[0]), kv[0])))
    panel = {"title": PROTOCOL_TITLES[protocol],
             "curves": order({k: (v[0]["N"], [c["accuracy"] for c in v])
                              for k, v in curves.items()}),
             "dynamic": order(dynamic)}
    if protocol == "author":
        shown = {label.split()[0] for label in curves}
        with_dynamic = {label.split()[0] for label in dynamic}
        panel["paper_fixed"] = {v: p for v, p in PAPER["author"].get(dataset, {}).items()
                                if v in shown}
        panel["paper_dynamic"] = {v: p for v, p in PAPER["dynamic"].get(dataset, {}).items()
                                  if v in with_dynamic}
    return panel


# ------------------------------------------------------------------------------- pretrained
def first_batch_accuracy(model, cfg):
    """Test accuracy after cfg.test_glimpses glimpses (M = 1) on the first evaluation batch of
    the test set: the first 1,000 images, seeded as in a full evaluation."""
    batch = next(iter(get_test_loader(cfg, "cpu", EVAL_BATCH)))
    log_probs, _, labels = run_glimpses(model, [batch], cfg.test_glimpses, 1, cfg.random_seed)
    return accuracy_curve(log_probs, labels)[-1]


def export_pretrained(results_dir, pretrained_dir, data_dir="./data"):
    """Copy the best checkpoint of every run evaluated in results_dir (our protocol, M = 1,
    every test image) to pretrained_dir/<run>_best.pt, and its latest checkpoint (the
    epoch-100 one of a run that ran to the end), where it is beside it, to <run>_latest.pt.

    Each keeps what `--is_train=False` needs (settings, weights, epoch) and records its test
    accuracy (N = T, M = 1) on the first 1,000 test images (tests/test_pretrained.py checks
    it), and on all 10,000 where the results have it. Returns the paths written."""
    written = []
    evaluated = {(r["checkpoint"], r["epoch"]): r["fixed"]["accuracy"]
                 for r in read_results(results_dir)
                 if r["protocol"] == "ours" and r["fixed"]["M"] == 1
                 and r["fixed"]["N"] == r["config"]["num_glimpses"]
                 and not r["config"]["num_test"]}
    for best, epoch in sorted(evaluated):
        if not best.endswith("_best.pt"):
            continue
        for source in (best, best[:-len("_best.pt")] + "_latest.pt"):
            if not os.path.exists(source):
                continue
            saved_epoch = load_checkpoint(source)["epoch"]
            if source == best and saved_epoch != epoch:
                raise CheckpointError(f"{source} is from epoch {saved_epoch}, but its "
                                      f"results are of epoch {epoch}.")
            slim = _slim(source, evaluated.get((source, saved_epoch)), data_dir)
            path = os.path.join(pretrained_dir, os.path.basename(source))
            save_checkpoint(slim, path)
            written.append(path)
    return written


def _slim(path, test_accuracy, data_dir):
    """A checkpoint reduced to what testing needs, with its test accuracy (where known) and
    its accuracy on the first 1,000 test images recorded."""
    ckpt = load_checkpoint(path)
    model, settings, _ = load_pretrained(path)
    settings.data_dir = data_dir
    slim = {key: ckpt[key] for key in ("config", "model", "epoch", "best_valid_acc")}
    slim["recorded"] = {"N": settings.test_glimpses, "M": 1}
    if test_accuracy is not None:
        slim["recorded"]["test_accuracy"] = test_accuracy
    slim["recorded"]["first_1000_accuracy"] = first_batch_accuracy(model, settings)
    return slim


# ------------------------------------------------------------------------------- tables
# The author's numbers: 28x28 MNIST, one seed, 100 epochs.
PAPER = {
    # running train accuracy (%) at the end of the first epoch, read off the paper's figures
    "first_epoch": {"mnist": {"original": 61, "uncertainty": 62, "intrinsic": 63.5, "both": 64},
                    "translated": {"original": 30, "uncertainty": 31, "intrinsic": 33,
                                   "both": 35}},
    # test accuracy (%) after N glimpses under the author's protocol (M = 10, the epoch-100
    # checkpoint): N = 1 and 6 as the released notebook prints them, N = 30 and 50 read off
    # the paper's figure
    "author": {"mnist": {"original": {1: 57.49, 6: 99.12, 30: 14, 50: 14},
                         "uncertainty": {1: 9.58, 6: 99.05, 30: 10, 50: 10},
                         "intrinsic": {1: 26.94, 6: 99.08},
                         "both": {1: 11.57, 6: 98.99, 30: 98.5, 50: 98.5}}},
    # the paper's text: original RAM without Monte Carlo sampling (M = 1)
    "m1": {"mnist": {"original": {6: 98.3}}},
    # eps -> (mean glimpses, accuracy %): the released rule under the author's protocol, as
    # the released notebook prints them
    "dynamic": {"mnist": {"both": {0: (1.0, 11.57), 0.01: (1.76, 53.14), 0.15: (3.19, 93.68),
                                   0.3: (4.81, 97.92), 0.4: (8.99, 98.73),
                                   0.45: (36.70, 97.47)},
                          "uncertainty": {0: (1.0, 9.58), 0.1: (1.90, 67.14),
                                          0.2: (2.17, 75.77), 0.5: (2.48, 79.86),
                                          0.8: (2.89, 90.75), 1: (3.10, 95.88),
                                          5: (5.66, 99.02), 10: (6.43, 99.08)}}},
}


def first_epoch_summary(logs_dir):
    """{dataset: {variant: {seed: running train accuracy at the end of the first epoch}}} from
    the train_iterations.csv of every run in logs_dir that finished its first epoch."""
    summary = {}
    for dataset, by_variant in first_epoch_logs(logs_dir).items():
        for variant, seeds in by_variant.items():
            for seed, path in seeds.items():
                running = read_running_accuracy(path)
                if running and _first_epoch_ended(os.path.dirname(path)):
                    summary.setdefault(dataset, {}).setdefault(variant, {})[seed] = running[-1]
    return summary


def _first_epoch_ended(run_dir):
    """Whether the run finished its first epoch: its epochs.csv has a row for it."""
    epochs = os.path.join(run_dir, "epochs.csv")
    if not os.path.exists(epochs):
        return False
    with open(epochs, newline="") as f:
        return any(int(r["epoch"]) == 1 for r in csv.DictReader(f))


def _cell(ours, paper=None):
    """'98.9' or '98.9 (98.3)': ours, and the author's number in brackets where there is one."""
    text = "-" if ours is None else f"{ours:.1f}"
    return text if paper is None else f"{text} ({paper:g})"


def _spread(values, digits=1, seeds=True):
    """'mean +- sd [lowest, highest] (n seeds)' of a list of numbers; the number alone for one
    seed, '-' for none."""
    v = np.array([x for x in values if x is not None])
    if len(v) == 0:
        return "-"
    n = f" ({len(v)} seed{'s' if len(v) > 1 else ''})" if seeds else ""
    if len(v) == 1:
        return f"{v[0]:.{digits}f}{n}"
    return (f"{v.mean():.{digits}f} +- {v.std(ddof=1):.{digits}f} "
            f"[{v.min():.{digits}f}, {v.max():.{digits}f}]{n}")


def _against(theirs, ours, digits=1):
    """Where the author's single number falls against our seeds' values: inside their range
    [lowest, highest], or above or below it and by how much; '-' with fewer than 2 seeds."""
    ours = [v for v in ours if v is not None]
    if theirs is None or len(ours) < 2:
        return "-"
    if min(ours) <= theirs <= max(ours):
        return f"inside our range ({len(ours)} seeds)"
    side, gap = ("above", theirs - max(ours)) if theirs > max(ours) else \
        ("below", min(ours) - theirs)
    return f"{side} our range by {gap:.{digits}f} ({len(ours)} seeds)"


def _variant(r):
    return variant_name(Namespace(**r["config"]))


def _by_seed(results, protocol, M):
    """{variant: {seed: results file}} of the curves measured on the whole test set under
    `protocol` with M copies."""
    found = {}
    for r in results:
        if (r["protocol"] == protocol and r["fixed"]["M"] == M and "curve" in r
                and not r["config"]["num_test"]):
            found.setdefault(_variant(r), {})[r["seed"]] = r
    return {v: dict(sorted(found[v].items())) for v in VARIANTS if v in found}


def _at(r, n):
    """Accuracy % of a results file after n glimpses, None beyond its curve."""
    return 100 * r["curve"]["accuracy"][n - 1] if n <= len(r["curve"]["accuracy"]) else None


def _sweep_at(runs, rule, eps):
    """(mean glimpses, accuracy %) lists over the runs' sweeps with `rule` at `eps`."""
    points = [p for r in runs for p in r.get("dynamic", {}).get(rule, [])
              if p["exploration_rate"] == eps]
    return [p["mean_glimpses"] for p in points], [100 * p["accuracy"] for p in points]


def _claims(results, dataset):
    """The claims table: each of the author's numbers beside ours under the author's protocol
    and ours under our protocol, over seeds."""
    author, ours, ours10 = (_by_seed(results, "author", 10), _by_seed(results, "ours", 1),
                            _by_seed(results, "ours", 10))
    paper = PAPER["author"].get(dataset, {})
    lines = [f"The author's numbers beside ours on {DATASET_TITLES[dataset]}: accuracy (%) "
             "after N glimpses, mean +- standard deviation [lowest, highest] over seeds; "
             "dynamic rows: mean glimpses and accuracy with the released rule under the "
             "author's protocol, with the spec rule under ours.", "",
             "| variant, measure | the author's (author's protocol, M = 10) | ours, author's "
             "protocol, M = 10 | ours, our protocol, M = 1 | ours, our protocol, M = 10 | "
             "the author's number against our seeds, same protocol |",
             "|---|---|---|---|---|---|"]
    for variant in VARIANTS:
        for n in (1, 6, 30, 50):
            theirs = paper.get(variant, {}).get(n)
            extra = PAPER["m1"].get(dataset, {}).get(variant, {}).get(n)
            cells = [_spread([_at(r, n) for r in runs.get(variant, {}).values()])
                     for runs in (author, ours, ours10)]
            if all(c == "-" for c in cells):
                continue
            note = "-" if theirs is None else f"{theirs:g}"
            if extra is not None:
                note += f" (paper, M = 1: {extra:g})"
            verdict = _against(theirs, [_at(r, n) for r in author.get(variant, {}).values()])
            lines.append(f"| {LABELS[variant]}, N = {n} | {note} | " + " | ".join(cells)
                         + f" | {verdict} |")
    for variant, points in PAPER["dynamic"].get(dataset, {}).items():
        for eps, (g, acc) in points.items():
            a = _sweep_at(author.get(variant, {}).values(), "released", eps)
            o = _sweep_at(ours.get(variant, {}).values(), "spec", eps)
            if not a[0] and not o[0]:
                continue
            cell = lambda s: (f"{_spread(s[0], 2, seeds=False)} glimpses, {_spread(s[1])}"
                              if s[0] else "-")
            verdict = (f"glimpses: {_against(g, a[0], digits=2)}; accuracy: {_against(acc, a[1])}"
                       if a[0] else "-")
            lines.append(f"| {LABELS[variant]}, dynamic, eps {eps:g} | {g:g} glimpses, {acc:g} "
                         f"| {cell(a)} | {cell(o)} | - | {verdict} |")
    return lines + [""]


def _first_glimpse(results, dataset):
    """N = 1 with the first glimpse where training draws it (l_0 ~ U(-1, 1)^2) and at the
    centre (l_0 = 0), on the same checkpoints, over seeds: what the random start costs."""
    author, ours = _by_seed(results, "author", 10), _by_seed(results, "ours", 1)
    paper = PAPER["author"].get(dataset, {})
    centre = lambda runs: [100 * r["centre_start"]["accuracy"] for r in runs
                           if "centre_start" in r]
    lines = []
    for variant in VARIANTS:
        a, o = list(author.get(variant, {}).values()), list(ours.get(variant, {}).values())
        if not centre(a) and not centre(o):
            continue
        theirs = paper.get(variant, {}).get(1)
        cells = [_spread([_at(r, 1) for r in a]), _spread(centre(a)),
                 _spread([_at(r, 1) for r in o]), _spread(centre(o))]
        lines.append(f"| {LABELS[variant]} | {'-' if theirs is None else f'{theirs:g}'} | "
                     + " | ".join(cells) + " |")
    if not lines:
        return []
    return [f"Accuracy (%) after one glimpse on {DATASET_TITLES[dataset]}, with the first "
            "glimpse at a random place as trained (l_0 ~ U(-1, 1)^2) or at the centre "
            "(l_0 = 0, no random number left in p_1), mean +- standard deviation [lowest, "
            "highest] over seeds.", "",
            "| variant | the author's (random, M = 10) | ours, latest checkpoint: random, "
            "author's protocol, M = 10 | same checkpoint, centre | ours, best checkpoint: "
            "random, our protocol, M = 1 | same checkpoint, centre |",
            "|---|---|---|---|---|---|"] + lines + [""]


def _run_table(results, dataset, protocol):
    """One row per run: accuracy after N glimpses under one protocol, with the checkpoint."""
    Ns = (1, 6, 10, 20, 30, 50)
    if protocol == "author":
        runs, M10 = _by_seed(results, "author", 10), {}
        head = (f"Under the author's protocol (M = 10, the same draws for every batch of 32), "
                f"{DATASET_TITLES[dataset]}, accuracy (%) after N glimpses (the author's in "
                "brackets):")
        columns = [f"N={n}" for n in Ns]
    else:
        runs, M10 = _by_seed(results, "ours", 1), _by_seed(results, "ours", 10)
        head = (f"Under our protocol, {DATASET_TITLES[dataset]}, accuracy (%) after N glimpses "
                "with M = 1 unless noted:")
        columns = ["N=1", "N=6", "N=6, M=10"] + [f"N={n}" for n in Ns[2:]]
    if not runs:
        return []
    lines = [head, "", "| variant | seed | checkpoint | " + " | ".join(columns) + " |",
             "|---|---|---|" + "---|" * len(columns)]
    for variant, by_seed in runs.items():
        paper = (PAPER["author"] if protocol == "author" else PAPER["m1"]).get(
            dataset, {}).get(variant, {})
        for seed, r in by_seed.items():
            cells = [_cell(_at(r, n), paper.get(n)) for n in Ns]
            if protocol == "ours":
                m10 = M10.get(variant, {}).get(seed)
                cells.insert(2, _cell(_at(m10, 6) if m10 else None))
            lines.append(f"| {LABELS[variant]} | {seed} | {r['checkpoint_kind']}, epoch "
                         f"{r['epoch']} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines + _paired(runs, protocol)


PROTOCOL_NAMES = {"ours": "our protocol", "author": "the author's protocol"}


# The claims that compare two variants, seed by seed (the same seed: the same initial
# weights, batches and translations): (variant, the variant it is compared with, N).
PAIRED = (("both", "original", 50), ("intrinsic", "uncertainty", 50))


def _paired(runs, protocol):
    """Each comparison of PAIRED, seed by seed, and the differences' mean +- sd [min, max]."""
    lines = []
    for variant, other, n in PAIRED:
        a, b = runs.get(variant, {}), runs.get(other, {})
        paired = [(s, _at(a[s], n) - _at(b[s], n)) for s in a
                  if s in b and _at(a[s], n) is not None and _at(b[s], n) is not None]
        if paired:
            lines += [f"{LABELS[variant]} minus {LABELS[other]} at N = {n} "
                      f"({PROTOCOL_NAMES[protocol]}), seed by seed: "
                      + ", ".join(f"seed {s}: {d:+.1f}" for s, d in paired) + " points; "
                      + _spread([d for _, d in paired]) + ".", ""]
    return lines


def _dynamic_tables(results, dataset):
    """Per run with sweeps: (mean glimpses, accuracy %) for every eps, our protocol (M = 1,
    both rules) beside the author's protocol (M = 10, released rule) and the author's."""
    ours, author = _by_seed(results, "ours", 1), _by_seed(results, "author", 10)
    lines = []
    for variant, by_seed in ours.items():
        paper = PAPER["dynamic"].get(dataset, {}).get(variant, {})
        for seed, r in by_seed.items():
            if "dynamic" not in r:
                continue
            a = author.get(variant, {}).get(seed, {}).get("dynamic", {})
            columns = [("spec", r["dynamic"]), ("released", r["dynamic"]), ("released", a)]
            lines += [f"Dynamic number of glimpses, {LABELS[variant]} (seed {seed}) on "
                      f"{DATASET_TITLES[dataset]}, at most {r['dynamic']['max_glimpses']}: "
                      "mean glimpses, accuracy (%)", "",
                      "| eps | our protocol, M = 1, spec rule | our protocol, M = 1, released "
                      "rule | author's protocol, M = 10, released rule | the author's |",
                      "|---|---|---|---|---|"]
            for point in r["dynamic"]["spec"]:
                eps = point["exploration_rate"]
                cells = []
                for rule, sweep in columns:
                    p = next((p for p in sweep.get(rule, []) if p["exploration_rate"] == eps),
                             None)
                    cells.append(f"{p['mean_glimpses']:.2f}, {100 * p['accuracy']:.1f}"
                                 if p else "-")
                theirs = paper.get(eps)
                cells.append(f"{theirs[0]:g}, {theirs[1]:g}" if theirs else "")
                lines.append(f"| {eps:g} | " + " | ".join(cells) + " |")
            lines.append("")
    return lines


def _first_epoch_tables(first_epoch):
    """The first-epoch tables: running train accuracy at its end, and against original RAM."""
    if not first_epoch:
        return []
    lines = ["Running train accuracy (%) at the end of the first epoch: mean +- standard "
             "deviation over seeds (the author's, one seed, in brackets).", "",
             "| variant | " + " | ".join(f"{DATASET_TITLES[d]} | seeds" for d in first_epoch)
             + " |", "|---|" + "---|---|" * len(first_epoch)]
    for variant in VARIANTS:
        row = [LABELS[variant]]
        for dataset, by_variant in first_epoch.items():
            accs = 100 * np.array(list(by_variant.get(variant, {}).values()))
            paper = PAPER["first_epoch"].get(dataset, {}).get(variant)
            row += [(f"{accs.mean():.1f} +- {accs.std(ddof=1) if len(accs) > 1 else 0:.1f}"
                     + (f" ({paper:g})" if paper is not None else "")) if len(accs) else "-",
                    str(len(accs))]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "The same, as the difference to original RAM with the same seed (the same "
              "initial weights, batches and translations): mean +- standard deviation over "
              "seeds, and in how many seeds the variant is ahead.", "",
              "| variant | " + " | ".join(f"{DATASET_TITLES[d]} | ahead" for d in first_epoch)
              + " |", "|---|" + "---|---|" * len(first_epoch)]
    for variant in list(VARIANTS)[1:]:
        row = [LABELS[variant]]
        for by_variant in first_epoch.values():
            ours, base = by_variant.get(variant, {}), by_variant.get("original", {})
            diff = 100 * np.array([ours[s] - base[s] for s in sorted(ours) if s in base])
            row += [f"{diff.mean():+.1f} +- {diff.std(ddof=1) if len(diff) > 1 else 0:.1f}",
                    f"{(diff > 0).sum()} of {len(diff)}"] if len(diff) else ["-", "-"]
        lines.append("| " + " | ".join(row) + " |")
    return lines + [""]


def _first_epoch_groups_vs_single(first_epoch, single):
    """Whether the first epoch trained in groups falls within the seed spread of the same
    study run one process per run: markdown lines."""
    if not first_epoch or not single:
        return []
    lines = ["The first epoch trained as groups (one process per dataset) against the same "
             "study run one process per run, before groups: running train accuracy (%) at the "
             "end of the epoch, mean [lowest, highest] over seeds.", "",
             "| variant | " + " | ".join(f"{DATASET_TITLES[d]}, groups | single runs | "
                                        "group mean within their range" for d in first_epoch)
             + " |", "|---|" + "---|---|---|" * len(first_epoch)]
    for variant in VARIANTS:
        row = [LABELS[variant]]
        for dataset, by_variant in first_epoch.items():
            g = 100 * np.array(list(by_variant.get(variant, {}).values()))
            s = 100 * np.array(list(single.get(dataset, {}).get(variant, {}).values()))
            if not len(g) or not len(s):
                row += ["-", "-", "-"]
                continue
            row += [f"{g.mean():.1f} [{g.min():.1f}, {g.max():.1f}]",
                    f"{s.mean():.1f} [{s.min():.1f}, {s.max():.1f}]",
                    "yes" if s.min() <= g.mean() <= s.max() else "no"]
        lines.append("| " + " | ".join(row) + " |")
    return lines + [""]


def _groups_vs_single(results, single, dataset):
    """Whether 100 epochs in groups give what one process per run gave: accuracy (%) under
    our protocol (best checkpoint, M = 1) at N = 6 (= T) and N = 50, over seeds, the runs of
    `results` against those of `single` (both lists of results files)."""
    groups, alone = _by_seed(results, "ours", 1), _by_seed(single, "ours", 1)
    lines = []
    for variant in VARIANTS:
        g, s = groups.get(variant, {}), alone.get(variant, {})
        if not g or not s:
            continue
        cells = []
        for n in (6, 50):
            gv, sv = [_at(r, n) for r in g.values()], [_at(r, n) for r in s.values()]
            within = "-" if len(sv) < 2 else "yes" if min(sv) <= np.mean(gv) <= max(sv) else "no"
            cells += [_spread(gv), _spread(sv), within]
        lines.append(f"| {LABELS[variant]} | " + " | ".join(cells) + " |")
    if not lines:
        return []
    return [f"100 epochs trained in groups against the same runs trained one process per run "
            f"before groups, {DATASET_TITLES[dataset]}: accuracy (%) under our protocol (best "
            "checkpoint, M = 1), mean +- standard deviation [lowest, highest] over seeds.", "",
            "| variant | N = 6, groups | single runs | group mean within their range | N = 50, "
            "groups | single runs | group mean within their range |",
            "|---|---|---|---|---|---|---|"] + lines + [""]


def _past_T_studies(studies, dataset):
    """Original RAM past T in several studies, `studies` [(name, results files of
    `dataset`)]: accuracy (%) under our protocol (best checkpoint, M = 1) at N = 6 (= T), 30
    and 50, and under the author's (M = 10) at N = 1 and 50, over each study's seeds."""
    lines = []
    for name, results in studies:
        ours = _by_seed(results, "ours", 1).get("original", {})
        author = _by_seed(results, "author", 10).get("original", {})
        if ours:
            cells = [_spread([_at(r, n) for r in runs.values()], seeds=False)
                     for runs, n in ((ours, 6), (ours, 30), (ours, 50), (author, 1), (author, 50))]
            lines.append(f"| {name} | {', '.join(str(s) for s in ours)} | "
                         + " | ".join(cells) + " |")
    if len(lines) < 2:
        return []
    return [f"Original RAM past T in each study of it, {DATASET_TITLES[dataset]}: accuracy (%) "
            "after N glimpses under our protocol (best checkpoint, M = 1) and the author's "
            "(M = 10; the epoch-100 checkpoint, the single runs' best: they kept no other), "
            "mean +- standard deviation [lowest, highest] over seeds.", "",
            "| study | seeds | N = 6, ours | N = 30, ours | N = 50, ours | N = 1, author's "
            "| N = 50, author's |", "|---|---|---|---|---|---|---|"] + lines + [""]


def results_markdown(results_dir, first_epoch):
    """The README's result tables, in markdown, from the evaluation JSONs of results_dir and a
    first_epoch_summary."""
    lines = _first_epoch_tables(first_epoch)
    lines += _first_epoch_groups_vs_single(
        first_epoch, _read_json(os.path.join(results_dir, SINGLE_RUN_FIRST_EPOCH)))
    results = read_results(results_dir)
    single = read_results(os.path.join(results_dir, SINGLE_RUNS))
    second = read_results(os.path.join(results_dir, SECOND_GROUP))
    for dataset in sorted({r["dataset"] for r in results}):
        of_dataset, single_of, second_of = ([r for r in rs if r["dataset"] == dataset]
                                            for rs in (results, single, second))
        lines += _claims(of_dataset, dataset)
        lines += _first_glimpse(of_dataset, dataset)
        lines += _groups_vs_single(of_dataset, single_of, dataset)
        lines += _past_T_studies([("the grid, trained as groups", of_dataset),
                                  ("one process per run, before groups", single_of),
                                  ("a second group of 5, the final code", second_of)], dataset)
        lines += _run_table(of_dataset, dataset, "author")
        lines += _run_table(of_dataset, dataset, "ours")
        lines += _dynamic_tables(of_dataset, dataset)
    return "\n".join(lines)


def write_tables(results_dir, logs_dir):
    """results_dir/tables.md, and results_dir/first_epoch.json, the first-epoch numbers the
    tables use: made from the logs where they are, read back where they are not (the logs
    are not committed; their summary is). Returns the path of the tables."""
    first_epoch = first_epoch_summary(logs_dir)
    summary = os.path.join(results_dir, "first_epoch.json")
    if first_epoch:
        write_json(first_epoch, summary)
    elif os.path.exists(summary):
        with open(summary) as f:
            first_epoch = json.load(f)
    tables = os.path.join(results_dir, "tables.md")
    with replacing(tables) as f:
        f.write(results_markdown(results_dir, first_epoch))
    return tables


def main(argv=None):
    p = argparse.ArgumentParser(description="The figures, tables and pretrained export of "
                                            "test_script.sh, from its files.")
    p.add_argument("--results_dir", default="./results", help="evaluation JSONs (per run)")
    p.add_argument("--first_epoch_logs", default="./runs/first_epoch/logs",
                   help="logs_dir of the first-epoch runs (train_iterations.csv per run)")
    p.add_argument("--plots_dir", default="./plots", help="where the PNG and GIF files go")
    p.add_argument("--pretrained_dir", default=None,
                   help="also copy every evaluated run's best and latest checkpoints there, "
                        "slimmed down for --is_train=False (pretrained/ in the repository)")
    a = p.parse_args(argv)
    written = export_pretrained(a.results_dir, a.pretrained_dir) if a.pretrained_dir else []
    written += make_figures(a.results_dir, a.first_epoch_logs, a.plots_dir)
    written.append(write_tables(a.results_dir, a.first_epoch_logs))
    for path in written:
        print(f"[*] wrote {path}")


if __name__ == "__main__":
    main()
