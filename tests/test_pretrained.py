"""The shipped checkpoints in pretrained/ still give the test accuracy recorded when they were
exported (export.export_pretrained), loaded through model.load_pretrained as the model code is
now, and through `python main.py --is_train=False`."""
import glob
import json
import os
import re

import pytest
import torch

import model as model_module
import report
from config import TRAINING
from conftest import DATA, ROOT, cli, run_main
from evaluate import read_results
from export import first_batch_accuracy
from model import load_pretrained
from utils import PATH_SETTINGS, load_checkpoint, load_glimpse_trace

SHIPPED = sorted(glob.glob(os.path.join(ROOT, "pretrained", "*.pt")))  # best and latest
SHIPPED_BEST = [p for p in SHIPPED if p.endswith("_best.pt")]


def test_every_evaluated_checkpoint_is_shipped():
    """Each checkpoint with results in results/ and its strong studies (a run's best, and its
    latest: the last epoch of a run that went to the end) ships in pretrained/, of the epoch
    its results are of; and no other checkpoint is shipped."""
    evaluated = {(r["run"], r["checkpoint_kind"]): r["epoch"]
                 for folder in ("", *report.STRONG)
                 for r in read_results(os.path.join(ROOT, "results", folder))}
    shipped = {tuple(os.path.basename(p)[:-len(".pt")].rsplit("_", 1)): load_pretrained(p).epoch
               for p in SHIPPED}
    assert evaluated == shipped


def test_pretrained_stays_under_its_size_limit():
    """The whole folder stays under 130 MB (10^6 bytes each), the strong study's files
    included: a clone must not grow without bound with every study shipped."""
    assert sum(os.path.getsize(p) for p in SHIPPED) < 130e6


def test_the_readme_states_the_size_of_pretrained():
    """The README's "`pretrained/` (N MB)" is the folder's size in 10^6 bytes, rounded."""
    with open(os.path.join(ROOT, "README.md")) as f:
        stated = re.search(r"`pretrained/` \((\d+) MB\)", f.read())
    assert stated, "the README no longer states the size of pretrained/"
    assert int(stated.group(1)) == round(sum(os.path.getsize(p) for p in SHIPPED) / 1e6)


@pytest.mark.parametrize("path", SHIPPED, ids=os.path.basename)
def test_shipped_checkpoint_gives_its_recorded_accuracy(path):
    """A shipped file holds only what testing needs, and its model still scores the accuracy
    recorded at export on the first 1,000 test images."""
    ckpt = load_checkpoint(path)
    assert set(ckpt) == {"config", "model", "epoch", "best_valid_acc", "recorded"}
    # no folder of the machine that trained it
    assert not any(os.path.isabs(ckpt["config"].get(k) or "") for k in PATH_SETTINGS)
    model, cfg, epoch = load_pretrained(path)
    assert not model.training and epoch == ckpt["epoch"]
    cfg.data_dir = DATA
    # 1,000 images: a float rounding that differs on another CPU may flip a close call or two.
    assert first_batch_accuracy(model, cfg) == pytest.approx(
        ckpt["recorded"]["first_1000_accuracy"], abs=0.003)


@pytest.mark.skipif(not SHIPPED_BEST, reason="no checkpoint shipped yet")
def test_main_tests_a_shipped_checkpoint(tmp_path):
    """`python main.py --is_train=False --ckpt_dir=pretrained`, with the run's training flags,
    on the whole test set prints the recorded accuracy (the MNIST checkpoint with the most
    terms, of a recipe beyond the paper's where one ships: its flags name it; a few seconds)."""
    path = sorted(SHIPPED_BEST, key=lambda p: ("translated" in p, "both" not in p))[0]
    cfg = load_pretrained(path).settings
    flags = [f"--{k}={getattr(cfg, k)}" for k in TRAINING if getattr(cfg, k) is not None]
    code, out, err = cli("--is_train=False", f"--ckpt_dir={os.path.dirname(path)}",
                         f"--results_dir={tmp_path}", *flags, timeout=600)
    assert code == 0, err[-2000:]
    printed = float(re.search(r"test accuracy ([\d.]+)%", out).group(1))
    assert printed == pytest.approx(100 * load_checkpoint(path)["recorded"]["test_accuracy"],
                                    abs=0.1)


