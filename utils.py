"""Checkpoint files, the shipped pretrained checkpoints, and the figures and tables of the paper."""
import glob
import json
import os
import re

import torch

# Settings a checkpoint must share with the flags to be loaded at all (the shapes and the
# meaning of the weights), and in addition to be trained further.
ARCHITECTURE = ("dataset", "patch_size", "num_patches", "glimpse_scale", "glimpse_hidden",
                "loc_hidden", "hidden_size")
TRAINING = ARCHITECTURE + ("num_glimpses", "std", "uncertainty", "intrinsic",
                           "lambda_uncertainty", "lambda_intrinsic", "batch_size", "init_lr",
                           "lr_schedule", "lr_patience", "valid_size", "subset", "shuffle",
                           "random_seed")


class CheckpointError(RuntimeError):
    """A missing, unreadable or mismatched checkpoint; main.py prints it and exits 1."""


def save_checkpoint(ckpt, path):
    """Write to a temporary file beside `path`, then rename it over `path`: a crash or a full
    disk in the middle of a save leaves the previous checkpoint whole."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    try:
        torch.save(ckpt, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(obj, path):
    """Atomically (temporary file, then rename), so no reader ever sees half a file."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(path + ".tmp", path)


def load_checkpoint(path, cfg, keys=ARCHITECTURE):
    """Load a checkpoint safely (weights_only: no code runs) and check that its settings
    `keys` agree with cfg.

    Everything loads on the CPU: random-generator states must stay there, and
    load_state_dict copies weights and optimiser state to the model's device."""
    if not os.path.exists(path):
        folder = os.path.dirname(path) or "."
        found = sorted(os.path.basename(p) for p in glob.glob(os.path.join(folder, "*.pt")))
        raise CheckpointError(
            f"no checkpoint at {path}; checkpoints in {folder}: "
            f"{', '.join(found) if found else 'none'}.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated file, not a torch file, or a pickle with code in it
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(e).__name__}).") from e
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise CheckpointError(f"{path} is not a checkpoint of this project.")
    saved = ckpt["config"]
    differ = [f"{k} {saved.get(k)} in the file against {getattr(cfg, k)} on the command line"
              for k in keys if saved.get(k) != getattr(cfg, k)]
    if differ:
        raise CheckpointError(f"{path} was made with other settings: {'; '.join(differ)}.")
    return ckpt


# ------------------------------------------------------------------------------- figures
VARIANTS = ("original", "uncertainty", "intrinsic", "both")
# config.run_name's form: dataset, variant and seed as groups 1, 2 and 3
RUN_NAME = re.compile(
    r"^(\w+?)_ram_.*_(original|uncertainty|intrinsic|both)_seed(\d+)(?:_subset\d+)?$")
DATASET_TITLES = {"mnist": "MNIST 28x28", "translated": "translated MNIST 60x60"}
COLORS = dict(zip(VARIANTS, ("tab:gray", "tab:blue", "tab:orange", "tab:green")))
LABELS = {"original": "RAM", "uncertainty": "RAM + uncertainty", "intrinsic": "RAM + intrinsic",
          "both": "RAM + both"}


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # files only: works headless and in CI
    import matplotlib.pyplot as plt
    return plt


def read_running_accuracy(csv_path, epoch=1):
    """(iterations, running train accuracy) of one epoch from a train_iterations.csv."""
    import csv
    with open(csv_path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["epoch"]) == epoch]
    return [int(r["iteration"]) for r in rows], [float(r["running_acc"]) for r in rows]


