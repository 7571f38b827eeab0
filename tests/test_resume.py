"""Resuming and keeping checkpoints: a resumed run ends exactly where an uninterrupted one
ends (between epochs, on translated MNIST, and mid-epoch after SIGINT), a failed save keeps
the previous checkpoint, and a diverging loss stops before it spoils one."""
import os
import re
import signal
import subprocess
import sys

import pytest
import torch

import main
import trainer as trainer_module
import utils
from conftest import ROOT, SMALL_RUN, cli, run_dirs

BOTH = ["--uncertainty=True", "--intrinsic=True"]
RUN = "mnist_ram_6_8x8_s2_k1_both_seed1_subset640"  # SMALL_RUN + BOTH


def ckpt(tmp, kind="latest", run=RUN):
    return torch.load(f"{tmp}/ckpt/{run}_{kind}.pt", weights_only=True)


def read(path):
    with open(path) as f:
        return f.read()


def assert_same_training_state(a, b):
    """Weights, optimiser, schedule and the training state of two checkpoints are equal."""
    for key in ("model", "optimizer"):
        flat_a, flat_b = _flatten(a[key]), _flatten(b[key])
        assert flat_a.keys() == flat_b.keys()
        for k in flat_a:
            assert torch.equal(flat_a[k], flat_b[k]) if torch.is_tensor(flat_a[k]) else \
                flat_a[k] == flat_b[k], f"{key}/{k} differs"
    assert a["scheduler"] == b["scheduler"]
    for key in ("epoch", "batch", "global_step", "best_valid_acc", "epochs_since_best",
                "history"):
        assert a[key] == b[key], key


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_resume_between_epochs_is_exact(tmp_path):
    """Three epochs in one go, and one epoch then --resume=True to three, give the same
    weights, optimiser, schedule, state and logs (the checkpoint restores model, optimiser,
    schedule, data order and every random state)."""
    a, b = tmp_path / "a", tmp_path / "b"
    assert main.main(SMALL_RUN + BOTH + run_dirs(a) + ["--epochs=3"]) == 0
    assert main.main(SMALL_RUN + BOTH + run_dirs(b) + ["--epochs=1"]) == 0
    assert main.main(SMALL_RUN + BOTH + run_dirs(b) + ["--epochs=3", "--resume=True"]) == 0
    assert_same_training_state(ckpt(a), ckpt(b))
    assert_same_training_state(ckpt(a, "best"), ckpt(b, "best"))
    for log in ("train_iterations.csv", "epochs.csv"):
        assert read(f"{a}/logs/{RUN}/{log}") == read(f"{b}/logs/{RUN}/{log}")


def test_translated_resume_is_exact(tmp_path):
    """Translated batches come from generators of their own: they must be restored too."""
    a, b = tmp_path / "a", tmp_path / "b"
    args = SMALL_RUN + ["--dataset=translated", "--subset=320"]
    assert main.main(args + run_dirs(a) + ["--epochs=2"]) == 0
    assert main.main(args + run_dirs(b) + ["--epochs=1"]) == 0
    assert main.main(args + run_dirs(b) + ["--epochs=2", "--resume=True"]) == 0
    run = "translated_ram_6_12x12_s2_k3_original_seed1_subset320"
    assert_same_training_state(ckpt(a, run=run), ckpt(b, run=run))


def _progress(stream, total):
    """Read a training process's stderr until its progress bar shows at least one of `total`
    steps done (or the stream ends); returns what was read."""
    shown = ""
    while not re.search(rf"\b[1-9]\d*/{total}\b", shown[-40:]):
        c = stream.read(1)
        if not c:
            break
        shown += c
    return shown


def test_sigint_saves_a_checkpoint_and_the_resumed_run_is_exact(tmp_path):
    """A real training process gets SIGINT mid-epoch: it saves, says how to resume, exits
    130; resuming it ends exactly where an uninterrupted run ends."""
    ref, run_dir = tmp_path / "ref", tmp_path / "sig"
    args = SMALL_RUN + BOTH + ["--subset=3200", "--epochs=1"]
    assert main.main(args + run_dirs(ref)) == 0
    proc = subprocess.Popen([sys.executable, "main.py", *args, *run_dirs(run_dir)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Wait until training has started (the first line) and its progress bar shows a finished
    # step (a fixed wait would miss the epoch on a fast machine: 90 steps take under a second).
    first = proc.stdout.readline()
    assert "train" in first
    shown = _progress(proc.stderr, total=90)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    err = shown + err
    assert proc.returncode == 130, err[-2000:]
    assert "--resume=True" in err and "SIGINT" in err
    run = "mnist_ram_6_8x8_s2_k1_both_seed1_subset3200"
    saved = ckpt(run_dir, run=run)
    assert saved["epoch"] == 0 and 0 < saved["batch"] < 90  # mid-epoch
    code, out, err = cli(*args, *run_dirs(run_dir), "--resume=True")
    assert code == 0, err[-2000:]
    assert f"step {saved['batch'] + 1}" in out
    assert_same_training_state(ckpt(ref, run=run), ckpt(run_dir, run=run))
    assert read(f"{ref}/logs/{run}/train_iterations.csv") == \
        read(f"{run_dir}/logs/{run}/train_iterations.csv")


def test_a_failed_save_leaves_the_previous_checkpoint_loadable(tmp_path, monkeypatch):
    """Saves are atomic: a full disk mid-save leaves the previous file whole, and no
    temporary file behind."""
    path = str(tmp_path / "x_latest.pt")
    utils.save_checkpoint({"model": {"w": torch.ones(3)}, "config": {}}, path)

    def disk_full(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError):
        utils.save_checkpoint({"model": {"w": torch.zeros(3)}, "config": {}}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["model"]["w"], torch.ones(3))
    assert os.listdir(tmp_path) == ["x_latest.pt"]  # no temporary file left behind


def test_a_diverging_loss_stops_with_the_step_and_terms_and_keeps_the_checkpoint(
        tmp_path, monkeypatch, capsys):
    """A NaN loss at epoch 2, step 3: exit 1, the message names the step and every term, and
    the epoch-1 checkpoint is left as it was (no update was applied)."""
    assert main.main(SMALL_RUN + BOTH + run_dirs(tmp_path) + ["--epochs=1"]) == 0
    latest = tmp_path / "ckpt" / f"{RUN}_latest.pt"
    before = latest.read_bytes()
    real, calls = trainer_module.loss_terms, []

    def nan_at_third_step(out, y, cfg):
        terms, reward = real(out, y, cfg)
        calls.append(1)
        if len(calls) == 3:
            terms["reinforce"] = terms["reinforce"] * float("nan")
        return terms, reward

    monkeypatch.setattr(trainer_module, "loss_terms", nan_at_third_step)
    assert main.main(SMALL_RUN + BOTH + run_dirs(tmp_path) + ["--epochs=2",
                                                               "--resume=True"]) == 1
    err = capsys.readouterr().err
    assert "epoch 2, step 3" in err and "reinforce nan" in err and "action" in err
    assert latest.read_bytes() == before


def test_saved_random_states_restore_every_generator():
    """utils.rng_state / set_rng_state, which resume relies on: after restoring, torch, numpy
    and Python's generators draw again what they drew after the save."""
    import random

    import numpy as np
    state = utils.rng_state()
    drawn = (torch.rand(5), np.random.rand(5), [random.random() for _ in range(5)])
    utils.set_rng_state(state)
    again = (torch.rand(5), np.random.rand(5), [random.random() for _ in range(5)])
    assert torch.equal(drawn[0], again[0])
    assert np.array_equal(drawn[1], again[1]) and drawn[2] == again[2]
