"""The report (report.py, tables.py) on hand-made results files: the claims table puts the
author's numbers beside ours under each protocol, and the accuracy-against-N figure draws each
protocol in its own panel; and on the committed results, the committed tables."""
import json
import os
import re

import pytest

import figures
import report
import tables
from conftest import ROOT, settings


def _result(variant, seed, protocol, M, n1, n50, sweep=None):
    """A results file's contents with a two-point curve at N = 1 and N = 50 (the rest 98%)."""
    from config import run_name, variant_flags
    cfg = settings(*variant_flags(variant), f"--random_seed={seed}", f"--protocol={protocol}")
    r = {"run": run_name(cfg), "epoch": 3, "dataset": "mnist", "seed": seed,
         "protocol": protocol, "checkpoint_kind": "best", "num_test_images": 10000,
         "config": vars(cfg), "fixed": {"N": 6, "M": M, "accuracy": 0.98},
         "curve": {"N": list(range(1, 51)), "accuracy": [n1] + [0.98] * 48 + [n50]}}
    if sweep:
        r["dynamic"] = {"max_glimpses": 50, "batch_size": 32, **sweep}
    return r


def test_claims_put_the_authors_number_beside_ours_under_each_protocol():
    """The claims table: the author's number, then ours under the author's protocol (M = 10),
    ours under our protocol with M = 1 and M = 10, as mean +- sd [min, max] over seeds."""
    results = [_result("original", 1, "author", 10, 0.40, 0.10),
               _result("original", 2, "author", 10, 0.20, 0.14),
               _result("original", 1, "ours", 1, 0.25, 0.08),
               _result("both", 1, "author", 10, 0.12, 0.985),
               _result("both", 2, "author", 10, 0.14, 0.975)]
    lines = tables.claims(results, "mnist")
    row = next(line for line in lines if line.startswith("| RAM, N = 1 |"))
    assert row == ("| RAM, N = 1 | 57.49 | 30.0 +- 14.1 [20.0, 40.0] (2 seeds) | 25.0 (1 seed) | - "
                   "| above our range by 17.5 (2 seeds) |")
    row = next(line for line in lines if line.startswith("| RAM + both, N = 50 |"))
    assert row == ("| RAM + both, N = 50 | 98.5 | 98.0 +- 0.7 [97.5, 98.5] (2 seeds) | - | - "
                   "| inside our range (2 seeds) |")
    assert not any(line.startswith("| RAM + intrinsic") for line in lines)  # not measured
    results += [_result("intrinsic", 1, "author", 10, 0.2, 0.9),
                _result("uncertainty", 1, "author", 10, 0.2, 0.5)]
    assert tables.paired(tables.by_seed(results, "author", 10), "author") == [
        "RAM + both minus RAM at N = 50 (the author's protocol), seed by seed: seed 1: +88.5, "
        "seed 2: +83.5 points; 86.0 +- 3.5 [83.5, 88.5] (2 seeds).", "",
        "RAM + intrinsic minus RAM + uncertainty at N = 50 (the author's protocol), seed by "
        "seed: seed 1: +40.0 points; 40.0 (1 seed).", ""]


def test_claims_compare_dynamic_sweeps_at_the_authors_exploration_rates():
    """A dynamic row only at an exploration rate the author reported (0.3, not 0.33), with
    the author's (mean glimpses, accuracy) beside ours over seeds."""
    point = lambda eps, g, a: {"exploration_rate": eps, "mean_glimpses": g, "accuracy": a}
    results = [_result("both", s, "author", 10, 0.1, 0.98,
                       {"released": [point(0.3, g, a), point(0.33, 9.0, 0.5)]})
               for s, g, a in ((1, 4.5, 0.97), (2, 5.5, 0.99))]
    rows = [line for line in tables.claims(results, "mnist")
            if line.startswith("| RAM + both, dyn")]
    assert rows == ["| RAM + both, dynamic, eps 0.3 | 4.81 glimpses, 97.92 | 5.00 +- 0.71 "
                    "[4.50, 5.50] glimpses, 98.0 +- 1.4 [97.0, 99.0] (2 seeds) | - | - "
                    "| glimpses: inside our range (2 seeds); accuracy: inside our range "
                    "(2 seeds) |"]