def plot_first_epoch(csvs, title, path):
    """Running train accuracy over the first epoch, one line per variant: the mean over the
    seeds given, with a band from the lowest to the highest seed.

    csvs: {variant: [train_iterations.csv, ...]}."""
    import numpy as np
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for variant in VARIANTS:
        runs = [read_running_accuracy(p)[1] for p in csvs.get(variant, [])]
        runs = [r for r in runs if r]
        if not runs:
            continue
        n = min(len(r) for r in runs)
        acc = 100 * np.array([r[:n] for r in runs])
        it = np.arange(1, n + 1)
        label = f"{LABELS[variant]} ({acc[:, -1].mean():.1f}%" + (
            f", {len(runs)} seeds)" if len(runs) > 1 else ")")
        # dashed: the variants with the uncertainty term, which would otherwise hide the line
        # of the variant without it (their means are close)
        ax.plot(it, acc.mean(0), color=COLORS[variant], label=label,
                linestyle="--" if variant in ("uncertainty", "both") else "-")
        if len(runs) > 1:
            ax.fill_between(it, acc.min(0), acc.max(0), color=COLORS[variant], alpha=0.2)
    ax.set_xlabel("iteration of the first epoch (batch 32)")
    ax.set_ylabel("running train accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_accuracy_vs_glimpses(curves, dynamic, title, path, paper_dynamic=None):
    """Test accuracy after N glimpses, one line per variant, and the dynamic (mean glimpses,
    accuracy) points of the variants that have them.

    curves: {label: (N list, [accuracy list of each seed])}: the mean over seeds is drawn, with
    a band from the lowest to the highest seed where there are several;
    dynamic: {label: [[point dicts] of each seed]}, every seed's points drawn (averaging
    them would hide how much the stopping depends on the seed);
    paper_dynamic: {variant: {eps: (mean glimpses, accuracy %)}}, the author's points, drawn
    as open stars."""
    import numpy as np
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9.5, 4.5))
    for label, (n, seeds) in curves.items():
        variant = label.split(" ")[0]
        acc = 100 * np.array(seeds)
        seeds_note = f" ({len(seeds)} seeds)" if len(seeds) > 1 else ""
        ax.plot(n, acc.mean(axis=0), color=COLORS.get(variant),
                linestyle="--" if " M=" in label else "-",  # M > 1 dashed
                label=f"{LABELS.get(variant, variant)}{label[len(variant):]}{seeds_note}")
        if len(seeds) > 1 and " M=" not in label:
            ax.fill_between(n, acc.min(axis=0), acc.max(axis=0), color=COLORS.get(variant),
                            alpha=0.15, linewidth=0)
    for label, seeds in dynamic.items():
        variant = label.split(" ")[0]
        points = [p for seed in seeds for p in seed]
        seeds_note = f" ({len(seeds)} seeds)" if len(seeds) > 1 else ""
        # markers only: accuracy need not be monotonic in eps, and lines would zigzag
        ax.plot([p["mean_glimpses"] for p in points], [100 * p["accuracy"] for p in points],
                marker="x" if "released" in label else "o", linestyle="none",
                color=COLORS.get(variant),
                label=f"{LABELS.get(variant, variant)}{label[len(variant):]}, dynamic{seeds_note}")
    for variant, points in (paper_dynamic or {}).items():
        glimpses, acc = zip(*points.values())
        ax.plot(glimpses, acc, marker="*", markersize=10, linestyle="none",
                markerfacecolor="none", color=COLORS.get(variant),
                label=f"{LABELS.get(variant, variant)} (released rule), dynamic, the author's")
    ax.set_xlabel("number of glimpses N (dynamic: mean glimpses)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)  # beside the curves
    return _save(fig, path)


def _boxes(ax, loc, hw, patch_size, num_patches, glimpse_scale, color):
    """Draw the k patch squares of one glimpse, centred as the retina centres them."""
    import matplotlib.patches as mpatches
    H, W = hw
    col, row = (loc[0] + 1) / 2 * W // 1, (loc[1] + 1) / 2 * H // 1
    for i in range(num_patches):
        n = patch_size * glimpse_scale**i
        ax.add_patch(mpatches.Rectangle((col - n // 2 - 0.5, row - n // 2 - 0.5), n, n,
                                        fill=False, edgecolor=color, linewidth=1.2))


def save_glimpse_trace(path, images, locations, cfg, run):
    """Images (n, C, H, W) and their locations l_0..l_N (N + 1, n, 2), with the retina's
    settings: the file that plot_glimpses draws."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    # detach: a record for the figures, not part of any graph. clone: a slice of a batch would
    # save the whole batch's storage (3 MB for 9 images out of 1,000).
    torch.save({"images": images.detach().cpu().clone(),
                "locations": locations.detach().cpu().clone(),
                "patch_size": cfg.patch_size, "num_patches": cfg.num_patches,
                "glimpse_scale": cfg.glimpse_scale, "run": run}, path)


def plot_glimpses(glimpse_file, png_path, gif_path=None, title=None):
    """Where the model looks: a grid of images (rows) by glimpses (columns) with the patch
    boxes of each glimpse, and optionally an animated GIF (matplotlib's Pillow writer)."""
    plt = _pyplot()
    d = torch.load(glimpse_file, weights_only=True)
    images, locs = d["images"], d["locations"]  # (n, C, H, W), (N + 1, n, 2)
    n, T = images.shape[0], locs.shape[0] - 1
    hw = images.shape[-2:]
    shown = min(n, 4)
    fig, axes = plt.subplots(shown, T, figsize=(1.6 * T, 1.7 * shown), squeeze=False)
    for i in range(shown):
        for t in range(T):
            ax = axes[i][t]
            ax.imshow(images[i, 0], cmap="gray")
            # glimpse t + 1 looks at l_t; earlier ones in a faint colour for the path so far
            ax.plot(((locs[:t + 1, i, 0] + 1) / 2 * hw[1]).floor(),
                    ((locs[:t + 1, i, 1] + 1) / 2 * hw[0]).floor(), "c.-", linewidth=0.8,
                    markersize=3)
            _boxes(ax, locs[t, i].tolist(), hw, d["patch_size"], d["num_patches"],
                   d["glimpse_scale"], "red")
            ax.set_xlim(-0.5, hw[1] - 0.5), ax.set_ylim(hw[0] - 0.5, -0.5)
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(f"glimpse {t + 1}", fontsize=9)
    fig.suptitle(title or d.get("run", ""), fontsize=9)
    _save(fig, png_path)
    if gif_path:
        from matplotlib.animation import FuncAnimation, PillowWriter
        fig, axes = plt.subplots(1, shown, figsize=(2 * shown, 2.3), squeeze=False)

        def frame(t):
            for i in range(shown):
                ax = axes[0][i]
                ax.clear()
                ax.imshow(images[i, 0], cmap="gray")
                _boxes(ax, locs[t, i].tolist(), hw, d["patch_size"], d["num_patches"],
                       d["glimpse_scale"], "red")
                ax.set_xlim(-0.5, hw[1] - 0.5), ax.set_ylim(hw[0] - 0.5, -0.5)
                ax.set_xticks([]), ax.set_yticks([])
            fig.suptitle(f"glimpse {t + 1} of {T}", fontsize=9)
        anim = FuncAnimation(fig, frame, frames=T)
        anim.save(gif_path, writer=PillowWriter(fps=2))
        plt.close(fig)
    return png_path


def _save(fig, path):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def latest_results(results_dir):
    """Every results JSON, keeping per (run, kind of evaluation) only the latest epoch."""
    found = {}
    for path in sorted(glob.glob(os.path.join(results_dir, "*", "*.json"))):
        with open(path) as f:
            r = json.load(f)
        key = (r["run"], path.rsplit("_N", 1)[-1])  # same run, same evaluation settings
        if key not in found or r["epoch"] > found[key]["epoch"]:
            found[key] = r
    return list(found.values())


def make_figures(results_dir, first_epoch_logs, plots_dir, gifs=True):
    """Every figure of the paper from the files of test_script.sh; returns the paths written.

    - first_epoch_<dataset>.png: running train accuracy over the first epoch, per variant;
    - glimpses_<dataset>.png: test accuracy against N = 1..N_max, with the dynamic points;
    - where_<run>.png / .gif: where each run looks on a few test images (its latest
      evaluated checkpoint)."""
    from argparse import Namespace

    from config import variant_name
    written = []
    by_dataset = {}
    for run_dir in sorted(glob.glob(os.path.join(first_epoch_logs, "*"))):
        m = RUN_NAME.match(os.path.basename(run_dir))
        csv_path = os.path.join(run_dir, "train_iterations.csv")
        if m and os.path.exists(csv_path):
            by_dataset.setdefault(m.group(1), {}).setdefault(m.group(2), []).append(csv_path)
    for dataset, csvs in sorted(by_dataset.items()):
        title = f"First epoch on {DATASET_TITLES.get(dataset, dataset)}: running train accuracy"
        written.append(plot_first_epoch(csvs, title,
                                        os.path.join(plots_dir, f"first_epoch_{dataset}.png")))

    results = latest_results(results_dir)
    for dataset in sorted({r["dataset"] for r in results}):
        curves, dynamic = {}, {}
        for r in (r for r in results if r["dataset"] == dataset):
            variant = variant_name(Namespace(**r["config"]))
            if "curve" in r:
                label = variant + ("" if r["fixed"]["M"] == 1 else f" M={r['fixed']['M']}")
                curves.setdefault(label, []).append(r["curve"])
            if r["fixed"]["M"] == 1:  # the paper's sweep: one sample per step
                for rule in ("spec", "released"):
                    if rule in r.get("dynamic", {}):
                        dynamic.setdefault(f"{variant} ({rule} rule)", []).append(
                            r["dynamic"][rule])
        if not curves and not dynamic:
            continue  # only fixed-N evaluations: nothing to plot against N
        order = lambda d: dict(sorted(d.items(), key=lambda kv: (VARIANTS.index(kv[0].split()[0]), kv[0])))
        seed_curves = {k: (v[0]["N"], [c["accuracy"] for c in v]) for k, v in curves.items()}
        some = next(r for r in results if r["dataset"] == dataset)
        c = some["config"]
        title = (f"{DATASET_TITLES.get(dataset, dataset)}, trained with T={c['num_glimpses']} glimpses of "
                 f"{c['patch_size']}x{c['patch_size']} (k={c['num_patches']})")
        with_dynamic = {label.split()[0] for label in dynamic}
        paper = {v: p for v, p in PAPER["dynamic"].get(dataset, {}).items() if v in with_dynamic}
        written.append(plot_accuracy_vs_glimpses(order(seed_curves), order(dynamic), title,
                                                 os.path.join(plots_dir, f"glimpses_{dataset}.png"),
                                                 paper))
    traces = {}
    for path in glob.glob(os.path.join(results_dir, "*", "glimpses_*-epoch*.pt")):
        run, epoch = os.path.basename(os.path.dirname(path)), int(path.rsplit("epoch", 1)[1][:-3])
        if run not in traces or epoch > traces[run][0]:
            traces[run] = (epoch, path)
    for run, (_, path) in sorted(traces.items()):
        png = os.path.join(plots_dir, f"where_{run}.png")
        plot_glimpses(path, png, png[:-4] + ".gif" if gifs else None)
        written += [png, png[:-4] + ".gif"] if gifs else [png]
    return written


# ------------------------------------------------------------------------------- pretrained
def first_batch_accuracy(model, cfg):
    """Test accuracy after cfg.test_glimpses glimpses (M = 1) on the first evaluation batch of
    the test set: the first 1,000 images, seeded as in a full evaluation (trainer.test)."""
    from data_loader import get_test_loader
    from evaluate import accuracy_curve, run_glimpses
    from trainer import EVAL_BATCH
    batch = next(iter(get_test_loader(cfg, "cpu", EVAL_BATCH)))
    log_probs, _, labels = run_glimpses(model, [batch], cfg.test_glimpses, 1, cfg.random_seed)
    return accuracy_curve(log_probs, labels)[-1]


def export_pretrained(results_dir, pretrained_dir, data_dir="./data"):
    """Copy the best checkpoint of every run evaluated in results_dir to
    pretrained_dir/<run>_best.pt, keeping what `--is_train=False` needs (settings, weights,
    epoch) and recording its test accuracy (N = test_glimpses, M = 1) on the 10,000 test
    images and on the first 1,000 (tests/test_pretrained.py checks the latter).
    Returns the paths written."""
    from argparse import Namespace

    from model import RecurrentAttention
    written = []
    for r in latest_results(results_dir):
        if r["fixed"]["M"] != 1 or not r["checkpoint"].endswith("_best.pt"):
            continue
        ckpt = torch.load(r["checkpoint"], map_location="cpu", weights_only=True)
        if ckpt["epoch"] != r["epoch"]:
            raise CheckpointError(f"{r['checkpoint']} is from epoch {ckpt['epoch']}, but the "
                                  f"results of {r['run']} are of epoch {r['epoch']}.")
        cfg = Namespace(**dict(ckpt["config"], data_dir=data_dir))
        model = RecurrentAttention.from_config(cfg)
        model.load_state_dict(ckpt["model"])
        shipped = {key: ckpt[key] for key in ("config", "model", "epoch", "best_valid_acc")}
        shipped["recorded"] = {"N": r["fixed"]["N"], "M": 1, "test_accuracy": r["fixed"]["accuracy"],
                               "first_1000_accuracy": first_batch_accuracy(model, cfg)}
        path = os.path.join(pretrained_dir, os.path.basename(r["checkpoint"]))
        os.makedirs(pretrained_dir, exist_ok=True)
        save_checkpoint(shipped, path)
        written.append(path)
    return written


# ------------------------------------------------------------------------------- tables
# The author's numbers (SPEC, "Results to reproduce"): 28x28 MNIST, 100 epochs, one seed.
PAPER = {
    "first_epoch": {"mnist": {"original": 61, "uncertainty": 62, "intrinsic": 63.5, "both": 64},
                    "translated": {"original": 30, "uncertainty": 31, "intrinsic": 33,
                                   "both": 35}},
    # test accuracy (%) after N glimpses, M = 1 unless the key says M10
    "fixed": {"mnist": {"original": {6: 98.3, "6M10": 99.2, 1: 57, 30: 14, 50: 14},
                        "uncertainty": {1: 10, 30: 10, 50: 10},
                        "intrinsic": {1: 27},
                        "both": {1: 12, 30: 98.5, 50: 98.5}}},
    # eps -> (mean glimpses, accuracy %), released stopping rule
    "dynamic": {"mnist": {"both": {0: (1.0, 11.6), 0.01: (1.76, 53.1), 0.15: (3.19, 93.7),
                                   0.3: (4.81, 97.9), 0.4: (8.99, 98.7), 0.45: (36.7, 97.5)},
                          "uncertainty": {5: (5.66, 99.02), 10: (6.43, 99.08)}}},
}


def first_epoch_summary(first_epoch_logs):
    """{dataset: {variant: {seed: running train accuracy at the end of the first epoch}}} from
    the train_iterations.csv of every first-epoch run."""
    summary = {}
    for run_dir in sorted(glob.glob(os.path.join(first_epoch_logs, "*"))):
        m = RUN_NAME.match(os.path.basename(run_dir))
        csv_path = os.path.join(run_dir, "train_iterations.csv")
        if not m or not os.path.exists(csv_path) or not _first_epoch_ended(run_dir):
            continue
        _, acc = read_running_accuracy(csv_path)
        summary.setdefault(m.group(1), {}).setdefault(m.group(2), {})[int(m.group(3))] = acc[-1]
    return summary


def _first_epoch_ended(run_dir):
    """Whether the run finished its first epoch: its epochs.csv has a row for it."""
    import csv
    epochs = os.path.join(run_dir, "epochs.csv")
    if not os.path.exists(epochs):
        return False
    with open(epochs, newline="") as f:
        return any(int(r["epoch"]) == 1 for r in csv.DictReader(f))


def _cell(ours, paper=None):
    """'98.9' or '98.9 (98.3)': ours, and the author's number in brackets where SPEC has one."""
    text = "-" if ours is None else f"{ours:.1f}"
    return text if paper is None else f"{text} ({paper:g})"


def _across_seeds(seeds, title):
    """Markdown lines: the spread over seeds of the variants trained with several, and RAM +
    both against original RAM at N = 50, seed by seed (issue 6, item 4).

    seeds: {variant: {seed: {column: accuracy % or None}}}."""
    import numpy as np
    several = [v for v in VARIANTS if len(seeds.get(v, {})) > 1]
    if not several:
        return []
    columns = list(next(iter(seeds[several[0]].values())))
    lines = [f"The same on {title} for the variants trained with several seeds: mean +- "
             "standard deviation over seeds [lowest, highest]:", "",
             "| variant | seeds | " + " | ".join(columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for variant in several:
        cells = []
        for column in columns:
            acc = np.array([a[column] for a in seeds[variant].values() if a[column] is not None])
            cells.append(f"{acc.mean():.1f} +- {acc.std(ddof=1):.1f} [{acc.min():.1f}, "
                         f"{acc.max():.1f}]" if len(acc) > 1 else "-")
        lines.append(f"| {LABELS[variant]} | {len(seeds[variant])} | " + " | ".join(cells) + " |")
    both, base = seeds.get("both", {}), seeds.get("original", {})
    paired = [(s, both[s]["N=50"] - base[s]["N=50"]) for s in sorted(both)
              if s in base and both[s]["N=50"] is not None and base[s]["N=50"] is not None]
    if paired:
        lines += ["", "RAM + both minus RAM at N = 50, seed by seed: " + ", ".join(
            f"seed {s}: {d:+.1f}" for s, d in paired) + " points."]
    return lines + [""]


def results_markdown(results_dir, first_epoch):
    """The README's result tables, in markdown, from the evaluation JSONs of results_dir and a
    first_epoch_summary. The author's numbers are in brackets."""
    import numpy as np
    lines = []
    if first_epoch:
        lines += ["Running train accuracy (%) at the end of the first epoch: mean +- standard "
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
        for variant in VARIANTS[1:]:
            row = [LABELS[variant]]
            for by_variant in first_epoch.values():
                ours, base = by_variant.get(variant, {}), by_variant.get("original", {})
                diff = 100 * np.array([ours[s] - base[s] for s in sorted(ours) if s in base])
                row += [f"{diff.mean():+.1f} +- {diff.std(ddof=1) if len(diff) > 1 else 0:.1f}",
                        f"{(diff > 0).sum()} of {len(diff)}"] if len(diff) else ["-", "-"]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    results = latest_results(results_dir)
    for dataset in sorted({r["dataset"] for r in results}):
        runs = {}
        for r in results:
            if r["dataset"] == dataset and "curve" in r:
                runs.setdefault(r["run"], {})[r["fixed"]["M"]] = r
        if not runs:
            continue
        Ns = (1, 6, 10, 20, 30, 50)
        lines += [f"Test accuracy (%) on {DATASET_TITLES[dataset]} after N glimpses, with M = 1 "
                  "unless noted (the author's in brackets):", "",
                  "| variant | seed | epochs | " + " | ".join(
                      f"N={n}" for n in Ns[:2]) + " | N=6, M=10 | " + " | ".join(
                      f"N={n}" for n in Ns[2:]) + " |", "|---|---|---|" + "---|" * (len(Ns) + 1)]
        from argparse import Namespace
        from config import variant_name
        seeds = {}  # variant -> seed -> the accuracies of _across_seeds
        for run in sorted(runs, key=lambda k: (VARIANTS.index(variant_name(Namespace(
                **next(iter(runs[k].values()))["config"]))), next(iter(runs[k].values()))["seed"])):
            by_m = runs[run]
            one = by_m.get(1) or next(iter(by_m.values()))
            variant = variant_name(Namespace(**one["config"]))
            paper = PAPER["fixed"].get(dataset, {}).get(variant, {})

            def acc(m, n):
                r = by_m.get(m)
                if r is None or n > len(r["curve"]["accuracy"]):
                    return None
                return 100 * r["curve"]["accuracy"][n - 1]
            cells = [_cell(acc(1, n), paper.get(n)) for n in Ns[:2]]
            cells += [_cell(acc(10, 6), paper.get("6M10"))]
            cells += [_cell(acc(1, n), paper.get(n)) for n in Ns[2:]]
            lines.append(f"| {LABELS[variant]} | {one['seed']} | {one['epoch']} | "
                         + " | ".join(cells) + " |")
            seeds.setdefault(variant, {})[one["seed"]] = {
                "N=1": acc(1, 1), "N=6": acc(1, 6), "N=6, M=10": acc(10, 6), "N=50": acc(1, 50)}
        lines.append("")
        lines += _across_seeds(seeds, DATASET_TITLES[dataset])
        for r in sorted((r for r in results if r["dataset"] == dataset and "dynamic" in r
                         and r["fixed"]["M"] == 1), key=lambda r: r["run"]):
            variant = variant_name(Namespace(**r["config"]))
            paper = PAPER["dynamic"].get(dataset, {}).get(variant, {})
            rules = [rule for rule in ("spec", "released") if rule in r["dynamic"]]
            lines += [f"Dynamic number of glimpses, {LABELS[variant]} (seed {r['seed']}) on "
                      f"{DATASET_TITLES[dataset]} (at most {r['config']['max_glimpses']}): "
                      "mean glimpses, accuracy (%)", "",
                      "| eps | " + " | ".join(f"{rule} rule" for rule in rules)
                      + " | the author's (released rule) |",
                      "|---|" + "---|" * (len(rules) + 1)]
            for i, point in enumerate(r["dynamic"][rules[0]]):
                eps = point["exploration_rate"]
                cells = [f"{p['mean_glimpses']:.2f}, {100 * p['accuracy']:.1f}"
                         for p in (r["dynamic"][rule][i] for rule in rules)]
                theirs = paper.get(eps)
                cells.append(f"{theirs[0]:g}, {theirs[1]:g}" if theirs else "")
                lines.append(f"| {eps:g} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse
    p = argparse.ArgumentParser(description="Draw the paper's figures from the files of "
                                            "test_script.sh.")
    p.add_argument("--results_dir", default="./results", help="evaluation JSONs (per run)")
    p.add_argument("--first_epoch_logs", default="./runs/first_epoch/logs",
                   help="logs_dir of the first-epoch runs (train_iterations.csv per run)")
    p.add_argument("--plots_dir", default="./plots", help="where the PNG and GIF files go")
    p.add_argument("--pretrained_dir", default=None,
                   help="also copy every evaluated run's best checkpoint there, slimmed down "
                        "for --is_train=False (pretrained/ in the repository)")
    a = p.parse_args()
    for f in export_pretrained(a.results_dir, a.pretrained_dir) if a.pretrained_dir else []:
        print(f"[*] wrote {f}")
    for f in make_figures(a.results_dir, a.first_epoch_logs, a.plots_dir):
        print(f"[*] wrote {f}")
    # The tables of the README, and the first-epoch numbers they come from (the logs
    # themselves are not committed).
    first_epoch = first_epoch_summary(a.first_epoch_logs)
    summary = os.path.join(a.results_dir, "first_epoch.json")
    if first_epoch:
        write_json(first_epoch, summary)
    elif os.path.exists(summary):  # the logs are not committed; their summary is
        with open(summary) as f:
            first_epoch = json.load(f)
    tables = os.path.join(a.results_dir, "tables.md")
    with open(tables + ".tmp", "w") as f:
        f.write(results_markdown(a.results_dir, first_epoch))
    os.replace(tables + ".tmp", tables)
    print(f"[*] wrote {tables}")
