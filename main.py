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
    from config import adopt_settings
    from data_loader import get_test_loader, get_train_valid_loaders
    from evaluate import test_batch_size
    from trainer import Trainer
    from utils import TRAINING, load_checkpoint
    device = get_device(cfg)
    if cfg.checkpoint:
        adopt_settings(cfg, load_checkpoint(cfg.checkpoint, cfg, keys=())["config"], TRAINING)
    torch.manual_seed(cfg.random_seed)
    trainer = Trainer(cfg, device)
    if cfg.is_train:
        trainer.train(*get_train_valid_loaders(cfg, device))
    batch = test_batch_size(cfg.protocol, cfg.batch_size)
    return trainer.test(get_test_loader(cfg, device, batch, cfg.num_test))


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
