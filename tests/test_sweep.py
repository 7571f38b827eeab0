"""sweep.py on a Ray instance of its own: a grid trains the groups main.py would train, bit for
bit; a sweep started again trains nothing; Ctrl-C on the driver and a killed worker both end,
after a resume and a retry, in the checkpoints of an uninterrupted run; a task that raises is
reported once, from its exception. And on a cluster of two nodes started with `ray start` as
the README says: a killed node's group is retried on the other and ends in the same
checkpoints."""
import contextlib
import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import psutil
import pytest
import torch

from conftest import DATA, ROOT, assert_same_training_state, run_dirs

pytest.importorskip("ray")

# Runs that take a few seconds an epoch, so that a test can stop one in the middle.
RUN = ["--subset=6400", "--epochs=2", "--use_tensorboard=False", f"--data_dir={DATA}",
       "--hidden_size=64", "--glimpse_hidden=32", "--loc_hidden=32"]
NAME = "mnist_ram_6_8x8_s2_k1_{variant}_seed{seed}_subset6400"
GROUPS = {"original": ["--random_seed=1,2", "--intrinsic=False"],
          "intrinsic": ["--random_seed=1,2", "--intrinsic=True"]}


def runs(variant):
    return [NAME.format(variant=variant, seed=s) for s in (1, 2)]


def python(*args):
    """`python ARGS` in the repository root with one thread, as a Ray task of one CPU runs:
    the same arithmetic, so the same bits."""
    return [sys.executable, *args], dict(cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"),
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True)


def sweep(out, *flags, background=False, **env):
    """`python sweep.py` on the test runs, its files under `out`, with the environment
    variables `env` too: a started process. background: started as a shell starts `cmd &`,
    with SIGINT ignored."""
    cmd, kw = python("sweep.py", *RUN, f"--storage={out}", "--group_size=2", *flags)
    kw["env"].update(env)
    if background:
        kw["preexec_fn"] = lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)
    return subprocess.Popen(cmd, **kw)


def finish(proc, timeout=240):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def ckpt(folder, run, kind="latest"):
    return torch.load(f"{folder}/{run}_{kind}.pt", weights_only=True)


@pytest.fixture(scope="module", autouse=True)
def ray_tmp():
    """A folder for the files of the tests' Ray instances, removed afterwards (each keeps the
    copy of the repository that travelled with its job); short, as Ray's socket paths must fit
    in 107 bytes."""
    folder = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_TMPDIR", folder)
        yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The two groups of the 2 x 2 grid, each trained by main.py in one process: ckpt dir."""
    tmp = tmp_path_factory.mktemp("main")
    for group in GROUPS.values():
        cmd, kw = python("main.py", *RUN, *group, *run_dirs(tmp))
        r = subprocess.run(cmd, **kw, timeout=300)
        assert r.returncode == 0, r.stderr
    return tmp / "ckpt"


def wait_for(predicate, proc, timeout=120):
    """predicate()'s first true value, while proc runs."""
    start = time.time()
    while not (value := predicate()):
        assert proc.poll() is None, proc.communicate()
        assert time.time() - start < timeout
        time.sleep(0.05)
    return value


