"""Reliability: exact resume (also mid-epoch after a signal), atomic checkpoints, a loss that
diverges, and one clear sentence with a non-zero exit for every kind of bad input."""
import gzip
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

import main
import trainer as trainer_module
import utils

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "data")
SMALL = ["--subset=640", "--use_tensorboard=False", f"--data_dir={DATA}"]
RUN = "mnist_ram_6_8x8_s2_k1_both_seed1_subset640"


def dirs(tmp):
    return [f"--ckpt_dir={tmp}/ckpt", f"--logs_dir={tmp}/logs", f"--results_dir={tmp}/results"]


def cli(*args, timeout=300):
    """The real command line: (exit code, stdout, stderr)."""
    r = subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def ckpt(tmp, kind="latest"):
    return torch.load(f"{tmp}/ckpt/{RUN}_{kind}.pt", weights_only=True)


def assert_same_training_state(a, b):
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


def read(path):
    with open(path) as f:
        return f.read()


BOTH = ["--uncertainty=True", "--intrinsic=True"]


def test_resume_between_epochs_is_exact(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main.main(SMALL + BOTH + dirs(a) + ["--epochs=3"]) == 0
    assert main.main(SMALL + BOTH + dirs(b) + ["--epochs=1"]) == 0
    assert main.main(SMALL + BOTH + dirs(b) + ["--epochs=3", "--resume=True"]) == 0
    assert_same_training_state(ckpt(a), ckpt(b))
    assert_same_training_state(ckpt(a, "best"), ckpt(b, "best"))
    for log in ("train_iterations.csv", "epochs.csv"):
        assert read(f"{a}/logs/{RUN}/{log}") == read(f"{b}/logs/{RUN}/{log}")


def test_translated_resume_is_exact(tmp_path):
    """Translated batches come from generators of their own: they must be restored too."""
    a, b = tmp_path / "a", tmp_path / "b"
    args = SMALL + ["--dataset=translated", "--subset=320"]
    assert main.main(args + dirs(a) + ["--epochs=2"]) == 0
    assert main.main(args + dirs(b) + ["--epochs=1"]) == 0
    assert main.main(args + dirs(b) + ["--epochs=2", "--resume=True"]) == 0
    run = "translated_ram_6_12x12_s2_k3_original_seed1_subset320"
    ca = torch.load(f"{a}/ckpt/{run}_latest.pt", weights_only=True)
    cb = torch.load(f"{b}/ckpt/{run}_latest.pt", weights_only=True)
    assert_same_training_state(ca, cb)


def test_sigint_saves_a_checkpoint_and_the_resumed_run_is_exact(tmp_path):
    """A real training process gets SIGINT mid-epoch: it saves, says how to resume, exits
    130; resuming it ends exactly where an uninterrupted run ends."""
    ref, run_dir = tmp_path / "ref", tmp_path / "sig"
    args = SMALL + BOTH + ["--subset=3200", "--epochs=1"]
    assert main.main(args + dirs(ref)) == 0
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "main.py"), *args, *dirs(run_dir)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Wait until training has started (the first line), then a little longer.
    first = proc.stdout.readline()
    assert "train" in first
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "--resume=True" in err and "SIGINT" in err
    run = "mnist_ram_6_8x8_s2_k1_both_seed1_subset3200"
    saved = torch.load(f"{run_dir}/ckpt/{run}_latest.pt", weights_only=True)
    assert saved["epoch"] == 0 and 0 < saved["batch"] < 90  # mid-epoch
    code, out, err = cli(*args, *dirs(run_dir), "--resume=True")
    assert code == 0, err[-2000:]
    assert f"step {saved['batch'] + 1}" in out
    a = torch.load(f"{ref}/ckpt/{run}_latest.pt", weights_only=True)
    b = torch.load(f"{run_dir}/ckpt/{run}_latest.pt", weights_only=True)
    assert_same_training_state(a, b)
    assert read(f"{ref}/logs/{run}/train_iterations.csv") == \
        read(f"{run_dir}/logs/{run}/train_iterations.csv")


