"""The same runs trained in two places (the CPU and CUDA, gpu_check.sh), compared step by step
from their train_iterations.csv: `python compare_devices.py LOGS_A LOGS_B [--out=FILE]`.

The two draw the same random numbers (the data and the policy noise come from CPU generators
on every device), so they differ only by float rounding until the first step at which a
rounding difference changes a prediction, and with it a reward: from there on the runs
drift apart as two seeds would. Up to that step, the running loss must agree within RTOL.
Exit status 1 where it does not, 2 for logs that do not match.
"""
import argparse
import csv
import json
import os
import sys

RTOL = 1e-4  # float32 rounding over a few hundred steps, before any reward differs


def read_steps(path):
    """[(running loss, running accuracy)] of every step of a train_iterations.csv."""
    with open(path, newline="") as f:
        return [(float(r["running_loss"]), float(r["running_acc"])) for r in csv.DictReader(f)]


def compare(a, b):
    """Where two runs' steps part: the number of steps, the first step whose running accuracy
    differs (None if none), and the largest relative difference of the running loss before
    it."""
    first = next((i + 1 for i, (x, y) in enumerate(zip(a, b)) if x[1] != y[1]), None)
    pairs = list(zip(a, b))
    before = pairs[:first - 1] if first else pairs
    worst = max((abs(x[0] - y[0]) / max(abs(x[0]), 1e-12) for x, y in before), default=0.0)
    return {"steps": len(a), "first_step_with_another_accuracy": first,
            "max_rel_loss_difference_before_it": worst}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("logs_a")
    p.add_argument("logs_b")
    p.add_argument("--out", default=None, help="also write the comparison there (JSON)")
    a = p.parse_args(argv)
    runs = sorted(r for r in os.listdir(a.logs_a)
                  if os.path.exists(os.path.join(a.logs_a, r, "train_iterations.csv")))
    if not runs:
        print(f"error: no run with a train_iterations.csv in {a.logs_a}", file=sys.stderr)
        return 2
    result, ok = {}, True
    for run in runs:
        steps = [read_steps(os.path.join(d, run, "train_iterations.csv"))
                 for d in (a.logs_a, a.logs_b)]
        if len(steps[0]) != len(steps[1]):
            print(f"error: {run} has {len(steps[0])} steps in {a.logs_a} and {len(steps[1])} "
                  f"in {a.logs_b}", file=sys.stderr)
            return 2
        result[run] = compare(*steps)
        ok &= result[run]["max_rel_loss_difference_before_it"] <= RTOL
        print(f"{run}: {result[run]}")
    print(f"running loss within rtol {RTOL:g} until the first differing prediction: "
          f"{'yes' if ok else 'NO'}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"rtol": RTOL, "runs": result}, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
