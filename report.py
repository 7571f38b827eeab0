"""The report of test_script.sh: the figures, results/tables.md and the pretrained export,
from the results files and the first-epoch logs. `python report.py --help`.

The tables are built in tables.py, the export in export.py, the figures drawn in figures.py;
this module gathers their data from the files and writes them."""
import argparse
import csv
import glob
import json
import os

import paper
import tables
from config import VARIANTS, parse_run_name
from evaluate import read_results, trace_path
from export import export_pretrained
from figures import (DATASET_TITLES, LABELS, plot_accuracy_vs_glimpses, plot_first_epoch,
                     plot_glimpses, plot_lambda_map, plot_recipes)
from utils import load_glimpse_trace, replacing, write_json


# The first-epoch study as it was run before runs trained in groups, one process per run:
# the running train accuracy at the end of the epoch of each run (its logs are not kept).
SINGLE_RUN_FIRST_EPOCH = "first_epoch_single_runs.json"
# The running train accuracy at every iteration of the first epoch of the first-epoch runs:
# what their figures are drawn from (their logs are not committed).
FIRST_EPOCH_CURVES = "first_epoch_curves.json"
# The validation curves of the recipes' runs, from their epochs.csv (the logs are not
# committed): the recipe table and recipes_<dataset>.png are made from it.
TRAINING_CURVES = "training_curves.json"
# The 100-epoch runs trained one process per run before groups, and their evaluations: a
# results folder of their own, which read_results(results_dir) does not descend into.
SINGLE_RUNS = "single_runs"
# Original RAM trained again, seeds 6-10 as one group of 5 with the final code: a third
# study of its accuracy past T, beside the grid and the single runs (tables.past_T_studies).
SECOND_GROUP = "second_group"
# RAM + uncertainty trained otherwise, 5 seeds each: L_unc weighted 0 (the error network
# fitted, not minimised), and L_unc routed as the released code routes it; the folders of
# their results, by the name of their columns in the tables.
OTHERWISE = {"fit only (lambda_1 = 0)": "fit_only",
             "released routing of L_unc": "released_routing"}
# Studies of recipes beyond the paper's, each in a results folder of its own, by the recipe's
# name in their tables and figures (glimpses_<dataset>_<folder>.png): the strong recipe
# (sweeps/strong.json, the four variants), and before the screen chose tanh for it, the same
# recipe with the released code's clamp on mu_t (original RAM, 5 seeds).
STRONG = {"strong": "the strong recipe", "strong_clamp": "the strong recipe (clamp on mu_t)"}
# Original RAM of the strong recipe trained on to more epochs (sweeps/strong_longer.json):
# its runs have the strong study's names, so its results live apart, and its checkpoints are
# not exported (they would take the strong study's file names in pretrained/).
LONGER = "strong_longer"
# The datasets whose runs ship only their best checkpoint: with the latest ones of 40
# cluttered runs, pretrained/ would outgrow its 150 MB.
BEST_ONLY = ("cluttered", "cluttered100")
# RAM + both over a lambda_1 x lambda_2 grid (sweeps/lambda_map.json), and the running train
# accuracy at the end of epoch 1 of each of its runs (their logs are not committed).
LAMBDA_MAP = "lambda_map"
LAMBDA_FIRST_EPOCH = "lambda_map_first_epoch.json"
# The lambda map's checkpoints of epoch 1, evaluated: past T after one epoch.
LAMBDA_EPOCH_1 = "lambda_map_epoch1"
# The panels of the accuracy-against-N figure, one per evaluation protocol.
PROTOCOL_TITLES = {
    "ours": "our protocol: best checkpoint, M = 1 (M = 10 dashed)",
    "author": "the author's protocol: M = 10, the same draws for every batch of 32",
}


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


