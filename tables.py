"""The tables of results/tables.md, from results files (the dicts of evaluate.read_results)
and first-epoch summaries ({dataset: {variant: {seed: running train accuracy at the end of
the first epoch}}}, report.first_epoch_summary).

Each table builder selects its data, computes its statistics, and hands rows of cells to
`markdown_table`; it returns markdown lines, none where it has nothing to show. `markdown`
puts them all together, dataset by dataset."""
from argparse import Namespace
from collections import defaultdict
from typing import NamedTuple

import numpy as np

import paper
from config import DATASET_DEFAULTS, VARIANTS, parse_run_name, variant_name
from figures import DATASET_TITLES, LABELS

# N of the rows of the claims table, and of the columns of the per-run tables.
CLAIMS_N = (1, 6, 30, 50)
RUN_TABLE_N = (1, 6, 10, 20, 30, 50)
PROTOCOL_NAMES = {"ours": "our protocol", "author": "the author's protocol"}
# The claims that compare two variants, seed by seed (the same seed: the same initial
# weights, batches and translations): (variant, the variant it is compared with, N).
PAIRED = (("both", "original", 50), ("intrinsic", "uncertainty", 50))
# The studies of original RAM past T, in the order of their rows.
STUDIES = ("the grid, trained as groups", "one process per run, before groups",
           "a second group of 5, the final code")


def markdown_table(header, rows):
    """A markdown table as lines: the header's cells, the separator, a line per row of cells."""
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(row) + " |" for row in rows])


def _section(caption, header, rows):
    """A caption and its table, each followed by a blank line; nothing without rows."""
    return [caption, "", *markdown_table(header, rows), ""] if rows else []


# ------------------------------------------------------------------------------- selection
def variant_of(r):
    """The variant (config.VARIANTS) of the run that a results file measured."""
    return variant_name(Namespace(**r["config"]))


def whole_curves(results, protocol, M):
    """The results files of the curves measured on the whole test set under `protocol` with M
    copies."""
    return [r for r in results if r["protocol"] == protocol and r["fixed"]["M"] == M
            and "curve" in r and not r["config"]["num_test"]]


def by_seed(results, protocol, M):
    """{variant: {seed: results file}} of the `whole_curves`, variants in the order of
    VARIANTS, seeds in increasing order."""
    found = {}
    for r in whole_curves(results, protocol, M):
        found.setdefault(variant_of(r), {})[r["seed"]] = r
    return {v: dict(sorted(found[v].items())) for v in VARIANTS if v in found}


def at(r, n):
    """Accuracy % of a results file after n glimpses, None beyond its curve."""
    return 100 * r["curve"]["accuracy"][n - 1] if n <= len(r["curve"]["accuracy"]) else None


def _centre(runs):
    """Accuracy % after one glimpse placed at the centre, of the results files that have it."""
    return [100 * r["centre_start"]["accuracy"] for r in runs if "centre_start" in r]


def _sweep_at(runs, rule, eps):
    """(mean glimpses, accuracy %) lists over the runs' sweeps with `rule` at `eps`."""
    points = [p for r in runs for p in r.get("dynamic", {}).get(rule, [])
              if p["exploration_rate"] == eps]
    return [p["mean_glimpses"] for p in points], [100 * p["accuracy"] for p in points]


def _point(sweep, eps):
    """The point of a dynamic sweep (a list of point dicts) at `eps`, None where it has none."""
    return next((p for p in sweep if p["exploration_rate"] == eps), None)


# ------------------------------------------------------------------------------- statistics
class Spread(NamedTuple):
    """Mean, standard deviation (ddof 1; 0 for one value), lowest, highest and number of
    values."""
    mean: float
    sd: float
    lowest: float
    highest: float
    n: int


def spread(values):
    """The Spread of the values that are not None; None where there are none."""
    v = np.array([x for x in values if x is not None])
    if not len(v):
        return None
    return Spread(v.mean(), v.std(ddof=1) if len(v) > 1 else 0.0, v.min(), v.max(), len(v))


