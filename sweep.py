"""Sweeps on Ray: a grid of runs (datasets x variants x seeds x loss weights) packed into
groups that train in one process each, as main.py trains a group; then every run evaluated
under both protocols; then the report.

    python sweep.py --dataset=mnist --random_seed=1,2 --intrinsic=False,True --epochs=2
    python sweep.py --grid=sweeps/paper.json                         the paper's 40 runs
    python sweep.py --grid=sweeps/paper.json --address=HEAD:6379 --storage=/shared/ram

Every flag of main.py goes to every run, and --dataset and the flags of config.GROUPED take
comma-separated lists: the sweep is every combination. A grid file (JSON or YAML) holds such
flags as a mapping ({"random_seed": [1, 2, 3], "uncertainty": [false, true]}), or a list of
mappings swept together; flags on the command line override the file's, except --dataset,
which picks among the datasets a grid names. Unless the flags say otherwise, the files go to
runs/sweep/ (ckpt, logs, results, plots).

Without --address, the sweep starts a Ray instance of its own on this machine, even where
another one runs; with it, it joins that cluster. The code travels with the job (Ray's
runtime_env working_dir: this repository but LEFT_OUT and the sweep's outputs), so that a
node needs only Ray and requirements.txt; on a cluster, so does a --data_dir inside the
repository, while any other --data_dir and the folders the runs write (under --storage) must
be folders that every node sees. Each group is a Ray task that asks for --cpus_per_group
CPUs and, where the cluster has GPUs, --gpus_per_group of one; each evaluation is a task
that takes its group's result, so that Ray starts it once the group is trained. A task
whose worker or node dies is retried by Ray and resumes from its runs' latest checkpoints;
a task that raises fails, with the exception Ray hands back. A sweep started again skips
the runs that are trained and the evaluations that exist. Ctrl-C stops every task after it
saves a resumable checkpoint.
"""
import argparse
import contextlib
import json
import math
import os
import signal
import socket
import sys
import traceback

from config import GROUPED, ConfigError, get_config, get_configs, listed, run_name, str2bool

ROOT = os.path.dirname(os.path.abspath(__file__))
# Folders the runs write, on every node at the same place: made absolute, and put under
# --storage when relative.
OUTPUT_FLAGS = ("ckpt_dir", "logs_dir", "results_dir")
# Where a sweep writes unless its flags say otherwise: apart from main.py's folders and from
# the committed results/ and plots/.
OUT = "runs/sweep"
# What the runs do not need, left out of the copy of the repository that travels to the
# nodes (gitignore patterns): the environment, outputs, the shipped results and checkpoints
# (pretrained/ alone is 73 MB), and the files made from the MNIST archives of data/, which
# each node makes again. What travels is 11 MiB, mostly those archives; Ray refuses 512 MiB.
LEFT_OUT = ["/.git/", "/.venv/", "/runs/", "/runs_quick/", "/ckpt/", "/logs/", "/results/",
            "/plots/", "/pretrained/", "/notebooks/", "/docs/", "/tests/",
            "/data/MNIST/processed/", "/data/MNIST/raw/*-ubyte"]


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        """One sentence and exit status 2, instead of argparse's usage dump."""
        self.exit(2, f"error: {message} (python sweep.py --help lists the flags)\n")


