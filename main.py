"""Train RAM (then test its best checkpoint), or test a checkpoint: `python main.py --help`."""
import sys

from config import ConfigError, get_configs


def get_device(cfg):
    import torch
    if cfg.use_gpu and not torch.cuda.is_available():
        raise ConfigError("--use_gpu=True but CUDA is not available on this machine; "
                          "run with --use_gpu=False.")
    return "cuda" if cfg.use_gpu else "cpu"


def train(cfgs):
    """Train the runs `cfgs` as one group, in this process."""
    from data_loader import get_train_valid_loaders
    from trainer import Trainer
    device = get_device(cfgs[0])
    loaders = [get_train_valid_loaders(cfg, device) for cfg in cfgs]
    Trainer(cfgs, device, *zip(*loaders)).train()


def run(cfgs):
    """Train the runs `cfgs` as one group (unless --is_train=False), then test each; returns
    their test accuracies."""
    from evaluate import test_checkpoint
    if cfgs[0].is_train:
        train(cfgs)
    device = get_device(cfgs[0])
    return [test_checkpoint(cfg, device) for cfg in cfgs]


def main(argv=None):
    """Exit status: 0 done, 1 bad data, checkpoint or a diverged loss, 2 bad settings,
    128 + signal number when interrupted (after saving a resumable checkpoint)."""
    try:
        cfgs = get_configs(argv)  # argparse itself exits 2 on unknown flags and bad values
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return execute(run, cfgs)


def execute(action, cfgs):
    """action(cfgs) (`run` or `train`), its errors reported as one sentence and an exit
    status (main's)."""
    # torch loads in seconds: imported only once the flags are known to be good.
    from data_loader import DataError
    from trainer import Interrupted, TrainingDiverged
    from utils import CheckpointError
    try:
        action(cfgs)
    except (ConfigError, DataError, CheckpointError, TrainingDiverged, Interrupted) as e:
        if cfgs[0].debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        if isinstance(e, Interrupted):
            return 128 + e.signum
        return 2 if isinstance(e, ConfigError) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