def against(theirs, ours, digits=1):
    """Where the author's single number falls against our seeds' values: inside their range
    [lowest, highest], or above or below it and by how much; '-' with fewer than 2 seeds."""
    s = spread(ours)
    if theirs is None or s is None or s.n < 2:
        return "-"
    if s.lowest <= theirs <= s.highest:
        return f"inside our range ({s.n} seeds)"
    side, gap = (("above", theirs - s.highest) if theirs > s.highest
                 else ("below", s.lowest - theirs))
    return f"{side} our range by {gap:.{digits}f} ({s.n} seeds)"


# ------------------------------------------------------------------------------- cells
def spread_cell(s, digits=1, seeds=True):
    """'mean +- sd [lowest, highest] (n seeds)' of a Spread; the value alone for one seed,
    '-' for none."""
    if s is None:
        return "-"
    n = f" ({s.n} seed{'s' if s.n > 1 else ''})" if seeds else ""
    if s.n == 1:
        return f"{s.mean:.{digits}f}{n}"
    return (f"{s.mean:.{digits}f} +- {s.sd:.{digits}f} "
            f"[{s.lowest:.{digits}f}, {s.highest:.{digits}f}]{n}")


def _cell(ours, theirs=None):
    """'98.9' or '98.9 (98.3)': ours, and the author's number in brackets where there is one."""
    text = "-" if ours is None else f"{ours:.1f}"
    return text if theirs is None else f"{text} ({theirs:g})"


def _sweep_cell(glimpses, accuracy):
    """Mean glimpses and accuracy over seeds at one eps, '-' where no seed has the point."""
    if not glimpses:
        return "-"
    return (f"{spread_cell(spread(glimpses), 2, seeds=False)} glimpses, "
            f"{spread_cell(spread(accuracy))}")


def _point_cell(p):
    """'mean glimpses, accuracy %' of one sweep point, '-' for none."""
    return "-" if p is None else f"{p['mean_glimpses']:.2f}, {100 * p['accuracy']:.1f}"


# ------------------------------------------------------------------------------- tables
def first_epoch_tables(first_epoch):
    """Running train accuracy at the end of the first epoch per variant over seeds, and its
    difference to original RAM with the same seed."""
    if not first_epoch:
        return []
    rows = []
    for variant in VARIANTS:
        row = [LABELS[variant]]
        for dataset, by_variant in first_epoch.items():
            s = spread([100 * a for a in by_variant.get(variant, {}).values()])
            theirs = paper.FIRST_EPOCH.get(dataset, {}).get(variant)
            row += ["-", "0"] if s is None else [
                f"{s.mean:.1f} +- {s.sd:.1f}" + ("" if theirs is None else f" ({theirs:g})"),
                str(s.n)]
        rows.append(row)
    ahead = []
    for variant in list(VARIANTS)[1:]:
        row = [LABELS[variant]]
        for by_variant in first_epoch.values():
            ours, base = by_variant.get(variant, {}), by_variant.get("original", {})
            diffs = [100 * (ours[s] - base[s]) for s in sorted(ours) if s in base]
            s = spread(diffs)
            row += ["-", "-"] if s is None else [f"{s.mean:+.1f} +- {s.sd:.1f}",
                                                 f"{sum(d > 0 for d in diffs)} of {s.n}"]
        ahead.append(row)
    return (_section("Running train accuracy (%) at the end of the first epoch: mean +- "
                     "standard deviation over seeds (the author's, one seed, in brackets).",
                     ["variant"] + [c for d in first_epoch for c in (DATASET_TITLES[d], "seeds")],
                     rows)
            + _section("The same, as the difference to original RAM with the same seed (the "
                       "same initial weights, batches and translations): mean +- standard "
                       "deviation over seeds, and in how many seeds the variant is ahead.",
                       ["variant"] + [c for d in first_epoch
                                      for c in (DATASET_TITLES[d], "ahead")], ahead))


