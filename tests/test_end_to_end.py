"""Through main.main (the entry point users call) on real MNIST: train, refuse to overwrite,
resume, test; the logs, tensorboard and glimpse files; learning; no validation set; and the
test loader with --subset above the test set's size."""
import csv
import glob
import math
import os

import pytest
import torch

import config
import data_loader
import main
import utils
from conftest import DATA, SMALL_RUN, run_dirs, settings


def base_args(tmp_path, tensorboard=False):
    return [f"--data_dir={DATA}", *run_dirs(tmp_path), f"--use_tensorboard={tensorboard}"]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # any relative default path lands in tmp_path, not the repo
    return tmp_path


SUBSET, BATCH = 500, 32
ITERS = math.ceil(SUBSET * 0.9 / BATCH)  # 450 training images -> 15 iterations per epoch


def test_train_resume_test(in_tmp, capsys):
    """One epoch, the same command again (refused), --resume=True to two epochs, test only,
    and a test with another architecture (refused): the checkpoints, the logs, the messages
    and exit statuses of each step."""
    tmp = in_tmp
    common = base_args(tmp) + [f"--subset={SUBSET}", f"--batch_size={BATCH}"]
    name = config.run_name(settings(*common))
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


def test_tensorboard_and_glimpse_files(in_tmp):
    """Training writes tensorboard events and the first batch's glimpses; testing writes the
    glimpses of the first test images beside the results."""
    common = base_args(in_tmp, tensorboard=True) + ["--subset=200", "--epochs=1"]
    assert main.main(common) == 0
    name = config.run_name(settings(*common))
    log_dir = in_tmp / "logs" / name
    assert glob.glob(str(log_dir / "events.out.tfevents.*"))
    g = utils.load_glimpse_trace(log_dir / "glimpses_epoch1.pt")
    n = g["images"].shape[0]
    assert g["images"].shape[1:] == (1, 28, 28)
    assert g["locations"].shape == (6 + 1, n, 2)
    test = utils.load_glimpse_trace(in_tmp / "results" / name / "glimpses_best-epoch1_N6.pt")
    assert test["images"].shape[1:] == (1, 28, 28) and test["run"] == name


def test_glimpse_trace_of_a_slice_holds_only_the_slice(tmp_path):
    """A trace of 9 images out of a batch of 1,000 stores 9 images, not the batch's storage."""
    from types import SimpleNamespace
    x, locations = torch.randn(1000, 1, 28, 28), torch.rand(7, 1000, 2)
    cfg = SimpleNamespace(patch_size=8, num_patches=1, glimpse_scale=2)
    path = tmp_path / "trace.pt"
    utils.save_glimpse_trace(str(path), x[:9], locations[:, :9], cfg, "run")
    assert os.path.getsize(path) < 20 * 9 * 28 * 28  # 4 bytes per pixel, plus headers
    g = utils.load_glimpse_trace(str(path))
    assert torch.equal(g["images"], x[:9]) and torch.equal(g["locations"], locations[:, :9])


def test_subset_larger_than_test_set():
    """--subset is "the first N training and N test images"; with N above the 10,000 test
    images the test loader serves all 10,000, in order, and never indexes past them."""
    cfg = settings(f"--data_dir={DATA}", "--subset=12000")
    loader = data_loader.get_test_loader(cfg, "cpu", 1000)
    _, labels = data_loader.load_mnist(DATA, train=False)
    served = torch.cat([y for _, y in loader])
    assert loader.num_images == 10000 and torch.equal(served, labels)


def test_learning_not_just_running(in_tmp):
    """Original RAM, fixed seed, 3 epochs on 9,000 training images: well above chance (10%).
    Measured on a 2-core CPU: 60-72% for seeds 1-3 in about 18 s."""
    cfg = settings(*base_args(in_tmp), "--subset=10000", "--epochs=3", "--init_lr=1e-3",
                   "--plot_freq=0", "--random_seed=2")
    (acc,) = main.run([cfg])  # the test accuracy of the best checkpoint, a group of one
    assert acc > 0.35, acc
    name = config.run_name(cfg)
    epochs = read_csv(in_tmp / "logs" / name / "epochs.csv")
    assert len(epochs) == 3
    assert float(epochs[-1]["valid_acc"]) > 0.35
    assert float(epochs[-1]["train_acc"]) > float(epochs[0]["train_acc"])


def test_no_validation_set_uses_the_training_metrics(tmp_path):
    """--valid_size=0: the training loss and accuracy stand in for the validation ones."""
    assert main.main(SMALL_RUN + run_dirs(tmp_path) + ["--epochs=1", "--valid_size=0"]) == 0
    best = torch.load(f"{tmp_path}/ckpt/mnist_ram_6_8x8_s2_k1_original_seed1_subset640_best.pt",
                      weights_only=True)
    row = best["history"][0]
    assert (row["valid_loss"], row["valid_acc"]) == (row["train_loss"], row["train_acc"])
