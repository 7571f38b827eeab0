"""Resuming and keeping checkpoints: a resumed run ends exactly where an uninterrupted one
ends (between epochs, and on translated MNIST), a failed save keeps the previous checkpoint,
and a diverging loss stops before it spoils one. The same for groups of runs, and mid-epoch
after SIGINT: tests/test_group.py."""
import os
import shutil
import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

import main
import trainer as trainer_module
import utils
from config import TRAINING, VARIANTS, training_settings
from conftest import ROOT, SMALL_RUN, assert_same_training_state, run_dirs

BOTH = ["--uncertainty=True", "--intrinsic=True"]
RUN = "mnist_ram_6_8x8_s2_k1_both_seed1_subset640"  # SMALL_RUN + BOTH
RUN0 = "mnist_ram_6_8x8_s2_k1_original_seed1_subset640"  # SMALL_RUN


def ckpt(tmp, kind="latest", run=RUN):
    return torch.load(f"{tmp}/ckpt/{run}_{kind}.pt", weights_only=True)


def read(path):
    with open(path) as f:
        return f.read()


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


def test_checkpoints_committed_in_one_clone_resume_exactly_in_another(tmp_path, monkeypatch):
    """A checkpoint names its folders relative to the repository, not the machine's paths:
    a study's checkpoints committed from one clone and resumed in a clone elsewhere end where
    an uninterrupted run ends."""
    a, first, second = tmp_path / "a", tmp_path / "first", tmp_path / "second"
    assert main.main(SMALL_RUN + run_dirs(a) + ["--epochs=2"]) == 0
    monkeypatch.setattr(utils, "REPOSITORY", str(first))
    assert main.main(SMALL_RUN + run_dirs(first / "runs") + ["--epochs=1"]) == 0
    for kind in ("latest", "best"):
        saved = ckpt(first / "runs", kind, RUN0)["config"]
        assert [saved[k] for k in ("ckpt_dir", "logs_dir", "results_dir")] == [
            os.path.join("runs", d) for d in ("ckpt", "logs", "results")]
    shutil.copytree(first / "runs", second / "runs")
    shutil.rmtree(first)
    monkeypatch.setattr(utils, "REPOSITORY", str(second))
    assert main.main(SMALL_RUN + run_dirs(second / "runs") + ["--epochs=2", "--resume=True"]) == 0
    assert_same_training_state(ckpt(a, run=RUN0), ckpt(second / "runs", run=RUN0))


def test_a_loss_weight_of_a_term_the_variant_lacks_does_not_block_a_resume(tmp_path):
    """Original RAM's run name leaves out lambda_1 and lambda_2, and so does the resume check:
    resumed with other weights, it ends where the uninterrupted run ends. A variant with a
    term keeps its weight in the check (and in its name)."""
    a, b = tmp_path / "a", tmp_path / "b"
    weights = ["--lambda_uncertainty=2.5e-6", "--lambda_intrinsic=0.025"]
    assert main.main(SMALL_RUN + run_dirs(a) + ["--epochs=2"]) == 0
    assert main.main(SMALL_RUN + run_dirs(b) + ["--epochs=1"]) == 0
    assert main.main(SMALL_RUN + weights + run_dirs(b) + ["--epochs=2", "--resume=True"]) == 0
    assert_same_training_state(ckpt(a, run=RUN0), ckpt(b, run=RUN0))
    checked = {variant: set(training_settings(SimpleNamespace(uncertainty=u, intrinsic=i)))
               for variant, (u, i) in VARIANTS.items()}
    assert checked["both"] == set(TRAINING)
    assert set(TRAINING) - checked["original"] == {"lambda_uncertainty", "lambda_intrinsic",
                                                   "uncertainty_routing"}
    assert set(TRAINING) - checked["intrinsic"] == {"lambda_uncertainty", "uncertainty_routing"}
    assert set(TRAINING) - checked["uncertainty"] == {"lambda_intrinsic"}


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