def test_a_failed_save_leaves_the_previous_checkpoint_loadable(tmp_path, monkeypatch):
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
    assert main.main(SMALL + BOTH + dirs(tmp_path) + ["--epochs=1"]) == 0
    before = read_bytes(f"{tmp_path}/ckpt/{RUN}_latest.pt")
    real, calls = trainer_module.loss_terms, []

    def nan_at_third_step(out, y, cfg):
        terms, reward = real(out, y, cfg)
        calls.append(1)
        if len(calls) == 3:
            terms["reinforce"] = terms["reinforce"] * float("nan")
        return terms, reward

    monkeypatch.setattr(trainer_module, "loss_terms", nan_at_third_step)
    assert main.main(SMALL + BOTH + dirs(tmp_path) + ["--epochs=2", "--resume=True"]) == 1
    err = capsys.readouterr().err
    assert "epoch 2, step 3" in err and "reinforce nan" in err and "action" in err
    assert read_bytes(f"{tmp_path}/ckpt/{RUN}_latest.pt") == before


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


# ------------------------------------------------------------------- bad input, real CLI
@pytest.mark.parametrize("flags, message", [
    (["--std=0"], "--std must be positive"),
    (["--std=-0.1"], "--std must be positive"),
    (["--patch_size=32"], "larger than the 28x28 mnist image"),
    (["--dataset=translated", "--patch_size=12", "--num_patches=4"], "larger than the 60x60"),
    (["--glimpse_scale=0"], "--glimpse_scale must be at least 1"),
    (["--num_patches=0"], "--num_patches must be at least 1"),
    (["--num_glimpses=0"], "--num_glimpses must be at least 1"),
    (["--valid_size=1"], "--valid_size must be in [0, 1)"),
    (["--valid_size=-0.1"], "--valid_size must be in [0, 1)"),
    (["--batch_size=0"], "--batch_size must be at least 1"),
    (["--M", "0"], "--M must be at least 1"),
    (["--lambda_intrinsic=-1"], "--lambda_intrinsic must not be negative"),
    (["--lambda_uncertainty=-1e-5"], "--lambda_uncertainty must not be negative"),
    (["--dataset=cifar"], "invalid choice: 'cifar'"),
    (["--not_a_flag=1"], "unrecognized arguments: --not_a_flag=1"),
    (["--resume=ture"], "expected True or False, got 'ture'"),
    (["--epochs=many"], "invalid int value: 'many'"),
    (["--num_test=-1"], "--num_test must not be negative"),
    (["--protocol=paper"], "invalid choice: 'paper'"),
    (["--checkpoint=pretrained/x_best.pt"], "--checkpoint names a checkpoint to test: pass "
                                            "--is_train=False"),
])
def test_impossible_settings_are_one_sentence_and_exit_2(flags, message):
    code, out, err = cli(*flags)
    assert code == 2
    assert message in err
    assert "Traceback" not in err and err.count("\n") == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_where_there_is_none(tmp_path):
    code, _, err = cli("--use_gpu=True", *dirs(tmp_path))
    assert code == 2 and "CUDA is not available" in err and "Traceback" not in err
    assert not os.path.exists(tmp_path / "ckpt") and not os.path.exists(tmp_path / "logs")


def _raw(tmp_path, corrupt=None):
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        if corrupt and name in corrupt:
            with gzip.open(os.path.join(DATA, "MNIST", "raw", name + ".gz")) as f:
                data = f.read()
            with open(raw / name, "wb") as f:
                f.write(corrupt[name](data))
        else:
            shutil.copy(os.path.join(DATA, "MNIST", "raw", name + ".gz"), raw)
    return str(tmp_path / "data")


