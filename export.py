"""The pretrained export: the checkpoints of the evaluated runs, slimmed down to what testing
needs and with their test accuracy recorded, as pretrained/ ships them."""
import os
from argparse import Namespace

from data_loader import get_test_loader
from evaluate import EVAL_BATCH, accuracy_curve, read_results, run_glimpses
from model import load_pretrained
from utils import (CheckpointError, from_repository, load_checkpoint, recorded_settings,
                   save_checkpoint)


def first_batch_accuracy(model, cfg):
    """Test accuracy after cfg.test_glimpses glimpses (M = 1) on the first evaluation batch of
    the test set: the first 1,000 images, seeded as in a full evaluation."""
    batch = next(iter(get_test_loader(cfg, "cpu", EVAL_BATCH)))
    log_probs, _, labels = run_glimpses(model, [batch], cfg.test_glimpses, 1, cfg.random_seed)
    return accuracy_curve(log_probs, labels)[-1]


def export_pretrained(results_dir, pretrained_dir, data_dir="./data", half=False,
                      best_only=()):
    """Copy the best checkpoint of every run evaluated in results_dir (our protocol, M = 1,
    every test image) to pretrained_dir/<run>_best.pt, and its latest checkpoint (the
    epoch-100 one of a run that ran to the end), where it is beside it, to <run>_latest.pt,
    except for the datasets in best_only.

    Each keeps what `--is_train=False` needs (settings, weights, epoch) and records its test
    accuracy (N = T, M = 1) on the first 1,000 test images (tests/test_pretrained.py checks
    it), and on all 10,000 where the results have it (measured before any rounding).
    half: store the weights in float16, half the bytes (model.load_pretrained casts them back
    to float32); the first-1,000 accuracy is then that of the rounded weights. Returns the
    paths written."""
    written = []
    results = [r for r in read_results(results_dir)
               if r["protocol"] == "ours" and r["fixed"]["M"] == 1
               and r["fixed"]["N"] == r["config"]["num_glimpses"] and not r["config"]["num_test"]]
    evaluated = {(from_repository(r["checkpoint"]), r["epoch"]): r["fixed"]["accuracy"]
                 for r in results}
    dataset = {from_repository(r["checkpoint"]): r["dataset"] for r in results}
    for best, epoch in sorted(evaluated):
        if not best.endswith("_best.pt"):
            continue
        latest = best[:-len("_best.pt")] + "_latest.pt"
        for source in (best,) if dataset[best] in best_only else (best, latest):
            if not os.path.exists(source):
                continue
            saved_epoch = load_checkpoint(source)["epoch"]
            if source == best and saved_epoch != epoch:
                raise CheckpointError(f"{source} is from epoch {saved_epoch}, but its "
                                      f"results are of epoch {epoch}.")
            slim = _slim(source, evaluated.get((source, saved_epoch)), data_dir, half)
            path = os.path.join(pretrained_dir, os.path.basename(source))
            save_checkpoint(slim, path)
            written.append(path)
    return written


def _slim(path, test_accuracy, data_dir, half):
    """A checkpoint reduced to what testing needs (its weights in float16 if half), with its
    test accuracy (where known) and the accuracy of the weights it keeps on the first 1,000
    test images recorded."""
    ckpt = load_checkpoint(path)
    model, settings, _ = load_pretrained(path)
    settings.data_dir = data_dir
    slim = {key: ckpt[key] for key in ("model", "epoch", "best_valid_acc")}
    # its folders as a results file records them: no path of the machine that trained it
    slim["config"] = recorded_settings(Namespace(**ckpt["config"]))
    if half:
        slim["model"] = {name: w.half() for name, w in slim["model"].items()}
        model.load_run_state(0, slim["model"])  # the rounded weights, back in float32
    slim["recorded"] = {"N": settings.test_glimpses, "M": 1}
    if test_accuracy is not None:
        slim["recorded"]["test_accuracy"] = test_accuracy
    slim["recorded"]["first_1000_accuracy"] = first_batch_accuracy(model, settings)
    return slim
