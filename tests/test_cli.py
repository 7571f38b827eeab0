"""Bad input, refused: every impossible setting, unknown flag, missing GPU, bad data file and
missing, unreadable or mismatched checkpoint ends in one sentence on stderr and a non-zero
exit status (2 bad settings, 1 bad files), without a traceback (unless --debug=True) and
without writing or overwriting anything."""
import gzip
import os
import shutil
import subprocess

import pytest
import torch

import main
import utils
from conftest import DATA, ROOT, SMALL_RUN, cli, run_dirs, run_main


def _snapshot(folder):
    """Every file under folder with its bytes: to show that a refused command changed nothing."""
    return {os.path.join(d, f): open(os.path.join(d, f), "rb").read()
            for d, _, files in os.walk(folder) for f in files}


def _nothing_written(tmp):
    return not any(os.path.exists(tmp / d) for d in ("ckpt", "logs", "results"))


# ------------------------------------------------------------------------------- settings
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
    # the grouped flags: a bad value anywhere in a list, a group where one run is expected
    (["--random_seed=1,x"], "expected int values"),
    (["--random_seed=0"], "--random_seed must be at least 1"),
    (["--location_hidden=-1"], "--location_hidden must not be negative"),
    (["--reinforce_weight=-0.01"], "--reinforce_weight must not be negative"),
    (["--lambda_intrinsic=0.1,-1", "--intrinsic=True"], "--lambda_intrinsic must not be negative"),
    (["--uncertainty=True,ture"], "expected True or False, got 'ture'"),
    (["--is_train=False", "--checkpoint=pretrained/x_best.pt", "--random_seed=1,2"],
     "--checkpoint names one checkpoint"),
])
def test_impossible_settings_and_bad_flags_are_one_sentence_and_exit_2(flags, message,
                                                                        tmp_path):
    """Checked before anything is loaded or written: unknown flags and malformed values by
    argparse, impossible combinations by config.check_config."""
    code, _, err = cli(*flags, *run_dirs(tmp_path))
    assert code == 2
    assert "error" in err and message in err
    assert "Traceback" not in err and err.count("\n") == 1
    assert _nothing_written(tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_where_there_is_none(tmp_path):
    code, _, err = run_main("--use_gpu=True", *run_dirs(tmp_path))
    assert code == 2 and "CUDA is not available" in err and "Traceback" not in err
    assert not os.path.exists(tmp_path / "ckpt") and not os.path.exists(tmp_path / "logs")


def test_script_refuses_an_unknown_argument_with_its_usage():
    """test_script.sh takes --quick or --strong, then --flag=value only: a typo must not
    start hours of training."""
    for args in (["--quik"], ["--strong", "--quick"]):
        run = subprocess.run(["bash", os.path.join(ROOT, "test_script.sh"), *args],
                             capture_output=True, text=True)
        assert run.returncode == 2 and "usage" in run.stderr


def test_script_strong_sweeps_the_strong_grid_into_its_own_folder_then_reports(tmp_path):
    """--strong: sweep.py on sweeps/strong.json into results/strong (the flags passed on),
    then report.py with the pretrained export; the interpreter is $PYTHON."""
    log = tmp_path / "calls"
    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    fake.chmod(0o755)
    run = subprocess.run(["bash", os.path.join(ROOT, "test_script.sh"), "--strong",
                          "--random_seed=1"], capture_output=True, text=True,
                         env=dict(os.environ, PYTHON=str(fake), DATASETS="mnist"))
    assert run.returncode == 0, run.stderr
    sweep, report = log.read_text().splitlines()
    assert sweep.split() == ["sweep.py", "--grid=sweeps/strong.json", "--report=False",
                             "--ckpt_dir=runs/strong/ckpt", "--logs_dir=runs/strong/logs",
                             "--results_dir=results/strong", "--dataset=mnist",
                             "--random_seed=1"]
    assert report == "report.py --pretrained_dir=pretrained"


# ------------------------------------------------------------------------------- data files
def _raw(tmp_path, corrupt=None):
    """A data_dir with the four MNIST files, those named in `corrupt` rewritten by it."""
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
    code, _, err = run_main(f"--data_dir={data_dir}", *run_dirs(tmp_path))
    assert code == 1 and message in err and "Traceback" not in err
    if case == "missing":
        assert "t10k-labels-idx1-ubyte" in err and os.path.join("MNIST", "raw") in err
    assert not os.path.exists(tmp_path / "ckpt")


def test_missing_data_dir_names_the_files_and_the_folder(tmp_path, monkeypatch, capsys):
    """Through main.main: exit 1, the message names what is missing and where it looked."""
    monkeypatch.chdir(tmp_path)  # any relative default path lands in tmp_path, not the repo
    nowhere = tmp_path / "nowhere"
    args = [f"--data_dir={nowhere}", *run_dirs(tmp_path), "--use_tensorboard=False",
            "--subset=100", "--epochs=1"]
    assert main.main(args) == 1
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte" in err and str(nowhere) in err


# ------------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short run with --hidden_size=64, for the checkpoint errors."""
    tmp = tmp_path_factory.mktemp("trained")
    assert main.main(SMALL_RUN + run_dirs(tmp) + ["--epochs=1", "--hidden_size=64",
                                                   "--subset=320"]) == 0
    return tmp


def test_testing_without_a_checkpoint_exits_1(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = [f"--data_dir={DATA}", *run_dirs(tmp_path), "--use_tensorboard=False",
            "--subset=100", "--is_train=False"]
    assert main.main(args) == 1
    assert "no checkpoint" in capsys.readouterr().err
    assert _nothing_written(tmp_path)


def test_no_checkpoint_names_the_file_and_lists_those_that_exist(trained):
    before = _snapshot(trained)
    for flags in (["--is_train=False"], ["--resume=True"]):
        code, _, err = run_main(*SMALL_RUN, *run_dirs(trained), "--subset=320",
                                "--num_glimpses=4", *flags)
        assert code == 1, err
        assert "no checkpoint at" in err and "_4_8x8_" in err
        assert "mnist_ram_6_8x8_s2_k1_original_seed1_subset320_best.pt" in err
    assert _snapshot(trained) == before


def test_checkpoint_flag_with_a_missing_file_names_it(tmp_path):
    code, _, err = run_main("--is_train=False", f"--checkpoint={tmp_path}/nothing_best.pt",
                            f"--results_dir={tmp_path}/results")
    assert code == 1 and "no checkpoint at" in err and "nothing_best.pt" in err
    assert "Traceback" not in err and not os.path.exists(tmp_path / "results")


def test_checkpoint_with_other_settings_names_them(trained):
    """Testing needs the architecture to agree, resuming every training setting."""
    before = _snapshot(trained)
    code, _, err = run_main(*SMALL_RUN, *run_dirs(trained), "--subset=320",
                            "--hidden_size=128", "--is_train=False")
    assert code == 1
    assert "hidden_size 64 in the file against 128 on the command line" in err
    code, _, err = run_main(*SMALL_RUN, *run_dirs(trained), "--subset=320",
                            "--hidden_size=64", "--valid_size=0.2", "--resume=True", "--epochs=2")
    assert code == 1 and "valid_size 0.1 in the file against 0.2 on the command line" in err
    assert _snapshot(trained) == before


def test_fresh_training_does_not_overwrite_a_run(trained):
    """Training a run that has a checkpoint, without --resume=True, is refused: a slip of the
    flags must not throw away a long training."""
    before = _snapshot(trained)
    code, _, err = run_main(*SMALL_RUN, *run_dirs(trained), "--subset=320", "--hidden_size=64")
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
    code, _, err = run_main(*SMALL_RUN, *run_dirs(tmp_path), "--subset=320", "--is_train=False")
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
    code, _, err = run_main(*SMALL_RUN, *run_dirs(tmp_path), "--subset=320", "--is_train=False")
    assert code == 1 and "is not a readable checkpoint" in err
    assert not marker.exists()


def test_debug_shows_the_traceback(tmp_path):
    code, _, err = cli(*SMALL_RUN, *run_dirs(tmp_path), "--is_train=False", "--debug=True")
    assert code != 0 and "Traceback" in err and "CheckpointError" in err
