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


def plot_accuracy_vs_glimpses(panels, title, path):
    """Test accuracy after N glimpses, one panel per evaluation protocol.

    panels: a list of dicts, each with
      title;
      curves: {label: (N list, [accuracy list of each seed])}: the mean over seeds is drawn,
        solid with a band from the lowest to the highest seed, dashed without one for labels
        with " M=" (the M > 1 curves of our protocol);
      dynamic: {label: [[point dicts] of each seed]}, every seed's (mean glimpses, accuracy)
        points drawn (averaging them would hide how much the stopping depends on the seed);
      paper_fixed: {variant: {N: accuracy %}}, the author's curve points, filled stars;
      paper_dynamic: {variant: {eps: (mean glimpses, accuracy %)}}, the author's dynamic
        points, open stars."""
    import numpy as np
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(7.5 * len(panels), 7.5),
                             squeeze=False, sharey=True)
    for ax, panel in zip(axes[0], panels):
        for label, (n, seeds) in panel["curves"].items():
            variant = label.split(" ")[0]
            acc = 100 * np.array(seeds)
            seeds_note = f" ({len(seeds)} seeds)" if len(seeds) > 1 else ""
            ax.plot(n, acc.mean(axis=0), color=COLORS.get(variant),
                    linestyle="--" if " M=" in label else "-",
                    label=f"{LABELS.get(variant, variant)}{label[len(variant):]}{seeds_note}")
            if len(seeds) > 1 and " M=" not in label:
                ax.fill_between(n, acc.min(axis=0), acc.max(axis=0), color=COLORS.get(variant),
                                alpha=0.15, linewidth=0)
        for label, seeds in panel["dynamic"].items():
            variant = label.split(" ")[0]
            points = [p for seed in seeds for p in seed]
            seeds_note = f" ({len(seeds)} seeds)" if len(seeds) > 1 else ""
            # markers only: accuracy need not be monotonic in eps, and lines would zigzag
            ax.plot([p["mean_glimpses"] for p in points], [100 * p["accuracy"] for p in points],
                    marker="x" if "released" in label else "o", linestyle="none",
                    color=COLORS.get(variant), label=f"{LABELS.get(variant, variant)}"
                    f"{label[len(variant):]}, dynamic{seeds_note}")
        for variant, points in panel.get("paper_fixed", {}).items():
            ax.plot(list(points), list(points.values()), marker="*", markersize=11,
                    linestyle="none", color=COLORS.get(variant), markeredgecolor="black",
                    markeredgewidth=0.5, label=f"{LABELS.get(variant, variant)}, the author's")
        for variant, points in panel.get("paper_dynamic", {}).items():
            glimpses, acc = zip(*points.values())
            ax.plot(glimpses, acc, marker="*", markersize=11, linestyle="none",
                    markerfacecolor="none", color=COLORS.get(variant),
                    label=f"{LABELS.get(variant, variant)}, dynamic, the author's")
        ax.set_xlabel("number of glimpses N (dynamic: mean glimpses)")
        ax.set_ylim(0, 100)
        ax.set_title(panel["title"], fontsize=10)
        ax.grid(alpha=0.3)
        # below the axes: inside, it would hide the curves
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=7.5)
    axes[0][0].set_ylabel("test accuracy (%)")
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


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
    order = lambda d: dict(sorted(d.items(), key=lambda kv: (VARIANTS.index(kv[0].split()[0]),
                                                             kv[0])))
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


def measurement(r):
    """What a results file measured, whichever checkpoint it measured it on: (run, protocol,
    N, M, number of test images, with a curve, the dynamic rules)."""
    return (r["run"], r["protocol"], r["fixed"]["N"], r["fixed"]["M"], r["num_test_images"],
            "curve" in r, tuple(rule for rule in ("spec", "released") if rule in r.get("dynamic", {})))


def latest_results(results_dir):
    """Every results JSON, keeping per run and measurement only the latest epoch's."""
    found = {}
    for path in sorted(glob.glob(os.path.join(results_dir, "*", "*.json"))):
        with open(path) as f:
            r = json.load(f)
        key = measurement(r)
        if key not in found or r["epoch"] > found[key]["epoch"]:
            found[key] = r
    return list(found.values())


def make_figures(results_dir, first_epoch_logs, plots_dir, gifs=True):
    """Every figure of the paper from the files of test_script.sh; returns the paths written.

    - first_epoch_<dataset>.png: running train accuracy over the first epoch, per variant;
    - glimpses_<dataset>.png: test accuracy against N = 1..N_max, with the dynamic points, a
      panel per evaluation protocol;
    - where_<run>.png / .gif: where each run looks on a few test images (its latest
      evaluated checkpoint)."""
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
    from evaluate import EVAL_BATCH, accuracy_curve, run_glimpses
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
                 for r in latest_results(results_dir)
                 if r["protocol"] == "ours" and r["fixed"]["M"] == 1
                 and r["fixed"]["N"] == r["config"]["num_glimpses"]
                 and not r["config"]["num_test"]}
    for (best, epoch), accuracy in sorted(evaluated.items()):
        if not best.endswith("_best.pt"):
            continue
        sources = {best: accuracy, best[:-len("_best.pt")] + "_latest.pt": None}
        for source, test_accuracy in sources.items():
            if not os.path.exists(source):
                continue
            ckpt = torch.load(source, map_location="cpu", weights_only=True)
            if source == best and ckpt["epoch"] != epoch:
                raise CheckpointError(f"{source} is from epoch {ckpt['epoch']}, but its "
                                      f"results are of epoch {epoch}.")
            test_accuracy = evaluated.get((source, ckpt["epoch"]), test_accuracy)
            path = os.path.join(pretrained_dir, os.path.basename(source))
            save_checkpoint(_slim(ckpt, test_accuracy, data_dir), path)
            written.append(path)
    return written