def parse(argv):
    """The sweep's own flags, and the rest: main.py's flags for every run."""
    p = _Parser(
        description=__doc__.split("\n\n")[0], allow_abbrev=False,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="Any other flag is main.py's (python main.py --help) and goes to every run.")
    p.add_argument("--grid", default=None, help="a JSON or YAML file of flags to sweep")
    p.add_argument("--dataset", type=listed(str), default=None,
                   help="datasets to sweep, comma-separated (default: the grid's, else mnist)")
    p.add_argument("--address", default=None, help="a running Ray cluster to join: its head's "
                   "host:port, or auto for the one that `ray start` started on this machine "
                   "(token authentication: README, Running a sweep); default: start a Ray "
                   "instance of the sweep's own on this machine")
    p.add_argument("--storage", default=None, help="a folder every node sees: relative "
                   "--ckpt_dir, --logs_dir, --results_dir and --plots_dir go under it")
    p.add_argument("--group_size", type=int, default=20, help="most runs trained in one process")
    p.add_argument("--cpus_per_group", type=float, default=1, help="CPUs each group asks for")
    p.add_argument("--gpus_per_group", type=float, default=0.25,
                   help="the share of a GPU each group asks for, where the cluster has GPUs")
    p.add_argument("--max_retries", type=int, default=3,
                   help="how often Ray starts a task again whose worker or node died")
    p.add_argument("--evaluate", type=str2bool, default=True, help="evaluate every run under "
                   "both protocols: ours (best checkpoint, M = 1 and 10) and the author's "
                   "(latest checkpoint, M = 10), curve N = 1..max_glimpses, and the dynamic "
                   "sweeps for the variants with the uncertainty term")
    p.add_argument("--report", type=str2bool, default=True,
                   help="then rebuild the tables and figures (report.py)")
    p.add_argument("--plots_dir", default=f"{OUT}/plots", help="report.py's --plots_dir")
    p.add_argument("--first_epoch_logs", default=f"{OUT}/logs",
                   help="report.py's --first_epoch_logs: the runs of its first-epoch figure")
    p.add_argument("--pretrained_dir", default=None, help="report.py's --pretrained_dir")
    args, rest = p.parse_known_args(argv)
    if args.group_size < 1:
        p.error("--group_size must be at least 1")
    for flag in ("--is_train", "--resume", "--checkpoint"):
        if any(a.split("=")[0] == flag for a in rest):
            p.error(f"{flag} is the sweep's to set: it trains what is missing, resumes what "
                    f"has a checkpoint, and tests the runs' own checkpoints")
    return args, rest
def read_grid(path):
    """A grid file: a list of mappings of flags."""
    try:
        with open(path) as f:
            if path.endswith((".yaml", ".yml")):
                import yaml
                try:
                    grid = yaml.safe_load(f)
                except yaml.YAMLError as e:
                    raise ConfigError(f"{path} is not valid YAML: {e}") from e
            else:
                grid = json.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read the grid file {path}: {e.strerror}.") from e
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON: {e}.") from e
    grids = grid if isinstance(grid, list) else [grid]
    if not grids or not all(isinstance(g, dict) for g in grids):
        raise ConfigError(f"{path} holds neither a mapping of flags nor a list of them.")
    return grids


def as_flags(grid):
    """A grid file's mapping as main.py's command-line flags."""
    flags = []
    for key, value in grid.items():
        values = [str(v) for v in (value if isinstance(value, list) else [value])]
        if key in GROUPED:
            flags.append(f"--{key}={','.join(values)}")
        elif isinstance(value, list):
            flags += [f"--{key}", *values]
        else:
            flags.append(f"--{key}={values[0]}")
    return flags


def plan(args, rest):
    """Every run of the sweep, once: {run name: (argv, cfg)}, argv the run's own main.py
    flags (its folders as a task finds them), cfg what main.py makes of them."""
    runs = {}
    for grid in read_grid(args.grid) if args.grid else [{}]:
        grid = dict(grid)
        datasets = grid.pop("dataset", None)
        if datasets is None:
            datasets = args.dataset or ["mnist"]
        else:  # the grid's datasets, those of --dataset where it is given
            datasets = [d for d in (datasets if isinstance(datasets, list) else [datasets])
                        if not args.dataset or d in args.dataset]
        for dataset in datasets:
            flags = ([f"--{key}={OUT}/{key[:-4]}" for key in OUTPUT_FLAGS] + as_flags(grid)
                     + rest + [f"--dataset={dataset}"])
            for cfg in get_configs(flags):
                argv = flags + [f"--{key}={getattr(cfg, key)}" for key in GROUPED]
                argv += [f"--{key}={place(getattr(cfg, key), args)}" for key in OUTPUT_FLAGS]
                argv.append(f"--data_dir={travelling(cfg.data_dir, args)}")
                cfg = get_config(argv)
                runs.setdefault(run_name(cfg), (argv, cfg))
    if not runs:
        raise ConfigError(f"the grid holds no run of the datasets {', '.join(args.dataset)}.")
    return runs


