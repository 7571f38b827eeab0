"""The figures, drawn from the data they are handed (report.py gathers it): the first-epoch
curves, accuracy against the number of glimpses, and where a model looks."""
import os

import numpy as np

from config import VARIANTS

DATASET_TITLES = {"mnist": "MNIST 28x28", "translated": "translated MNIST 60x60",
                  "cluttered": "cluttered translated MNIST 60x60",
                  "cluttered100": "cluttered translated MNIST 100x100"}
COLORS = dict(zip(VARIANTS, ("tab:gray", "tab:blue", "tab:orange", "tab:green")))
LABELS = {"original": "RAM", "uncertainty": "RAM + uncertainty", "intrinsic": "RAM + intrinsic",
          "both": "RAM + both"}


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # files only: works headless and in CI
    import matplotlib.pyplot as plt
    return plt


def plot_first_epoch(running, title, path, reference=None):
    """Running train accuracy over the first epoch, one line per variant: the mean over the
    seeds given, with a band from the lowest to the highest seed.

    running: {variant: [[running accuracy at each iteration] of each seed]};
    reference: {variant: [accuracy at the end of the epoch of each seed]} of an earlier study,
    drawn just after the last iteration as its mean with a bar from its lowest to its highest
    seed."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, variant in enumerate(VARIANTS):
        runs = [r for r in running.get(variant, []) if r]
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
        ends = 100 * np.array((reference or {}).get(variant, []))
        if len(ends):
            x = n * (1.02 + 0.015 * i)  # side by side, just after the epoch
            ax.errorbar([x], [ends.mean()], yerr=[[ends.mean() - ends.min()],
                                                  [ends.max() - ends.mean()]],
                        fmt="D", color=COLORS[variant], markersize=4, capsize=2,
                        label=f"{LABELS[variant]}, single runs ({ends.mean():.1f}%)")
    ax.set_xlabel("iteration of the first epoch (batch 32)")
    ax.set_ylabel("running train accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=7 if reference else None)
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


def _boxes(ax, loc, hw, patch_size, num_patches, glimpse_scale, color):
    """Draw the k patch squares of one glimpse, centred as the retina centres them."""
    import matplotlib.patches as mpatches
    H, W = hw
    col, row = (loc[0] + 1) / 2 * W // 1, (loc[1] + 1) / 2 * H // 1
    for i in range(num_patches):
        n = patch_size * glimpse_scale**i
        ax.add_patch(mpatches.Rectangle((col - n // 2 - 0.5, row - n // 2 - 0.5), n, n,
                                        fill=False, edgecolor=color, linewidth=1.2))



def plot_glimpses(d, png_path, gif_path=None, title=None):
    """Where the model looks: a grid of images (rows) by glimpses (columns) with the patch
    boxes of each glimpse, and optionally an animated GIF (matplotlib's Pillow writer).

    d: a glimpse trace (utils.save_glimpse_trace): images (n, C, H, W), locations l_0..l_N
    (N + 1, n, 2) and the retina's settings."""
    plt = _pyplot()
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


def plot_lambda_map(cells, measures, title, path, columns=3):
    """One heat map per measure over lambda_1 (rows) x lambda_2 (columns), `columns` maps to a
    row of the figure, each cell's mean over its seeds written in it (blank: not measured; a
    map with no cell measured says so).

    cells: {(lambda_1, lambda_2): {measure: {seed: value %}}} (tables.lambda_cells)."""
    plt = _pyplot()
    l1s = sorted({l1 for l1, _ in cells})
    l2s = sorted({l2 for _, l2 in cells})
    rows = -(-len(measures) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 4 * rows), squeeze=False)
    for ax in axes.flat[len(measures):]:
        ax.remove()
    for ax, measure in zip(axes.flat, measures):
        grid = np.full((len(l1s), len(l2s)), np.nan)
        for (l1, l2), cell in cells.items():
            if cell[measure]:
                grid[l1s.index(l1), l2s.index(l2)] = np.mean(list(cell[measure].values()))
        image = ax.imshow(grid, cmap="viridis", origin="lower", aspect="auto")
        if np.isnan(grid).all():
            ax.text(0.5, 0.5, "not measured yet", ha="center", va="center",
                    transform=ax.transAxes, color="gray")
        else:
            fig.colorbar(image, ax=ax, shrink=0.8)
        for (i, j), value in np.ndenumerate(grid):
            if not np.isnan(value):
                # dark text on the bright end of the colour map, light on the dark end
                bright = image.norm(value) > 0.6
                ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=8,
                        color="black" if bright else "white")
        ax.set_xticks(range(len(l2s)), [f"{v:g}" for v in l2s], fontsize=8)
        ax.set_yticks(range(len(l1s)), [f"{v:g}" for v in l1s], fontsize=8)
        ax.set_xlabel("lambda_2 (intrinsic)")
        ax.set_ylabel("lambda_1 (uncertainty)")
        ax.set_title(f"{measure} (%)", fontsize=10)
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def plot_recipes(recipes, title, path, floor=95):
    """Validation accuracy against the epoch, a line per recipe: the mean over its seeds (up
    to the epoch every seed reached), a band from the lowest to the highest seed, and a
    triangle on the mean where each seed's learning rate was first cut; a dashed line, the
    mean training accuracy, where every seed has one; y from `floor` %.

    recipes: {label: [{"valid_acc": [...], "lr": [...], "train_acc": [...] (optional)} of each
    seed]} (report.training_curves)."""
    plt = _pyplot()
    # the legend goes under the axes, a line per recipe: the curves meet at the top right
    fig, ax = plt.subplots(figsize=(8, 4.5 + 0.17 * len(recipes)))
    top = floor
    for (label, seeds), color in zip(recipes.items(), plt.get_cmap("tab10").colors):
        n = min(len(s["valid_acc"]) for s in seeds)
        acc = 100 * np.array([s["valid_acc"][:n] for s in seeds])
        epochs = np.arange(1, n + 1)
        ax.plot(epochs, acc.mean(0), color=color, lw=1,
                label=f"{label} ({len(seeds)} seeds, best {acc.max(1).mean():.2f}%)")
        ax.fill_between(epochs, acc.min(0), acc.max(0), color=color, alpha=0.2, lw=0)
        top = max(top, acc.max())
        if all("train_acc" in s for s in seeds):
            train = 100 * np.array([s["train_acc"][:n] for s in seeds]).mean(0)
            ax.plot(epochs, train, "--", color=color, lw=0.8,
                    label=f"  training accuracy (running, sampled l_t), last {train[-1]:.2f}%")
            top = max(top, train.max())
        cuts = [next(e for e, lr in enumerate(s["lr"][:n], 1) if lr < s["lr"][0])
                for s in seeds if min(s["lr"][:n]) < s["lr"][0]]
        ax.plot(cuts, acc.mean(0)[np.array(cuts, dtype=int) - 1], "v", color=color,
                markersize=5)
    ax.set_ylim(floor, top + 0.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%), N = T, M = 1")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=7)
    return _save(fig, path)
