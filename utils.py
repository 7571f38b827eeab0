"""Leaf utilities: atomic file writes, checkpoint files, glimpse traces. Nothing here imports
the rest of the project."""
import glob
import json
import os

import torch


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


def write_json(obj, path):
    """Atomically (temporary file, then rename), so no reader ever sees half a file."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(path + ".tmp", path)


def load_checkpoint(path, cfg=None, keys=()):
    """Load a checkpoint safely (weights_only: no code runs) and check that its settings
    `keys` agree with cfg's (config.ARCHITECTURE to test it, config.TRAINING to resume it).

    Everything loads on the CPU: random-generator states must stay there, and
    load_state_dict copies weights and optimiser state to the model's device."""
    if not os.path.exists(path):
        folder = os.path.dirname(path) or "."
        found = sorted(os.path.basename(p) for p in glob.glob(os.path.join(folder, "*.pt")))
        raise CheckpointError(
            f"no checkpoint at {path}; checkpoints in {folder}: "
            f"{', '.join(found) if found else 'none'}.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
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


def save_glimpse_trace(path, images, locations, cfg, run):
    """Images (n, C, H, W) and their locations l_0..l_N (N + 1, n, 2), with the retina's
    settings: what figures.plot_glimpses draws."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    # detach: a record for the figures, not part of any graph. clone: a slice of a batch would
    # save the whole batch's storage (3 MB for 9 images out of 1,000).
    torch.save({"images": images.detach().cpu().clone(),
                "locations": locations.detach().cpu().clone(),
                "patch_size": cfg.patch_size, "num_patches": cfg.num_patches,
                "glimpse_scale": cfg.glimpse_scale, "run": run}, path)


def load_glimpse_trace(path):
    """What save_glimpse_trace wrote: a dict of tensors and settings."""
    return torch.load(path, weights_only=True)