@pytest.mark.skipif(not SHIPPED_BEST, reason="no checkpoint shipped yet")
def test_checkpoint_flag_scores_a_shipped_file_on_its_first_images(tmp_path):
    """--checkpoint needs no training flags: the file names the run. --num_test=1000 under our
    protocol gives the accuracy recorded on the first 1,000 images of a full evaluation, and
    the results file records the paths inside the repository relative to it; under the
    author's protocol the results file says so in its name and its contents."""
    path = os.path.join(ROOT, "pretrained", "mnist_ram_6_8x8_s2_k1_both_seed1_best.pt")
    ckpt = load_checkpoint(path)
    run = "mnist_ram_6_8x8_s2_k1_both_seed1"
    common = ["--is_train=False", f"--checkpoint={path}", f"--results_dir={tmp_path}"]
    code, _, err = run_main(*common, "--num_test=1000")
    assert code == 0, err[-2000:]
    with open(tmp_path / run / f"best-epoch{ckpt['epoch']}_N6_M1_first1000.json") as f:
        ours = json.load(f)
    assert ours["fixed"]["accuracy"] == pytest.approx(ckpt["recorded"]["first_1000_accuracy"],
                                                      abs=0.003)
    assert (ours["protocol"], ours["num_test_images"], ours["run"]) == ("ours", 1000, run)
    # paths inside the repository relative to it, others absolute: no folder of this machine
    shipped = f"pretrained/{run}_best.pt"
    assert (ours["checkpoint"], ours["config"]["checkpoint"]) == (shipped, shipped)
    assert (ours["config"]["data_dir"], ours["config"]["results_dir"]) == ("data", str(tmp_path))
    code, _, err = run_main(*common, "--num_test=64", "--protocol=author", "--M", "2",
                            "--curve=True", "--max_glimpses=8", "--dynamic=True",
                            "--exploration_rate", "0", "0.3")
    assert code == 0, err[-2000:]
    name = f"best-epoch{ckpt['epoch']}_N6_M2_curve8_dynamic-released_first64_author.json"
    with open(tmp_path / run / name) as f:
        author = json.load(f)
    assert (author["protocol"], author["eval_batch_size"], author["num_test_images"]) == (
        "author", 32, 64)
    assert author["fixed"]["accuracy"] == author["curve"]["accuracy"][5]
    assert list(author["dynamic"]) == ["max_glimpses", "batch_size", "released"]
    assert author["dynamic"]["released"][0]["mean_glimpses"] == 1.0  # eps 0 stops at once


@pytest.mark.skipif(not SHIPPED_BEST, reason="no checkpoint shipped yet")
def test_each_protocol_keeps_the_trace_of_its_first_batch(tmp_path, monkeypatch):
    """The glimpse trace beside an evaluation is named by its protocol (the author's does not
    replace ours), and is a record of the evaluation's first batch: on 9 test images (one
    batch under either protocol), the very locations the evaluation drew for them."""
    forward, drawn = model_module.RecurrentAttention.forward, []

    def recording(self, x, num_glimpses, noise=None):
        out = forward(self, x, num_glimpses, noise)
        drawn.append(out.locations[0].clone())
        return out
    monkeypatch.setattr(model_module.RecurrentAttention, "forward", recording)
    run = "mnist_ram_6_8x8_s2_k1_original_seed2"
    path = os.path.join(ROOT, "pretrained", f"{run}_best.pt")
    epoch = load_pretrained(path).epoch
    traced = {}
    for protocol, suffix in (("ours", ""), ("author", "_author")):
        drawn.clear()
        code, _, err = run_main("--is_train=False", f"--checkpoint={path}", "--num_test=9",
                                f"--results_dir={tmp_path}", f"--protocol={protocol}")
        assert code == 0, err[-2000:]
        _, evaluation, trace_run = drawn  # the centre start, the evaluation, the trace
        trace = load_glimpse_trace(tmp_path / run / f"glimpses_best-epoch{epoch}_N6_first9"
                                                    f"{suffix}.pt")
        assert evaluation.shape == (7, 9, 2)
        assert torch.equal(trace["locations"], evaluation) and torch.equal(trace_run, evaluation)
        traced[protocol] = trace["locations"]
    assert not torch.equal(traced["ours"], traced["author"])


