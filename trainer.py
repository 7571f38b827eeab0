"""Training a group of runs in one process (a single run is a group of one): the objective
term by term (docs/method.md, "Objective"), each run's Adam and learning-rate schedule, its
checkpoints and its logs. Testing a checkpoint is evaluate.test_checkpoint.

Reading order: `loss_terms` (the objective), `Trainer.step` (one training step of every run:
what benchmark.py times and the tests call), `Trainer.train_one_epoch` (the loop around it),
then `Run` (what one run keeps: state, checkpoint, logs).

The runs of a group share the dataset, the architecture and the schedule's settings, and
differ in seed, variant and loss weights (config.GROUPED). Each is a run in its own right:
its own initial weights, data order, translations and policy noise (generators seeded by
config.seed_of), loss weights, Adam state, learning rate, validation, early stopping, checkpoints
and logs, written to exactly the files a single run writes. The model holds the runs side by
side (model.py), so a training step costs about as many operations for R runs as for one.
"""
import csv
import math
import os
import signal
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn.functional as F
from tqdm import tqdm

from config import ADDED_SETTINGS, run_name, seed_of, training_settings
from model import RecurrentAttention
from utils import (CheckpointError, RunLock, load_checkpoint, recorded_settings, replacing,
                   save_checkpoints, save_glimpse_trace)

# The optional terms of loss_terms: the flag of the variants that have each, and the flag of
# its weight (None: weight 1). A new term is a row here and its formula in loss_terms.
OPTIONAL_TERMS = {"fit": ("uncertainty", None),
                  "uncertainty": ("uncertainty", "lambda_uncertainty"),
                  "intrinsic": ("intrinsic", "lambda_intrinsic")}


def has_term(cfg, term):
    """Whether the run's variant has the loss term `term` (RAM's three, always)."""
    return term not in OPTIONAL_TERMS or getattr(cfg, OPTIONAL_TERMS[term][0])


def loss_weights(cfgs, device="cpu"):
    """The weight of each optional term for each run of a group: {term: (R,) tensor}. It is 0
    where the run's variant has no such term, so that the term gives that run no gradient.
    And REINFORCE's weight, 1 in the paper (--reinforce_weight, beyond it)."""
    weights = {term: torch.tensor([(getattr(c, weight) if weight else 1.0) if has_term(c, term)
                                   else 0.0 for c in cfgs], device=device)
               for term, (_, weight) in OPTIONAL_TERMS.items()}
    weights["reinforce"] = torch.tensor([c.reinforce_weight for c in cfgs], device=device)
    return weights


def loss_terms(out, y, weights):
    """Every term of the objective, each computed here once, for one minibatch of each run.

    out: Glimpses of R runs over T steps, y: (R, B) labels, weights: loss_weights. Returns
    (terms, reward): terms maps a name to an (R,) tensor, already weighted, run r's loss being
    the sum of the terms' r-th entries; reward (R, B) is 1 where argmax p_T == y (the paper's
    reward R, named `reward` here since R counts the runs in every shape). Which
    parameters each term reaches is set by the detaches in modules.py and here, and checked
    term by term, run by run, in tests/test_gradients.py.
    """
    log_p_T = out.log_probs[:, -1]  # (R, B, K): the prediction after the last glimpse
    # The reward is not a function to differentiate (argmax has no gradient anyway).
    reward = (log_p_T.argmax(dim=-1) == y).float()
    # The same reward for every step: one reward at the end, credited to every action.
    reward_t = reward.unsqueeze(1).expand_as(out.baselines)  # (R, T, B)
    K = log_p_T.shape[-1]
    # detach the target: the error network fits |onehot(y) - p_t|, it must not move p_t.
    target = (F.one_hot(y, K).to(log_p_T.dtype).unsqueeze(1) - out.log_probs.exp()).abs().detach()
    return {
        # Classification, NLL of p_T: trains action, core and glimpse networks.
        "action": -log_p_T.gather(-1, y.unsqueeze(-1)).squeeze(-1).mean(dim=-1),
        # Baseline regression on the reward: trains the baseline network only (it reads
        # h_t.detach()).
        "baseline": ((out.baselines - reward_t) ** 2).mean(dim=(1, 2)),
        # REINFORCE: detach b_t, the baseline is a constant in the policy gradient; log pi
        # reaches the location network only (it reads h_t.detach() and l_t is an action).
        "reinforce": weights["reinforce"]
        * (-out.log_pi * (reward_t - out.baselines.detach())).sum(dim=1).mean(dim=-1),
        # L_fit, the error network's regression on the error it predicts: trains f_e only
        # (e_t_fit reads h_t and p_t detached).
        "fit": weights["fit"] * ((out.e_t_fit - target) ** 2).mean(dim=(1, 2, 3)),
        # L_unc = lambda_1 sum_{b,t,k} e_t: trains action, core and glimpse networks through
        # h_t and p_t, not f_e (with --uncertainty_routing=released, f_e's weights too).
        "uncertainty": weights["uncertainty"] * out.e_t.sum(dim=(1, 2, 3)),
        # Cross-entropy to the uniform label: sum_k -(1/K) log p_T[b, k], SUMMED over the batch
        # as in the released code (so lambda_intrinsic is tied to batch size 32): trains
        # action, core and glimpse networks.
        "intrinsic": weights["intrinsic"] * (-log_p_T.mean(dim=-1)).sum(dim=-1),
    }, reward


