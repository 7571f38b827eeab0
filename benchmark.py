"""Speed benchmark: `python benchmark.py` prints a table and writes benchmark_<device>.json.

Measures, as the median of several repeats after a warm-up:
- training: milliseconds per batch and images per second (batch 32) for the MNIST and the
  translated settings, original RAM and both new terms: forward, the loss, backward and the
  Adam step, with translation of the batch included for translated MNIST; both terms also
  with --compile=True (skip with --compile=0);
- evaluation: the accuracy curve N = 1..50 over the 10,000 test images, and the dynamic sweep
  computed from it;
- the retina: the vectorised one against a per-sample slicing loop, in the same run.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from config import get_config
from data_loader import load_mnist, translate
from evaluate import EVAL_BATCH, accuracy_curve, dynamic_sweep, run_glimpses
from model import RecurrentAttention
from trainer import Trainer, make_optimizer


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


def settings(dataset, variant, compile=False):
    """The configuration of `python main.py` for a dataset and a variant (original or both)."""
    both = variant == "both"
    return get_config([f"--dataset={dataset}", f"--uncertainty={both}", f"--intrinsic={both}",
                       f"--compile={compile}"])


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


def bench_training(cfg, device, batch, repeats, sync):
    """The training step of Trainer.train_one_epoch (forward and loss, compiled with
    --compile=True; backward; Adam), with the translation of the batch for translated MNIST."""
    torch.manual_seed(0)
    trainer = Trainer(cfg, device)
    opt = make_optimizer(trainer.model, cfg.init_lr)
    x = torch.randn(batch, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    gen = torch.Generator().manual_seed(0)

    def step():
        xb = translate(x, gen) if cfg.dataset == "translated" else x
        _, terms, _ = trainer.forward_loss(xb, y)
        opt.zero_grad(set_to_none=True)
        sum(terms.values()).backward()
        opt.step()

    start = time.perf_counter()
    step()  # with --compile=True, this compiles
    first = time.perf_counter() - start
    # Several steps per timing, so that one measurement is tens of milliseconds.
    n = 20
    sec = timed(lambda: [step() for _ in range(n)], repeats, 1, sync) / n
    return {"ms_per_batch": 1000 * sec, "images_per_s": batch / sec, "first_step_s": first}


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


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=None, help="JSON path (default benchmark_<device>.json)")
    p.add_argument("--compile", type=int, choices=(0, 1), default=1,
                   help="also time the training step with --compile=True (about a minute of "
                        "compilation per setting)")
    a = p.parse_args()
    device = torch.device(a.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "threads": torch.get_num_threads(), "torch": torch.__version__, "training": {},
              "evaluation": {}}

    print(f"device {report['device']}, {report['threads']} CPU threads, torch {torch.__version__}")
    print(f"{'training, batch 32':34s} {'ms/batch':>9s} {'images/s':>9s}")
    runs = [(d, v, False) for d in ("mnist", "translated") for v in ("original", "both")]
    runs += [(d, "both", True) for d in ("mnist", "translated")] if a.compile else []
    for dataset, variant, compile in runs:
        name = f"{dataset}/{variant}" + ("/compile" if compile else "")
        r = bench_training(settings(dataset, variant, compile), device, 32, a.repeats, sync)
        report["training"][name] = r
        print(f"  {name:32s} {r['ms_per_batch']:9.2f} {r['images_per_s']:9.0f}"
              + (f"   (compiled in {r['first_step_s']:.0f} s)" if compile else ""))
    if device.type == "cuda":
        r = bench_training(settings("mnist", "both"), device, 1024, a.repeats, sync)
        report["training"]["mnist/both/batch1024"] = r
        print(f"  {'mnist both, batch 1024':32s} {r['ms_per_batch']:9.2f} "
              f"{r['images_per_s']:9.0f}")

    images, labels = load_mnist("./data", train=False)
    print(f"{'evaluation, 10,000 test images':34s} {'curve s':>9s} {'sweep s':>9s}")
    for dataset in ("mnist", "translated"):
        x = translate(images, torch.Generator().manual_seed(0)) if dataset == "translated" else images
        r = bench_evaluation(settings(dataset, "both"), device, x, labels, a.repeats, sync)
        report["evaluation"][dataset] = r
        print(f"  {dataset + ' N = 1..50':32s} {r['curve_1_to_50_s']:9.2f} "
              f"{r['dynamic_sweep_s']:9.3f}")

    retina = RecurrentAttention.from_config(settings("translated", "both")).retina
    x = torch.randn(32, 1, 60, 60)
    l = torch.rand(32, 2) * 2 - 1
    t_vec = timed(lambda: retina(x, l), 50, 5, lambda: None)
    t_ref = timed(lambda: per_sample_retina(x, l, 12, 3, 2), 10, 2, lambda: None)
    assert torch.allclose(retina(x, l), per_sample_retina(x, l, 12, 3, 2), atol=1e-6)
    report["retina"] = {"vectorised_ms": 1000 * t_vec, "per_sample_ms": 1000 * t_ref,
                        "speedup": t_ref / t_vec}
    print(f"retina (batch 32, 60x60, k=3): vectorised {1000 * t_vec:.3f} ms, per-sample loop "
          f"{1000 * t_ref:.2f} ms, x{t_ref / t_vec:.0f}")
    out = a.out or f"benchmark_{device.type}.json"
    with open(out, "w") as f:
        json.dump(report, f, indent=1)
    print(f"[*] wrote {out}")


if __name__ == "__main__":
    main()
