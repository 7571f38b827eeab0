"""Shared set-up: the repository root on sys.path (so `python -m pytest tests` works from the
repository root), one torch thread, a `device` parametrisation (CPU always, CUDA where there
is one)."""
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

CUDA = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not CUDA,
                                                                reason="CUDA not available"))]


@pytest.fixture(params=DEVICES)
def device(request):
    """Run the test on CPU, and again on CUDA where there is one."""
    return torch.device(request.param)