def kill_tree(proc):
    """SIGKILL a process this test started, and every process under it, unless it has ended
    (then its number may be another process's)."""
    if proc.poll() is None:
        root = psutil.Process(proc.pid)
        for p in [*root.children(recursive=True), root]:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
    proc.wait()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_grid_trains_the_groups_of_main_py_and_a_second_sweep_trains_nothing(
        tmp_path, reference):
    """seeds 1, 2 x intrinsic False, True with --group_size=2: two groups of two runs, whose
    checkpoints equal those of main.py training the same groups; every run is evaluated under
    both protocols and the report is written. Started again, the sweep finds everything done
    and changes no file."""
    code, out, err = finish(sweep(tmp_path, "--random_seed=1,2", "--intrinsic=False,True",
                                  "--max_glimpses=8", "--num_test=200"))
    assert code == 0, err
    assert "4 runs: 0 trained, 4 to train in 2 groups" in out
    assert out.count("started in process") == 2 and out.count("finished") == 2
    assert out.count("protocol evaluated") == 8 and "evaluated (0 evaluations left)" in out
    files = tmp_path / "runs" / "sweep"
    for variant in GROUPS:
        for run in runs(variant):
            for kind in ("latest", "best"):
                assert_same_training_state(ckpt(files / "ckpt", run, kind),
                                           ckpt(reference, run, kind))
            results = os.listdir(files / "results" / run)
            assert any(f.startswith("best-") and "_M10_curve8" in f and
                       not f.endswith("_author.json") for f in results), results
            assert any(f.startswith("latest-") and f.endswith("_M10_curve8_first200_author.json")
                       for f in results), results
    assert (files / "results" / "tables.md").exists()
    assert (files / "plots" / "first_epoch_mnist.png").exists()
    before = {p: os.stat(p).st_mtime_ns for p in files.rglob("*") if p.is_file()}
    code, out, err = finish(sweep(tmp_path, "--random_seed=1,2", "--intrinsic=False,True",
                                  "--max_glimpses=8", "--num_test=200", "--report=False"))
    assert code == 0, err
    assert "4 runs: 4 trained, 0 to train in 0 groups" in out
    assert "started" not in out and "evaluated" not in out
    assert {p: os.stat(p).st_mtime_ns for p in files.rglob("*") if p.is_file()
            if "sweep/logs/sweep" not in str(p)} == \
        {p: t for p, t in before.items() if "sweep/logs/sweep" not in str(p)}


def test_ctrl_c_and_a_killed_worker_end_in_the_uninterrupted_checkpoints(tmp_path, reference):
    """`kill -INT` on the driver in epoch 2, of a sweep started in the background (which
    inherits SIGINT ignored): the task saves a resumable checkpoint and the sweep exits 130.
    Started again, it resumes; its worker, killed mid-epoch, is retried by Ray and resumes
    again. The runs end exactly where main.py's uninterrupted group ends."""
    flags = ("--evaluate=False", "--report=False", *GROUPS["original"])
    ckpt_dir = tmp_path / "runs" / "sweep" / "ckpt"
    latest = ckpt_dir / f"{runs('original')[1]}_latest.pt"
    proc = sweep(tmp_path, *flags, background=True)
    wait_for(latest.exists, proc)  # epoch 1 is saved: epoch 2 has begun
    proc.send_signal(signal.SIGINT)
    code, out, err = finish(proc)
    assert code == 130, err
    assert "run the same command again to resume" in err
    saved = ckpt(ckpt_dir, runs("original")[0])
    assert saved["epoch"] == 1 and saved["batch"] > 0, "the stop saved no mid-epoch checkpoint"
    log = tmp_path / "runs" / "sweep" / "logs" / "sweep" / f"{runs('original')[0]}+1.log"

    def lines(start):
        with open(log) as f:
            return [line for line in f if line.startswith(start)]

    proc = sweep(tmp_path, *flags)
    wait_for(lambda: len(lines("[*] resuming")) == 2, proc)  # the second sweep trains
    os.kill(int(lines("[sweep] attempt")[-1].split()[5]), signal.SIGKILL)
    code, out, err = finish(proc)
    assert code == 0, err
    assert "started in process" in out and "retried by Ray (attempt 2," in out, out
    # Ray's count of the attempts: one in the first sweep, two in the second.
    assert [line.split()[2] for line in lines("[sweep] attempt")] == ["1", "1", "2"]
    assert len(lines("[*] resuming")) == 2 * 2  # two resumes of two runs
    for run in runs("original"):
        assert not (ckpt_dir / f"{run}.lock").exists()
        for kind in ("latest", "best"):
            assert_same_training_state(ckpt(ckpt_dir, run, kind), ckpt(reference, run, kind))
        for log in ("train_iterations.csv", "epochs.csv"):
            assert (tmp_path / "runs" / "sweep" / "logs" / run / log).read_text() == \
                (reference.parent / "logs" / run / log).read_text(), log