def first_epoch_groups_vs_single(first_epoch, single):
    """Whether the first epoch trained in groups falls within the seed spread of the same
    study run one process per run (`single`, a first-epoch summary too)."""
    if not first_epoch or not single:
        return []
    rows = []
    for variant in VARIANTS:
        row = [LABELS[variant]]
        for dataset, by_variant in first_epoch.items():
            g = spread([100 * a for a in by_variant.get(variant, {}).values()])
            s = spread([100 * a for a in single.get(dataset, {}).get(variant, {}).values()])
            row += ["-", "-", "-"] if g is None or s is None else [
                f"{g.mean:.1f} [{g.lowest:.1f}, {g.highest:.1f}]",
                f"{s.mean:.1f} [{s.lowest:.1f}, {s.highest:.1f}]",
                "yes" if s.lowest <= g.mean <= s.highest else "no"]
        rows.append(row)
    header = ["variant"] + [c for d in first_epoch for c in (
        f"{DATASET_TITLES[d]}, groups", "single runs", "group mean within their range")]
    return _section("The first epoch trained as groups (one process per dataset) against the "
                    "same study run one process per run, before groups: running train "
                    "accuracy (%) at the end of the epoch, mean [lowest, highest] over seeds.",
                    header, rows)


def claims(results, dataset):
    """Each of the author's numbers beside ours under the author's protocol and ours under
    our protocol, over seeds."""
    author, ours, ours10 = (by_seed(results, "author", 10), by_seed(results, "ours", 1),
                            by_seed(results, "ours", 10))
    fixed, fixed_m1 = paper.FIXED.get(dataset, {}), paper.FIXED_M1.get(dataset, {})
    rows = []
    for variant in VARIANTS:
        for n in CLAIMS_N:
            theirs = fixed.get(variant, {}).get(n)
            m1 = fixed_m1.get(variant, {}).get(n)
            cells = [spread_cell(spread([at(r, n) for r in runs.get(variant, {}).values()]))
                     for runs in (author, ours, ours10)]
            if all(c == "-" for c in cells):
                continue
            note = ("-" if theirs is None else f"{theirs:g}") + (
                "" if m1 is None else f" (paper, M = 1: {m1:g})")
            verdict = against(theirs, [at(r, n) for r in author.get(variant, {}).values()])
            rows.append([f"{LABELS[variant]}, N = {n}", note, *cells, verdict])
    for variant, points in paper.DYNAMIC.get(dataset, {}).items():
        for eps, (g, acc) in points.items():
            a = _sweep_at(author.get(variant, {}).values(), "released", eps)
            o = _sweep_at(ours.get(variant, {}).values(), "spec", eps)
            if not a[0] and not o[0]:
                continue
            verdict = (f"glimpses: {against(g, a[0], digits=2)}; accuracy: {against(acc, a[1])}"
                       if a[0] else "-")
            rows.append([f"{LABELS[variant]}, dynamic, eps {eps:g}", f"{g:g} glimpses, {acc:g}",
                         _sweep_cell(*a), _sweep_cell(*o), "-", verdict])
    return _section(f"The author's numbers beside ours on {DATASET_TITLES[dataset]}: accuracy "
                    "(%) after N glimpses, mean +- standard deviation [lowest, highest] over "
                    "seeds; dynamic rows: mean glimpses and accuracy with the released rule "
                    "under the author's protocol, with the spec rule under ours.",
                    ["variant, measure", "the author's (author's protocol, M = 10)",
                     "ours, author's protocol, M = 10", "ours, our protocol, M = 1",
                     "ours, our protocol, M = 10",
                     "the author's number against our seeds, same protocol"], rows)


def first_glimpse(results, dataset):
    """N = 1 with the first glimpse where training draws it (l_0 ~ U(-1, 1)^2) and at the
    centre (l_0 = 0), on the same checkpoints, over seeds: what the random start costs."""
    author, ours = by_seed(results, "author", 10), by_seed(results, "ours", 1)
    fixed = paper.FIXED.get(dataset, {})
    rows = []
    for variant in VARIANTS:
        a, o = list(author.get(variant, {}).values()), list(ours.get(variant, {}).values())
        if not _centre(a) and not _centre(o):
            continue
        theirs = fixed.get(variant, {}).get(1)
        rows.append([LABELS[variant], "-" if theirs is None else f"{theirs:g}"]
                    + [spread_cell(spread(v)) for v in ([at(r, 1) for r in a], _centre(a),
                                                        [at(r, 1) for r in o], _centre(o))])
    return _section(f"Accuracy (%) after one glimpse on {DATASET_TITLES[dataset]}, with the "
                    "first glimpse at a random place as trained (l_0 ~ U(-1, 1)^2) or at the "
                    "centre (l_0 = 0, no random number left in p_1), mean +- standard deviation "
                    "[lowest, highest] over seeds.",
                    ["variant", "the author's (random, M = 10)",
                     "ours, latest checkpoint: random, author's protocol, M = 10",
                     "same checkpoint, centre",
                     "ours, best checkpoint: random, our protocol, M = 1",
                     "same checkpoint, centre"], rows)