def place(folder, args):
    """An output folder as every node finds it: under --storage when relative, and
    absolute."""
    if args.storage and not os.path.isabs(folder):
        folder = os.path.join(args.storage, folder)
    return os.path.abspath(folder)


def inside(folder):
    """Whether an absolute folder lies in this repository."""
    return os.path.commonpath([folder, ROOT]) == ROOT


def travelling(data_dir, args):
    """--data_dir as a task finds it. On a cluster, a folder of this repository travels with
    the code and is named relative to it, since a task runs in its node's copy of the
    repository; any other folder is named absolute, and every node must see it there. On the
    sweep's own Ray instance, the tasks read it where it is."""
    folder = os.path.abspath(data_dir)
    return os.path.relpath(folder, ROOT) if args.address and inside(folder) else folder


def runtime_env(args, runs):
    """The code that travels with the job: this repository as every task's working folder,
    without LEFT_OUT and the folders that the tasks read or write in place; and where it lies
    here (utils.REPOSITORY)."""
    in_place = {getattr(cfg, key) for _, cfg in runs.values() for key in OUTPUT_FLAGS}
    in_place |= {place(folder, args) for folder in (args.plots_dir, args.first_epoch_logs,
                                                     args.pretrained_dir) if folder}
    in_place |= {cfg.data_dir for _, cfg in runs.values() if os.path.isabs(cfg.data_dir)}
    return {"working_dir": ROOT, "env_vars": {"RAM_REPOSITORY": ROOT},
            "excludes": LEFT_OUT + [f"/{os.path.relpath(folder, ROOT)}/"
                                    for folder in sorted(in_place) if inside(folder)]}


def read_checkpoint(cfg, kind):
    """A run's `kind` checkpoint (best, latest) as a dict; None where there is none."""
    from utils import CheckpointError, load_checkpoint
    try:
        return load_checkpoint(os.path.join(cfg.ckpt_dir, f"{run_name(cfg)}_{kind}.pt"))
    except CheckpointError:
        return None


def progress(cfg):
    """Where a run stands, from its latest checkpoint: (epochs done, finished: every epoch
    done or stopped early, the place (epoch, step) a resume starts from; None without a
    checkpoint)."""
    ckpt = read_checkpoint(cfg, "latest")
    if ckpt is None:
        return 0, False, None
    finished = ckpt["epoch"] >= cfg.epochs or ckpt["epochs_since_best"] >= cfg.train_patience
    return ckpt["epoch"], finished, (ckpt["epoch"], ckpt["batch"])


def pack(todo, size):
    """Groups of at most `size` runs that can train in one process: the same settings but for
    the GROUPED ones, and the same place in their checkpoints. todo: [(cfg, place)]."""
    buckets = {}
    for cfg, where in todo:
        shared = tuple(sorted((k, repr(v)) for k, v in vars(cfg).items() if k not in GROUPED))
        buckets.setdefault((shared, where), []).append(cfg)
    groups = []
    for cfgs in buckets.values():
        n = math.ceil(len(cfgs) / size)
        groups += [cfgs[i::n] for i in range(n)]  # n groups of nearly equal size
    return groups