def test_sigint_to_a_groups_worker_saves_and_stops_that_group(tmp_path):
    """`kill -INT` on the worker that trains a group (Ray blocks SIGINT in its workers): the
    group saves a resumable checkpoint mid-epoch and stops, and the sweep reports it
    interrupted (exit 1: a task failed)."""
    ckpt_dir = tmp_path / "runs" / "sweep" / "ckpt"
    proc = sweep(tmp_path, "--evaluate=False", "--report=False", *GROUPS["original"])
    wait_for((ckpt_dir / f"{runs('original')[1]}_latest.pt").exists, proc)  # in epoch 2
    log = tmp_path / "runs" / "sweep" / "logs" / "sweep" / f"{runs('original')[0]}+1.log"
    with open(log) as f:
        worker = next(int(line.split()[5]) for line in f if line.startswith("[sweep] attempt"))
    os.kill(worker, signal.SIGINT)
    code, out, err = finish(proc)
    assert code == 1, err
    assert "Interrupted: interrupted by SIGINT at epoch 2" in out + err
    saved = ckpt(ckpt_dir, runs("original")[0])
    assert saved["epoch"] == 1 and saved["batch"] > 0, "the stop saved no mid-epoch checkpoint"


def test_a_cluster_loses_a_node_and_ends_in_the_uninterrupted_checkpoints(
        tmp_path, ray_tmp, reference):
    """The README's cluster on this machine: a head and a worker node started by `ray start`,
    one CPU each, with token authentication (RAY_AUTH_MODE and the token in RAY_AUTH_TOKEN on
    every node and for the sweep), and a sweep joining it with --address: a group trains on
    each node. The worker node, killed in its group's second epoch, is lost with the process
    that trains there; Ray retries the group on the head, which resumes it from the epoch-1
    checkpoints, and every run ends where main.py's uninterrupted groups end. A sweep without
    RAY_AUTH_MODE=token is refused, and says what it lacks."""
    # A token of the kind `ray get-auth-token --generate` makes.
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    port = free_port()

    def node(name, *flags):
        """`ray start` of one node, its output in tmp_path/<name>.log: a started process."""
        cmd = [os.path.join(os.path.dirname(sys.executable), "ray"), "start", "--block",
               "--num-cpus=1", f"--temp-dir={ray_tmp}/{name}", "--disable-usage-stats",
               f"--dashboard-agent-listen-port={free_port()}", *flags]
        out = tmp_path / f"{name}.log"
        with open(out, "w") as f:
            proc = subprocess.Popen(cmd, env=dict(os.environ, OMP_NUM_THREADS="1",
                                                   PYTHONUNBUFFERED="1", **auth),
                                    stdout=f, stderr=subprocess.STDOUT)
        procs.append(proc)
        wait_for(lambda: "Ray runtime started" in out.read_text(), proc)
        return proc

    procs = []
    try:
        node("head", "--head", f"--port={port}", "--include-dashboard=false",
             f"--ray-client-server-port={free_port()}")
        worker = node("worker", f"--address=127.0.0.1:{port}")
        # Ray tries to connect once a second, 20 times unless told otherwise.
        procs.append(sweep(tmp_path, f"--address=127.0.0.1:{port}", **dict(
            auth, RAY_AUTH_MODE="disabled", RAY_NUM_REDIS_GET_RETRIES="1")))
        code, _, err = finish(procs[-1])
        assert code == 2, err
        assert "needs RAY_AUTH_MODE=token and its token in RAY_AUTH_TOKEN here too" in err
        proc = sweep(tmp_path, "--random_seed=1,2", "--intrinsic=False,True", "--evaluate=False",
                     "--report=False", f"--address=127.0.0.1:{port}", **auth)
        procs.append(proc)
        logs = tmp_path / "runs" / "sweep" / "logs" / "sweep"

        def on_worker_node():
            """The console log of the group that trains on the worker node."""
            pids = {p.pid for p in psutil.Process(worker.pid).children(recursive=True)}
            for log in logs.glob("*.log"):
                for line in log.read_text().splitlines():
                    if line.startswith("[sweep] attempt") and int(line.split()[5]) in pids:
                        return log

        variant = "original" if "original" in wait_for(on_worker_node, proc).name else "intrinsic"
        ckpt_dir = tmp_path / "runs" / "sweep" / "ckpt"
        wait_for((ckpt_dir / f"{runs(variant)[1]}_latest.pt").exists, proc)  # in epoch 2
        kill_tree(worker)
        code, out, err = finish(proc)
        assert code == 0, err
        assert "Ray: 2 CPUs" in out and out.count("started in process") == 2, out
        assert "retried by Ray (attempt 2," in out, out
        for run in runs("original") + runs("intrinsic"):
            for kind in ("latest", "best"):
                assert_same_training_state(ckpt(ckpt_dir, run, kind), ckpt(reference, run, kind))
        # The data travelled with the code, and the tasks decompressed them in its copy.
        assert glob.glob(f"{ray_tmp}/head/session_*/runtime_resources/working_dir_files/"
                         "_ray_pkg_*/data/MNIST/raw/train-images-idx3-ubyte")
    finally:
        for proc in reversed(procs):
            kill_tree(proc)