def test_a_failed_group_save_replaces_no_file(tmp_path, monkeypatch):
    """A group's checkpoints are all written before any is renamed over its previous file:
    a save that fails on the second file leaves the first run's file unchanged too."""
    paths = [str(tmp_path / f"run{i}_latest.pt") for i in (1, 2)]
    utils.save_checkpoints([({"w": torch.ones(3)}, p) for p in paths])
    real_save = torch.save

    def second_fails(obj, f, *a, **k):
        if f.startswith(paths[1]):
            raise OSError(28, "No space left on device")
        real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", second_fails)
    with pytest.raises(OSError):
        utils.save_checkpoints([({"w": torch.zeros(3)}, p) for p in paths])
    monkeypatch.undo()
    for p in paths:
        assert torch.equal(torch.load(p, weights_only=True)["w"], torch.ones(3))
    assert sorted(os.listdir(tmp_path)) == ["run1_latest.pt", "run2_latest.pt"]


def test_two_processes_saving_one_file_side_by_side_both_succeed(tmp_path, monkeypatch):
    """Two groups started together both make the same data cache. While this process writes
    its temporary file, another process (another pid) saves the same path from start to end:
    neither renames the other's temporary file, and the last rename wins whole."""
    path = str(tmp_path / "ram_train.pt")
    real_save = torch.save

    def another_process_saves_meanwhile(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        with monkeypatch.context() as m:
            m.setattr(torch, "save", real_save)
            m.setattr(os, "getpid", lambda: 1)
            utils.save_checkpoint({"w": torch.zeros(3)}, path)

    monkeypatch.setattr(torch, "save", another_process_saves_meanwhile)
    utils.save_checkpoint({"w": torch.ones(3)}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(3))
    assert os.listdir(tmp_path) == ["ram_train.pt"]


def test_a_text_write_that_fails_halfway_leaves_the_old_file(tmp_path):
    """The CSV logs, the tables and the JSON results are written through utils.replacing: an
    error halfway through the block leaves the old text whole and no temporary file; a block
    that ends well replaces it."""
    path = str(tmp_path / "epochs.csv")
    with utils.replacing(path) as f:
        f.write("epoch\n1\n")
    with pytest.raises(ValueError):
        with utils.replacing(path) as f:
            f.write("epoch\n")
            raise ValueError("killed halfway")
    assert open(path).read() == "epoch\n1\n"
    assert os.listdir(tmp_path) == ["epochs.csv"]
    utils.write_json({"epoch": 2}, path)
    assert open(path).read() == '{\n "epoch": 2\n}'


def test_a_second_trainer_of_a_run_is_refused_and_changes_nothing(tmp_path, capsys):
    """While a process trains a run, another trainer of the same run (a retried sweep task,
    the same command started twice) stops with one sentence, exit status 1, and every file
    stays as it was; once the first lets go, the run resumes."""
    args = SMALL_RUN + run_dirs(tmp_path)
    assert main.main(args + ["--epochs=1"]) == 0
    before = {p: open(p, "rb").read() for p in
              (f"{tmp_path}/ckpt/{RUN0}_latest.pt", f"{tmp_path}/logs/{RUN0}/epochs.csv")}
    live = utils.RunLock(f"{tmp_path}/ckpt", RUN0)  # a trainer holding the run
    capsys.readouterr()
    assert main.main(args + ["--epochs=2", "--resume=True"]) == 1
    err = capsys.readouterr().err
    assert f"run {RUN0} is being trained by process {os.getpid()} on" in err
    assert err.count("\n") == 1
    assert {p: open(p, "rb").read() for p in before} == before
    live.release()
    assert not os.path.exists(live.path)
    assert main.main(args + ["--epochs=2", "--resume=True"]) == 0
    assert ckpt(tmp_path, run=RUN0)["epoch"] == 2


def test_a_lock_left_by_a_killed_trainer_does_not_block_a_resume(tmp_path):
    """A process killed while holding a run's lock leaves the lock file behind, but not the
    lock: the resume goes ahead."""
    args = SMALL_RUN + run_dirs(tmp_path)
    assert main.main(args + ["--epochs=1"]) == 0
    code = ("import os, signal, sys; sys.path.insert(0, sys.argv[1]); import utils; "
            "utils.RunLock(sys.argv[2], sys.argv[3]); os.kill(os.getpid(), signal.SIGKILL)")
    killed = subprocess.run([sys.executable, "-c", code, ROOT, f"{tmp_path}/ckpt", RUN0])
    assert killed.returncode == -signal.SIGKILL
    assert os.path.exists(f"{tmp_path}/ckpt/{RUN0}.lock")
    assert main.main(args + ["--epochs=2", "--resume=True"]) == 0
    assert ckpt(tmp_path, run=RUN0)["epoch"] == 2
    assert not os.path.exists(f"{tmp_path}/ckpt/{RUN0}.lock")


def test_a_diverging_loss_stops_with_the_step_and_terms_and_keeps_the_checkpoint(
        tmp_path, monkeypatch, capsys):
    """A NaN loss at epoch 2, step 3: exit 1, the message names the step and every term, and
    the epoch-1 checkpoint is left as it was (no update was applied)."""
    assert main.main(SMALL_RUN + BOTH + run_dirs(tmp_path) + ["--epochs=1"]) == 0
    latest = tmp_path / "ckpt" / f"{RUN}_latest.pt"
    before = latest.read_bytes()
    real, calls = trainer_module.loss_terms, []

    def nan_at_third_step(out, y, weights):
        terms, reward = real(out, y, weights)
        calls.append(1)
        if len(calls) == 3:
            terms["reinforce"] = terms["reinforce"] * float("nan")
        return terms, reward

    monkeypatch.setattr(trainer_module, "loss_terms", nan_at_third_step)
    assert main.main(SMALL_RUN + BOTH + run_dirs(tmp_path) + ["--epochs=2",
                                                               "--resume=True"]) == 1
    err = capsys.readouterr().err
    assert "epoch 2, step 3" in err and "reinforce nan" in err and "action" in err
    assert RUN in err
    assert latest.read_bytes() == before




def test_an_interruption_survives_pickling():
    """A sweep's task hands its exception to the driver through pickle (Ray): the message
    and the signal survive."""
    import pickle
    e = pickle.loads(pickle.dumps(trainer_module.Interrupted("stopped; resume", 15)))
    assert isinstance(e, trainer_module.Interrupted)
    assert (str(e), e.signum) == ("stopped; resume", 15)


def test_logs_are_read_off_the_device_in_batches_and_train_the_same(tmp_path, monkeypatch):
    """The trainer reads the logged numbers off the device every READ_EVERY steps (and at the
    end of an epoch), not every step; how often it reads changes no bit of the training:
    every step read at once, or 7 at a time, give the same checkpoints and logs."""
    reads = []
    real = trainer_module.Trainer._read_logs

    def counting(self, epoch):
        reads.append(len(self.pending))
        real(self, epoch)

    monkeypatch.setattr(trainer_module.Trainer, "_read_logs", counting)
    out = {}
    for every in (1, 7):
        monkeypatch.setattr(trainer_module, "READ_EVERY", every)
        reads.clear()
        assert main.main(SMALL_RUN + BOTH + run_dirs(tmp_path / str(every)) + ["--epochs=2"]) == 0
        out[every] = [n for n in reads if n]
    assert out[1] == [1] * 36  # 18 steps an epoch, each read alone
    assert out[7] == [7, 7, 4] * 2  # 7 at a time, the rest at the end of the epoch
    a, b = tmp_path / "1", tmp_path / "7"
    assert_same_training_state(ckpt(a), ckpt(b))
    for log in ("train_iterations.csv", "epochs.csv"):
        assert read(f"{a}/logs/{RUN}/{log}") == read(f"{b}/logs/{RUN}/{log}")