def _first_epoch_runs(logs_dir):
    """{run: [running train accuracy at each iteration of its first epoch]} of every run in
    logs_dir that finished it (train_iterations.csv, and a row for it in epochs.csv)."""
    runs = {}
    for path in sorted(glob.glob(os.path.join(logs_dir, "*", "train_iterations.csv"))):
        name = os.path.basename(os.path.dirname(path))
        if parse_run_name(name) and _first_epoch_ended(os.path.dirname(path)):
            running = read_running_accuracy(path)
            if running:
                runs[name] = running
    return runs


def make_figures(results_dir, logs_dir, plots_dir, gifs=True, lambda_cells=None):
    """Every figure of the paper from the files of test_script.sh; returns the paths written.

    - first_epoch_<dataset>.png: running train accuracy over the first epoch, per variant;
    - the figures of the grid's results and of each STRONG study's (`_study_figures`):
      glimpses_<dataset>.png and glimpses_<dataset>_<folder>.png, where_<run>.png / .gif;
    - lambda_map_mnist.png: the heat maps of the lambda map, where lambda_cells has cells;
    - recipes_<dataset>.png: the validation curves of the recipes that every seed trained
      for at least RECIPE_EPOCHS epochs (results_dir/training_curves.json)."""
    written = []
    if lambda_cells:
        written.append(plot_lambda_map(
            lambda_cells, tables.LAMBDA_MEASURES, "RAM + both on MNIST over lambda_1 x "
            "lambda_2, mean over seeds: after training (top, first three), after epoch 1 (the "
            "rest)", os.path.join(plots_dir, "lambda_map_mnist.png"), columns=4))
    single = _read_json(os.path.join(results_dir, SINGLE_RUN_FIRST_EPOCH))
    # compact: one number per iteration of 40 runs
    curves = _summary(first_epoch_curves(logs_dir),
                      os.path.join(results_dir, FIRST_EPOCH_CURVES), compact=True)
    for dataset, by_variant in sorted(curves.items()):
        running = {v: list(seeds.values()) for v, seeds in by_variant.items()}
        reference = {v: list(seeds.values()) for v, seeds in single.get(dataset, {}).items()}
        title = f"First epoch on {DATASET_TITLES.get(dataset, dataset)}: running train accuracy"
        written.append(plot_first_epoch(running, title,
                                        os.path.join(plots_dir, f"first_epoch_{dataset}.png"),
                                        reference))
    for folder in ("", *STRONG):
        written += _study_figures(results_dir, folder, plots_dir, gifs)
    written += _recipe_figures(_read_json(os.path.join(results_dir, TRAINING_CURVES)), plots_dir)
    return written


# The recipes in recipes_<dataset>.png: those trained this long in every seed (the screens'
# short runs stay in the recipe table).
RECIPE_EPOCHS = 100


def _trains_as_original(run):
    """Whether a run's RAM trains as original RAM: original RAM, or RAM + uncertainty with
    lambda_1 = 0 (the error network is fitted, and gives RAM no gradient)."""
    return run["variant"] == "original" or (run["variant"] == "uncertainty"
                                            and run["lambda_uncertainty"] == 0)


def _recipe_figures(curves, plots_dir):
    """recipes_<dataset>.png from report.training_curves: each long enough recipe of original
    RAM (the other variants' curves stay in the recipe table), labelled by its variant, its
    loss weights and its recipe's tags."""
    by_dataset = {}
    for key, seeds in tables.recipes(curves).items():
        run = parse_run_name(f"{key}_seed1")
        if (min(len(curve["valid_acc"]) for _, curve in seeds) < RECIPE_EPOCHS
                or not _trains_as_original(run)):
            continue
        weights = "".join(f", {symbol} = {run[setting]:g}" for setting, symbol in (
            ("lambda_uncertainty", "lambda_1"), ("lambda_intrinsic", "lambda_2"))
            if run[setting] is not None)
        label = f"{LABELS[run['variant']]}{weights}: {run['recipe'] or 'paper recipe'}"
        by_dataset.setdefault(run["dataset"], {})[label] = [curve for _, curve in seeds]
    return [plot_recipes(recipes, f"Accuracy of original RAM's recipes on "
                         f"{DATASET_TITLES.get(dataset, dataset)}\nvalidation (lines, band: seeds), "
                         "training (dashed); triangles: the first lr cut",
                         os.path.join(plots_dir, f"recipes_{dataset}.png"))
            for dataset, recipes in sorted(by_dataset.items())]