def test_figure_draws_each_protocol_in_its_own_panel(tmp_path, monkeypatch):
    """Our protocol: every M's curves and the M = 1 sweeps of the spec rule (the M = 10 file
    also stores sweeps, on M-averaged predictions). The author's: the M = 10 curves and
    released-rule sweeps, with the author's points."""
    drawn = {}
    monkeypatch.setattr(report, "plot_accuracy_vs_glimpses",
                        lambda panels, title, path: drawn.update(panels=panels) or path)
    point = lambda g: [{"exploration_rate": 0.15, "mean_glimpses": g, "accuracy": 0.9}]
    for seed in (1, 2):
        for protocol, M, glimpses in (("ours", 1, 2.0 * seed), ("ours", 10, 40.0),
                                      ("author", 10, 3.0 * seed)):
            r = _result("both", seed, protocol, M, 0.1, 0.98,
                        {"spec": point(glimpses), "released": point(glimpses + 0.5)})
            path = tmp_path / r["run"] / f"{protocol}_M{M}.json"
            path.parent.mkdir(exist_ok=True)
            path.write_text(json.dumps(r))
    report.make_figures(str(tmp_path), str(tmp_path / "no_logs"), str(tmp_path / "plots"))
    ours, author = drawn["panels"]
    assert ours["dynamic"] == {"both (spec rule)": [point(2.0), point(4.0)]}
    assert set(ours["curves"]) == {"both", "both M=10"} and "paper_fixed" not in ours
    assert author["dynamic"] == {"both (released rule)": [point(3.5), point(6.5)]}
    assert set(author["curves"]) == {"both"}
    assert author["paper_fixed"] == {"both": {1: 11.57, 6: 98.99, 30: 98.5, 50: 98.5}}
    assert set(author["paper_dynamic"]) == {"both"}


def test_first_glimpse_table_sets_the_centre_start_beside_the_random_one():
    """N = 1 of the same checkpoints with a random and a centre start, per protocol, over
    seeds; a variant without centre-start measurements gets no row."""
    results = [_result("original", 1, "author", 10, 0.40, 0.10),
               _result("original", 2, "author", 10, 0.20, 0.14),
               _result("original", 1, "ours", 1, 0.25, 0.08),
               _result("both", 1, "author", 10, 0.12, 0.985)]
    for r, centre in zip(results[:3], (0.5, 0.6, 0.7)):
        r["centre_start"] = {"N": 1, "accuracy": centre}
    assert tables.first_glimpse(results, "mnist")[4:] == [
        "| RAM | 57.49 | 30.0 +- 14.1 [20.0, 40.0] (2 seeds) | 55.0 +- 7.1 [50.0, 60.0] (2 seeds) "
        "| 25.0 (1 seed) | 70.0 (1 seed) |", ""]
    assert tables.first_glimpse(results[3:], "mnist") == []


def test_groups_are_set_against_the_single_runs_of_the_same_variant():
    """Per variant, our protocol (M = 1): the groups' seeds beside the single runs' at N = 6
    and N = 50, and whether the groups' mean lies within the single runs' range; one single
    run has no range; a variant without single runs gets no row."""
    groups = [_result("both", 1, "ours", 1, 0.1, 0.97), _result("both", 2, "ours", 1, 0.1, 0.99),
              _result("original", 1, "ours", 1, 0.1, 0.2), _result("intrinsic", 1, "ours", 1,
                                                                    0.1, 0.9)]
    single = [_result("both", 1, "ours", 1, 0.1, 0.985), _result("both", 2, "ours", 1, 0.1, 0.99),
              _result("original", 1, "ours", 1, 0.1, 0.1)]
    rows = tables.groups_vs_single(groups, single, "mnist")[4:]
    assert rows == [
        "| RAM | 98.0 (1 seed) | 98.0 (1 seed) | - | 20.0 (1 seed) | 10.0 (1 seed) | - |",
        "| RAM + both | 98.0 +- 0.0 [98.0, 98.0] (2 seeds) | 98.0 +- 0.0 [98.0, 98.0] (2 seeds) "
        "| yes | 98.0 +- 1.4 [97.0, 99.0] (2 seeds) | 98.8 +- 0.4 [98.5, 99.0] (2 seeds) | no |",
        ""]
    assert tables.groups_vs_single(groups, [], "mnist") == []


