"""Speed benchmark: `python benchmark.py` prints a table and writes benchmark_<device>.json.

Measures, as the median of several repeats after a warm-up:
- training: milliseconds per run-step (one batch of 32 of one run; --batch to change it)
  for groups of K runs trained in one process (K = 1 is one run), MNIST and translated
  settings, and the cluttered ones for K = 1 and 16, both new terms,
  eager and with --compile=True (skip with --compile=0): forward, the loss, backward and the
  Adam step, with the translation of the batch for translated MNIST; and one run of original
  RAM;
- evaluation: the accuracy curve N = 1..50 over the 10,000 test images, and the dynamic sweep
  computed from it;
- the retina: the vectorised one against a per-sample slicing loop, in the same run;
- sweeps (--sweep=1): the wall time of the README's quick grid with sweep.py, and of
  `bash test_script.sh --quick`, each from a fresh start of Ray.
The compiled rows come last, and --budget_s stops starting them after a time (on a lent GPU
every minute counts); the JSON is written after every row, so a run cut short keeps its rows.
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

from config import CLUTTERED, IMAGE_SIZE, get_configs
from data_loader import (Clutter, draw_clutter, load_mnist, load_mnist_bytes, normalise,
                         paint, translate)
from evaluate import EVAL_BATCH, accuracy_curve, dynamic_sweep, run_glimpses
from model import RecurrentAttention
from trainer import Trainer


def timed(fn, repeats, warmup, sync):
    """Median seconds of fn() over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def settings(dataset, variant, mode="eager", runs=1, batch=32):
    """The configurations of `python main.py` for a dataset and a variant (original or both),
    a group of `runs` seeds, `batch` images a run; mode: eager, or a --compile_mode of
    --compile=True."""
    both = variant == "both"
    compile_flags = [] if mode == "eager" else ["--compile=True", f"--compile_mode={mode}"]
    return get_configs([f"--dataset={dataset}", f"--uncertainty={both}", f"--intrinsic={both}",
                        f"--batch_size={batch}", *compile_flags,
                        "--random_seed=" + ",".join(str(s) for s in range(1, runs + 1))])