@pytest.mark.parametrize("case, corrupt, message", [
    ("missing", {"t10k-labels-idx1-ubyte": None}, "missing from"),
    ("truncated", {"train-images-idx3-ubyte": lambda d: d[:1000]}, "is not a valid MNIST file"),
    ("wrong magic", {"t10k-labels-idx1-ubyte": lambda d: b"\x00\x00\x08\x03" + d[4:]},
     "expected magic number 2049"),
])
def test_bad_data_files(tmp_path, case, corrupt, message):
    if case == "missing":
        data_dir = _raw(tmp_path)
        os.remove(os.path.join(data_dir, "MNIST", "raw", "t10k-labels-idx1-ubyte.gz"))
    else:
        data_dir = _raw(tmp_path, corrupt)
    code, _, err = cli(f"--data_dir={data_dir}", *dirs(tmp_path))
    assert code == 1 and message in err and "Traceback" not in err
    if case == "missing":
        assert "t10k-labels-idx1-ubyte" in err and os.path.join("MNIST", "raw") in err
    assert not os.path.exists(tmp_path / "ckpt")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short run with --hidden_size=64, for the checkpoint errors."""
    tmp = tmp_path_factory.mktemp("trained")
    assert main.main(SMALL + dirs(tmp) + ["--epochs=1", "--hidden_size=64", "--subset=320"]) == 0
    return tmp


def _snapshot(tmp):
    return {os.path.join(d, f): read_bytes(os.path.join(d, f))
            for d, _, files in os.walk(tmp) for f in files}


def test_no_checkpoint_names_the_file_and_lists_those_that_exist(trained):
    before = _snapshot(trained)
    for flags in (["--is_train=False"], ["--resume=True"]):
        code, _, err = cli(*SMALL, *dirs(trained), "--subset=320", "--num_glimpses=4", *flags)
        assert code == 1, err
        assert "no checkpoint at" in err and "_4_8x8_" in err
        assert "mnist_ram_6_8x8_s2_k1_original_seed1_subset320_best.pt" in err
    assert _snapshot(trained) == before


def test_checkpoint_flag_with_a_missing_file_names_it(tmp_path):
    code, _, err = cli("--is_train=False", f"--checkpoint={tmp_path}/nothing_best.pt",
                       f"--results_dir={tmp_path}/results")
    assert code == 1 and "no checkpoint at" in err and "nothing_best.pt" in err
    assert "Traceback" not in err and not os.path.exists(tmp_path / "results")


def test_checkpoint_with_other_settings_names_them(trained):
    before = _snapshot(trained)
    code, _, err = cli(*SMALL, *dirs(trained), "--subset=320", "--hidden_size=128",
                       "--is_train=False")
    assert code == 1
    assert "hidden_size 64 in the file against 128 on the command line" in err
    code, _, err = cli(*SMALL, *dirs(trained), "--subset=320", "--hidden_size=64",
                       "--std=0.2", "--resume=True", "--epochs=2")
    assert code == 1 and "std 0.1 in the file against 0.2 on the command line" in err
    assert _snapshot(trained) == before


def test_fresh_training_does_not_overwrite_a_run(trained):
    before = _snapshot(trained)
    code, _, err = cli(*SMALL, *dirs(trained), "--subset=320", "--hidden_size=64")
    assert code == 1 and "--resume=True" in err
    assert _snapshot(trained) == before


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", "truncate"])
def test_unreadable_checkpoint(tmp_path, content):
    (tmp_path / "ckpt").mkdir()
    path = tmp_path / "ckpt" / "mnist_ram_6_8x8_s2_k1_original_seed1_subset320_best.pt"
    if content == "truncate":
        utils.save_checkpoint({"model": {"w": torch.ones(1000)}, "config": {}}, str(path))
        path.write_bytes(path.read_bytes()[:300])
    else:
        path.write_bytes(content)
    code, _, err = cli(*SMALL, *dirs(tmp_path), "--subset=320", "--is_train=False")
    assert code == 1 and "is not a readable checkpoint" in err and "Traceback" not in err


def test_a_checkpoint_cannot_run_code(tmp_path):
    """A pickle that would run code on load is refused (weights_only)."""
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / "ckpt").mkdir()
    path = tmp_path / "ckpt" / "mnist_ram_6_8x8_s2_k1_original_seed1_subset320_best.pt"
    torch.save({"model": Evil(), "config": {}}, str(path))
    code, _, err = cli(*SMALL, *dirs(tmp_path), "--subset=320", "--is_train=False")
    assert code == 1 and "is not a readable checkpoint" in err
    assert not marker.exists()


def test_debug_shows_the_traceback(tmp_path):
    code, _, err = cli(*SMALL, *dirs(tmp_path), "--is_train=False", "--debug=True")
    assert code != 0 and "Traceback" in err and "CheckpointError" in err


def test_no_validation_set_uses_the_training_metrics(tmp_path):
    assert main.main(SMALL + dirs(tmp_path) + ["--epochs=1", "--valid_size=0"]) == 0
    best = torch.load(f"{tmp_path}/ckpt/mnist_ram_6_8x8_s2_k1_original_seed1_subset640_best.pt",
                      weights_only=True)
    row = best["history"][0]
    assert (row["valid_loss"], row["valid_acc"]) == (row["train_loss"], row["train_acc"])