def test_original_ram_past_T_has_a_row_per_study_that_measured_it():
    """One row per study with original RAM on the dataset (its seeds, N = 6, 30 and 50 under
    our protocol, M = 1, N = 1 and 50 under the author's, M = 10, "-" where not measured);
    studies of other variants add no row, and one study alone makes no table."""
    grid = [_result("original", 1, "ours", 1, 0.1, 0.2),
            _result("original", 2, "ours", 1, 0.1, 0.3),
            _result("original", 1, "author", 10, 0.1, 0.9),
            _result("both", 1, "ours", 1, 0.1, 0.98)]
    second = [_result("original", 6, "ours", 1, 0.1, 0.05)]
    other = [_result("both", 2, "ours", 1, 0.1, 0.97)]
    rows = tables.past_T_studies([("grid", grid), ("other", other), ("second", second)],
                                  "mnist")[4:]
    assert rows == ["| grid | 1, 2 | 3, 3 | 98.0 +- 0.0 [98.0, 98.0] | 98.0 +- 0.0 [98.0, 98.0] "
                    "| 25.0 +- 7.1 [20.0, 30.0] | 10.0 | 90.0 |",
                    "| second | 6 | 3 | 98.0 | 98.0 | 5.0 | - | - |", ""]
    assert tables.past_T_studies([("grid", grid), ("other", other)], "mnist") == []


def _write(results_dir, r, dataset="mnist"):
    """Write a results file of `dataset` where read_results finds it."""
    r = dict(r, dataset=dataset, run=r["run"].replace("mnist", dataset),
             config=dict(r["config"], dataset=dataset))
    path = results_dir / r["run"] / f"{r['protocol']}_M{r['fixed']['M']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(r))


def test_the_tables_of_a_dataset_hold_only_that_datasets_runs(tmp_path):
    """The studies beside the grid (single runs, a second group) are split by dataset like
    the grid: MNIST single runs do not appear in the translated tables."""
    _write(tmp_path, _result("original", 1, "ours", 1, 0.1, 0.2))
    _write(tmp_path, _result("original", 1, "ours", 1, 0.1, 0.4), "translated")
    _write(tmp_path / report.SINGLE_RUNS, _result("original", 1, "ours", 1, 0.1, 0.1))
    lines = report.results_markdown(str(tmp_path), {}).splitlines()
    past_T = [i for i, line in enumerate(lines) if line.startswith("Original RAM past T")]
    assert len(past_T) == 1 and "MNIST" in lines[past_T[0]]
    assert lines[past_T[0] + 4:past_T[0] + 6] == [
        "| the grid, trained as groups | 1 | 3 | 98.0 | 98.0 | 20.0 | - | - |",
        "| one process per run, before groups | 1 | 3 | 98.0 | 98.0 | 10.0 | - | - |"]
    vs_single = [line for line in lines if line.startswith("100 epochs trained in groups")]
    assert len(vs_single) == 1 and "translated" not in vs_single[0].lower()


def test_original_ram_trained_longer_sits_under_the_strong_study(tmp_path):
    """results/strong_longer (the same run names, more epochs) gets a past-T table beside the
    strong study's original RAM, a row each, named by their epochs; none without it."""
    for seed, (n50, later) in enumerate(((0.2, 0.4), (0.3, 0.5)), 1):
        r = _result("original", seed, "ours", 1, 0.1, n50)
        _write(tmp_path / "strong", dict(r, config=dict(r["config"], epochs=200)))
        _write(tmp_path / report.LONGER, dict(r, epoch=250, config=dict(r["config"], epochs=300),
                                              curve={"N": list(range(1, 51)),
                                                     "accuracy": [0.1] + [0.99] * 48 + [later]}))
    lines = report.results_markdown(str(tmp_path), {}).splitlines()
    assert "| the strong recipe, 200 epochs | 1, 2 | 3, 3 | 98.0 +- 0.0 [98.0, 98.0] | 98.0 +- " \
           "0.0 [98.0, 98.0] | 25.0 +- 7.1 [20.0, 30.0] | - | - |" in lines
    assert "| the strong recipe, 300 epochs | 1, 2 | 250, 250 | 99.0 +- 0.0 [99.0, 99.0] | " \
           "99.0 +- 0.0 [99.0, 99.0] | 45.0 +- 7.1 [40.0, 50.0] | - | - |" in lines
    (tmp_path / report.LONGER).rename(tmp_path / "elsewhere")
    assert not any("300 epochs" in line
                   for line in report.results_markdown(str(tmp_path), {}).splitlines())


