"""Train RAM (then test its best checkpoint), or test a checkpoint: `python main.py --help`."""
import sys

from config import ConfigError, get_config


def get_device(cfg):
    import torch
    if cfg.use_gpu and not torch.cuda.is_available():
        raise ConfigError("--use_gpu=True but CUDA is not available on this machine; "
                          "run with --use_gpu=False.")
    return "cuda" if cfg.use_gpu else "cpu"


def run(cfg):
    """Train (unless --is_train=False), then test; returns the test accuracy."""
    import torch
    from data_loader import get_train_valid_loaders
    from evaluate import test_checkpoint
    from trainer import Trainer
    device = get_device(cfg)
    if cfg.is_train:
        torch.manual_seed(cfg.random_seed)
        Trainer(cfg, device).train(*get_train_valid_loaders(cfg, device))
    return test_checkpoint(cfg, device)


def main(argv=None):
    """Exit status: 0 done, 1 bad data, checkpoint or a diverged loss, 2 bad settings,
    128 + signal number when interrupted (after saving a resumable checkpoint)."""
    try:
        cfg = get_config(argv)  # argparse itself exits 2 on unknown flags and bad values
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # torch loads in seconds: imported only once the flags are known to be good.
    from data_loader import DataError
    from trainer import Interrupted, TrainingDiverged
    from utils import CheckpointError
    try:
        run(cfg)
    except (ConfigError, DataError, CheckpointError, TrainingDiverged, Interrupted) as e:
        if cfg.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        if isinstance(e, Interrupted):
            return 128 + e.signum
        return 2 if isinstance(e, ConfigError) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