def _study_figures(results_dir, folder, plots_dir, gifs):
    """The figures of one study's results (results_dir's `folder`: '' for the grid, or one of
    STRONG): glimpses_<dataset>[_<folder>].png, accuracy against N with the dynamic points, a
    panel per protocol; where_<run>.png / .gif, where each run looks (its latest evaluated
    checkpoint's trace, `_trace_order`). Returns the paths."""
    written = []
    results_dir = os.path.join(results_dir, folder)
    results = read_results(results_dir)
    suffix = f"_{folder}" if folder else ""
    for dataset in sorted({r["dataset"] for r in results}):
        of_dataset = [r for r in results if r["dataset"] == dataset]
        panels = [p for p in (_protocol_panel(of_dataset, protocol, dataset)
                              for protocol in PROTOCOL_TITLES) if p]
        if not panels:
            continue  # only fixed-N evaluations: nothing to plot against N
        c = of_dataset[0]["config"]
        recipe = f" with {STRONG[folder]}" if folder else ""
        title = (f"{DATASET_TITLES.get(dataset, dataset)}, trained{recipe} with "
                 f"T={c['num_glimpses']} glimpses of {c['patch_size']}x{c['patch_size']} "
                 f"(k={c['num_patches']})")
        written.append(plot_accuracy_vs_glimpses(
            panels, title, os.path.join(plots_dir, f"glimpses_{dataset}{suffix}.png")))
    latest = {}  # run -> the glimpse trace of its latest evaluated checkpoint
    for r in sorted(results, key=_trace_order):
        path = trace_path(results_dir, r)
        if os.path.exists(path):
            latest[r["run"]] = path
    for run, path in sorted(latest.items()):
        png = os.path.join(plots_dir, f"where_{run}.png")
        plot_glimpses(load_glimpse_trace(path), png, png[:-4] + ".gif" if gifs else None)
        written += [png, png[:-4] + ".gif"] if gifs else [png]
    return written


def _trace_order(r):
    """The order in which the glimpse traces beside the results files `r` replace each other
    in a run's where_<run> figure: by epoch; of one epoch, the latest checkpoint's after the
    best's; of one checkpoint, the author's protocol after ours, the whole test set after
    its first images."""
    return (r["epoch"], r["checkpoint_kind"] == "latest", r["protocol"] == "author",
            not r["config"]["num_test"])


def _protocol_panel(results, protocol, dataset):
    """The figure's panel of one protocol: the curves and dynamic points of its results, and
    under the author's protocol the author's own points (None where there are no curves).

    Our protocol: every M's curve, and the M = 1 sweeps of the spec rule (one sample per
    step). The author's: the M = 10 curves and sweeps of the released rule, as the author
    measured them."""
    curves, dynamic = {}, {}
    for r in (r for r in results if r["protocol"] == protocol and not r["config"]["num_test"]):
        variant = tables.variant_of(r)
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
        panel["paper_fixed"] = {v: p for v, p in paper.FIXED.get(dataset, {}).items()
                                if v in shown}
        panel["paper_dynamic"] = {v: p for v, p in paper.DYNAMIC.get(dataset, {}).items()
                                  if v in with_dynamic}
    return panel


def first_epoch_curves(logs_dir):
    """{dataset: {variant: {seed: [running train accuracy at each iteration of the first
    epoch]}}} from the train_iterations.csv of every run in logs_dir that finished it."""
    curves = {}
    for name, running in _first_epoch_runs(logs_dir).items():
        run = parse_run_name(name)
        curves.setdefault(run["dataset"], {}).setdefault(run["variant"], {})[
            run["random_seed"]] = running
    return {dataset: {variant: dict(sorted(seeds.items())) for variant, seeds in by_variant.items()}
            for dataset, by_variant in sorted(curves.items())}