def test_a_task_that_raises_is_reported_once_from_its_exception(tmp_path, ray_tmp):
    """A group without its data: its task, running on the copy of the repository that
    travelled with the job, raises DataError, which Ray hands to the driver; the sweep names
    it and the console log once, with the four evaluations that waited for the group and that
    Ray never starts, and exits 1 without a report."""
    code, out, err = finish(sweep(tmp_path, *GROUPS["original"], "--max_glimpses=8",
                                  f"--data_dir={tmp_path}/nowhere"))
    assert code == 1, err
    copy = [p for p in sorted(glob.glob(f"{ray_tmp}/ray/session_2*/runtime_resources/"
                                        "working_dir_files/_ray_pkg_*")) if os.path.isdir(p)][-1]
    assert {"main.py", "sweep.py", "data"} <= set(os.listdir(copy))
    assert not {"pretrained", "results", "plots", "tests", "runs"} & set(os.listdir(copy))
    assert sorted(os.listdir(f"{copy}/data/MNIST/raw")) == sorted(
        f for f in os.listdir(f"{DATA}/MNIST/raw") if f.endswith(".gz"))
    log = tmp_path / "runs" / "sweep" / "logs" / "sweep" / f"{runs('original')[0]}+1.log"
    failed = [line for line in out.splitlines() if "failed" in line]
    assert len(failed) == 1, out
    assert failed[0].startswith("[!] group 1/1 (mnist, 2 runs) failed: DataError: MNIST files "
                                f"missing from {tmp_path}/nowhere/MNIST/raw: "), failed
    assert failed[0].endswith(f"(console output: {log}); its 4 evaluations are not run")
    assert "evaluated" not in out and "Unhandled error" not in err
    assert f'File "{copy}/data_loader.py"' in log.read_text()  # the traceback
    assert "data_loader.DataError: MNIST files missing" in log.read_text()
    assert not (tmp_path / "runs" / "sweep" / "results" / "tables.md").exists()


def test_bad_input_is_one_sentence_and_exit_2(tmp_path):
    """Before Ray starts: an unreadable or malformed grid file, a flag the sweep sets itself,
    a dataset that the grid does not hold."""
    bad = tmp_path / "bad.json"
    bad.write_text('{"random_seed": [1, 2')
    not_a_grid = tmp_path / "list.json"
    not_a_grid.write_text("[1, 2]")
    cases = [([f"--grid={tmp_path}/missing.json"], "cannot read the grid file"),
             ([f"--grid={bad}"], "is not valid JSON"),
             ([f"--grid={not_a_grid}"], "neither a mapping of flags nor a list"),
             (["--resume=True"], "--resume is the sweep's to set"),
             (["--grid=sweeps/first_epoch.json", "--dataset=svhn"], "holds no run")]
    for flags, message in cases:
        cmd, kw = python("sweep.py", f"--storage={tmp_path}", *flags)
        r = subprocess.run(cmd, **kw, timeout=60)
        assert r.returncode == 2, (flags, r.stderr)
        assert message in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert os.listdir(tmp_path) == ["bad.json", "list.json"]


