"""Training: the objective term by term (docs/method.md, "Objective"), the schedule, the
checkpoints and the logs. Testing a checkpoint is evaluate.test_checkpoint."""
import csv
import os
import signal
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from config import TRAINING, run_name
from model import RecurrentAttention
from utils import (CheckpointError, load_checkpoint, rng_state, save_checkpoint,
                   save_glimpse_trace, set_rng_state)


def loss_terms(out, y, cfg):
    """Every term of the objective, each computed here once, for one minibatch.

    out: Glimpses of T steps, y: (B,) labels. Returns (terms, reward): terms maps a name to a
    scalar tensor, already weighted, whose sum is the loss; reward R (B,) is 1 where argmax
    p_T == y. Which parameters each term reaches is set by the detaches in modules.py and
    here, and checked term by term in tests/test_gradients.py.
    """
    log_p_T = out.log_probs[-1]  # (B, K): the prediction after the last glimpse
    # R is a reward, not a function to differentiate (argmax has no gradient anyway).
    reward = (log_p_T.argmax(dim=1) == y).float()
    # The same R for every step: one reward at the end, credited to every action.
    R = reward.expand_as(out.baselines)
    terms = {
        # Classification: trains action, core and glimpse networks.
        "action": F.nll_loss(log_p_T, y),
        # Baseline regression on R: trains the baseline network only (it reads h_t.detach()).
        "baseline": F.mse_loss(out.baselines, R),
        # REINFORCE: detach b_t, the baseline is a constant in the policy gradient; log pi
        # reaches the location network only (it reads h_t.detach() and l_t is an action).
        "reinforce": (-out.log_pi * (R - out.baselines.detach())).sum(dim=0).mean(),
    }
    if cfg.uncertainty:
        K = log_p_T.shape[-1]
        # detach the target: the error network fits |onehot(y) - p_t|, it must not move p_t.
        target = (F.one_hot(y, K).to(out.log_probs.dtype) - out.log_probs.exp()).abs().detach()
        terms["fit"] = F.mse_loss(out.e_t_fit, target)
        terms["uncertainty"] = cfg.lambda_uncertainty * out.e_t.sum()
    if cfg.intrinsic:
        # Cross-entropy to the uniform label: sum_k -(1/K) log p_T[b, k], SUMMED over the batch
        # as in the released code (so lambda_intrinsic is tied to batch size 32).
        terms["intrinsic"] = cfg.lambda_intrinsic * (-log_p_T.mean(dim=1)).sum()
    return terms, reward


def make_optimizer(model, lr):
    """Adam. fused: one kernel for all parameters instead of about ten small operations per
    tensor, the same update within float rounding (tests/test_fast_paths.py)."""
    return torch.optim.Adam(model.parameters(), lr=lr, fused=True)


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


class Interrupted(RuntimeError):
    """SIGINT or SIGTERM during training: a resumable checkpoint has been saved."""

    def __init__(self, message, signum):
        super().__init__(message)
        self.signum = signum


@dataclass
class TrainState:
    """Where training stands: all a resume needs besides the weights, the optimiser and the
    generators. Saved as plain keys of the checkpoint."""
    epoch: int = 0  # epochs finished
    batch: int = 0  # batches finished in the current epoch
    global_step: int = 0
    # below any accuracy, so that the first epoch always writes a best checkpoint
    best_valid_acc: float = -1.0
    epochs_since_best: int = 0
    running: list = field(default_factory=lambda: [0.0, 0, 0])  # loss sum, correct, seen
    history: list = field(default_factory=list)  # one dict per epoch: epochs.csv