# Training steps between two reads of the logged numbers off the device: a read waits for the
# device to finish, which would stall a GPU after every step.
READ_EVERY = 50


class StackedAdam:
    """Adam for a group: every parameter holds R runs, and each run has its own learning
    rate. Adam is elementwise, so this is R independent Adams (betas 0.9 and 0.999, eps 1e-8)
    that share their step count, as runs that train side by side do.

    torch's fused Adam takes one learning rate, so it steps with lr 1, and each run then moves
    its learning rate's share of the way: p <- p_before + lr_r (p_adam - p_before), which is
    Adam's update with lr_r, up to float rounding (tests/test_fast_paths.py). A run with lr 0
    does not move."""

    def __init__(self, named_params):
        self.names, params = zip(*named_params)
        self.params = list(params)
        self.adam = torch.optim.Adam(self.params, lr=1.0, fused=True)

    def zero_grad(self):
        self.adam.zero_grad(set_to_none=True)

    @torch.no_grad()
    def step(self, lr, finite=None):
        """lr: (R,) learning rates, one per run (0 for a run that must not move). finite: (R,)
        bool on the device, False for a run whose loss is not finite: its gradient is zeroed
        and it does not move, decided on the device (no read of the device needed)."""
        lr = torch.as_tensor(lr, dtype=self.params[0].dtype, device=self.params[0].device)
        if finite is not None:
            lr = lr * finite
            for p in self.params:
                if p.grad is not None:
                    mask = finite.view((-1,) + (1,) * (p.dim() - 1))
                    p.grad = torch.where(mask, p.grad, torch.zeros_like(p.grad))
        before = [p.clone() for p in self.params]
        self.adam.step()
        for p, b in zip(self.params, before):
            p.copy_(b.lerp_(p, lr.view((-1,) + (1,) * (p.dim() - 1))))

    def run_state(self, r):
        """Run r's Adam state, for its checkpoint."""
        states = [self.adam.state.get(p, {}) for p in self.params]
        return {"step": float(states[0]["step"]) if states[0] else 0.0,
                "exp_avg": {n: s["exp_avg"][r].clone() for n, s in zip(self.names, states) if s},
                "exp_avg_sq": {n: s["exp_avg_sq"][r].clone()
                               for n, s in zip(self.names, states) if s}}

    @torch.no_grad()
    def load_run_state(self, r, state):
        """Run r's part of the state; the runs of a group share the step count, that of the
        runs that have taken the most steps."""
        if not state["exp_avg"]:
            return  # saved before the first step
        for n, p in zip(self.names, self.params):
            s = self.adam.state[p]
            if not s:
                s.update(step=torch.tensor(0.0, device=p.device),
                         exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
            # the runs still training have taken the most steps (one stopped early, fewer)
            s["step"].fill_(max(float(s["step"]), state["step"]))
            s["exp_avg"][r].copy_(state["exp_avg"][n])
            s["exp_avg_sq"][r].copy_(state["exp_avg_sq"][n])


class Schedule:
    """One run's learning rate. exp: init_lr x 0.95^epoch. plateau: ReduceLROnPlateau's rule
    on the validation loss (x0.1 after more than lr_patience epochs without a relative
    improvement of 1e-4); plateau_acc: the same rule on minus the validation accuracy, as
    ReduceLROnPlateau(mode="min") runs it on a negative metric: there the relative threshold
    lies above the best, so an accuracy up to 1e-4 x best below the best (a tie included)
    counts as an improvement and becomes the new best."""

    def __init__(self, cfg):
        self.kind, self.init_lr, self.patience = cfg.lr_schedule, cfg.init_lr, cfg.lr_patience
        self.lr, self.epochs, self.best, self.bad_epochs = cfg.init_lr, 0, math.inf, 0

    def step(self, valid_loss, valid_acc):
        self.epochs += 1
        if self.kind == "exp":
            self.lr = self.init_lr * 0.95 ** self.epochs
            return
        metric = valid_loss if self.kind == "plateau" else -valid_acc
        if metric < self.best * (1 - 1e-4):
            self.best, self.bad_epochs = metric, 0
        else:
            self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.lr, self.bad_epochs = self.lr * 0.1, 0

    def state_dict(self):
        return dict(vars(self))

    def load_state_dict(self, state):
        vars(self).update(state)


@dataclass
class TrainState:
    """Where a run's training stands: all a resume needs besides the weights, the optimiser,
    the schedule and the generators. Saved as plain keys of the checkpoint."""
    epoch: int = 0  # epochs finished
    batch: int = 0  # batches finished in the current epoch
    global_step: int = 0
    # below any accuracy, so that the first epoch always writes a best checkpoint
    best_valid_acc: float = -1.0
    epochs_since_best: int = 0
    running: list = field(default_factory=lambda: [0.0, 0, 0])  # loss sum, correct, seen
    history: list = field(default_factory=list)  # one dict per epoch: epochs.csv


class Run:
    """One run of a group: its settings, loaders, policy generator, schedule and state, and
    what it owns on disk: its checkpoints, its lock, its CSV logs and tensorboard writer."""

    def __init__(self, cfg, generator, train_loader=None, valid_loader=None):
        self.cfg, self.name, self.generator = cfg, run_name(cfg), generator
        self.ckpt_path = {kind: os.path.join(cfg.ckpt_dir, f"{self.name}_{kind}.pt")
                          for kind in ("latest", "best")}
        self.log_dir = os.path.join(cfg.logs_dir, self.name)
        self.train_loader, self.valid_loader = train_loader, valid_loader
        self.schedule, self.state = Schedule(cfg), TrainState()
        self.lock = self.writer = self.iter_file = self.iter_csv = None

    @property
    def active(self):
        """Still training: not stopped early."""
        return self.state.epochs_since_best < self.cfg.train_patience

    # ---------------------------------------------------------------- checkpoints
    def checkpoint(self, model, optimizer, r):
        """Everything a resume needs; the run is row r of the group's model and optimiser. Its
        folders are recorded relative to the repository, so that a study's checkpoints can be
        committed and resumed in another clone."""
        return {"config": recorded_settings(self.cfg), "model": model.run_state(r),
                "optimizer": optimizer.run_state(r), "schedule": self.schedule.state_dict(),
                "data": {"train": self.train_loader.state_dict(self.state.batch),
                         "valid": self.valid_loader.state_dict()},
                "rng": {"policy": self.generator.get_state()}, **asdict(self.state)}

    def restore(self, model, optimizer, r):
        """The latest checkpoint back into row r and this run (its settings must match)."""
        ckpt = load_checkpoint(self.ckpt_path["latest"], self.cfg, training_settings(self.cfg),
                               ADDED_SETTINGS)
        model.load_run_state(r, ckpt["model"])
        optimizer.load_run_state(r, ckpt["optimizer"])
        self.schedule.load_state_dict(ckpt["schedule"])
        self.train_loader.load_state_dict(ckpt["data"]["train"])
        self.valid_loader.load_state_dict(ckpt["data"]["valid"])
        self.generator.set_state(ckpt["rng"]["policy"])
        self.state = TrainState(**{f.name: ckpt[f.name] for f in fields(TrainState)})
        print(f"[*] resuming {self.name} from {self.ckpt_path['latest']} at epoch "
              f"{self.state.epoch + 1}, step {self.state.batch + 1}")

    # ---------------------------------------------------------------- bookkeeping and logs
    def open_logs(self):
        """The tensorboard writer and the iteration CSV, both cut back to the state's step: a
        resumed run's logs then match those of a run that was never interrupted."""
        os.makedirs(self.log_dir, exist_ok=True)
        if self.cfg.use_tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            # purge_step drops events logged after the checkpoint by an interrupted run.
            self.writer = SummaryWriter(self.log_dir, purge_step=self.state.global_step or None)
        path = os.path.join(self.log_dir, "train_iterations.csv")
        rows = []
        if self.cfg.resume and os.path.exists(path):
            with open(path, newline="") as f:
                rows = list(csv.reader(f))[1:1 + self.state.global_step]
            if len(rows) < self.state.global_step:
                print(f"[!] {self.name}: {path} holds {len(rows)} of the checkpoint's "
                      f"{self.state.global_step} steps (the rest died with a killed process)")
        with replacing(path, newline="") as f:  # a kill now leaves the old file
            csv.writer(f).writerows([["epoch", "iteration", "global_step", "running_loss",
                                      "running_acc"]] + rows)
        self.iter_file = open(path, "a", newline="")
        self.iter_csv = csv.writer(self.iter_file)

    def close(self):
        """Release the lock, close the logs."""
        if self.lock is not None:
            self.lock.release()
        for f in (self.iter_file, self.writer):
            if f is not None:
                f.close()

    def count(self, epoch, log, B):
        """One step of B images: the running sums and counters, and the iteration logs; a loss
        that is not finite stops training (TrainingDiverged) with the step and its terms.
        log: {"correct": correct predictions, <term>: its value} of this run."""
        state = self.state
        terms = {n: v for n, v in log.items() if n != "correct" and has_term(self.cfg, n)}
        if not all(math.isfinite(v) for v in log.values()):
            named = ", ".join(f"{n} {v:.4g}" for n, v in terms.items())
            raise TrainingDiverged(
                f"the loss of {self.name} became {sum(terms.values())} at epoch {epoch + 1}, step "
                f"{state.batch + 1} ({named}); that step's update was not applied, and the last "
                f"good checkpoints of every run are kept.")
        loss_sum, correct, seen = state.running
        state.running = [loss_sum + sum(terms.values()) * B, correct + log["correct"], seen + B]
        state.batch += 1
        state.global_step += 1
        running_loss, running_acc = state.running[0] / state.running[2], \
            state.running[1] / state.running[2]
        self.iter_csv.writerow([epoch + 1, state.batch, state.global_step,
                                f"{running_loss:.6f}", f"{running_acc:.6f}"])
        if self.writer is not None:
            self.writer.add_scalar("train/running_loss", running_loss, state.global_step)
            self.writer.add_scalar("train/running_acc", running_acc, state.global_step)
            for name, value in terms.items():
                self.writer.add_scalar(f"loss/{name}", value, state.global_step)

    def save_trace(self, epoch, x, locations, n=9):
        """The first n images x (B, C, H, W) of the epoch's first batch and their locations
        (T + 1, B, 2): logs_dir/<run>/glimpses_epoch<E>.pt. Not for a run stopped early."""
        if self.active:
            save_glimpse_trace(os.path.join(self.log_dir, f"glimpses_epoch{epoch + 1}.pt"),
                               x[:n], locations[:, :n], self.cfg, self.name)

    def end_epoch(self, epoch, train, valid):
        """Step the schedule, keep the best accuracy, log the epoch; whether it is the best.
        train, valid: (mean loss, accuracy) of the epoch."""
        state, lr = self.state, self.schedule.lr
        self.schedule.step(*valid)
        is_best = valid[1] > state.best_valid_acc
        state.epochs_since_best = 0 if is_best else state.epochs_since_best + 1
        state.best_valid_acc = max(valid[1], state.best_valid_acc)
        state.epoch, state.batch, state.running = epoch + 1, 0, [0.0, 0, 0]
        row = dict(epoch=epoch + 1, train_loss=train[0], train_acc=train[1], valid_loss=valid[0],
                   valid_acc=valid[1], lr=lr)
        state.history.append(row)
        # Rewritten from the checkpointed history: it never holds an epoch the latest
        # checkpoint does not.
        with replacing(os.path.join(self.log_dir, "epochs.csv"), newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            w.writeheader()
            w.writerows(state.history)
        if self.writer is not None:
            for tag in ("train_loss", "train_acc", "valid_loss", "valid_acc", "lr"):
                self.writer.add_scalar(tag.replace("_", "/", 1), row[tag], epoch + 1)
        print(f"{self.name} epoch {epoch + 1}/{self.cfg.epochs}: train loss {train[0]:.3f} "
              f"acc {100 * train[1]:.2f}% | valid loss {valid[0]:.3f} acc "
              f"{100 * valid[1]:.2f}%{' [best]' if is_best else ''} | lr {lr:.2e}")
        return is_best


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoints are kept."""


class Interrupted(RuntimeError):
    """SIGINT or SIGTERM during training: resumable checkpoints have been saved."""

    def __init__(self, message, signum):
        super().__init__(message)
        self.signum = signum

    def __reduce__(self):
        # As its arguments, so that Ray can hand it back to a sweep's driver (pickling an
        # exception passes only its message by default).
        return Interrupted, (str(self), self.signum)


class StopSignals:
    """A `with` block in which the first SIGINT or SIGTERM only sets `signum`: the trainer
    finishes its step, saves and stops. A second one stops at once (the checkpoints on disk
    are whole: saves are atomic). The previous handlers come back when the block ends."""

    def __init__(self):
        self.signum, self.previous = None, {}

    def __enter__(self):
        self.previous = {s: signal.signal(s, self._on_signal)
                         for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def interrupted(self, runs, ckpt_dir):
        """The Interrupted to raise once the runs' checkpoints are saved in ckpt_dir."""
        state = next(run.state for run in runs if run.active)
        return Interrupted(f"interrupted by {signal.Signals(self.signum).name} at epoch "
                           f"{state.epoch + 1}, step {state.batch}; checkpoints saved to "
                           f"{ckpt_dir}; to continue, run the same command with "
                           f"--resume=True.", self.signum)

    def _on_signal(self, signum, frame):
        self.signum = signum
        signal.signal(signum, signal.SIG_DFL if signum == signal.SIGTERM else
                      signal.default_int_handler)
        print(f"\n[!] {signal.Signals(signum).name}: saving checkpoints after this step "
              f"(send it again to stop at once)", flush=True)


class Trainer:
    """Trains a group of runs (config.get_configs) with Adam, validates each run every epoch,
    and keeps each run's latest and best checkpoints. Without loaders it can still `step`."""

    def __init__(self, cfgs, device, train_loaders=None, valid_loaders=None):
        self.cfgs, self.cfg, self.device = cfgs, cfgs[0], torch.device(device)
        self.model = RecurrentAttention.for_runs(cfgs).to(self.device)
        self.optimizer = StackedAdam(self.model.named_parameters())
        self.weights = loss_weights(cfgs, self.device)
        loaders = zip(train_loaders or [None] * len(cfgs), valid_loaders or [None] * len(cfgs))
        # Each run's policy noise from a CPU generator of its own, whatever the device: a run
        # draws the same numbers on CPU and CUDA, so that the two train alike.
        self.runs = [Run(cfg, torch.Generator().manual_seed(seed_of(cfg.random_seed, "policy")),
                         *pair) for cfg, pair in zip(cfgs, loaders)]
        self.forward_loss = self._forward_loss
        if self.cfg.compile:
            self.forward_loss = torch.compile(self._forward_loss, dynamic=False,
                                              mode=self.cfg.compile_mode)
        self.signals = StopSignals()
        # The logged numbers of the steps not yet read off the device: [(values, images)].
        self.pending, self.log_names = [], None

    def _forward_loss(self, x, y, noise):
        """One minibatch of every run up to its loss: (locations, loss terms, reward)."""
        out = self.model(x, self.cfg.num_glimpses, noise)
        terms, reward = loss_terms(out, y, self.weights)
        return out.locations, terms, reward

    def draw_noise(self, batch):
        """l_0 (R, B, 2) and the policy noise eps (T, R, B, 2), each run's from its generator."""
        T, gens = self.cfg.num_glimpses, [run.generator for run in self.runs]
        # Each generator draws l_0, then eps: a run's numbers do not depend on its group.
        l_0 = [torch.empty(batch, 2).uniform_(-1, 1, generator=g) for g in gens]
        eps = [torch.randn(T, batch, 2, generator=g) for g in gens]
        return (torch.stack(l_0).to(self.device, non_blocking=True),
                torch.stack(eps, dim=1).to(self.device, non_blocking=True))

    def step(self, x, y, lr):
        """One training step of every run: forward and loss (compiled with --compile=True;
        a last, smaller batch runs eagerly rather than compiling a second graph), backward,
        then Adam with each run's learning rate (0: the run does not move), skipped for a run
        whose loss is not finite. Nothing is read off the device.

        x (R, B, C, H, W), y (R, B), lr (R,): each run's learning rate, a tensor on the device
        (a list works, at the cost of a copy to the device that waits for it). Returns the
        locations (R, T + 1, B, 2) and the numbers to log (R, 1 + terms), on the device:
        correct predictions, then each term (self.log_names)."""
        full = y.shape[1] == self.cfg.batch_size
        forward_loss = self.forward_loss if full else self._forward_loss
        locations, terms, reward = forward_loss(x, y, self.draw_noise(y.shape[1]))
        self.optimizer.zero_grad()
        sum(terms.values()).sum().backward()
        # detach: numbers for the logs, outside the graph.
        values = torch.stack([reward.sum(dim=1)] + [t.detach() for t in terms.values()], 1)
        self.log_names = ["correct", *terms]
        self.optimizer.step(lr, finite=torch.isfinite(values).all(dim=1))
        return locations, values

    def _read_logs(self, epoch):
        """The numbers of the steps since the last read, off the device in one copy, counted
        step by step for every training run (Run.count, which stops a diverged run)."""
        if self.pending:
            steps = torch.stack([v for v, _ in self.pending]).cpu().tolist()
            for rows, (_, B) in zip(steps, self.pending):
                for run, row in zip(self.runs, rows):
                    if run.active:
                        run.count(epoch, dict(zip(self.log_names, row)), B)
        self.pending = []

    # ---------------------------------------------------------------- the epoch loop
    def train(self):
        """Train from scratch, or with --resume=True from the latest checkpoints, until
        --epochs or until every run has stopped early. SIGINT/SIGTERM save resumable
        checkpoints first."""
        try:
            with self.signals:
                self._start()
                for epoch in range(self._epoch_done(), self.cfg.epochs):
                    for run in self.runs:
                        if run.state.epoch == epoch and not run.active:
                            print(f"[!] {run.name}: no better validation accuracy for "
                                  f"{self.cfg.train_patience} epochs: stopped early.")
                    if not any(run.active for run in self.runs):
                        break
                    self._epoch(epoch)
        finally:
            for run in self.runs:
                run.close()

    def _start(self):
        """Locks, states (fresh or resumed) and logs."""
        for run in self.runs:  # before anything is read: a second trainer stops here
            run.lock = RunLock(run.cfg.ckpt_dir, run.name)
        for r, run in enumerate(self.runs):
            if self.cfg.resume:
                run.restore(self.model, self.optimizer, r)
            elif os.path.exists(run.ckpt_path["latest"]):
                raise CheckpointError(
                    f"run {run.name} already has a checkpoint ({run.ckpt_path['latest']}); pass "
                    f"--resume=True to continue it, or move it away to train from scratch.")
        self._epoch_done()  # the runs still training must be at the same step
        for run in self.runs:
            run.open_logs()
        run = self.runs[0]
        print(f"[*] {', '.join(r.name for r in self.runs)}: {run.train_loader.num_images} train, "
              f"{run.valid_loader.num_images} valid images each on {self.device}; epochs "
              f"{self._epoch_done() + 1}..{self.cfg.epochs}")

    def _epoch_done(self):
        """The epoch the active runs have finished; they move in step, and a resume of runs
        that stand at different places is refused."""
        places = {(run.state.epoch, run.state.batch) for run in self.runs if run.active}
        if len(places) > 1:
            where = "; ".join(f"{run.name} at epoch {run.state.epoch + 1}, step "
                              f"{run.state.batch + 1}" for run in self.runs if run.active)
            raise CheckpointError(f"the runs of this group stand at different places ({where}); "
                                  f"resume them separately.")
        return min(run.state.epoch for run in self.runs) if not places else places.pop()[0]

    def _epoch(self, epoch):
        """Train one epoch, validate every run, step the schedules, log and save."""
        training = [run.active for run in self.runs]  # a run stopped early keeps its files
        train = self.train_one_epoch(epoch)
        if train is None:  # interrupted mid-epoch
            self._save(training, is_best=[False] * len(self.runs))
            raise self.signals.interrupted(self.runs, self.cfg.ckpt_dir)
        # With --valid_size=0 the training metrics stand in for the validation ones.
        valid = (self.evaluate_loss([run.valid_loader for run in self.runs])
                 if self.runs[0].valid_loader.num_images else train)
        is_best = [run.active and run.end_epoch(epoch, t, v)
                   for run, t, v in zip(self.runs, train, valid)]
        self._save(training, is_best)
        if self.signals.signum is not None:
            raise self.signals.interrupted(self.runs, self.cfg.ckpt_dir)

    def train_one_epoch(self, epoch):
        """One pass over every run's training set; returns each run's mean loss and accuracy
        over the epoch, or None if a signal asked to stop before the end of the epoch.

        The running loss and accuracy (means over the epoch so far) are logged every
        iteration: the paper's convergence figure plots them over the first epoch."""
        self.model.train()
        runs = self.runs
        # Each run's learning rate, copied to the device once an epoch: a copy of a Python list
        # to the device waits for the device to finish, which a copy every step would.
        lr = torch.tensor([run.schedule.lr if run.active else 0.0 for run in runs],
                          device=self.device)
        lead = next(run for run in runs if run.active)  # where the training runs stand
        loaders = [run.train_loader for run in runs]
        bar = tqdm(total=len(loaders[0]), initial=lead.state.batch, desc=f"epoch {epoch + 1}",
                   leave=False, dynamic_ncols=True)
        done = lead.state.batch  # steps of this epoch taken (the states count them on reading)
        for batches in zip(*loaders):
            x = torch.stack([b[0] for b in batches])
            y = torch.stack([b[1] for b in batches])
            locations, values = self.step(x, y, lr)
            if done == 0 and self.cfg.plot_freq and epoch % self.cfg.plot_freq == 0:
                for r, run in enumerate(runs):
                    run.save_trace(epoch, x[r], locations[r])
            self.pending.append((values, y.shape[1]))
            done += 1
            if len(self.pending) == READ_EVERY:
                self._read_logs(epoch)
            bar.update()
            if self.signals.signum is not None and done < len(loaders[0]):
                self._read_logs(epoch)
                bar.close()
                return None
        self._read_logs(epoch)
        bar.close()
        # a run stopped early saw nothing this epoch
        return [(loss / seen, correct / seen) if seen else (math.nan, math.nan)
                for loss, correct, seen in (run.state.running for run in runs)]

    @torch.no_grad()
    def evaluate_loss(self, loaders):
        """Each run's mean loss (all terms of its objective) and accuracy after T glimpses
        on its own loader: a list of (loss, accuracy), one per run."""
        self.model.eval()
        # summed on the device and read once, after the last batch
        sums = torch.zeros(2, len(self.runs), dtype=torch.float64, device=self.device)
        seen = 0
        for batches in zip(*loaders):
            x = torch.stack([b[0] for b in batches])
            y = torch.stack([b[1] for b in batches])
            _, terms, reward = self._forward_loss(x, y, self.draw_noise(y.shape[1]))
            loss = sum(terms.values())  # a run without a term has it weighted 0
            sums += torch.stack([loss * y.shape[1], reward.sum(dim=1)]).double()
            seen += y.shape[1]
        return [(loss / seen, correct / seen) for loss, correct in sums.T.tolist()]

    def _save(self, runs, is_best):
        """The latest checkpoint of the runs marked in `runs`, and their best where marked,
        all written before any replaces its previous file (utils.save_checkpoints)."""
        files = []
        for r, run in enumerate(self.runs):
            if not runs[r]:
                continue
            # The iteration log on disk must reach the checkpoint's step: a resume after a
            # kill cuts it back to that step, and rows left in a dead process's buffer are lost.
            run.iter_file.flush()
            ckpt = run.checkpoint(self.model, self.optimizer, r)
            files += [(ckpt, run.ckpt_path[k]) for k in ("latest", "best")[:1 + is_best[r]]]
        save_checkpoints(files)