def per_sample_retina(x, l, g, k, s):
    """The plain reference: a Python loop over samples, slicing each patch."""
    out = []
    H, W = x.shape[-2:]
    for b in range(x.shape[0]):
        col = int((l[b, 0] + 1) / 2 * W)
        row = int((l[b, 1] + 1) / 2 * H)
        pieces = []
        for i in range(k):
            n = g * s**i
            pad = F.pad(x[b], (n, n, n, n))
            r0, c0 = row - n // 2 + n, col - n // 2 + n
            pieces.append(F.avg_pool2d(pad[:, r0:r0 + n, c0:c0 + n][None], n // g).flatten())
        out.append(torch.cat(pieces))
    return torch.stack(out)


def bench_training(cfgs, device, batch, repeats, sync):
    """Trainer.step for the group `cfgs`, as Trainer.train_one_epoch calls it (forward and
    loss, compiled with --compile=True; backward; Adam, skipped on the device for a run whose
    loss is not finite), with each run's canvases made afresh for translated and cluttered
    MNIST. Times per step of the group and per run-step (the trainer's read of the logged
    numbers, once every trainer.READ_EVERY steps, is not in them)."""
    # Each setting compiles afresh: the compile cache of the settings before would count
    # against torch's limit of recompilations of one function.
    torch._dynamo.reset()
    trainer = Trainer(cfgs, device)
    R, dataset = len(cfgs), cfgs[0].dataset
    x = torch.randn(R, batch, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (R, batch), device=device)
    lr = torch.tensor([cfg.init_lr for cfg in cfgs], device=device)  # as the epoch loop has it
    gen = torch.Generator().manual_seed(0)
    if dataset in CLUTTERED:  # each batch painted afresh, as the training loader does
        images = load_mnist_bytes("./data", train=True)[0]
        pool, clutter = torch.arange(len(images)), Clutter(IMAGE_SIZE[dataset], cfgs[0].distractors)

    def canvases(r):
        if dataset == "translated":
            return translate(x[r], gen)
        own = torch.randint(0, len(images), (batch,), generator=gen)
        layout = draw_clutter(own, pool, clutter, gen)
        return normalise(paint(images[own], images, layout, clutter.size)).to(device)

    def step():
        xb = x if dataset == "mnist" else torch.stack([canvases(r) for r in range(R)])
        trainer.step(xb, y, lr)

    start = time.perf_counter()
    step()  # with --compile=True, this compiles
    first = time.perf_counter() - start
    # Several steps per timing, so that one measurement is tens of milliseconds.
    n = max(2, 20 // R)
    sec = timed(lambda: [step() for _ in range(n)], repeats, 3, sync) / n
    return {"ms_per_batch": 1000 * sec, "ms_per_run_step": 1000 * sec / R,
            "run_steps_per_s": R / sec, "images_per_s": R * batch / sec, "first_step_s": first}


def bench_evaluation(cfg, device, images, labels, repeats, sync):
    torch.manual_seed(0)
    model = RecurrentAttention.from_config(cfg).to(device)
    batches = [(images[i:i + EVAL_BATCH].to(device), labels[i:i + EVAL_BATCH].to(device))
               for i in range(0, len(labels), EVAL_BATCH)]
    result = {}

    def curve():
        result["out"] = run_glimpses(model, batches, 50)
        accuracy_curve(result["out"][0], result["out"][2])

    t_curve = timed(curve, repeats, 1, sync)
    log_probs, errors, y = result["out"]
    rates = [0, 0.01, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.45, 0.5]
    t_dyn = timed(lambda: dynamic_sweep(log_probs, errors, y, rates), repeats, 1, sync)
    return {"curve_1_to_50_s": t_curve, "images": len(labels),
            "curve_images_per_s": len(labels) * 50 / t_curve,
            "dynamic_sweep_s": t_dyn, "dynamic_rates": len(rates)}


# The quick grid of the README's "Running a sweep".
QUICK_GRID = ["--dataset=mnist", "--random_seed=1,2", "--intrinsic=False,True", "--epochs=2",
              "--subset=3200"]


def bench_sweeps():
    """Seconds of the quick grid with sweep.py (training, both evaluations, the report) and
    of `bash test_script.sh --quick`, each writing into a temporary folder."""
    result = {"quick_grid": "python sweep.py " + " ".join(QUICK_GRID)}
    for key, cmd in (("quick_grid_s", [sys.executable, "sweep.py", *QUICK_GRID]),
                     ("test_script_quick_s", ["bash", "test_script.sh", "--quick"])):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            subprocess.run(cmd + [f"--storage={tmp}"], check=True, capture_output=True,
                           env=dict(os.environ, PYTHON=sys.executable))
            result[key] = time.perf_counter() - start
    return result


def time_groups(rows, device, batch, repeats, sync, deadline, report, save):
    """Times the training step of each row (dataset, mode, K) into report["groups"], calling
    save() after each; a compiled row not started by `deadline` (time.perf_counter()) goes to
    report["skipped"] instead."""
    print(f"{f'training, batch {batch}, both terms':34s} {'runs K':>6s} {'ms/step':>9s} "
          f"{'ms/run-step':>12s} {'run-steps/s':>12s}")
    for dataset, mode, K in rows:
        if mode != "eager" and time.perf_counter() > deadline:
            report["skipped"].append({"dataset": dataset, "K": K, "mode": mode})
            continue
        r = bench_training(settings(dataset, "both", mode, runs=K, batch=batch), device, batch,
                           repeats, sync)
        report["groups"].append({"dataset": dataset, "K": K, "compile": mode != "eager",
                                 "mode": mode, "ms_per_run_step": r["ms_per_run_step"],
                                 "run_steps_per_s": r["run_steps_per_s"],
                                 "first_step_s": r["first_step_s"]})
        print(f"  {dataset + ' ' + mode:32s} {K:6d} {r['ms_per_batch']:9.2f} "
              f"{r['ms_per_run_step']:12.2f} {r['run_steps_per_s']:12.1f}", flush=True)
        save()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=None, help="JSON path (default benchmark_<device>.json)")
    p.add_argument("--compile", type=int, choices=(0, 1), default=1,
                   help="also time the training step with --compile=True (about a minute of "
                        "compilation per setting)")
    p.add_argument("--groups", default=None,
                   help="the group sizes K to time (default 1,4,8,16; and 32,64 on CUDA)")
    p.add_argument("--compile_groups", default=None,
                   help="the group sizes K to time compiled (default: those of --groups)")
    p.add_argument("--budget_s", type=float, default=0,
                   help="no compiled row starts after this many seconds (0: no limit); the "
                        "rows left out are listed under 'skipped'")
    p.add_argument("--batch", type=int, default=32,
                   help="images per run in the group rows (the paper's 32; 128 for the "
                        "strong recipe's)")
    p.add_argument("--sweep", type=int, choices=(0, 1), default=1,
                   help="also time the quick grid with sweep.py and test_script.sh --quick "
                        "(a few minutes)")
    a = p.parse_args()
    start = time.perf_counter()
    device = torch.device(a.device)
    a.groups = a.groups or ("1,4,8,16,32,64" if device.type == "cuda" else "1,4,8,16")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    out = a.out or f"benchmark_{device.type}.json"
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "threads": torch.get_num_threads(), "torch": torch.__version__, "batch": a.batch,
              "training": {}, "evaluation": {}, "groups": [], "skipped": []}

    def save():  # after every measurement: a run stopped part-way keeps what it measured
        with open(out, "w") as f:
            json.dump(report, f, indent=1)

    print(f"device {report['device']}, {report['threads']} CPU threads, torch {torch.__version__}")
    sizes = [int(k) for k in a.groups.split(",")]
    compiled = [int(k) for k in (a.compile_groups or a.groups).split(",")]
    # Compiled rows last (about a minute of compilation each), the fastest mode's first: with
    # CUDA graphs (reduce-overhead) where there are CUDA graphs. The cluttered datasets: one
    # run and a group of 16, their canvases painted every step.
    modes = (["reduce-overhead"] if a.compile and device.type == "cuda" else []) + (
        ["default"] if a.compile else [])
    rows = [(d, "eager", K) for d in ("mnist", "translated") for K in sizes]
    rows += [(d, "eager", K) for d in CLUTTERED for K in (1, 16)]
    rows += [(d, m, K) for m in modes for d in ("mnist", "translated") for K in compiled]
    rows += [(d, m, K) for m in modes for d in CLUTTERED for K in (1, 16)]

    print(f"{'training, one run of original RAM':34s} {'runs K':>6s} {'ms/step':>9s}")
    for dataset in ("mnist", "translated"):
        r = bench_training(settings(dataset, "original"), device, 32, a.repeats, sync)
        report["training"][f"{dataset}/original"] = r
        print(f"  {dataset + ' original RAM':32s} {1:6d} {r['ms_per_batch']:9.2f}")
    if device.type == "cuda":
        r = bench_training(settings("mnist", "both"), device, 1024, a.repeats, sync)
        report["training"]["mnist/both/batch1024"] = r
        print(f"  {'mnist both, one run, batch 1024':32s} {1:6d} {r['ms_per_batch']:9.2f}")
    save()

    images, labels = load_mnist("./data", train=False)
    print(f"{'evaluation, 10,000 test images':34s} {'curve s':>9s} {'sweep s':>9s}")
    for dataset in ("mnist", "translated"):
        x = (translate(images, torch.Generator().manual_seed(0)) if dataset == "translated"
             else images)
        r = bench_evaluation(settings(dataset, "both")[0], device, x, labels, a.repeats, sync)
        report["evaluation"][dataset] = r
        print(f"  {dataset + ' N = 1..50':32s} {r['curve_1_to_50_s']:9.2f} "
              f"{r['dynamic_sweep_s']:9.3f}")

    retina = RecurrentAttention.from_config(settings("translated", "both")[0]).retina
    x = torch.randn(32, 1, 60, 60)
    l = torch.rand(32, 2) * 2 - 1
    t_vec = timed(lambda: retina(x, l), 50, 5, lambda: None)
    t_ref = timed(lambda: per_sample_retina(x, l, 12, 3, 2), 10, 2, lambda: None)
    assert torch.allclose(retina(x, l), per_sample_retina(x, l, 12, 3, 2), atol=1e-6)
    report["retina"] = {"vectorised_ms": 1000 * t_vec, "per_sample_ms": 1000 * t_ref,
                        "speedup": t_ref / t_vec}
    print(f"retina (batch 32, 60x60, k=3): vectorised {1000 * t_vec:.3f} ms, per-sample loop "
          f"{1000 * t_ref:.2f} ms, x{t_ref / t_vec:.0f}")
    save()

    deadline = start + a.budget_s if a.budget_s else math.inf
    time_groups(rows, device, a.batch, a.repeats, sync, deadline, report, save)
    if report["skipped"]:
        print(f"[!] over the budget of {a.budget_s:.0f} s: {len(report['skipped'])} compiled "
              f"rows not timed (listed under 'skipped')")
    if a.sweep:
        report["sweep"] = bench_sweeps()
        print(f"sweeps: {report['sweep']['quick_grid']}: {report['sweep']['quick_grid_s']:.0f} "
              f"s; bash test_script.sh --quick: {report['sweep']['test_script_quick_s']:.0f} s")
    save()
    print(f"[*] wrote {out}")


if __name__ == "__main__":
    main()