def groups_vs_single(results, single, dataset):
    """Whether 100 epochs in groups give what one process per run gave: accuracy (%) under
    our protocol (best checkpoint, M = 1) at N = 6 (= T) and N = 50, over seeds, the runs of
    `results` against those of `single` (both lists of results files)."""
    groups, alone = by_seed(results, "ours", 1), by_seed(single, "ours", 1)
    rows = []
    for variant in VARIANTS:
        g, s = groups.get(variant, {}), alone.get(variant, {})
        if not g or not s:
            continue
        cells = []
        for n in (6, 50):
            gs, ss = (spread([at(r, n) for r in runs.values()]) for runs in (g, s))
            within = ("-" if gs is None or ss is None or ss.n < 2
                      else "yes" if ss.lowest <= gs.mean <= ss.highest else "no")
            cells += [spread_cell(gs), spread_cell(ss), within]
        rows.append([LABELS[variant], *cells])
    return _section(f"100 epochs trained in groups against the same runs trained one process "
                    f"per run before groups, {DATASET_TITLES[dataset]}: accuracy (%) under our "
                    "protocol (best checkpoint, M = 1), mean +- standard deviation [lowest, "
                    "highest] over seeds.",
                    ["variant", "N = 6, groups", "single runs", "group mean within their range",
                     "N = 50, groups", "single runs", "group mean within their range"], rows)


def past_T_studies(studies, dataset):
    """Original RAM past T in several studies, `studies` [(name, results files of
    `dataset`)]: the epochs of its best checkpoints, accuracy (%) under our protocol (best
    checkpoint, M = 1) at N = 6 (= T), 30 and 50, and under the author's (M = 10) at N = 1
    and 50, over each study's seeds; a table only where at least two studies measured it."""
    rows = []
    for name, results in studies:
        ours = by_seed(results, "ours", 1).get("original", {})
        author = by_seed(results, "author", 10).get("original", {})
        if ours:
            rows.append([name, ", ".join(str(s) for s in ours),
                         ", ".join(str(r["epoch"]) for r in ours.values())] + [
                spread_cell(spread([at(r, n) for r in runs.values()]), seeds=False)
                for runs, n in ((ours, 6), (ours, 30), (ours, 50), (author, 1), (author, 50))])
    if len(rows) < 2:
        return []
    return _section(f"Original RAM past T in each study of it, {DATASET_TITLES[dataset]}: "
                    "accuracy (%) after N glimpses under our protocol (best checkpoint, M = 1) "
                    "and the author's (M = 10; the last checkpoint, the single runs' best: "
                    "they kept no other), mean +- standard deviation [lowest, highest] over "
                    "seeds.",
                    ["study", "seeds", "epochs of the best", "N = 6, ours", "N = 30, ours",
                     "N = 50, ours", "N = 1, author's", "N = 50, author's"], rows)


def run_table(results, dataset, protocol):
    """One row per run: accuracy after N glimpses under one protocol, with the checkpoint;
    then the PAIRED comparisons of its runs."""
    if protocol == "author":
        runs, M10, theirs = by_seed(results, "author", 10), {}, paper.FIXED
        caption = (f"Under the author's protocol (M = 10, the same draws for every batch of "
                   f"32), {DATASET_TITLES[dataset]}, accuracy (%) after N glimpses (the "
                   "author's in brackets):")
        columns = [f"N={n}" for n in RUN_TABLE_N]
    else:
        runs, M10, theirs = by_seed(results, "ours", 1), by_seed(results, "ours", 10), \
            paper.FIXED_M1
        caption = (f"Under our protocol, {DATASET_TITLES[dataset]}, accuracy (%) after N "
                   "glimpses with M = 1 unless noted:")
        columns = ["N=1", "N=6", "N=6, M=10"] + [f"N={n}" for n in RUN_TABLE_N[2:]]
    rows = []
    for variant, seeds in runs.items():
        numbers = theirs.get(dataset, {}).get(variant, {})
        for seed, r in seeds.items():
            cells = [_cell(at(r, n), numbers.get(n)) for n in RUN_TABLE_N]
            if protocol == "ours":
                m10 = M10.get(variant, {}).get(seed)
                cells.insert(2, _cell(at(m10, 6) if m10 else None))
            rows.append([LABELS[variant], str(seed),
                         f"{r['checkpoint_kind']}, epoch {r['epoch']}", *cells])
    return (_section(caption, ["variant", "seed", "checkpoint", *columns], rows)
            + paired(runs, protocol))