def test_an_evaluation_handed_back_before_its_failed_training_is_not_a_failure_of_its_own():
    """Ray may hand back an evaluation that it failed with its training before the training
    itself: the driver tells the training's failure first, once, counting that evaluation among
    those not run, and nothing of the evaluation."""
    import sweep

    class TaskError(Exception):
        def __init__(self, cause):
            self.cause = cause

    class Ray:  # what the driver uses of Ray: get, and two exception types
        exceptions = type("exceptions", (), {"RayError": Exception, "RayTaskError": TaskError})

        @staticmethod
        def get(ref):
            raise TaskError(ValueError("no data"))

    class Bar:
        lines = []

        def write(self, line):
            self.lines.append(line)

    driver = object.__new__(sweep.Sweep)
    driver.ray, driver.bar, driver.failed = Ray, Bar(), set()
    driver.tasks = {"train": ("train", "group 1/1", "g.log", None),
                    "eval1": ("evaluate", "run: ours protocol", "e1.log", "train"),
                    "eval2": ("evaluate", "run: author protocol", "e2.log", "train")}
    for ref in ("eval1", "train", "eval2"):  # as ray.wait may hand them back
        if ref in driver.tasks:
            driver._finished(ref)
    assert driver.tasks == {} and driver.failed == {"train"}
    assert Bar.lines == ["[!] group 1/1 failed: ValueError: no data (console output: g.log); "
                         "its 2 evaluations are not run"]


def test_plan_and_pack():
    """A grid file's list of grids, --dataset picking among their datasets, command-line flags
    over the file's; groups share every setting but the GROUPED ones and the place their
    checkpoints stand at, and are at most --group_size runs, of nearly equal sizes."""
    import sweep
    args, rest = sweep.parse(["--grid=sweeps/first_epoch.json", "--dataset=translated",
                              "--random_seed=7,8"])
    runs = sweep.plan(args, rest)
    assert len(runs) == 2 * 4
    assert {cfg.dataset for _, cfg in runs.values()} == {"translated"}
    assert {cfg.random_seed for _, cfg in runs.values()} == {7, 8}
    assert {cfg.lambda_intrinsic for _, cfg in runs.values()} == {1e-2}
    assert all(os.path.isabs(cfg.ckpt_dir) and cfg.ckpt_dir.endswith("runs/sweep/ckpt")
               for _, cfg in runs.values())
    cfgs = [cfg for _, cfg in runs.values()]
    todo = [(cfg, None) for cfg in cfgs[:5]] + [(cfg, (3, 17)) for cfg in cfgs[5:]]
    groups = sweep.pack(todo, size=2)
    assert sorted(len(g) for g in groups) == [1, 1, 2, 2, 2]
    assert sorted(sweep.run_name(c) for g in groups for c in g) == \
        sorted(sweep.run_name(c) for c in cfgs)
    for g in groups:
        assert len({cfg in cfgs[:5] for cfg in g}) == 1  # never a fresh run with a resumed one
    other = sweep.get_config([*sweep.plan(args, rest)[sweep.run_name(cfgs[0])][0],
                              "--hidden_size=64"])
    assert len(sweep.pack([(cfgs[0], None), (other, None)], size=8)) == 2


@pytest.mark.parametrize("grid", sorted(os.listdir(os.path.join(ROOT, "sweeps"))))
def test_every_grid_file_plans_the_runs_it_says(grid, tmp_path):
    """Every grid of each file of sweeps/ holds only main.py's flags with valid values, and
    plans runs that take each value it gives: one per combination of its lists."""
    import json
    import math
    import sweep
    with open(os.path.join(ROOT, "sweeps", grid)) as f:
        entries = json.load(f)
    for i, entry in enumerate(entries if isinstance(entries, list) else [entries]):
        path = tmp_path / f"{i}.json"
        path.write_text(json.dumps(entry))
        runs = sweep.plan(*sweep.parse([f"--grid={path}"]))
        lists = {k: v for k, v in entry.items() if isinstance(v, list) and k != "exploration_rate"}
        assert len(runs) == math.prod(len(v) for v in lists.values()), entry
        for _, cfg in runs.values():
            for key, value in entry.items():
                got = getattr(cfg, key)
                assert got in value if key in lists else got == value, (key, got, value)