def test_the_authors_number_is_placed_against_our_seed_range():
    assert tables.against(90.0, [95.0, 97.0]) == "below our range by 5.0 (2 seeds)"
    assert tables.against(4.81, [4.2, 4.5, 4.7], digits=2) == "above our range by 0.11 (3 seeds)"
    assert tables.against(96.0, [95.0, 97.0, None]) == "inside our range (2 seeds)"
    assert tables.against(96.0, [95.0]) == "-"  # one seed has no range
    assert tables.against(None, [95.0, 97.0]) == "-"


def test_a_markdown_table_has_a_header_a_separator_and_a_line_per_row():
    assert tables.markdown_table(["variant", "N = 6"], [["RAM", "98.0"], ["RAM + both", ""]]) == [
        "| variant | N = 6 |", "|---|---|", "| RAM | 98.0 |", "| RAM + both |  |"]


def test_the_committed_tables_are_made_from_the_committed_results():
    """results/tables.md is what the report writes from results/ (the logs are not
    committed: their summaries, results/first_epoch.json and training_curves.json, are)."""
    results = os.path.join(ROOT, "results")
    first_epoch, curves = (report._read_json(os.path.join(results, name))
                           for name in ("first_epoch.json", "training_curves.json"))
    cells = report.lambda_map_cells(results, os.path.join(ROOT, "no_such_logs"))
    with open(os.path.join(results, "tables.md")) as f:
        assert report.results_markdown(results, first_epoch, curves, cells) == f.read()


def test_recipe_table_pools_the_seeds_of_each_recipe_from_their_epochs_csv(tmp_path):
    """report.training_curves reads each run's validation curve; tables.recipe_table pools the
    seeds of a recipe: best accuracy and its epoch, and the curve at fixed epochs."""
    curves = {"mnist_ram_6_8x8_s2_k1_original_b128_seed1": [0.5, 0.9, 0.8],
              "mnist_ram_6_8x8_s2_k1_original_b128_seed2": [0.6, 0.7, 0.95],
              "mnist_ram_6_8x8_s2_k1_original_seed1": [0.4]}
    for name, accs in curves.items():
        os.makedirs(tmp_path / name)
        rows = [f"{e + 1},0,0,0,{a},3e-4" for e, a in enumerate(accs)]
        (tmp_path / name / "epochs.csv").write_text(
            "epoch,train_loss,train_acc,valid_loss,valid_acc,lr\n" + "\n".join(rows) + "\n")
    read = report.training_curves([str(tmp_path)])
    assert {k: v["valid_acc"] for k, v in read.items()} == curves
    assert all(v["train_acc"] == [0.0] * len(v["valid_acc"]) for v in read.values())
    text = tables.recipe_table(read)
    row = next(line for line in text.splitlines() if "_b128 |" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:5] == ["1, 2", "3, 3", "92.50 +- 3.54 [90.00, 95.00]", "2, 3"]
    assert tables.recipe_table({}) == ""


def test_curves_from_new_logs_join_the_committed_ones(tmp_path):
    """write_tables adds the curves of the runs in curve_logs (training accuracy included) to
    results/training_curves.json and replaces those of the same runs: the curves of studies
    whose logs are gone stay."""
    results, logs = tmp_path / "results", tmp_path / "logs"
    os.makedirs(results)
    kept = {"valid_acc": [0.5], "lr": [3e-4]}
    (results / "training_curves.json").write_text(json.dumps({
        "mnist_ram_6_8x8_s2_k1_original_seed1": kept,
        "translated_ram_6_12x12_s2_k3_original_seed1": {"valid_acc": [0.1], "lr": [3e-4]}}))
    run = logs / "translated_ram_6_12x12_s2_k3_original_seed1"
    os.makedirs(run)
    (run / "epochs.csv").write_text("epoch,train_loss,train_acc,valid_loss,valid_acc,lr\n"
                                    "1,2.0,0.3,1.9,0.4,3e-4\n2,1.0,0.7,1.1,0.6,3e-5\n")
    report.write_tables(str(results), str(tmp_path / "no_logs"), [str(logs)])
    assert json.loads((results / "training_curves.json").read_text()) == {
        "mnist_ram_6_8x8_s2_k1_original_seed1": kept,
        "translated_ram_6_12x12_s2_k3_original_seed1":
            {"train_acc": [0.3, 0.7], "valid_acc": [0.4, 0.6], "lr": [3e-4, 3e-5]}}
    # without logs the committed curves are read back unchanged
    before = (results / "training_curves.json").read_text()
    report.write_tables(str(results), str(tmp_path / "no_logs"), [str(tmp_path / "none")])
    assert (results / "training_curves.json").read_text() == before