def paired(runs, protocol):
    """Each comparison of PAIRED on {variant: {seed: results file}}, seed by seed, and the
    differences' mean +- sd [lowest, highest]."""
    lines = []
    for variant, other, n in PAIRED:
        a, b = runs.get(variant, {}), runs.get(other, {})
        diffs = [(s, at(a[s], n) - at(b[s], n)) for s in a
                 if s in b and at(a[s], n) is not None and at(b[s], n) is not None]
        if diffs:
            lines += [f"{LABELS[variant]} minus {LABELS[other]} at N = {n} "
                      f"({PROTOCOL_NAMES[protocol]}), seed by seed: "
                      + ", ".join(f"seed {s}: {d:+.1f}" for s, d in diffs) + " points; "
                      + spread_cell(spread([d for _, d in diffs])) + ".", ""]
    return lines


def dynamic_tables(results, dataset):
    """Per run with sweeps: (mean glimpses, accuracy %) for every eps, our protocol (M = 1,
    both rules) beside the author's protocol (M = 10, released rule) and the author's."""
    ours, author = by_seed(results, "ours", 1), by_seed(results, "author", 10)
    lines = []
    for variant, seeds in ours.items():
        theirs = paper.DYNAMIC.get(dataset, {}).get(variant, {})
        for seed, r in seeds.items():
            if "dynamic" not in r:
                continue
            a = author.get(variant, {}).get(seed, {}).get("dynamic", {})
            sweeps = (r["dynamic"].get("spec", []), r["dynamic"].get("released", []),
                      a.get("released", []))
            rows = []
            for point in sweeps[0]:
                eps = point["exploration_rate"]
                numbers = theirs.get(eps)
                rows.append([f"{eps:g}", *(_point_cell(_point(s, eps)) for s in sweeps),
                             f"{numbers[0]:g}, {numbers[1]:g}" if numbers else ""])
            lines += _section(
                f"Dynamic number of glimpses, {LABELS[variant]} (seed {seed}) on "
                f"{DATASET_TITLES[dataset]}, at most {r['dynamic']['max_glimpses']}: mean "
                "glimpses, accuracy (%)",
                ["eps", "our protocol, M = 1, spec rule", "our protocol, M = 1, released rule",
                 "author's protocol, M = 10, released rule", "the author's"], rows)
    return lines


def uncertainty_trained_otherwise(studies, results, dataset):
    """RAM + uncertainty trained otherwise ({name: results files}: the error network fitted
    but L_unc weighted 0, L_unc routed as the released code routes it) beside RAM +
    uncertainty and RAM + both of the grid (`results`), under the author's protocol (M = 10,
    epoch 100, released rule), over seeds: N = 1, 2, 6 and 50, then every eps of the
    sweeps, and the author's numbers."""
    studies = {name: list(by_seed([r for r in runs if r["dataset"] == dataset], "author", 10)
                          .get("uncertainty", {}).values()) for name, runs in studies.items()}
    studies = {name: runs for name, runs in studies.items() if runs}
    if not studies:
        return []
    grid = by_seed(results, "author", 10)
    studies[LABELS["uncertainty"]] = list(grid.get("uncertainty", {}).values())
    studies[LABELS["both"]] = list(grid.get("both", {}).values())
    theirs = paper.DYNAMIC.get(dataset, {}).get("uncertainty", {})
    rows = [[f"N = {n}", *(spread_cell(spread([at(r, n) for r in runs]))
                           for runs in studies.values()),
             _cell(paper.FIXED.get(dataset, {}).get("uncertainty", {}).get(n))]
            for n in (1, 2, 6, 50)]
    rates = sorted({p["exploration_rate"] for runs in studies.values() for r in runs
                    for p in r.get("dynamic", {}).get("released", [])})
    for eps in rates:
        g = theirs.get(eps)
        rows.append([f"eps {eps:g}", *(_sweep_cell(*_sweep_at(runs, "released", eps))
                                      for runs in studies.values()),
                     f"{g[0]:g} glimpses, {g[1]:g}" if g else "-"])
    return _section(
        f"RAM + uncertainty trained otherwise, on {DATASET_TITLES[dataset]}: accuracy (%) "
        "after N glimpses, and the dynamic number of glimpses with the released rule (mean "
        "glimpses, accuracy %), author's protocol (M = 10, epoch 100), over seeds",
        ["measure", *studies, "the author's, RAM + uncertainty"], rows)


