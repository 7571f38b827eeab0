"""The shipped checkpoints in pretrained/ still give the test accuracy recorded when they were
exported (utils.export_pretrained), through the model code as it is now and through
`python main.py --is_train=False`."""
import glob
import os
import re
import subprocess
import sys
from argparse import Namespace

import pytest
import torch

from model import RecurrentAttention
from utils import first_batch_accuracy, latest_results

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = sorted(glob.glob(os.path.join(REPO, "pretrained", "*_best.pt")))


def load(path):
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    cfg = Namespace(**dict(ckpt["config"], data_dir=os.path.join(REPO, "data")))
    return ckpt, cfg


def test_every_evaluated_run_ships_its_best_checkpoint():
    evaluated = {r["run"]: r["epoch"] for r in latest_results(os.path.join(REPO, "results"))
                 if r["checkpoint"].endswith("_best.pt")}
    shipped = {os.path.basename(p)[:-len("_best.pt")]: load(p)[0]["epoch"] for p in SHIPPED}
    assert evaluated == shipped


@pytest.mark.parametrize("path", SHIPPED, ids=os.path.basename)
def test_shipped_checkpoint_gives_its_recorded_accuracy(path):
    ckpt, cfg = load(path)
    assert set(ckpt) == {"config", "model", "epoch", "best_valid_acc", "recorded"}
    model = RecurrentAttention.from_config(cfg)
    model.load_state_dict(ckpt["model"])
    # 1,000 images: a float rounding that differs on another CPU may flip a close call or two.
    assert first_batch_accuracy(model, cfg) == pytest.approx(
        ckpt["recorded"]["first_1000_accuracy"], abs=0.003)


@pytest.mark.skipif(not SHIPPED, reason="no checkpoint shipped yet")
def test_main_tests_a_shipped_checkpoint(tmp_path):
    """`python main.py --is_train=False --ckpt_dir=pretrained` on the whole test set prints
    the recorded accuracy (the MNIST checkpoint with the most terms: a few seconds)."""
    path = sorted(SHIPPED, key=lambda p: ("translated" in p, "both" not in p))[0]
    ckpt, cfg = load(path)
    flags = [f"--{k}={getattr(cfg, k)}" for k in ("dataset", "uncertainty", "intrinsic",
                                                  "random_seed", "subset")]
    run = subprocess.run([sys.executable, "main.py", "--is_train=False",
                          f"--ckpt_dir={os.path.dirname(path)}", f"--results_dir={tmp_path}",
                          *flags], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    printed = float(re.search(r"test accuracy ([\d.]+)%", run.stdout).group(1))
    assert printed == pytest.approx(100 * ckpt["recorded"]["test_accuracy"], abs=0.1)
