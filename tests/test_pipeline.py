"""The one-command pipeline: `bash test_script.sh --quick` end to end (training, evaluation,
then report.py's figures, tables and pretrained export), run twice (the second run must redo
nothing), and the results notebook executed on its outputs."""
import glob
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.fixture(scope="module")
def quick_pipeline(tmp_path_factory):
    """A copy of the project in a temporary folder (the data linked, not copied) after
    `bash test_script.sh --quick`; returns (folder, output of the run)."""
    root = tmp_path_factory.mktemp("project")
    for f in glob.glob(os.path.join(ROOT, "*.py")) + [os.path.join(ROOT, "test_script.sh")]:
        shutil.copy(f, root)
    for folder in ("notebooks", "sweeps"):
        shutil.copytree(os.path.join(ROOT, folder), root / folder)
    os.symlink(os.path.join(ROOT, "data"), root / "data")
    env = dict(os.environ, PYTHON=sys.executable)
    run = subprocess.run(["bash", "test_script.sh", "--quick"], cwd=root, env=env,
                         capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stderr[-3000:]
    return root, run.stdout


def test_quick_pipeline_writes_every_file_it_names(quick_pipeline):
    root, out = quick_pipeline
    named = re.findall(r"wrote (\S+)", out)  # the report's files (the tasks log their own)
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
    """With one run's evaluations removed, a second run trains nothing, leaves the files of
    the seven other runs untouched, and redoes only the eighth's evaluations (the report,
    which the first run made, is left out: it is drawn anew every time)."""
    root, _ = quick_pipeline
    removed = root / "runs_quick/results/mnist_ram_6_8x8_s2_k1_both_seed1_subset400"
    shutil.rmtree(removed)
    before = {p: os.path.getmtime(p) for p in glob.glob(str(root / "runs_quick/**/*.*"),
                                                           recursive=True)
              if "/plots/" not in p and "/logs/" not in p and "/pretrained/" not in p
              and not p.endswith(("tables.md", "first_epoch.json"))}  # redrawn every time
    run = subprocess.run(["bash", "test_script.sh", "--quick", "--report=False"], cwd=root,
                         capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, PYTHON=sys.executable))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "8 runs: 8 trained, 0 to train in 0 groups" in run.stdout
    assert run.stdout.count("protocol evaluated") == 2
    assert "mnist_ram_6_8x8_s2_k1_both_seed1_subset400: ours protocol evaluated" in run.stdout
    assert len(glob.glob(str(removed / "*.json"))) == 3
    assert {p: os.path.getmtime(p) for p in before} == before


# The figures of plots/ the notebook shows, by the start of their names.
NOTEBOOK_FIGURES = ("first_epoch", "glimpses", "recipes", "lambda_map")


def _outputs(nb):
    """The text a notebook's code cells printed, and their PNG outputs."""
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    return ("".join(o.get("text", "") for o in outputs),
            [o for o in outputs if "image/png" in o.get("data", {})])


def test_notebook_runs_on_the_quick_outputs(quick_pipeline, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient
    root, _ = quick_pipeline
    ckpt = glob.glob(str(root / "runs_quick/ckpt/mnist_*_both_*_best.pt"))[0]
    results = root / "runs_quick/results"
    for name, value in (("RAM_RESULTS_DIR", results), ("RAM_CKPT", ckpt),
                        ("RAM_FIRST_EPOCH_LOGS", root / "runs_quick/logs"),
                        ("RAM_PLOTS_DIR", root / "notebook_plots"),
                        ("RAM_PRETRAINED_DIR", root / "runs_quick/pretrained")):
        monkeypatch.setenv(name, str(value))
    nb = nbformat.read(str(root / "notebooks/results.ipynb"), as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(root / "notebooks")}}).execute()
    text, images = _outputs(nb)
    # 8 runs, each evaluated three times (ours with M = 1 and M = 10, the author's)
    assert len(glob.glob(str(results / "*/*.json"))) == 24
    assert text.startswith(f"24 results files in {results}\n")
    assert "released" in text  # the dynamic table
    assert "may stop" in text and len(re.findall(r"^ +8 ", text, re.M)) == 2  # stop_profile, 2 eps
    first_step_row = r"^(mnist|translated)_\S+_both_seed1\S* +\d\.\d\d +\d+\.\d +(?:\d+\.\d|nan)$"
    assert re.findall(first_step_row, text, re.M) == ["mnist", "translated"]  # seed by seed
    assert "l_0 = 0 %" in text and "l_0 ~ U(-1, 1)^2 %" in text  # the first-glimpse cell
    assert len(images) == 5  # four figures and the glimpse picture
    redrawn = re.findall(r"^(\S+\.png)$", text, re.M)  # printed above each figure
    assert redrawn == [str(root / "notebook_plots" / name) for name in (
        "first_epoch_mnist.png", "first_epoch_translated.png", "glimpses_mnist.png",
        "glimpses_translated.png")]


def test_the_committed_notebook_shows_the_committed_results():
    """notebooks/results.ipynb is committed run on the committed results, so that a code host
    shows its tables and figures; what it printed names no folder of the machine it ran on."""
    nbformat = pytest.importorskip("nbformat")
    from evaluate import read_results
    nb = nbformat.read(os.path.join(ROOT, "notebooks", "results.ipynb"), as_version=4)
    assert all(c.outputs for c in nb.cells if c.cell_type == "code")
    text, images = _outputs(nb)
    results = len(read_results(os.path.join(ROOT, "results")))
    assert text.startswith(f"{results} results files in ../results\n")
    # each figure's path printed above it, redrawn or "(not redrawn: its data is not here)"
    shown = sorted(re.findall(r"^\.\./plots/(\S+\.png)(?: \(not redrawn.*\))?$", text, re.M))
    assert shown == sorted(os.path.basename(p) for name in NOTEBOOK_FIGURES
                           for p in glob.glob(os.path.join(ROOT, "plots", f"{name}_*.png")))
    assert len(images) == len(shown) + 1  # the figures and the glimpse picture
    assert re.search(r"(?<![\w.])/[\w.-]+/", text) is None  # no absolute path


def test_tables_hold_the_numbers_of_the_results_files(quick_pipeline):
    """results/tables.md (the README's tables) and first_epoch.json are made from the run
    files: the running accuracy at the end of each first epoch, and N = 6 with M = 1 and 10."""
    from argparse import Namespace

    from config import variant_name
    from figures import DATASET_TITLES, LABELS
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