LOW_EPS = (0.01, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.45, 0.5, 1)


def low_eps(results, dataset, variant="uncertainty", study=""):
    """The released rule at low eps, seed by seed (author's protocol, the sweeps that record
    where their minibatches stopped): the share of minibatches stopping at step 1 and 2, the
    accuracy after N = 1 and 2 glimpses, and the mix sum_s share_s x accuracy(N = s) beside
    the accuracy the rule gave. study: words naming the runs in the caption."""
    rows = []
    for seed, r in by_seed(results, "author", 10).get(variant, {}).items():
        for p in r.get("dynamic", {}).get("released", []):
            if p["exploration_rate"] not in LOW_EPS or "batch_stops" not in p:
                continue
            stops = {int(step): n for step, n in p["batch_stops"].items()}
            total = sum(stops.values())
            mix = sum(n / total * at(r, step) for step, n in stops.items())
            rows.append([str(seed), f"{p['exploration_rate']:g}",
                         f"{100 * stops.get(1, 0) / total:.1f}",
                         f"{100 * stops.get(2, 0) / total:.1f}", f"{at(r, 1):.1f}",
                         f"{at(r, 2):.1f}", f"{mix:.1f}", f"{100 * p['accuracy']:.1f}",
                         f"{100 * p['accuracy'] - mix:+.1f}"])
    return _section(
        f"The released rule at low eps, {LABELS[variant]}{study} on {DATASET_TITLES[dataset]} "
        "(author's protocol, M = 10): % of minibatches that stop at step 1 and 2, accuracy (%) "
        "after N = 1 and 2, their mix weighted by where the minibatches stop, and the rule's "
        "accuracy",
        ["seed", "eps", "stop at 1", "stop at 2", "N = 1", "N = 2", "mix", "rule",
         "rule - mix"], rows)


def markdown(first_epoch, single_first_epoch, results, single, second, otherwise=None):
    """Every table, as one markdown text: the first-epoch tables (first_epoch beside
    single_first_epoch, the same study run one process per run), then per dataset the tables
    of `results` (the grid), with the single runs (`single`) and the second group of
    original RAM (`second`) set beside it, and RAM + uncertainty trained otherwise
    (`otherwise`, {name: results files}: uncertainty_trained_otherwise, each study's low-eps
    table); all lists of results files."""
    otherwise = otherwise or {}
    lines = first_epoch_tables(first_epoch)
    lines += first_epoch_groups_vs_single(first_epoch, single_first_epoch)
    for dataset in sorted({r["dataset"] for r in results}):
        studies = [[r for r in rs if r["dataset"] == dataset] for rs in (results, single, second)]
        grid = studies[0]
        lines += claims(grid, dataset)
        lines += first_glimpse(grid, dataset)
        lines += groups_vs_single(grid, studies[1], dataset)
        lines += past_T_studies(list(zip(STUDIES, studies)), dataset)
        lines += run_table(grid, dataset, "author")
        lines += run_table(grid, dataset, "ours")
        lines += dynamic_tables(grid, dataset)
        lines += uncertainty_trained_otherwise(otherwise, grid, dataset)
        lines += low_eps(grid, dataset)
        for name, runs in otherwise.items():
            lines += low_eps([r for r in runs if r["dataset"] == dataset], dataset,
                             study=f", {name},")
    return "\n".join(lines)