def evaluations(argv, cfg, missing=True):
    """main.py's flags for each evaluation of a run: [(protocol, argv)]; only those that are
    missing, unless missing=False (a run about to train: the results of its checkpoints-to-be
    cannot exist). An evaluation is there when a results file measured the run's checkpoint of
    that epoch (of any epoch where the checkpoint is not here: the results that ship without
    checkpoints)."""
    from evaluate import has_results
    name = run_name(cfg)

    def there(kind, protocol):
        epoch = (read_checkpoint(cfg, kind) or {}).get("epoch")
        return has_results(cfg.results_dir, name, kind, epoch, 10, cfg.max_glimpses, protocol)

    dynamic = ["--dynamic=True"] if cfg.uncertainty else []
    todo = []
    if not (missing and there("best", "ours")):
        todo.append(("ours", argv + ["--is_train=False", "--best=True", "--curve=True",
                                     "--M", "1", "10", *dynamic]
                     + (["--stopping_rule", "spec", "released"] if dynamic else [])))
    if not (missing and there("latest", "author")):
        latest = os.path.join(cfg.ckpt_dir, f"{name}_latest.pt")
        todo.append(("author", argv + ["--is_train=False", f"--checkpoint={latest}",
                                       "--protocol=author", "--curve=True", "--M", "10",
                                       *dynamic]
                     + (["--stopping_rule", "released", "spec"] if dynamic else [])))
    return todo


@contextlib.contextmanager
def console(log_path):
    """A task's console output, appended to log_path, with the traceback of an exception that
    ends the task (Ray hands the exception itself to the driver)."""
    with open(log_path, "a", buffering=1) as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        try:
            yield
        except BaseException:
            traceback.print_exc()
            raise


def train_group(cfgs, log_path, events):
    """A Ray task: train the group in this worker process, resuming from the latest
    checkpoints where they exist (as a retried task does); the console output goes to
    log_path. Each attempt tells the driver that it starts, through `events` (a Ray queue):
    (task id, attempt number, where it runs)."""
    import ray

    import main
    context = ray.get_runtime_context()
    # Ray counts a task's attempts from 0; of its public API only the State API shows the
    # count, and that needs the dashboard (ray[default]).
    attempt = context.worker.core_worker.get_current_task_attempt_number() + 1
    where = f"process {os.getpid()} on {socket.gethostname()}"
    events.put((context.get_task_id(), attempt, where))
    resume = os.path.exists(os.path.join(cfgs[0].ckpt_dir, f"{run_name(cfgs[0])}_latest.pt"))
    for cfg in cfgs:
        cfg.is_train, cfg.resume = True, resume
    # Ray's workers block SIGINT: unblocked, `kill -INT` on this process saves and stops the
    # group, as it stops main.py
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
    with console(log_path):
        # On a line of its own: a killed attempt may have left a progress bar's line open.
        print(f"\n[sweep] attempt {attempt} in {where}")
        main.train(cfgs)


def evaluate_run(trained, argv, log_path):
    """A Ray task: one evaluation (main.py --is_train=False ...). `trained` is the result of the
    run's training task, so that Ray starts this task once that one succeeded (None for a run
    trained before the sweep)."""
    import main
    with console(log_path):
        main.run(get_configs(argv))


