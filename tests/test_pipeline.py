"""The one-command pipeline: `bash test_script.sh --quick` end to end, run twice (the second
run must redo nothing), and the results notebook executed on its outputs."""
import glob
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def quick_pipeline(tmp_path_factory):
    """A copy of the project in a temporary folder (the data linked, not copied) after
    `bash test_script.sh --quick`; returns (folder, output of the run)."""
    root = tmp_path_factory.mktemp("project")
    for f in glob.glob(os.path.join(REPO, "*.py")) + [os.path.join(REPO, "test_script.sh")]:
        shutil.copy(f, root)
    shutil.copytree(os.path.join(REPO, "notebooks"), root / "notebooks")
    os.symlink(os.path.join(REPO, "data"), root / "data")
    env = dict(os.environ, PYTHON=sys.executable)
    run = subprocess.run(["bash", "test_script.sh", "--quick"], cwd=root, env=env,
                         capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stderr[-3000:]
    return root, run.stdout


def test_quick_pipeline_writes_every_file_it_names(quick_pipeline):
    root, out = quick_pipeline
    named = re.findall(r"(?:results written to|wrote) (\S+)", out)
    assert len(named) >= 8 * 2  # M = 1 and M = 10 per run
    for path in named:
        assert os.path.getsize(root / path) > 0, path
    plots = {os.path.basename(p) for p in named if "/plots/" in p}
    assert {"first_epoch_mnist.png", "first_epoch_translated.png", "glimpses_mnist.png",
            "glimpses_translated.png"} <= plots
    assert sum(p.endswith(".gif") for p in plots) == 8
    pretrained = sorted(os.path.basename(p) for p in named if "/pretrained/" in p)
    assert len(pretrained) == 16  # each run's best and latest checkpoints
    assert sum(p.endswith("_latest.pt") for p in pretrained) == 8
    # Every variant of both datasets has a curve with M = 1 and M = 10 under our protocol and
    # with M = 10 under the author's (on the latest checkpoint), and the two with the
    # uncertainty term have dynamic sweeps with both stopping rules under each.
    results = glob.glob(str(root / "runs_quick/results/*/best-epoch1_N6_M*_curve8*.json"))
    assert len(results) == 16
    assert len([r for r in results if "dynamic-spec-released" in r]) == 4 * 2
    author = glob.glob(str(root / "runs_quick/results/*/latest-epoch1_N6_M10_curve8*_author.json"))
    assert len(author) == 8
    assert len([r for r in author if "dynamic-released-spec" in r]) == 4
    assert all(json.load(open(r))["protocol"] == "author" for r in author)


def test_a_second_run_redoes_only_what_is_missing(quick_pipeline):
    """With one run's evaluations removed, a second run skips the seven finished runs without
    touching their files, resumes the eighth from its checkpoint (nothing left to train) and
    redoes only its evaluations."""
    root, _ = quick_pipeline
    removed = root / "runs_quick/results/mnist_ram_6_8x8_s2_k1_both_seed1_subset400"
    shutil.rmtree(removed)
    before = {p: os.path.getmtime(p) for p in glob.glob(str(root / "runs_quick/**/*.*"),
                                                           recursive=True)
              if "/plots/" not in p and "/logs/" not in p and "/pretrained/" not in p
              and not p.endswith(("tables.md", "first_epoch.json"))}  # redrawn every time
    run = subprocess.run(["bash", "test_script.sh", "--quick"], cwd=root, capture_output=True,
                         text=True, timeout=600, env=dict(os.environ, PYTHON=sys.executable))
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("done: evaluations") == 7
    assert run.stdout.count("done: the author's protocol") == 7
    assert "resuming mnist_ram_6_8x8_s2_k1_both_seed1_subset400" in run.stdout
    assert "epoch 1/1" not in run.stdout  # no training at all
    assert len(glob.glob(str(removed / "*.json"))) == 3
    assert {p: os.path.getmtime(p) for p in before} == before


def test_bad_argument_is_refused(tmp_path):
    run = subprocess.run(["bash", os.path.join(REPO, "test_script.sh"), "--quik"],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "usage" in run.stderr


def test_notebook_runs_on_the_quick_outputs(quick_pipeline):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient
    root, _ = quick_pipeline
    ckpt = glob.glob(str(root / "runs_quick/ckpt/mnist_*_both_*_best.pt"))[0]
    os.environ.update(RAM_RESULTS_DIR=str(root / "runs_quick/results"),
                      RAM_FIRST_EPOCH_LOGS=str(root / "runs_quick/logs"),
                      RAM_PLOTS_DIR=str(root / "notebook_plots"), RAM_CKPT=ckpt,
                      RAM_PRETRAINED_DIR=str(root / "runs_quick/pretrained"))
    nb = nbformat.read(str(root / "notebooks/results.ipynb"), as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(root / "notebooks")}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs)
    assert "16 results files" in text or "results files" in text
    assert "released" in text  # the dynamic table
    assert "may stop" in text and len(re.findall(r"^ +8 ", text, re.M)) == 2  # stop_profile, 2 eps
    first_step_row = r"^(mnist|translated)_\S+_both_seed1\S* +\d\.\d\d +\d+\.\d +(?:\d+\.\d|nan)$"
    assert re.findall(first_step_row, text, re.M) == ["mnist", "translated"]  # seed by seed
    assert "l_0 = 0 %" in text and "l_0 ~ U(-1, 1)^2 %" in text  # the first-glimpse cell
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if "image/png" in o.get("data", {})]
    assert len(images) == 5  # four figures and the glimpse picture
    assert os.path.exists(root / "notebook_plots/notebook_glimpses.png")