def _slim(ckpt, test_accuracy, data_dir):
    """A checkpoint reduced to what testing needs, with the accuracy it gives recorded."""
    from argparse import Namespace

    from model import RecurrentAttention
    cfg = Namespace(**dict(ckpt["config"], data_dir=data_dir))
    model = RecurrentAttention.from_config(cfg)
    model.load_state_dict(ckpt["model"])
    slim = {key: ckpt[key] for key in ("config", "model", "epoch", "best_valid_acc")}
    slim["recorded"] = {"N": cfg.test_glimpses, "M": 1}
    if test_accuracy is not None:
        slim["recorded"]["test_accuracy"] = test_accuracy
    slim["recorded"]["first_1000_accuracy"] = first_batch_accuracy(model, cfg)
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
    """'98.9' or '98.9 (98.3)': ours, and the author's number in brackets where there is one."""
    text = "-" if ours is None else f"{ours:.1f}"
    return text if paper is None else f"{text} ({paper:g})"


def _spread(values, digits=1, seeds=True):
    """'mean +- sd [lowest, highest] (n seeds)' of a list of numbers; the number alone for one
    seed, '-' for none."""
    import numpy as np
    v = np.array([x for x in values if x is not None])
    if len(v) == 0:
        return "-"
    n = f" ({len(v)} seed{'s' if len(v) > 1 else ''})" if seeds else ""
    if len(v) == 1:
        return f"{v[0]:.{digits}f}{n}"
    return (f"{v.mean():.{digits}f} +- {v.std(ddof=1):.{digits}f} "
            f"[{v.min():.{digits}f}, {v.max():.{digits}f}]{n}")


def _variant(r):
    from argparse import Namespace

    from config import variant_name
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
             "protocol, M = 10 | ours, our protocol, M = 1 | ours, our protocol, M = 10 |",
             "|---|---|---|---|---|"]
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
            lines.append(f"| {LABELS[variant]}, N = {n} | {note} | " + " | ".join(cells) + " |")
    for variant, points in PAPER["dynamic"].get(dataset, {}).items():
        for eps, (g, acc) in points.items():
            a = _sweep_at(author.get(variant, {}).values(), "released", eps)
            o = _sweep_at(ours.get(variant, {}).values(), "spec", eps)
            if not a[0] and not o[0]:
                continue
            cell = lambda s: (f"{_spread(s[0], 2, seeds=False)} glimpses, {_spread(s[1])}"
                              if s[0] else "-")
            lines.append(f"| {LABELS[variant]}, dynamic, eps {eps:g} | {g:g} glimpses, {acc:g} "
                         f"| {cell(a)} | {cell(o)} | - |")
    return lines + [""]


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


def _paired(runs, protocol):
    """RAM + both minus original RAM at N = 50, seed by seed."""
    both, base = runs.get("both", {}), runs.get("original", {})
    paired = [(s, _at(both[s], 50) - _at(base[s], 50)) for s in both
              if s in base and _at(both[s], 50) is not None and _at(base[s], 50) is not None]
    if not paired:
        return []
    return [f"RAM + both minus RAM at N = 50 ({PROTOCOL_NAMES[protocol]}), seed by seed: "
            + ", ".join(f"seed {s}: {d:+.1f}" for s, d in paired) + " points.", ""]


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
    import numpy as np
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
    for variant in VARIANTS[1:]:
        row = [LABELS[variant]]
        for by_variant in first_epoch.values():
            ours, base = by_variant.get(variant, {}), by_variant.get("original", {})
            diff = 100 * np.array([ours[s] - base[s] for s in sorted(ours) if s in base])
            row += [f"{diff.mean():+.1f} +- {diff.std(ddof=1) if len(diff) > 1 else 0:.1f}",
                    f"{(diff > 0).sum()} of {len(diff)}"] if len(diff) else ["-", "-"]
        lines.append("| " + " | ".join(row) + " |")
    return lines + [""]


def results_markdown(results_dir, first_epoch):
    """The README's result tables, in markdown, from the evaluation JSONs of results_dir and a
    first_epoch_summary."""
    lines = _first_epoch_tables(first_epoch)
    results = latest_results(results_dir)
    for dataset in sorted({r["dataset"] for r in results}):
        of_dataset = [r for r in results if r["dataset"] == dataset]
        lines += _claims(of_dataset, dataset)
        lines += _run_table(of_dataset, dataset, "author")
        lines += _run_table(of_dataset, dataset, "ours")
        lines += _dynamic_tables(of_dataset, dataset)
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