def first_epoch_summary(logs_dir):
    """{dataset: {variant: {seed: running train accuracy at the end of the first epoch}}}."""
    return {dataset: {variant: {seed: curve[-1] for seed, curve in seeds.items()}
                      for variant, seeds in by_variant.items()}
            for dataset, by_variant in first_epoch_curves(logs_dir).items()}


def _first_epoch_ended(run_dir):
    """Whether the run finished its first epoch: its epochs.csv has a row for it."""
    epochs = os.path.join(run_dir, "epochs.csv")
    if not os.path.exists(epochs):
        return False
    with open(epochs, newline="") as f:
        return any(int(r["epoch"]) == 1 for r in csv.DictReader(f))


def training_curves(logs_dirs):
    """{run: {"train_acc": [...], "valid_acc": [accuracy after each epoch done], "lr": [...]}}
    from the epochs.csv of every run in logs_dirs: the validation curves by which recipes are
    chosen, and the training accuracy that says whether a recipe underfits."""
    curves = {}
    for logs_dir in logs_dirs:
        for path in sorted(glob.glob(os.path.join(logs_dir, "*", "epochs.csv"))):
            name = os.path.basename(os.path.dirname(path))
            if parse_run_name(name) is None:
                continue
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
            curves[name] = {key: [float(r[key]) for r in rows]
                            for key in ("train_acc", "valid_acc", "lr")}
    return curves


def first_epoch_ends(logs_dir):
    """{run: running train accuracy at the end of its first epoch} of every run in logs_dir
    that finished it."""
    return {run: curve[-1] for run, curve in _first_epoch_runs(logs_dir).items()}


def lambda_map_cells(results_dir, logs_dir):
    """tables.lambda_cells of the lambda map: the results in results_dir's LAMBDA_MAP and
    LAMBDA_EPOCH_1 folders, the first epoch's accuracies from logs_dir (kept in results_dir's
    LAMBDA_FIRST_EPOCH)."""
    ends = _summary(first_epoch_ends(logs_dir), os.path.join(results_dir, LAMBDA_FIRST_EPOCH))
    return tables.lambda_cells(read_results(os.path.join(results_dir, LAMBDA_MAP)), ends,
                               read_results(os.path.join(results_dir, LAMBDA_EPOCH_1)))


def results_markdown(results_dir, first_epoch, curves=None, lambda_cells=None):
    """The result tables, in markdown, from the evaluation JSONs of results_dir (the grid,
    and the studies beside it in its SINGLE_RUNS, SECOND_GROUP, OTHERWISE and STRONG folders),
    a first_epoch_summary, training_curves and lambda_map_cells."""
    grid = read_results(results_dir)
    text = tables.markdown(first_epoch,
                           _read_json(os.path.join(results_dir, SINGLE_RUN_FIRST_EPOCH)), grid,
                           read_results(os.path.join(results_dir, SINGLE_RUNS)),
                           read_results(os.path.join(results_dir, SECOND_GROUP)),
                           {name: read_results(os.path.join(results_dir, folder))
                            for name, folder in OTHERWISE.items()})
    studies, strong = [], {}
    for folder, recipe in STRONG.items():
        strong[folder] = read_results(os.path.join(results_dir, folder))
        studies += [line for dataset in sorted({r["dataset"] for r in strong[folder]})
                    for line in tables.paper_vs_strong(grid, strong[folder], dataset, recipe)]
    studies += _longer_training(strong["strong"], read_results(os.path.join(results_dir, LONGER)))
    return text + tables.recipe_table(curves or {}) + "\n".join(
        [""] + studies + tables.lambda_map(lambda_cells or {}))


