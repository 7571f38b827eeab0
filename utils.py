"""Checkpoint files, and the figures of the paper."""
import glob
import os

import torch

# Settings a checkpoint must share with the flags to be loaded at all (the shapes and the
# meaning of the weights), and in addition to be trained further.
ARCHITECTURE = ("dataset", "patch_size", "num_patches", "glimpse_scale", "glimpse_hidden",
                "loc_hidden", "hidden_size")
TRAINING = ARCHITECTURE + ("num_glimpses", "std", "uncertainty", "intrinsic",
                           "lambda_uncertainty", "lambda_intrinsic", "batch_size", "init_lr",
                           "lr_schedule", "lr_patience", "valid_size", "subset", "shuffle",
                           "random_seed")


class CheckpointError(RuntimeError):
    """A missing, unreadable or mismatched checkpoint; main.py prints it and exits 1."""


def save_checkpoint(ckpt, path):
    """Write to a temporary file beside `path`, then rename it over `path`: a crash or a full
    disk in the middle of a save leaves the previous checkpoint whole."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    try:
        torch.save(ckpt, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_checkpoint(path, cfg, device, keys=ARCHITECTURE):
    """Load a checkpoint safely (weights_only: no code runs) and check that its settings
    `keys` agree with cfg."""
    if not os.path.exists(path):
        folder = os.path.dirname(path) or "."
        found = sorted(os.path.basename(p) for p in glob.glob(os.path.join(folder, "*.pt")))
        raise CheckpointError(
            f"no checkpoint at {path}; checkpoints in {folder}: "
            f"{', '.join(found) if found else 'none'}.")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # truncated file, not a torch file, or a pickle with code in it
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(e).__name__}).") from e
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise CheckpointError(f"{path} is not a checkpoint of this project.")
    saved = ckpt["config"]
    differ = [f"{k} {saved.get(k)} in the file against {getattr(cfg, k)} on the command line"
              for k in keys if saved.get(k) != getattr(cfg, k)]
    if differ:
        raise CheckpointError(f"{path} was made with other settings: {'; '.join(differ)}.")
    return ckpt