def test_the_code_travels_with_the_job_and_the_outputs_stay(tmp_path):
    """The tasks' working folder is a copy of the repository without its large folders and the
    folders the tasks write. On a cluster, a --data_dir inside the repository travels with it,
    named relative to it as a task finds it in its copy, and any other stays absolute; on the
    sweep's own Ray instance, the tasks read it where it is."""
    import sweep
    assert {"/.git/", "/.venv/", "/runs/", "/pretrained/", "/results/"} <= set(sweep.LEFT_OUT)
    outputs = [f"/out/runs/sweep/{folder}/" for folder in ("ckpt", "logs", "plots", "results")]
    flags = [f"--data_dir={ROOT}/data", f"--storage={ROOT}/out"]
    args, rest = sweep.parse([*flags, "--address=head:6379"])
    runs = sweep.plan(args, rest)
    assert {cfg.data_dir for _, cfg in runs.values()} == {"data"}
    assert sweep.runtime_env(args, runs) == {"working_dir": ROOT,
                                             "env_vars": {"RAM_REPOSITORY": ROOT},
                                             "excludes": sweep.LEFT_OUT + outputs}
    # a task, in Ray's copy of the repository (here a copy of utils.py), records the paths
    # inside this one relative to it
    shutil.copy(os.path.join(ROOT, "utils.py"), tmp_path)
    cmd, kw = python("-c", "import utils; print(utils.in_repository("
                           f"'{ROOT}/runs/a_best.pt'), utils.in_repository('/elsewhere/b'))")
    kw["cwd"] = str(tmp_path)
    for env, want in (({}, f"{ROOT}/runs/a_best.pt"), ({"RAM_REPOSITORY": ROOT}, "runs/a_best.pt")):
        kw["env"] = dict(kw["env"], **env)
        assert subprocess.run(cmd, **kw).stdout.split() == [want, "/elsewhere/b"]
    args, rest = sweep.parse(flags)
    runs = sweep.plan(args, rest)
    assert {cfg.data_dir for _, cfg in runs.values()} == {f"{ROOT}/data"}
    assert sweep.runtime_env(args, runs)["excludes"] == sweep.LEFT_OUT + ["/data/"] + outputs
    args, rest = sweep.parse([f"--data_dir={tmp_path}", f"--storage={tmp_path}",
                              "--address=head:6379"])
    runs = sweep.plan(args, rest)
    assert {cfg.data_dir for _, cfg in runs.values()} == {str(tmp_path)}
    assert sweep.runtime_env(args, runs)["excludes"] == sweep.LEFT_OUT


def test_an_evaluation_counts_only_for_the_checkpoint_it_measured(tmp_path):
    """A results file of the run's best checkpoint from another epoch (a run trained again)
    does not count; one from the checkpoint's epoch does; with no checkpoint here (results
    that ship without their checkpoints), any epoch does."""
    import sweep
    import utils
    args, rest = sweep.parse([f"--storage={tmp_path}", "--max_glimpses=8"])
    argv, cfg = next(iter(sweep.plan(args, rest).values()))
    name = sweep.run_name(cfg)
    results = os.path.join(cfg.results_dir, name)
    os.makedirs(results)
    for f in ("best-epoch3_N6_M10_curve8.json", "latest-epoch3_N6_M10_curve8_author.json"):
        open(os.path.join(results, f), "w").close()
    assert sweep.evaluations(argv, cfg) == []
    for kind in ("best", "latest"):
        utils.save_checkpoint({"model": {}, "config": {}, "epoch": 2},
                              os.path.join(cfg.ckpt_dir, f"{name}_{kind}.pt"))
    assert [protocol for protocol, _ in sweep.evaluations(argv, cfg)] == ["ours", "author"]
    for f in ("best-epoch2_N6_M10_curve8.json", "latest-epoch2_N6_M10_curve8_author.json"):
        open(os.path.join(results, f), "w").close()
    assert sweep.evaluations(argv, cfg) == []