# ------------------------------------------------------------------------------- recipes
# The recipes set side by side (results/ and its STRONG folder), and their cells: (recipe,
# protocol, M) of by_seed.
RECIPE_COLUMNS = {"paper recipe, ours": ("paper", "ours", 1),
                  "strong recipe, ours": ("strong", "ours", 1),
                  "paper recipe, author's": ("paper", "author", 10),
                  "strong recipe, author's": ("strong", "author", 10)}


def paper_vs_strong(paper_runs, strong_runs, dataset, recipe="the strong recipe"):
    """The same claims on models of the paper's recipe (paper_runs) and of a stronger one
    (strong_runs), named `recipe` in the captions, both lists of results files: accuracy
    after N = 1, 2, 3 (what a rule that stops early answers with), T, 30 and 50 glimpses
    under our protocol (best checkpoint, M = 1) and the author's (M = 10); then each dynamic
    sweep (spec rule under ours, released under the author's); then the PAIRED differences of
    the strong runs. Nothing where the strong recipe has no run of `dataset`."""
    # "paper" and "strong", the recipes of RECIPE_COLUMNS
    runs = {kind: [r for r in rs if r["dataset"] == dataset]
            for kind, rs in (("paper", paper_runs), ("strong", strong_runs))}
    if not runs["strong"]:
        return []
    T = runs["strong"][0]["config"]["num_glimpses"]
    columns = {name: by_seed(runs[kind], protocol, M)
               for name, (kind, protocol, M) in RECIPE_COLUMNS.items()}
    rows = [[LABELS[v], f"N = {n}", *(spread_cell(spread([at(r, n) for r in c.get(v, {}).values()]))
                                      for c in columns.values())]
            for v in VARIANTS for n in sorted({1, 2, 3, T, 30, 50})
            if any(v in c for c in columns.values())]
    lines = _section(
        f"Paper recipe against {recipe} on {DATASET_TITLES[dataset]}: accuracy (%) "
        f"after N glimpses (T = {T}), under our protocol (best checkpoint, M = 1) and the "
        "author's (M = 10), mean +- sd [lowest, highest] over seeds",
        ["variant", "N", *RECIPE_COLUMNS], rows)
    rates = sorted({p["exploration_rate"] for c in columns.values() for seeds in c.values()
                    for r in seeds.values() for rule in ("spec", "released")
                    for p in r.get("dynamic", {}).get(rule, [])})
    rows = []
    for v in ("uncertainty", "both"):
        for eps in rates:
            cells = [_sweep_cell(*_sweep_at(c.get(v, {}).values(),
                                             "spec" if protocol == "ours" else "released", eps))
                     for c, (_, protocol, _) in zip(columns.values(), RECIPE_COLUMNS.values())]
            if any(cell != "-" for cell in cells):
                rows.append([LABELS[v], f"{eps:g}", *cells])
    lines += _section(
        f"Paper recipe against {recipe} on {DATASET_TITLES[dataset]}: the dynamic "
        "number of glimpses (mean glimpses, accuracy %), spec rule under our protocol (M = 1), "
        "released rule under the author's (M = 10), over seeds",
        ["variant", "eps", *RECIPE_COLUMNS], rows)
    for protocol, M in (("ours", 1), ("author", 10)):
        lines += [f"{recipe[0].upper()}{recipe[1:]}: {line}" if line else line
                  for line in paired(by_seed(runs["strong"], protocol, M), protocol)]
    return lines


CURVE_EPOCHS = (10, 20, 40, 60, 100, 150, 200)


def recipes(curves):
    """report.training_curves by recipe: {run name without its seed: [(seed, curve)]}."""
    by_recipe = {}
    for name, curve in sorted(curves.items()):
        key = name[:name.rindex("_seed")]
        by_recipe.setdefault(key, []).append((parse_run_name(name)["random_seed"], curve))
    return by_recipe


