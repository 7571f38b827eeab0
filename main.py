"""Train RAM (then test its best checkpoint), or test a checkpoint: `python main.py --help`."""
import sys

import torch

from config import ConfigError, get_config
from data_loader import DataError, get_test_loader, get_train_valid_loaders
from trainer import EVAL_BATCH, Trainer, TrainingDiverged
from utils import CheckpointError


def get_device(cfg):
    if cfg.use_gpu and not torch.cuda.is_available():
        raise ConfigError("--use_gpu=True but CUDA is not available on this machine; "
                          "run with --use_gpu=False.")
    return "cuda" if cfg.use_gpu else "cpu"


def run(cfg):
    device = get_device(cfg)
    torch.manual_seed(cfg.random_seed)
    trainer = Trainer(cfg, device)
    if cfg.is_train:
        trainer.train(*get_train_valid_loaders(cfg, device))
    return trainer.test(get_test_loader(cfg, device, EVAL_BATCH))


def main(argv=None):
    cfg = get_config(argv)  # argparse itself exits 2 on unknown flags and malformed values
    try:
        run(cfg)
    except (ConfigError, DataError, CheckpointError, TrainingDiverged) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2 if isinstance(e, ConfigError) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
