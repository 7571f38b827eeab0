"""Shared set-up: the repository root on sys.path (so `python -m pytest tests` works from the
repository root), one torch thread, a `device` parametrisation (CPU always, CUDA where there
is one); and the helpers several test files use: the repository's paths, the real command
line, settings from flags (one run or a group), small models built from named settings, and
the comparison of two training checkpoints."""
import dataclasses
import os
import sys

# One intra-op thread, set before torch is imported so that the processes tests start
# (python main.py ...) inherit it: a test comparing an in-process run with a subprocess run
# then gets the same numbers. The models are small, so a second thread gains little on an
# idle machine; but when another process also runs torch on these 2 cores, two threads per
# process make every small op wait at OpenMP barriers (measured: a short training 4x slower,
# whole tests 5-40x slower). It also keeps the learning test's numbers the same on machines
# with any number of cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import subprocess  # noqa: E402

import config  # noqa: E402
from model import RecurrentAttention  # noqa: E402

CUDA = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not CUDA,
                                                                reason="CUDA not available"))]


@pytest.fixture(params=DEVICES)
def device(request):
    """Run the test on CPU, and again on CUDA where there is one."""
    return torch.device(request.param)


# ------------------------------------------------------------------------------- paths
DATA = os.path.join(ROOT, "data")  # the shipped MNIST files, in data/MNIST/raw/

# A short real run: 640 images (576 to train, 64 to validate), no tensorboard.
SMALL_RUN = ["--subset=640", "--use_tensorboard=False", f"--data_dir={DATA}"]


def run_dirs(tmp):
    """--ckpt_dir, --logs_dir and --results_dir under tmp, so that nothing a test runs
    writes into the repository."""
    return [f"--ckpt_dir={tmp}/ckpt", f"--logs_dir={tmp}/logs", f"--results_dir={tmp}/results"]


# ------------------------------------------------------------------------------- command line
def cli(*args, timeout=300):
    """The real command line, `python main.py ARGS` in the repository root:
    (exit code, stdout, stderr)."""
    r = subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, capture_output=True,
                       text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def run_main(*args):
    """main.main(ARGS) in this process, in the repository root: (exit status, stdout, stderr)
    as `cli` gives them, without the seconds a new interpreter takes to import torch."""
    import contextlib
    import io

    import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(ROOT), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        code = main.main(list(args))
    return code, out.getvalue(), err.getvalue()


def settings(*flags):
    """The settings main.py would run with on these flags (config.get_config): one run."""
    return config.get_config(list(flags))


def group_settings(*flags):
    """The settings of every run of the group these flags name (config.get_configs)."""
    return config.get_configs(list(flags))


# ------------------------------------------------------------------------------- models
# RecurrentAttention's keyword arguments. MNIST_ARCH and TRANSLATED_ARCH are the paper's
# models (docs/method.md, "The model" and "Training schedule and defaults"); SMALL_ARCH is
# MNIST's retina with small layers, for tests that need a model but not its size.
MNIST_ARCH = dict(patch_size=8, num_patches=1, glimpse_scale=2, num_channels=1,
                  glimpse_hidden=128, loc_hidden=128, hidden_size=256, std=0.1)
TRANSLATED_ARCH = dict(MNIST_ARCH, patch_size=12, num_patches=3, std=0.03)
SMALL_ARCH = dict(MNIST_ARCH, glimpse_hidden=32, loc_hidden=32, hidden_size=64)


def tiny_model(seed=0, **overrides):
    """RecurrentAttention(**SMALL_ARCH) with `overrides` (runs=R for a group of R runs), its
    weights drawn after torch.manual_seed(seed)."""
    torch.manual_seed(seed)
    return RecurrentAttention(**{**SMALL_ARCH, **overrides})


# ------------------------------------------------------------------------------- checkpoints
def flatten(d, prefix=""):
    """A nested dict as one dict of 'a/b/c' keys."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def assert_same_training_state(a, b):
    """Two training checkpoints hold the same training: every entry but the settings (which
    name the folders) equal, tensors bit for bit: the weights, the optimiser, the schedule,
    the policy's generator, the loaders' states (data order and translations) and every field
    of trainer.TrainState."""
    from trainer import TrainState
    assert set(a) == set(b)
    assert {"model", "optimizer", "schedule", "rng", "data"} <= set(a)
    assert {f.name for f in dataclasses.fields(TrainState)} <= set(a)
    flat_a = flatten({k: v for k, v in a.items() if k != "config"})
    flat_b = flatten({k: v for k, v in b.items() if k != "config"})
    assert flat_a.keys() == flat_b.keys()
    for k in flat_a:
        if torch.is_tensor(flat_a[k]):
            assert torch.equal(flat_a[k], flat_b[k]), f"{k} differs"
        else:
            assert flat_a[k] == flat_b[k], f"{k} differs: {flat_a[k]} != {flat_b[k]}"