def test_tables_hold_the_numbers_of_the_results_files(quick_pipeline):
    """results/tables.md (the README's tables) and first_epoch.json are made from the run
    files: the running accuracy at the end of each first epoch, and N = 6 with M = 1 and 10."""
    from argparse import Namespace

    from config import variant_name
    from utils import DATASET_TITLES, LABELS
    root, _ = quick_pipeline
    results = root / "runs_quick/results"
    first = json.loads((results / "first_epoch.json").read_text())
    for dataset in ("mnist", "translated"):
        assert set(first[dataset]) == {"original", "uncertainty", "intrinsic", "both"}
        for variant, by_seed in first[dataset].items():
            csv, = glob.glob(str(root / f"runs_quick/logs/{dataset}_ram_*_{variant}_seed1_"
                                        "subset400/train_iterations.csv"))
            last = open(csv).read().strip().splitlines()[-1].split(",")
            assert by_seed == {"1": float(last[4])}
    tables = (results / "tables.md").read_text()
    first_rows = [line for line in tables.splitlines() if line.startswith("| RAM")][:4]
    assert f"{100 * first['mnist']['both']['1']:.1f} +- 0.0 (64)" in first_rows[3]
    paths = glob.glob(str(results / "*/best-epoch1_N6_M1_curve8*.json"))
    assert len(paths) == 8
    for path in paths:
        r = json.loads(open(path).read())
        m10 = json.loads(open(path.replace("_M1_", "_M10_")).read())
        section = tables.split(f"Under our protocol, {DATASET_TITLES[r['dataset']]}")[1]
        label = LABELS[variant_name(Namespace(**r["config"]))]
        row = next(line for line in section.splitlines()
                   if line.startswith(f"| {label} | 1 | best, epoch 1 |"))  # seed 1
        cells = [c.strip().split(" ")[0] for c in row.strip("|").split("|")]
        assert cells[4] == f"{100 * r['curve']['accuracy'][5]:.1f}"
        assert cells[5] == f"{100 * m10['curve']['accuracy'][5]:.1f}"


def _result(variant, seed, protocol, M, n1, n50, sweep=None):
    """A results file's contents with a two-point curve at N = 1 and N = 50 (the rest 98%)."""
    from config import get_config, run_name
    flags = {"original": [], "uncertainty": ["--uncertainty=True"],
             "intrinsic": ["--intrinsic=True"],
             "both": ["--uncertainty=True", "--intrinsic=True"]}[variant]
    cfg = get_config(flags + [f"--random_seed={seed}", f"--protocol={protocol}"])
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
    from utils import _claims, _paired, _by_seed
    results = [_result("original", 1, "author", 10, 0.40, 0.10),
               _result("original", 2, "author", 10, 0.20, 0.14),
               _result("original", 1, "ours", 1, 0.25, 0.08),
               _result("both", 1, "author", 10, 0.12, 0.985),
               _result("both", 2, "author", 10, 0.14, 0.975)]
    lines = _claims(results, "mnist")
    row = next(line for line in lines if line.startswith("| RAM, N = 1 |"))
    assert row == "| RAM, N = 1 | 57.49 | 30.0 +- 14.1 [20.0, 40.0] (2 seeds) | 25.0 (1 seed) | - |"
    row = next(line for line in lines if line.startswith("| RAM + both, N = 50 |"))
    assert row == "| RAM + both, N = 50 | 98.5 | 98.0 +- 0.7 [97.5, 98.5] (2 seeds) | - | - |"
    assert not any(line.startswith("| RAM + intrinsic") for line in lines)  # not measured
    assert _paired(_by_seed(results, "author", 10), "author") == [
        "RAM + both minus RAM at N = 50 (the author's protocol), seed by seed: seed 1: +88.5, "
        "seed 2: +83.5 points.", ""]


def test_claims_compare_dynamic_sweeps_at_the_authors_exploration_rates():
    from utils import _claims
    point = lambda eps, g, a: {"exploration_rate": eps, "mean_glimpses": g, "accuracy": a}
    results = [_result("both", s, "author", 10, 0.1, 0.98,
                       {"released": [point(0.3, g, a), point(0.33, 9.0, 0.5)]})
               for s, g, a in ((1, 4.5, 0.97), (2, 5.5, 0.99))]
    rows = [line for line in _claims(results, "mnist") if line.startswith("| RAM + both, dyn")]
    assert rows == ["| RAM + both, dynamic, eps 0.3 | 4.81 glimpses, 97.92 | 5.00 +- 0.71 "
                    "[4.50, 5.50] glimpses, 98.0 +- 1.4 [97.0, 99.0] (2 seeds) | - | - |"]


def test_figure_draws_each_protocol_in_its_own_panel(tmp_path, monkeypatch):
    """Our protocol: every M's curves and the M = 1 sweeps of the spec rule (the M = 10 file
    also stores sweeps, on M-averaged predictions). The author's: the M = 10 curves and
    released-rule sweeps, with the author's points."""
    import utils
    drawn = {}
    monkeypatch.setattr(utils, "plot_accuracy_vs_glimpses",
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
    utils.make_figures(str(tmp_path), str(tmp_path / "no_logs"), str(tmp_path / "plots"))
    ours, author = drawn["panels"]
    assert ours["dynamic"] == {"both (spec rule)": [point(2.0), point(4.0)]}
    assert set(ours["curves"]) == {"both", "both M=10"} and "paper_fixed" not in ours
    assert author["dynamic"] == {"both (released rule)": [point(3.5), point(6.5)]}
    assert set(author["curves"]) == {"both"}
    assert author["paper_fixed"] == {"both": {1: 11.57, 6: 98.99, 30: 98.5, 50: 98.5}}
    assert set(author["paper_dynamic"]) == {"both"}