def recipe_table(curves):
    """The validation accuracy (N = T, M = 1) of the runs of each recipe, seeds pooled:
    its best and the epoch of the best, and the curve at CURVE_EPOCHS; from
    report.training_curves. '' without curves."""
    rows = []
    for key, seeds in recipes(curves).items():
        seeds = [(seed, curve["valid_acc"]) for seed, curve in seeds]
        best = [max(acc) for _, acc in seeds]
        epochs = [acc.index(max(acc)) + 1 for _, acc in seeds]
        by_epoch = [spread_cell(spread([100 * acc[e - 1] if len(acc) >= e else None
                                        for _, acc in seeds]), 2, seeds=False)
                    for e in CURVE_EPOCHS]
        rows.append([key, ", ".join(str(s) for s, _ in seeds),
                     ", ".join(str(len(acc)) for _, acc in seeds),
                     spread_cell(spread([100 * b for b in best]), 2, seeds=False),
                     ", ".join(map(str, epochs)), *by_epoch])
    if not rows:
        return ""
    return "\n" + "\n".join(_section(
        "Validation accuracy (%) of the recipes, N = T, M = 1, from each run's epochs.csv: "
        "mean +- sd [lowest, highest] over the seeds",
        ["runs", "seeds", "epochs done", "best", "epoch of the best",
         *[f"epoch {e}" for e in CURVE_EPOCHS]], rows))


# ------------------------------------------------------------------------------- lambda map
# The measures of each cell of the lambda_1 x lambda_2 map, in the order of its columns.
LAMBDA_MEASURES = ("N = 6", "N = 50", "e_t exactly 0 at N = 6", "epoch 1, running train",
                   "epoch 1: N = 6", "epoch 1: N = 50", "epoch 1: e_t exactly 0 at N = 6")


def lambda_of_run(name):
    """(lambda_1, lambda_2) of a run from its name, the dataset's defaults where it has none."""
    run = parse_run_name(name)
    defaults = DATASET_DEFAULTS[run["dataset"]]
    return tuple(defaults[key] if run[key] is None else run[key]
                 for key in ("lambda_uncertainty", "lambda_intrinsic"))


def lambda_cells(results, first_epoch, after_epoch_1=()):
    """{(lambda_1, lambda_2): {measure: {seed: value %}}} of the lambda map: from the results
    files under our protocol (best checkpoint, M = 1) the accuracy at N = 6 and 50 and the
    share of e_t exactly 0 at N = 6; from first_epoch ({run: running train accuracy at the end
    of epoch 1}) that accuracy; from after_epoch_1 (the results of the checkpoints of epoch 1)
    the same three measures after one epoch."""
    cells = defaultdict(lambda: {m: {} for m in LAMBDA_MEASURES})
    # not by_seed, which would keep one cell per seed: a cell is a run name less its seed
    for prefix, measured in (("", results), ("epoch 1: ", after_epoch_1)):
        for r in whole_curves(measured, "ours", 1):
            cell, seed = cells[lambda_of_run(r["run"])], r["seed"]
            cell[f"{prefix}N = 6"][seed], cell[f"{prefix}N = 50"][seed] = at(r, 6), at(r, 50)
            if r["fixed"]["N"] == 6 and "e_t_zero" in r["fixed"]:
                cell[f"{prefix}e_t exactly 0 at N = 6"][seed] = 100 * r["fixed"]["e_t_zero"]
    for name, accuracy in first_epoch.items():
        cells[lambda_of_run(name)]["epoch 1, running train"][
            parse_run_name(name)["random_seed"]] = 100 * accuracy
    return dict(sorted(cells.items()))


def lambda_map(cells):
    """The lambda map's table, a row per cell of lambda_cells: each measure's mean +- sd
    [lowest, highest] over the cell's seeds."""
    rows = []
    for (l1, l2), cell in cells.items():
        seeds = sorted({seed for values in cell.values() for seed in values})
        rows.append([f"{l1:g}", f"{l2:g}", ", ".join(map(str, seeds))]
                    + [spread_cell(spread(list(cell[m].values())), seeds=False)
                       for m in LAMBDA_MEASURES])
    return _section(
        "The lambda_1 x lambda_2 map, RAM + both on MNIST (0: the term weighted 0): accuracy "
        "(%) under our protocol (best checkpoint, M = 1), the share (%) of e_t's entries "
        "exactly 0 at N = 6, the running train accuracy (%) at the end of epoch 1, and the "
        "accuracy (%) and share of e_t exactly 0 of the epoch-1 checkpoints; mean +- sd "
        "[lowest, highest] over seeds",
        ["lambda_1", "lambda_2", "seeds", *LAMBDA_MEASURES], rows)