class Sweep:
    """The driver: submits a task per group and per evaluation, and shows the progress of the
    whole sweep."""

    def __init__(self, args, runs):
        import ray
        from ray.util.queue import Queue
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        self.ray, self.args, self.runs = ray, args, runs
        self.log_dir = os.path.join(next(iter(runs.values()))[1].logs_dir, "sweep")
        os.makedirs(self.log_dir, exist_ok=True)
        self.train = ray.remote(max_retries=args.max_retries)(train_group)
        self.evaluate = ray.remote(max_retries=args.max_retries, num_cpus=1)(evaluate_run)
        # On the driver's node, so that it lives as long as the sweep: no CPU, so that it never
        # waits for one.
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.events = Queue(actor_options={"num_cpus": 0, "scheduling_strategy": here})
        self.tasks = {}  # ray reference -> (kind, label, console log, the training it waits for)
        self.groups = {}  # task id -> label, of the training tasks
        self.failed = set()  # the ray references of the tasks that failed

    def run(self):
        """Train, evaluate, report; returns the exit status (0, 1 when a task failed, 130
        after Ctrl-C)."""
        from tqdm import tqdm
        todo = self._scan()
        groups = pack(todo, self.args.group_size)
        resources = self.ray.cluster_resources()
        self.bar = tqdm(total=sum(cfg.epochs for _, cfg in self.runs.values()),
                        initial=sum(self.epochs.values()), unit="epoch", desc="sweep",
                        file=sys.stdout)
        self.bar.write(f"[*] {len(self.runs)} runs: {len(self.runs) - len(todo)} trained, "
                       f"{len(todo)} to train in {len(groups)} groups; Ray: "
                       f"{resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs")
        self._submit(groups, gpus=resources.get("GPU", 0) > 0)
        try:
            self._wait()
        except KeyboardInterrupt:
            return self._stop()
        finally:
            self.bar.close()
        if self.args.report and not self.failed:
            self._report()
        return 1 if self.failed else 0

    def _scan(self):
        """The runs left to train, [(cfg, place)]; self.epochs: the epochs each run has done
        (all of them for a run with nothing left to do)."""
        todo, self.epochs = [], {}
        for name, (argv, cfg) in self.runs.items():
            epochs, finished, where = progress(cfg)
            if not finished and self.args.evaluate and not evaluations(argv, cfg):
                epochs, finished = cfg.epochs, True  # evaluated, checkpoints or not: done
            self.epochs[name] = epochs
            if not finished:
                todo.append((cfg, where))
        return todo

    def _submit(self, groups, gpus):
        """A training task per group, on a share of a GPU where the cluster has GPUs, and the
        evaluations of its runs after it; the missing evaluations of the runs trained before."""
        gpus = gpus and self.args.gpus_per_group > 0
        for i, cfgs in enumerate(groups):
            for cfg in cfgs:
                cfg.use_gpu = gpus
            label = f"group {i + 1}/{len(groups)} ({cfgs[0].dataset}, {len(cfgs)} runs)"
            log = os.path.join(self.log_dir, f"{run_name(cfgs[0])}+{len(cfgs) - 1}.log")
            options = {"num_cpus": self.args.cpus_per_group,
                       "num_gpus": self.args.gpus_per_group if gpus else 0}
            ref = self.train.options(**options).remote(cfgs, log, self.events)
            self.tasks[ref] = ("train", label, log, None)
            self.groups[ref.task_id().hex()] = label
            for cfg in cfgs:
                self._submit_evaluations(run_name(cfg), ref)
        training = {run_name(cfg) for cfgs in groups for cfg in cfgs}
        for name in sorted(set(self.runs) - training):
            self._submit_evaluations(name, None)

    def _submit_evaluations(self, name, training):
        """The run's evaluations: all of them after `training` (a training task), the missing
        ones of a run trained before (training None)."""
        if not self.args.evaluate:
            return
        argv, cfg = self.runs[name]
        for protocol, eval_argv in evaluations(argv, cfg, missing=training is None):
            log = os.path.join(self.log_dir, f"{name}_{protocol}.log")
            ref = self.evaluate.remote(training, eval_argv, log)
            self.tasks[ref] = ("evaluate", f"{name}: {protocol} protocol", log, training)

    def _wait(self):
        while self.tasks:
            # A task that ends returns at once; the timeout only paces the progress bar, whose
            # reads of every run's epochs.csv and of the events queue take CPU from training.
            done, _ = self.ray.wait(list(self.tasks), num_returns=1, timeout=1.0)
            self._show_progress()
            for ref in done:
                if ref in self.tasks:  # not already told as the training of an evaluation
                    self._finished(ref)

    def _finished(self, ref):
        """A line for a task that ended: finished, evaluated or failed, as Ray says; nothing
        for an evaluation that Ray failed, without starting it, with its training."""
        if self.tasks[ref][3] in self.tasks:
            # An evaluation ends after its training, which Ray may hand back in the same batch or
            # the next: the training's line comes first, and counts an evaluation it failed.
            self._finished(self.tasks[ref][3])
        kind, label, log, training = self.tasks.pop(ref)
        try:
            self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as e:  # the task raised e.cause
            self._fail(ref, label, log, training, f"{type(e.cause).__name__}: {e.cause}")
        except self.ray.exceptions.RayError as e:  # its retries used up, or Ray failed
            self._fail(ref, label, log, training,
                       f"{type(e).__name__}: {str(e).strip().splitlines()[0]}")
        else:
            if kind == "train":
                self.bar.write(f"[*] {label} finished")
            else:
                left = sum(kind == "evaluate" for kind, *_ in self.tasks.values())
                self.bar.write(f"[*] {label} evaluated ({left} evaluations left)")

    def _fail(self, ref, label, log, training, error):
        """A line for a failed task; none for an evaluation that failed with its training,
        whose line counts it."""
        if training in self.failed:
            return
        self.failed.add(ref)
        waiting = sum(after == ref for *_, after in self.tasks.values())
        self.bar.write(f"[!] {label} failed: {error} (console output: {log})"
                       + (f"; its {waiting} evaluations are not run" if waiting else ""))

    def _show_progress(self):
        """Advance the bar to the epochs in the runs' logs; a line per group that starts or
        is retried (as its task says through self.events)."""
        done = 0
        for name, (_, cfg) in self.runs.items():
            path = os.path.join(cfg.logs_dir, name, "epochs.csv")
            if os.path.exists(path):
                with open(path) as f:
                    done += max(self.epochs[name], sum(1 for _ in f) - 1)
            else:
                done += self.epochs[name]
        self.bar.update(done - self.bar.n)
        for task_id, attempt, where in self.events.get_nowait_batch(self.events.qsize()):
            label = self.groups[task_id]
            self.bar.write(f"[*] {label} started in {where}" if attempt == 1 else
                           f"[!] {label} retried by Ray (attempt {attempt}, in {where}): its "
                           f"worker or node died; resuming from the latest checkpoints")

    def _stop(self):
        """Ctrl-C: every running task gets SIGINT, saves a resumable checkpoint and stops."""
        self.bar.write("[!] Ctrl-C: stopping the tasks; each saves a resumable checkpoint "
                       "(Ctrl-C again stops at once)")
        for ref in self.tasks:
            self.ray.cancel(ref)
        for ref in self.tasks:
            with contextlib.suppress(self.ray.exceptions.RayError):
                self.ray.get(ref)
        print("error: interrupted; run the same command again to resume.", file=sys.stderr)
        return 130

    def _report(self):
        import report
        cfg = next(iter(self.runs.values()))[1]
        argv = [f"--results_dir={cfg.results_dir}",
                f"--plots_dir={place(self.args.plots_dir, self.args)}",
                f"--first_epoch_logs={place(self.args.first_epoch_logs, self.args)}"]
        if self.args.pretrained_dir:
            argv.append(f"--pretrained_dir={place(self.args.pretrained_dir, self.args)}")
        report.main(argv)


def main(argv=None):
    """Exit status: 0 done, 1 a task failed, 2 bad settings, 130 Ctrl-C."""
    args, rest = parse(argv)
    try:
        runs = plan(args, rest)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import ray
    try:
        # "local": a Ray instance of the sweep's own; ray.init() would join any running here.
        ray.init(address=args.address or "local", include_dashboard=False, log_to_driver=False,
                 runtime_env=runtime_env(args, runs))
    except ConnectionError as e:  # Ray says which; most often a token missing here
        print(f"error: {e}; a cluster that checks a token needs RAY_AUTH_MODE=token and its "
              f"token in RAY_AUTH_TOKEN here too (README, Running a sweep).", file=sys.stderr)
        return 2
    try:
        return Sweep(args, runs).run()
    finally:
        ray.shutdown()


if __name__ == "__main__":
    # Started in the background (`nohup python sweep.py ... &`), the sweep inherits SIGINT
    # ignored: `kill -INT` and `kill -TERM` then stop it as Ctrl-C does (every group saves).
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, signal.default_int_handler)
    sys.exit(main())