def _evaluated_copy(tmp_path, run, kinds):
    """The shipped checkpoints `kinds` of `run` copied to tmp_path/ckpt, and its results file of
    our protocol at M = 1 rewritten to name that copy, in tmp_path/results: (folder, result)."""
    import shutil
    ckpt_dir, results = tmp_path / "ckpt", tmp_path / "results"
    os.makedirs(ckpt_dir)
    for kind in kinds:
        shutil.copy(os.path.join(ROOT, "pretrained", f"{run}_{kind}.pt"), ckpt_dir)
    (r,) = [r for r in read_results(os.path.join(ROOT, "results")) if r["run"] == run
            and r["protocol"] == "ours" and r["fixed"]["M"] == 1]
    r["checkpoint"] = str(ckpt_dir / f"{run}_best.pt")
    os.makedirs(results / run)
    (results / run / "best.json").write_text(json.dumps(r))
    return results, r


def test_the_export_leaves_out_the_latest_checkpoints_of_the_best_only_datasets(tmp_path):
    """Beside its best checkpoint, a run's latest ships, unless its dataset is in best_only
    (the cluttered datasets, report.BEST_ONLY)."""
    from export import export_pretrained
    run = "mnist_ram_6_8x8_s2_k1_original_seed1"
    results, _ = _evaluated_copy(tmp_path, run, ["best", "latest"])
    both = export_pretrained(str(results), str(tmp_path / "all"), DATA)
    assert [os.path.basename(p) for p in both] == [f"{run}_best.pt", f"{run}_latest.pt"]
    best = export_pretrained(str(results), str(tmp_path / "best"), DATA, best_only=("mnist",))
    assert [os.path.basename(p) for p in best] == [f"{run}_best.pt"]
    assert os.listdir(tmp_path / "best") == [f"{run}_best.pt"]


def test_a_half_precision_export_keeps_float16_weights_and_their_own_accuracy(tmp_path):
    """export_pretrained(half=True), as the strong study ships: the weights stored in float16
    (the file about half as large), loaded back as float32; the recorded first-1,000
    accuracy is that of the rounded weights, within a close call or two of the full ones,
    and the recorded test accuracy stays the results file's."""
    from export import export_pretrained
    run = "mnist_ram_6_8x8_s2_k1_both_seed1"
    source = os.path.join(ROOT, "pretrained", f"{run}_best.pt")
    results, r = _evaluated_copy(tmp_path, run, ["best"])
    (path,) = export_pretrained(str(results), str(tmp_path / "out"), DATA, half=True)
    half = load_checkpoint(path)
    assert all(w.dtype == torch.float16 for w in half["model"].values())
    assert os.path.getsize(path) < 0.55 * os.path.getsize(source)
    model, cfg, _ = load_pretrained(path)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    cfg.data_dir = DATA
    assert half["recorded"]["first_1000_accuracy"] == first_batch_accuracy(model, cfg)
    full = load_checkpoint(source)["recorded"]
    assert half["recorded"]["first_1000_accuracy"] == pytest.approx(
        full["first_1000_accuracy"], abs=0.003)
    assert half["recorded"]["test_accuracy"] == r["fixed"]["accuracy"]


def test_the_readmes_example_prints_what_its_results_file_holds():
    """The README's example command (the author's protocol on a shipped epoch-100 checkpoint)
    states the accuracy at N = 6 and the released rule's points that the committed results
    file of that evaluation holds."""
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = " ".join(f.read().split())
    example = re.search(r"--checkpoint=pretrained/(\S+)_latest\.pt .*? prints ([\d.]+)% at N = 6 "
                        r".*? with the released rule, ([\d. /]+) glimpses at ([\d. /]+)% for "
                        r"eps ([\d. /]+)", readme)
    assert example, "the README's example is gone"
    run, accuracy, glimpses, accuracies, eps = example.groups()
    path, = glob.glob(os.path.join(ROOT, "results", run, "latest-*_M10_*dynamic*_author.json"))
    with open(path) as f:
        measured = json.load(f)
    assert accuracy == f"{100 * measured['fixed']['accuracy']:.2f}"
    points = {p["exploration_rate"]: p for p in measured["dynamic"]["released"]}
    for e, g, a in zip(*(s.split(" / ") for s in (eps, glimpses, accuracies))):
        assert (g, a) == (f"{points[float(e)]['mean_glimpses']:.2f}",
                          f"{100 * points[float(e)]['accuracy']:.2f}")
