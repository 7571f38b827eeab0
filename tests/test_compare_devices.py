"""compare_devices.py, the CPU-against-CUDA comparison of gpu_check.sh, on logs made here."""
import subprocess

import compare_devices
from conftest import ROOT

HEADER = "epoch,iteration,global_step,running_loss,running_acc\n"


def logs(folder, rows):
    run = folder / "mnist_ram_6_8x8_s2_k1_both_seed1"
    run.mkdir(parents=True)
    (run / "train_iterations.csv").write_text(
        HEADER + "".join(f"1,{i + 1},{i + 1},{loss},{acc}\n"
                         for i, (loss, acc) in enumerate(rows)))
    return str(folder)


def test_runs_that_agree_until_a_prediction_differs_pass(tmp_path):
    a = logs(tmp_path / "a", [(2.0, 0.25), (1.9, 0.5), (1.8, 0.5)])
    b = logs(tmp_path / "b", [(2.0 * (1 + 5e-5), 0.25), (1.9, 0.5), (1.5, 0.625)])
    assert compare_devices.main([a, b, f"--out={tmp_path / 'c.json'}"]) == 0
    steps = [compare_devices.read_steps(f"{d}/mnist_ram_6_8x8_s2_k1_both_seed1/"
                                        "train_iterations.csv") for d in (a, b)]
    got = compare_devices.compare(*steps)
    assert got["first_step_with_another_accuracy"] == 3
    assert abs(got["max_rel_loss_difference_before_it"] - 5e-5) < 1e-9


def test_a_loss_that_parts_before_any_prediction_does_fails(tmp_path):
    a = logs(tmp_path / "a", [(2.0, 0.25), (1.9, 0.5)])
    b = logs(tmp_path / "b", [(2.0, 0.25), (1.95, 0.5)])
    assert compare_devices.main([a, b]) == 1
    short = logs(tmp_path / "c", [(2.0, 0.25)])
    assert compare_devices.main([a, short]) == 2


def test_the_gpu_script_parses():
    assert subprocess.run(["bash", "-n", "gpu_check.sh"], cwd=ROOT).returncode == 0