class Trainer:
    """Trains RecurrentAttention with Adam, validates every epoch, and keeps the latest and
    the best checkpoints."""

    def __init__(self, cfg, device):
        self.cfg, self.device = cfg, torch.device(device)
        self.name = run_name(cfg)
        self.model = RecurrentAttention.from_config(cfg).to(self.device)
        self.ckpt_path = {kind: os.path.join(cfg.ckpt_dir, f"{self.name}_{kind}.pt")
                          for kind in ("latest", "best")}
        self.log_dir = os.path.join(cfg.logs_dir, self.name)
        self.forward_loss = self._forward_loss
        if cfg.compile:
            from torch._inductor import config as inductor_config
            # Draw the random numbers with eager's generator, so that a compiled run samples
            # the same locations as an eager one and resumes exactly.
            inductor_config.fallback_random = True
            self.forward_loss = torch.compile(self._forward_loss, dynamic=False)

    def _forward_loss(self, x, y):
        """One training minibatch up to its loss: (locations l_0..l_T, loss terms, reward)."""
        out = self.model(x, self.cfg.num_glimpses)
        terms, reward = loss_terms(out, y, self.cfg)
        return out.locations, terms, reward

    # ---------------------------------------------------------------- training
    def train(self, train_loader, valid_loader):
        """Train from scratch, or with --resume=True from the latest checkpoint, until
        --epochs or early stopping. SIGINT/SIGTERM save a resumable checkpoint first."""
        self._start(train_loader, valid_loader)
        self.stop_signal = None
        handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for epoch in range(self.state.epoch, self.cfg.epochs):
                if self.state.epochs_since_best >= self.cfg.train_patience:
                    print(f"[!] no better validation accuracy for {self.cfg.train_patience} "
                          f"epochs: stopped early.")
                    break
                self._epoch(epoch, train_loader, valid_loader)
        finally:
            for s, handler in handlers.items():
                signal.signal(s, handler)
            self.iter_log.close()
            if self.writer is not None:
                self.writer.close()

    def _start(self, train_loader, valid_loader):
        """Optimiser, schedule, state (fresh or resumed) and logs."""
        cfg = self.cfg
        self.optimizer = make_optimizer(self.model, cfg.init_lr)
        if cfg.lr_schedule == "exp":
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(
                self.optimizer, lambda epoch: 0.95**epoch)
        else:
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, mode="min", patience=cfg.lr_patience)
        self.state = TrainState()
        if cfg.resume:
            self._resume(train_loader, valid_loader)
        elif os.path.exists(self.ckpt_path["latest"]):
            raise CheckpointError(
                f"run {self.name} already has a checkpoint ({self.ckpt_path['latest']}); pass "
                f"--resume=True to continue it, or move it away to train from scratch.")
        os.makedirs(self.log_dir, exist_ok=True)
        self.writer = self._open_writer()
        self.iter_log = self._open_iteration_log()
        print(f"[*] {self.name}: {train_loader.num_images} train, {valid_loader.num_images} "
              f"valid images on {self.device}; epochs {self.state.epoch + 1}..{cfg.epochs}")

    def _epoch(self, epoch, train_loader, valid_loader):
        """Train one epoch, validate, step the schedule, log and save."""
        cfg, state = self.cfg, self.state
        train_loss, train_acc = self.train_one_epoch(epoch, train_loader)
        if train_loss is None:  # interrupted mid-epoch
            self._save(train_loader, valid_loader, is_best=False)
            self._raise_interrupted()
        # With --valid_size=0 the training metrics stand in for the validation ones.
        valid_loss, valid_acc = (self.evaluate_loss(valid_loader) if valid_loader.num_images
                                 else (train_loss, train_acc))
        lr = self.optimizer.param_groups[0]["lr"]
        if cfg.lr_schedule == "exp":
            self.scheduler.step()
        else:
            self.scheduler.step(valid_loss)
        is_best = valid_acc > state.best_valid_acc
        state.epochs_since_best = 0 if is_best else state.epochs_since_best + 1
        state.best_valid_acc = max(valid_acc, state.best_valid_acc)
        state.epoch, state.batch, state.running = epoch + 1, 0, [0.0, 0, 0]
        self._log_epoch(epoch, train_loss, train_acc, valid_loss, valid_acc, lr)
        print(f"epoch {epoch + 1}/{cfg.epochs}: train loss {train_loss:.3f} acc "
              f"{100 * train_acc:.2f}% | valid loss {valid_loss:.3f} acc "
              f"{100 * valid_acc:.2f}%{' [best]' if is_best else ''} | lr {lr:.2e}")
        self._save(train_loader, valid_loader, is_best)
        if self.stop_signal is not None:
            self._raise_interrupted()

    def _on_signal(self, signum, frame):
        """First SIGINT/SIGTERM: finish the current step, then save and stop. A second one
        stops at once (the latest checkpoint on disk is still whole: saves are atomic)."""
        self.stop_signal = signum
        signal.signal(signum, signal.SIG_DFL if signum == signal.SIGTERM else
                      signal.default_int_handler)
        print(f"\n[!] {signal.Signals(signum).name}: saving a checkpoint after this step "
              f"(send it again to stop at once)", flush=True)

    def _raise_interrupted(self):
        raise Interrupted(
            f"interrupted by {signal.Signals(self.stop_signal).name} at epoch "
            f"{self.state.epoch + 1}, step {self.state.batch}; checkpoint saved to "
            f"{self.ckpt_path['latest']}; to continue, run the same command with "
            f"--resume=True.", self.stop_signal)

    def train_one_epoch(self, epoch, loader):
        """One pass over the training set; returns the epoch's mean loss and accuracy, or
        (None, None) if a signal asked to stop before the end of the epoch.

        The running loss and accuracy (means over the epoch so far) are logged every
        iteration: the paper's convergence figure plots them over the first epoch."""
        self.model.train()
        state = self.state
        loss_sum, correct, seen = state.running
        bar = tqdm(total=len(loader), initial=state.batch, desc=f"epoch {epoch + 1}",
                   leave=False, dynamic_ncols=True)
        for x, y in loader:
            # A last, smaller batch runs eagerly rather than compiling a second graph.
            full = len(y) == self.cfg.batch_size
            locations, terms, reward = (self.forward_loss if full else self._forward_loss)(x, y)
            if state.batch == 0 and self.cfg.plot_freq and epoch % self.cfg.plot_freq == 0:
                n = 9  # the first images of the epoch's first batch
                save_glimpse_trace(os.path.join(self.log_dir, f"glimpses_epoch{epoch + 1}.pt"),
                                   x[:n], locations[:, :n], self.cfg, self.name)
            loss = sum(terms.values())
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            # detach: plain numbers for the logs, outside the graph (one copy off the device).
            values = torch.stack([loss.detach(), reward.sum()] +
                                 [t.detach() for t in terms.values()]).tolist()
            self._check_finite(values, terms, epoch)
            self.optimizer.step()
            B = len(y)
            loss_sum, correct, seen = loss_sum + values[0] * B, correct + values[1], seen + B
            state.batch += 1
            state.global_step += 1
            state.running = [loss_sum, correct, seen]
            self._log_iteration(epoch, loss_sum / seen, correct / seen,
                                dict(zip(terms, values[2:])))
            bar.update()
            if state.batch % 20 == 0:
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{100 * correct / seen:.1f}%",
                                refresh=False)
            if self.stop_signal is not None and state.batch < len(loader):
                bar.close()
                return None, None
        bar.close()
        return loss_sum / seen, correct / seen

    def _check_finite(self, values, terms, epoch):
        """Stop before an update with a NaN or infinite loss; values: loss, reward sum, terms."""
        if not all(np.isfinite(values)):
            named = ", ".join(f"{k} {v:.4g}" for k, v in zip(terms, values[2:]))
            raise TrainingDiverged(
                f"the loss became {values[0]} at epoch {epoch + 1}, step {self.state.batch + 1} "
                f"({named}); stopped before the update, the last good checkpoint is kept.")

    @torch.no_grad()
    def evaluate_loss(self, loader):
        """Mean loss (all terms of the objective) and accuracy after T glimpses."""
        self.model.eval()
        loss_sum, correct, seen = 0.0, 0.0, 0
        for x, y in loader:
            _, terms, reward = self._forward_loss(x, y)
            loss_sum += sum(terms.values()).item() * len(y)
            correct += reward.sum().item()
            seen += len(y)
        return loss_sum / seen, correct / seen

    # ---------------------------------------------------------------- checkpoints
    def _save(self, train_loader, valid_loader, is_best):
        ckpt = {
            "config": vars(self.cfg), "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "data": {"train": train_loader.state_dict(self.state.batch),
                     "valid": valid_loader.state_dict()},
            "rng": rng_state(), **asdict(self.state),
        }
        save_checkpoint(ckpt, self.ckpt_path["latest"])
        if is_best:
            save_checkpoint(ckpt, self.ckpt_path["best"])

    def _resume(self, train_loader, valid_loader):
        ckpt = load_checkpoint(self.ckpt_path["latest"], self.cfg, TRAINING)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        train_loader.load_state_dict(ckpt["data"]["train"])
        valid_loader.load_state_dict(ckpt["data"]["valid"])
        set_rng_state(ckpt["rng"])
        self.state = TrainState(**{f.name: ckpt[f.name] for f in fields(TrainState)})
        print(f"[*] resuming {self.name} from {self.ckpt_path['latest']} at epoch "
              f"{self.state.epoch + 1}, step {self.state.batch + 1}")

    # ---------------------------------------------------------------- logging
    def _open_writer(self):
        if not self.cfg.use_tensorboard:
            return None
        from torch.utils.tensorboard import SummaryWriter
        # purge_step drops events logged after the checkpoint by a run that was interrupted.
        return SummaryWriter(self.log_dir, purge_step=self.state.global_step or None)

    def _open_iteration_log(self):
        """CSV of the running train loss and accuracy at every iteration; on resume it is cut
        back to the checkpoint's step, so it matches a run that was never interrupted."""
        path = os.path.join(self.log_dir, "train_iterations.csv")
        rows = []
        if self.cfg.resume and os.path.exists(path):
            with open(path, newline="") as f:
                rows = list(csv.reader(f))[1:1 + self.state.global_step]
        f = open(path, "w", newline="")
        self._iter_csv = csv.writer(f)
        self._iter_csv.writerows([["epoch", "iteration", "global_step", "running_loss",
                                   "running_acc"]] + rows)
        return f

    def _log_iteration(self, epoch, running_loss, running_acc, terms):
        step = self.state.global_step
        self._iter_csv.writerow([epoch + 1, self.state.batch, step, f"{running_loss:.6f}",
                                 f"{running_acc:.6f}"])
        if self.writer is not None:
            self.writer.add_scalar("train/running_loss", running_loss, step)
            self.writer.add_scalar("train/running_acc", running_acc, step)
            for name, value in terms.items():
                self.writer.add_scalar(f"loss/{name}", value, step)

    def _log_epoch(self, epoch, train_loss, train_acc, valid_loss, valid_acc, lr):
        """epochs.csv is rewritten from the checkpointed history, so that it never holds an
        epoch that the latest checkpoint does not."""
        row = dict(epoch=epoch + 1, train_loss=train_loss, train_acc=train_acc,
                   valid_loss=valid_loss, valid_acc=valid_acc, lr=lr)
        self.state.history.append(row)
        with open(os.path.join(self.log_dir, "epochs.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            w.writeheader()
            w.writerows(self.state.history)
        if self.writer is not None:
            for tag in ("train_loss", "train_acc", "valid_loss", "valid_acc", "lr"):
                self.writer.add_scalar(tag.replace("_", "/", 1), row[tag], epoch + 1)

