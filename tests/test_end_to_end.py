"""Through main.main (the entry point users call) on real MNIST, and the command line."""
import csv
import glob
import math
import os
import subprocess
import sys

import pytest
import torch

import config
import data_loader
import main
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_DIR = os.path.join(ROOT, "data")


def base_args(tmp_path, tensorboard=False):
    args = [f"--data_dir={DATA_DIR}", f"--ckpt_dir={tmp_path / 'ckpt'}",
            f"--logs_dir={tmp_path / 'logs'}", f"--use_tensorboard={tensorboard}"]
    if "results_dir" in vars(config.get_config([])):
        args.append(f"--results_dir={tmp_path / 'results'}")
    return args


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def accuracy_of(result):
    """Trainer.test / main.run give the test accuracy, or a results dict holding it."""
    if isinstance(result, dict):
        return result["fixed"]["accuracy"]
    return float(result)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # any relative default path lands in tmp_path, not the repo
    return tmp_path


SUBSET, BATCH = 500, 32
ITERS = math.ceil(SUBSET * 0.9 / BATCH)  # 450 training images -> 15 iterations per epoch


def test_train_resume_test(in_tmp, capsys):
    tmp = in_tmp
    common = base_args(tmp) + [f"--subset={SUBSET}", f"--batch_size={BATCH}"]
    name = config.run_name(config.get_config(common))
    latest, best = tmp / "ckpt" / f"{name}_latest.pt", tmp / "ckpt" / f"{name}_best.pt"
    log_dir = tmp / "logs" / name

    # 1. one epoch: both checkpoints, one CSV row per iteration
    assert main.main(common + ["--epochs=1"]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out
    assert latest.is_file() and best.is_file()
    rows = read_csv(log_dir / "train_iterations.csv")
    assert len(rows) == ITERS
    assert [int(r["global_step"]) for r in rows] == list(range(1, ITERS + 1))
    assert {r["epoch"] for r in rows} == {"1"}
    for r in rows:
        assert 0 <= float(r["running_acc"]) <= 1 and math.isfinite(float(r["running_loss"]))
    assert [r["epoch"] for r in read_csv(log_dir / "epochs.csv")] == ["1"]
    ckpt = torch.load(latest, weights_only=True)
    assert ckpt["epoch"] == 1

    # 2. the same run again without --resume refuses to overwrite it
    mtime = latest.stat().st_mtime_ns
    assert main.main(common + ["--epochs=1"]) == 1
    err = capsys.readouterr().err
    assert "--resume" in err
    assert latest.stat().st_mtime_ns == mtime

    # 3. resume to two epochs: starts at epoch 2
    assert main.main(common + ["--resume=True", "--epochs=2"]) == 0
    out = capsys.readouterr().out
    assert "resuming" in out
    assert "epoch 2" in out[out.index("resuming"):]
    assert "epoch 1/" not in out  # epoch 1 is not trained again
    assert [int(r["epoch"]) for r in read_csv(log_dir / "epochs.csv")] == [1, 2]
    rows = read_csv(log_dir / "train_iterations.csv")
    assert len(rows) == 2 * ITERS
    assert [int(r["global_step"]) for r in rows] == list(range(1, 2 * ITERS + 1))
    assert torch.load(latest, weights_only=True)["epoch"] == 2

    # 4. test only: prints a test accuracy, exits 0
    assert main.main(common + ["--is_train=False"]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out

    # 5. a checkpoint of another architecture is refused with a message, exit 1
    assert main.main(common + ["--is_train=False", "--hidden_size=64"]) == 1
    err = capsys.readouterr().err
    assert "hidden_size" in err

    # nothing escaped into the working directory
    assert sorted(os.listdir(tmp)) == sorted(p for p in ("ckpt", "logs", "results")
                                             if (tmp / p).exists())


def test_resume_is_exact(in_tmp, capsys):
    """Two epochs in one go, and one epoch then --resume=True to two, give the same weights
    and the same logs (the checkpoint restores model, optimizer, schedule, data order and
    every random state)."""
    common = [f"--subset={SUBSET}", f"--batch_size={BATCH}", "--uncertainty=True",
              "--intrinsic=True"]
    a, b = in_tmp / "a", in_tmp / "b"
    assert main.main(base_args(a) + common + ["--epochs=2"]) == 0
    assert main.main(base_args(b) + common + ["--epochs=1"]) == 0
    assert main.main(base_args(b) + common + ["--epochs=2", "--resume=True"]) == 0
    name = config.run_name(config.get_config(base_args(a) + common))
    wa = torch.load(a / "ckpt" / f"{name}_latest.pt", weights_only=True)["model"]
    wb = torch.load(b / "ckpt" / f"{name}_latest.pt", weights_only=True)["model"]
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    for log in ("epochs.csv", "train_iterations.csv"):
        assert read_csv(a / "logs" / name / log) == read_csv(b / "logs" / name / log), log


def test_tensorboard_and_glimpse_files(in_tmp):
    common = base_args(in_tmp, tensorboard=True) + ["--subset=200", "--epochs=1"]
    assert main.main(common) == 0
    name = config.run_name(config.get_config(common))
    log_dir = in_tmp / "logs" / name
    assert glob.glob(str(log_dir / "events.out.tfevents.*"))
    g = torch.load(log_dir / "glimpses_epoch1.pt", weights_only=True)
    n = g["images"].shape[0]
    assert g["images"].shape[1:] == (1, 28, 28)
    assert g["locations"].shape == (6 + 1, n, 2)


def test_missing_data_exits_1_with_message(in_tmp, capsys):
    args = base_args(in_tmp) + ["--subset=100", "--epochs=1"]
    args[0] = f"--data_dir={in_tmp / 'nowhere'}"
    assert main.main(args) == 1
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte" in err and str(in_tmp / "nowhere") in err


def test_test_without_checkpoint_exits_1(in_tmp, capsys):
    assert main.main(base_args(in_tmp) + ["--subset=100", "--is_train=False"]) == 1
    assert "no checkpoint" in capsys.readouterr().err


def test_subset_larger_than_test_set():
    """--subset is "the first N training and N test images"; with N above the 10,000 test
    images the test loader must serve the 10,000 (or refuse clearly), never index past them."""
    cfg = config.get_config([f"--data_dir={DATA_DIR}", "--subset=12000"])
    try:
        loader = data_loader.get_test_loader(cfg, "cpu", 1000)
    except (config.ConfigError, data_loader.DataError):
        return
    seen = sum(len(y) for _, y in loader)
    assert seen == loader.num_images <= 10000


def test_learning_not_just_running(in_tmp, capsys):
    """Original RAM, fixed seed, 3 epochs on 9,000 training images: well above chance (10%).
    Measured on a 2-core CPU: 60-72% for seeds 1-3 in about 18 s."""
    cfg = config.get_config(base_args(in_tmp) + ["--subset=10000", "--epochs=3",
                                                 "--init_lr=1e-3", "--plot_freq=0",
                                                 "--random_seed=2"])
    acc = accuracy_of(main.run(cfg))
    assert acc > 0.35, acc
    name = config.run_name(cfg)
    epochs = read_csv(in_tmp / "logs" / name / "epochs.csv")
    assert len(epochs) == 3
    assert float(epochs[-1]["valid_acc"]) > 0.35
    assert float(epochs[-1]["train_acc"]) > float(epochs[0]["train_acc"])


# ------------------------------------------------------------------------------- command line
def run_cli(*args):
    return subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("flag,message", [("--not_a_flag=1", "--not_a_flag"),
                                          ("--resume=ture", "ture")])
def test_cli_rejects_bad_flags(flag, message, tmp_path):
    p = run_cli(flag, *base_args(tmp_path))
    assert p.returncode != 0
    assert "error" in p.stderr and message in p.stderr
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "ckpt").exists()


def test_cli_impossible_setting_exits_2_with_one_sentence(tmp_path):
    p = run_cli("--std=0", *base_args(tmp_path))
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    assert "--std must be positive" in p.stderr


def test_glimpse_trace_of_a_slice_holds_only_the_slice(tmp_path):
    """A trace of 9 images out of a batch of 1,000 stores 9 images, not the batch's storage."""
    from types import SimpleNamespace

    from utils import save_glimpse_trace
    x, locations = torch.randn(1000, 1, 28, 28), torch.rand(7, 1000, 2)
    cfg = SimpleNamespace(patch_size=8, num_patches=1, glimpse_scale=2)
    path = tmp_path / "trace.pt"
    save_glimpse_trace(str(path), x[:9], locations[:, :9], cfg, "run")
    assert os.path.getsize(path) < 20 * 9 * 28 * 28  # 4 bytes per pixel, plus headers
    g = torch.load(path, weights_only=True)
    assert torch.equal(g["images"], x[:9]) and torch.equal(g["locations"], locations[:, :9])