def test_recipe_figure_draws_the_training_accuracy_where_every_seed_has_it(tmp_path,
                                                                           monkeypatch):
    """plot_recipes draws a dashed mean training accuracy for a recipe whose every seed has
    one, and none for a recipe with a seed without it (curves committed before it was kept)."""
    figs = []
    monkeypatch.setattr(figures, "_save", lambda fig, path: figs.append(fig) or path)
    with_train = [{"valid_acc": [0.96, 0.97], "lr": [3e-4, 3e-5], "train_acc": [0.95, 0.99]},
                  {"valid_acc": [0.96, 0.98], "lr": [3e-4, 3e-4], "train_acc": [0.97, 0.98]}]
    without = [{"valid_acc": [0.96, 0.97], "lr": [3e-4, 3e-4]}, with_train[0]]
    figures.plot_recipes({"a": with_train, "b": without}, "t", str(tmp_path / "r.png"))
    dashed = [line for line in figs[0].axes[0].get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 1
    assert list(dashed[0].get_ydata()) == pytest.approx([96.0, 98.5])
    assert dashed[0].get_color() == figs[0].axes[0].get_lines()[0].get_color()


def test_recipe_figure_draws_the_recipes_every_seed_trained_long_enough(tmp_path, monkeypatch):
    """recipes_<dataset>.png from results/training_curves.json: a recipe of original RAM (or
    of RAM + uncertainty with lambda_1 = 0, which trains as it) whose every seed has
    RECIPE_EPOCHS epochs, labelled by variant, loss weights and recipe tags; a recipe with one
    short seed, and the other variants, are left to the table; the file is written."""
    long, short = [0.9] * report.RECIPE_EPOCHS, [0.9] * (report.RECIPE_EPOCHS - 1)
    curve = lambda accs: {"valid_acc": accs, "lr": [3e-4] * (len(accs) - 2) + [3e-5] * 2}
    curves = {"mnist_ram_6_8x8_s2_k1_original_b128_seed1": curve(long),
              "mnist_ram_6_8x8_s2_k1_original_b128_seed2": curve(long + [0.95]),
              "mnist_ram_6_8x8_s2_k1_uncertainty_lu0_seed1": curve(long),
              "mnist_ram_6_8x8_s2_k1_uncertainty_b128_seed1": curve(long),
              "mnist_ram_6_8x8_s2_k1_both_b128_seed1": curve(long),
              "mnist_ram_6_8x8_s2_k1_original_std0.05_seed1": curve(long),
              "mnist_ram_6_8x8_s2_k1_original_std0.05_seed2": curve(short)}
    (tmp_path / "training_curves.json").write_text(json.dumps(curves))
    drawn = {}
    real = report.plot_recipes
    monkeypatch.setattr(report, "plot_recipes", lambda recipes, title, path:
                        drawn.update(recipes=recipes) or real(recipes, title, path))
    written = report.make_figures(str(tmp_path), str(tmp_path / "no_logs"),
                                  str(tmp_path / "plots"))
    assert str(tmp_path / "plots" / "recipes_mnist.png") in written
    assert (tmp_path / "plots" / "recipes_mnist.png").stat().st_size > 0
    assert drawn["recipes"] == {
        "RAM: b128": [curves["mnist_ram_6_8x8_s2_k1_original_b128_seed1"],
                      curves["mnist_ram_6_8x8_s2_k1_original_b128_seed2"]],
        "RAM + uncertainty, lambda_1 = 0: paper recipe":
            [curves["mnist_ram_6_8x8_s2_k1_uncertainty_lu0_seed1"]]}


def test_first_epoch_figure_is_redrawn_byte_for_byte_from_the_committed_curves(tmp_path):
    """make_figures keeps the first epoch's running accuracies in results/ and draws the figure
    from that file: without the logs, the same figure comes back, byte for byte."""
    logs, results = tmp_path / "logs", tmp_path / "results"
    os.makedirs(results)
    for variant in ("original", "both"):
        run = logs / f"mnist_ram_6_8x8_s2_k1_{variant}_seed1"
        os.makedirs(run)
        rows = [f"1,{i},{i},0.5,{0.1 + 0.01 * i + 0.001 * len(variant):.6f}" for i in range(1, 40)]
        (run / "train_iterations.csv").write_text(
            "epoch,iteration,global_step,running_loss,running_acc\n" + "\n".join(rows) + "\n")
        (run / "epochs.csv").write_text("epoch,train_loss,train_acc,valid_loss,valid_acc,lr\n"
                                        "1,0,0,0,0,3e-4\n")
    plots = [tmp_path / "a", tmp_path / "b"]
    report.make_figures(str(results), str(logs), str(plots[0]))
    curves = json.loads((results / report.FIRST_EPOCH_CURVES).read_text())
    assert curves["mnist"]["both"]["1"][-1] == 0.1 + 0.01 * 39 + 0.004
    report.make_figures(str(results), str(tmp_path / "no_logs"), str(plots[1]))
    png = [(p / "first_epoch_mnist.png").read_bytes() for p in plots]
    assert png[0] == png[1]


def test_uncertainty_trained_otherwise_sits_beside_the_uncertainty_and_both_variants():
    """RAM + uncertainty trained otherwise (fit only; released routing): N = 1, 2, 6, 50,
    then each eps of the released rule's sweeps, a column per study with runs of the dataset,
    then RAM + uncertainty and RAM + both of the grid (author's protocol), and the author's."""
    sweep = lambda g, a: {"released": [{"exploration_rate": 0.1, "mean_glimpses": g,
                                        "accuracy": a}]}
    fit = [_result("uncertainty", s, "author", 10, 0.1, 0.2 + 0.1 * s, sweep(1.5 + s, 0.5))
           for s in (1, 2)]
    released = [_result("uncertainty", 3, "author", 10, 0.3, 0.6, sweep(2.8, 0.7))]
    grid = [_result("uncertainty", 1, "author", 10, 0.1, 0.15, sweep(1.3, 0.3)),
            _result("both", 1, "author", 10, 0.1, 0.98, sweep(2.0, 0.9))]
    lines = tables.uncertainty_trained_otherwise({"fit only": fit, "released": released,
                                                  "none": []}, grid, "mnist")
    assert lines[2] == ("| measure | fit only | released | RAM + uncertainty | RAM + both "
                        "| the author's, RAM + uncertainty |")
    row = lambda start: next(line for line in lines if line.startswith(start))
    assert row("| N = 50 |") == ("| N = 50 | 35.0 +- 7.1 [30.0, 40.0] (2 seeds) | 60.0 (1 seed) "
                                 "| 15.0 (1 seed) | 98.0 (1 seed) | 10.0 |")
    assert row("| N = 1 |").startswith("| N = 1 | 10.0 +- 0.0 [10.0, 10.0] (2 seeds) | 30.0 ")
    assert row("| eps 0.1 |") == (
        "| eps 0.1 | 3.00 +- 0.71 [2.50, 3.50] glimpses, 50.0 +- 0.0 [50.0, 50.0] (2 seeds) "
        "| 2.80 glimpses, 70.0 (1 seed) | 1.30 glimpses, 30.0 (1 seed) "
        "| 2.00 glimpses, 90.0 (1 seed) | 1.9 glimpses, 67.14 |")
    assert tables.uncertainty_trained_otherwise({"fit only": []}, grid, "mnist") == []


def test_low_eps_mix_weighs_the_accuracy_at_each_step_by_where_minibatches_stop():
    """Three minibatches of four stop at step 1 and one at step 2: the mix is
    3/4 acc(N = 1) + 1/4 acc(N = 2), set beside the rule's accuracy; sweeps without the
    record of where minibatches stop are left out."""
    point = {"exploration_rate": 0.1, "mean_glimpses": 1.2, "accuracy": 0.3,
             "batch_stops": {"1": 3, "2": 1}}
    r = _result("uncertainty", 1, "author", 10, 0.2, 0.1, {"released": [point]})
    r["curve"]["accuracy"][1] = 0.6  # N = 2
    (row,) = [line for line in tables.low_eps([r], "mnist") if line.startswith("| 1 |")]
    assert row == "| 1 | 0.1 | 75.0 | 25.0 | 20.0 | 60.0 | 30.0 | 30.0 | +0.0 |"
    del point["batch_stops"]
    assert tables.low_eps([r], "mnist") == []


def test_lambda_map_cells_pool_each_cells_seeds_and_keep_the_first_epoch(tmp_path):
    """Each (lambda_1, lambda_2) cell of the map, from its runs' results files (our protocol,
    M = 1: N = 6, N = 50, e_t exactly 0, after training and after epoch 1) and logs (the
    running train accuracy at the end of epoch 1, kept in results/ for when the logs are
    gone); a cell at the dataset's default weights (no _lu/_li in the name) lands at those
    weights; the table and the heat maps."""
    from config import run_name
    results, logs = tmp_path / "results", tmp_path / "logs"
    cells = {(0.0, 0.1): (0.90, 0.50, 0.0), (1e-3, 0.01): (0.95, 0.94, 0.99)}
    for (l1, l2), (n6, n50, zero) in cells.items():
        for seed in (1, 2):
            cfg = settings("--uncertainty=True", "--intrinsic=True", f"--random_seed={seed}",
                           f"--lambda_uncertainty={l1}", f"--lambda_intrinsic={l2}")
            r = _result("both", seed, "ours", 1, 0.1, n50 + 0.01 * seed)
            r.update(run=run_name(cfg), config=vars(cfg))
            r["curve"]["accuracy"][5] = n6
            r["fixed"]["e_t_zero"] = zero
            _write(results / report.LAMBDA_MAP, r)
            # the checkpoint of epoch 1, evaluated in a folder of its own
            first = dict(r, epoch=1, curve={"N": r["curve"]["N"],
                                            "accuracy": [a - 0.5 for a in r["curve"]["accuracy"]]},
                         fixed=dict(r["fixed"], e_t_zero=zero / 2))
            _write(results / report.LAMBDA_EPOCH_1, first)
            os.makedirs(logs / r["run"])
            (logs / r["run"] / "train_iterations.csv").write_text(
                "epoch,iteration,global_step,running_loss,running_acc\n"
                f"1,1,1,0.5,0.2\n1,2,2,0.5,{0.3 + 0.1 * seed + l2}\n")
            (logs / r["run"] / "epochs.csv").write_text(
                "epoch,train_loss,train_acc,valid_loss,valid_acc,lr\n1,0,0,0,0,3e-4\n")
    assert "_lu" not in run_name(settings("--uncertainty=True", "--intrinsic=True",
                                          "--lambda_uncertainty=1e-5", "--lambda_intrinsic=0.1"))
    got = report.lambda_map_cells(str(results), str(logs))
    assert set(got) == set(cells)
    cell = got[(1e-3, 0.01)]
    assert cell["N = 6"] == {1: 95.0, 2: 95.0}
    assert cell["N = 50"] == pytest.approx({1: 95.0, 2: 96.0})
    assert cell["e_t exactly 0 at N = 6"] == {1: 99.0, 2: 99.0}
    assert cell["epoch 1, running train"] == pytest.approx({1: 41.0, 2: 51.0})
    assert cell["epoch 1: N = 6"] == pytest.approx({1: 45.0, 2: 45.0})
    assert cell["epoch 1: N = 50"] == pytest.approx({1: 45.0, 2: 46.0})
    assert cell["epoch 1: e_t exactly 0 at N = 6"] == {1: 49.5, 2: 49.5}
    assert report.lambda_map_cells(str(results), str(tmp_path / "no_logs")) == got
    row = next(line for line in tables.lambda_map(got) if line.startswith("| 0.001 | 0.01 |"))
    assert row == ("| 0.001 | 0.01 | 1, 2 | 95.0 +- 0.0 [95.0, 95.0] | 95.5 +- 0.7 [95.0, 96.0] "
                   "| 99.0 +- 0.0 [99.0, 99.0] | 46.0 +- 7.1 [41.0, 51.0] | 45.0 +- 0.0 [45.0, "
                   "45.0] | 45.5 +- 0.7 [45.0, 46.0] | 49.5 +- 0.0 [49.5, 49.5] |")
    png = report.make_figures(str(results), str(logs), str(tmp_path / "plots"),
                              lambda_cells=got)[0]
    assert png.endswith("lambda_map_mnist.png")
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_paper_and_strong_recipes_sit_side_by_side_per_protocol(tmp_path, monkeypatch):
    """The strong study (results/strong) against the grid, variant by variant: accuracy at
    N = 1, 2, 3, T, 30, 50 under each protocol, the dynamic sweeps (spec rule under ours, released
    under the author's), the strong runs' paired differences; its figure glimpses_<dataset>_
    strong.png; nothing for a dataset without strong runs."""
    point = lambda g, a: [{"exploration_rate": 0.1, "mean_glimpses": g, "accuracy": a}]
    for seed in (1, 2):
        for protocol, M in (("ours", 1), ("author", 10)):
            sweep = {"spec": point(2.0, 0.9), "released": point(3.0, 0.8)}
            _write(tmp_path, _result("both", seed, protocol, M, 0.2, 0.9, sweep))
            strong = _result("both", seed, protocol, M, 0.3, 0.95 + 0.01 * seed,
                             {"spec": point(2.5 + seed, 0.97), "released": point(4.0, 0.99)})
            _write(tmp_path / "strong", dict(strong, run=strong["run"] + "_b128"))
            _write(tmp_path / "strong", _result("original", seed, protocol, M, 0.1, 0.5))
    lines = report.results_markdown(str(tmp_path), {}).splitlines()
    assert "| RAM + both | N = 50 | 90.0 +- 0.0 [90.0, 90.0] (2 seeds) | 96.5 +- 0.7 [96.0, " \
           "97.0] (2 seeds) | 90.0 +- 0.0 [90.0, 90.0] (2 seeds) | 96.5 +- 0.7 [96.0, 97.0] " \
           "(2 seeds) |" in lines
    assert "| RAM | N = 6 | - | 98.0 +- 0.0 [98.0, 98.0] (2 seeds) | - | 98.0 +- 0.0 [98.0, " \
           "98.0] (2 seeds) |" in lines
    assert [line.split(" | ")[1] for line in lines if line.startswith("| RAM + both | N = ")] \
        == ["N = 1", "N = 2", "N = 3", "N = 6", "N = 30", "N = 50"]
    assert ("| RAM + both | 0.1 | 2.00 +- 0.00 [2.00, 2.00] glimpses, 90.0 +- 0.0 [90.0, 90.0] "
            "(2 seeds) | 4.00 +- 0.71 [3.50, 4.50] glimpses, 97.0 +- 0.0 [97.0, 97.0] (2 seeds) "
            "| 3.00 +- 0.00 [3.00, 3.00] glimpses, 80.0 +- 0.0 [80.0, 80.0] (2 seeds) | 4.00 +- "
            "0.00 [4.00, 4.00] glimpses, 99.0 +- 0.0 [99.0, 99.0] (2 seeds) |") in lines
    assert ("The strong recipe: RAM + both minus RAM at N = 50 (our protocol), seed by seed: "
            "seed 1: +46.0, seed 2: +47.0 points; 46.5 +- 0.7 [46.0, 47.0] (2 seeds).") in lines
    assert tables.paper_vs_strong(report.read_results(str(tmp_path)),
                                  report.read_results(str(tmp_path / "strong")),
                                  "translated") == []
    monkeypatch.setattr(report, "plot_accuracy_vs_glimpses", lambda panels, title, path: path)
    written = report.make_figures(str(tmp_path), str(tmp_path / "no_logs"), str(tmp_path / "p"))
    assert [os.path.basename(p) for p in written if "glimpses_" in p] == [
        "glimpses_mnist.png", "glimpses_mnist_strong.png"]


# The README's results, each a phrase around "mean +- sd" and where it comes from: the
# results folder, dataset, protocol, M, variant and N.
README_CLAIMS = [
    (r"original RAM ({}) against 99.12%", "", "mnist", "author", 10, "original", 6),
    (r"collapses \(({}) at N = 50\)", "", "mnist", "author", 10, "original", 50),
    (r"RAM \+ both keeps ({})", "", "mnist", "author", 10, "both", 50),
    (r"original RAM ({}), short of 99%", "strong", "mnist", "ours", 1, "original", 6),
    (r"Translated MNIST, original RAM: ({})", "strong", "translated", "ours", 1, "original", 6)]


@pytest.mark.parametrize("phrase, folder, dataset, protocol, M, variant, n", README_CLAIMS,
                         ids=[f"{c[1] or 'paper'}-{c[2]}-{c[5]}-N{c[6]}-{c[3]}"
                              for c in README_CLAIMS])
def test_the_readmes_results_are_those_of_the_committed_results(phrase, folder, dataset,
                                                                 protocol, M, variant, n):
    """Each mean +- sd over seeds that the README states is the one the committed results
    files give, to the README's one decimal."""
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = " ".join(f.read().split())
    stated = re.search(phrase.format(r"\d+\.\d+%? \+- \d+\.\d+%?"), readme)
    assert stated, phrase
    results = [r for r in report.read_results(os.path.join(ROOT, "results", folder))
               if r["dataset"] == dataset]
    s = tables.spread([tables.at(r, n) for r in
                       tables.by_seed(results, protocol, M)[variant].values()])
    assert s.n == 5
    assert stated.group(1).replace("%", "").split() == [f"{s.mean:.1f}", "+-", f"{s.sd:.1f}"]
