"""Leaf utilities: atomic file writes, checkpoint files and their locks, glimpse traces,
paths relative to the repository. Nothing here imports the rest of the project."""
import contextlib
import fcntl
import glob
import json
import os
import socket

import torch


# The repository's root folder: results files record the paths inside it relative to it.
# A sweep's tasks run in Ray's copy of the repository: the sweep names the one it started
# from (sweep.runtime_env), so that their results record the paths inside it relatively too.
REPOSITORY = os.environ.get("RAM_REPOSITORY") or os.path.dirname(os.path.abspath(__file__))


class CheckpointError(RuntimeError):
    """A missing, unreadable or mismatched checkpoint; main.py prints it and exits 1."""


def temporary(path):
    """The temporary file beside `path` that this process writes before renaming it over
    `path`. Named by the process, so that processes started side by side (two groups making the
    same data cache, say) never rename each other's half-written file."""
    return f"{path}.{os.getpid()}.tmp"


def save_checkpoints(files):
    """Write every (checkpoint, path) of `files` to a temporary file beside its path, then
    rename them all over their paths: a crash or a full disk during the writes leaves every
    previous checkpoint whole, and the files of a group of runs change together (all but
    within the instant of the renames)."""
    written = []
    try:
        for ckpt, path in files:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            tmp = temporary(path)
            written.append((tmp, path))
            torch.save(ckpt, tmp)
        for tmp, path in written:
            os.replace(tmp, path)
    finally:
        for tmp, _ in written:
            if os.path.exists(tmp):
                os.remove(tmp)


def save_checkpoint(ckpt, path):
    """One checkpoint, written as save_checkpoints writes a group's."""
    save_checkpoints([(ckpt, path)])


class RunLock:
    """One trainer per run: an exclusive lock on <ckpt_dir>/<run>.lock while a process trains
    the run, the file removed when it is done. The operating system drops the lock when its
    process ends, however it ends, so a lock file left behind by a killed process does not
    block a resume."""

    def __init__(self, ckpt_dir, run):
        os.makedirs(ckpt_dir, exist_ok=True)
        self.path = os.path.join(ckpt_dir, f"{run}.lock")
        while True:
            self.file = open(self.path, "a+")
            try:
                fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.file.seek(0)
                holder = self.file.read().strip() or "another process"
                self.file.close()
                raise CheckpointError(f"run {run} is being trained by {holder} (lock "
                                      f"{self.path}); wait for it to finish or stop it, then "
                                      f"resume.") from None
            # A holder that was releasing may have removed the file we opened: lock the file
            # that is at the path now.
            try:
                if os.path.samestat(os.fstat(self.file.fileno()), os.stat(self.path)):
                    break
            except FileNotFoundError:
                pass
            self.file.close()
        self.file.truncate(0)
        self.file.write(f"process {os.getpid()} on {socket.gethostname()}")
        self.file.flush()

    def release(self):
        os.remove(self.path)  # before the lock drops, so no one else's lock file is removed
        self.file.close()


@contextlib.contextmanager
def replacing(path, mode="w", newline=None):
    """A file to write in a `with` block (`mode` "w" or "wb"): a temporary file beside `path`,
    renamed over `path` when the block ends without error. No reader ever sees half a file,
    and an error or a kill in the block leaves the old file whole."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = temporary(path)
    try:
        with open(tmp, mode, newline=newline) as f:
            yield f
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def in_repository(path):
    """`path` as a results file records it: relative to the repository's root where it lies
    inside the repository (so that committed files name no folder of the machine that made
    them), else absolute."""
    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute, REPOSITORY)
    outside = relative == os.pardir or relative.startswith(os.pardir + os.sep)
    return absolute if outside else relative


# The settings that name a file or a folder: results files and checkpoints record them by
# in_repository.
PATH_SETTINGS = ("checkpoint", "data_dir", "ckpt_dir", "logs_dir", "results_dir")


def recorded_settings(cfg):
    """vars(cfg) as results files and checkpoints record them: the PATH_SETTINGS by
    in_repository, so that a committed file names no folder of the machine that wrote it."""
    return {k: in_repository(v) if k in PATH_SETTINGS and v is not None else v
            for k, v in vars(cfg).items()}


def from_repository(path):
    """A path recorded by `in_repository`, as a path to open from any working directory."""
    return os.path.join(REPOSITORY, path)


def write_json(obj, path):
    """obj as indented JSON at path, written through `replacing`."""
    with replacing(path) as f:
        json.dump(obj, f, indent=1)


def load_checkpoint(path, cfg=None, keys=(), added=None):
    """Load a checkpoint safely (weights_only: no code runs) and check that its settings
    `keys` agree with cfg's (config.ARCHITECTURE to test it, config.TRAINING to resume it).
    added: {setting: value} for settings newer than the file (config.ADDED_SETTINGS), filled
    into its settings where it has none.

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
    saved = ckpt["config"] = {**(added or {}), **ckpt["config"]}
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