def _longer_training(strong, longer):
    """tables.past_T_studies of original RAM in the strong study and in LONGER, each row
    named by its number of epochs, for each dataset LONGER has runs of."""
    epochs = lambda runs: runs[0]["config"]["epochs"]
    lines = []
    for dataset in sorted({r["dataset"] for r in longer}):
        studies = [[r for r in runs if r["dataset"] == dataset] for runs in (strong, longer)]
        lines += tables.past_T_studies([(f"{STRONG['strong']}, {epochs(runs)} epochs", runs)
                                        for runs in studies if runs], dataset)
    return lines


def _summary(made, path, compact=False):
    """The summary `made` from the logs, written to path (compact: on one line), where there
    are logs; else the one committed at path ({} if none): the logs are not committed, their
    summaries are."""
    if made and compact:
        with replacing(path) as f:
            json.dump(made, f, separators=(",", ":"))
    elif made:
        write_json(made, path)
    return made or _read_json(path)


def _merged_summary(made, path):
    """The summary at path with the runs of `made` added or replaced, written back where
    `made` has any: a study's logs update its own runs and keep those of studies whose logs
    are gone."""
    merged = {**_read_json(path), **made}
    if made:
        write_json(merged, path)
    return merged


def write_tables(results_dir, logs_dir, curve_logs=(), lambda_cells=None):
    """results_dir/tables.md, with results_dir/first_epoch.json (the first epoch's running
    accuracies, from logs_dir) and results_dir/training_curves.json (the curves of the runs in
    curve_logs, added to the committed ones), each made from the logs where they are, read
    back where they are not. Returns the path of the tables."""
    first_epoch = _summary(first_epoch_summary(logs_dir),
                           os.path.join(results_dir, "first_epoch.json"))
    curves = _merged_summary(training_curves(curve_logs),
                             os.path.join(results_dir, TRAINING_CURVES))
    path = os.path.join(results_dir, "tables.md")
    with replacing(path) as f:
        f.write(results_markdown(results_dir, first_epoch, curves, lambda_cells))
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description="The figures, tables and pretrained export of "
                                            "test_script.sh, from its files.")
    p.add_argument("--results_dir", default="./results", help="evaluation JSONs (per run)")
    p.add_argument("--first_epoch_logs", default="./runs/first_epoch/logs",
                   help="logs_dir of the first-epoch runs (train_iterations.csv per run)")
    p.add_argument("--curve_logs", nargs="*", default=[],
                   help="logs_dirs of runs whose curves go into the recipe table "
                        "(results/training_curves.json keeps them, beside those already "
                        "there)")
    p.add_argument("--lambda_logs", default="./runs/lambda_map/logs",
                   help="logs_dir of the lambda map's runs (their first epoch; results/"
                        f"{LAMBDA_FIRST_EPOCH} keeps it)")
    p.add_argument("--plots_dir", default="./plots", help="where the PNG and GIF files go")
    p.add_argument("--pretrained_dir", default=None,
                   help="also copy every evaluated run's best and latest checkpoints there "
                        "(the grid's and the strong recipe's; of the cluttered datasets the "
                        "best only), slimmed down for "
                        "--is_train=False (pretrained/ in the repository)")
    a = p.parse_args(argv)
    written = []
    if a.pretrained_dir:
        for folder in ("", *STRONG):
            # the strong studies' weights in float16: with them, pretrained/ stays in budget
            written += export_pretrained(os.path.join(a.results_dir, folder), a.pretrained_dir,
                                         half=folder in STRONG, best_only=BEST_ONLY)
    cells = lambda_map_cells(a.results_dir, a.lambda_logs)
    # the tables first: they write results_dir's TRAINING_CURVES, which a figure draws
    written.append(write_tables(a.results_dir, a.first_epoch_logs, a.curve_logs, cells))
    written += make_figures(a.results_dir, a.first_epoch_logs, a.plots_dir, lambda_cells=cells)
    for path in written:
        print(f"[*] wrote {path}")


if __name__ == "__main__":
    main()
