"""Groups of runs trained in one process (config.GROUPED, trainer.py): each run of a group is
a run in its own right. Its loss and gradients are those of the run alone, nothing of another
run reaches it, it starts from its own seed's weights and noise, it resumes exactly (between
epochs and after SIGINT mid-epoch), it saves only deterministic states, a NaN in it stops the
group naming it, it can stop early while the others go on, and the command line trains and
tests every run of a group into the files of each."""
import glob
import json
import os
import re
import signal
import subprocess
import sys

import pytest
import torch

import config
import main
import trainer as trainer_module
from conftest import (ROOT, SMALL_RUN, assert_same_training_state, cli, group_settings,
                      run_dirs)
from model import RecurrentAttention
from trainer import Trainer

# A group with all four variants, two seeds, and loss weights other than the defaults; small
# layers, so that it runs in milliseconds.
SMALL_LAYERS = ["--glimpse_hidden=16", "--loc_hidden=16", "--hidden_size=32"]
GROUP = group_settings(*SMALL_LAYERS, "--random_seed=1,2", "--uncertainty=False,True",
                       "--intrinsic=False,True", "--lambda_uncertainty=1e-2",
                       "--lambda_intrinsic=0.5")
B = 32


def ckpt(tmp, name, kind="latest"):
    return torch.load(f"{tmp}/ckpt/{name}_{kind}.pt", weights_only=True)


def read(path):
    with open(path) as f:
        return f.read()


def names(*flags):
    """The run names of the group the flags name, in the group's order."""
    return [config.run_name(c) for c in group_settings(*flags)]


def batch(R, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(R, B, 1, 28, 28, generator=g), torch.randint(0, 10, (R, B), generator=g)


def run_noise(noise, r):
    """Run r's part of a group's noise, as the noise of a group of one."""
    l_0, eps = noise
    return l_0[r:r + 1], eps[:, r:r + 1]


def loss_and_grads(trainer, x, y, noise):
    """The terms (detached) and every parameter's gradient of the group's loss."""
    _, terms, reward = trainer._forward_loss(x, y, noise)
    params = dict(trainer.model.named_parameters())
    grads = torch.autograd.grad(sum(terms.values()).sum(), list(params.values()))
    return {k: v.detach() for k, v in terms.items()}, reward, dict(zip(params, grads))


# ------------------------------------------------------------------------------- the settings
def test_grouped_flags_name_every_combination_once():
    assert len(GROUP) == 8
    assert {(c.random_seed, c.uncertainty, c.intrinsic) for c in GROUP} == {
        (s, u, i) for s in (1, 2) for u in (False, True) for i in (False, True)}
    assert len(set(names(*SMALL_LAYERS, "--random_seed=1,2", "--uncertainty=False,True",
                         "--intrinsic=False,True"))) == 8
    # a loss weight the variant has no term for does not make another run
    cfgs = group_settings("--lambda_uncertainty=1e-5,1e-3", "--uncertainty=False,True")
    assert [(c.uncertainty, c.lambda_uncertainty) for c in cfgs] == [
        (False, 1e-5), (True, 1e-5), (True, 1e-3)]
    with pytest.raises(config.ConfigError, match="2 runs"):
        config.get_config(["--random_seed=1,2"])
    with pytest.raises(config.ConfigError, match="--checkpoint"):
        group_settings("--is_train=False", "--checkpoint=x_best.pt", "--random_seed=1,2")


def test_run_names_carry_loss_weights_other_than_the_default():
    cfgs = group_settings("--uncertainty=True", "--intrinsic=False,True",
                          "--lambda_uncertainty=1e-5,0.003", "--lambda_intrinsic=0.25")
    got = {config.run_name(c) for c in cfgs}
    assert got == {"mnist_ram_6_8x8_s2_k1_uncertainty_seed1",
                   "mnist_ram_6_8x8_s2_k1_uncertainty_lu0.003_seed1",
                   "mnist_ram_6_8x8_s2_k1_both_li0.25_seed1",
                   "mnist_ram_6_8x8_s2_k1_both_lu0.003_li0.25_seed1"}
    for cfg in cfgs:
        parsed = config.parse_run_name(config.run_name(cfg))
        assert parsed["random_seed"] == 1 and parsed["variant"] == config.variant_name(cfg)
        assert parsed["lambda_uncertainty"] == (None if cfg.lambda_uncertainty == 1e-5
                                                else cfg.lambda_uncertainty)
        assert parsed["lambda_intrinsic"] == (None if not cfg.intrinsic
                                              else cfg.lambda_intrinsic)


def test_run_names_say_the_recipe():
    """Every setting of a recipe beyond the paper's shows in the name, so that runs of two
    recipes never share files; the paper's recipe adds nothing, whatever the dataset's std."""
    paper = config.get_config(["--dataset=translated", "--std=0.03"])
    assert config.run_name(paper) == "translated_ram_6_12x12_s2_k3_original_seed1"
    flags = ["--batch_size=128", "--std=0.05", "--init_lr=0.001", "--lr_schedule=plateau",
             "--train_patience=200", "--location_hidden=256", "--location_mean=tanh",
             "--baseline_relu=False", "--reinforce_weight=0.01"]
    names = {config.run_name(config.get_config([f, "--intrinsic=True"]))
             for f in flags + ["--lr_schedule=plateau_acc"]}
    assert names == {f"mnist_ram_6_8x8_s2_k1_intrinsic_{tag}_seed1" for tag in (
        "b128", "std0.05", "lr0.001", "plateau20", "tp200", "lh256", "tanh", "blin", "rw0.01",
        "plateauacc20")}
    acc = config.parse_run_name(config.run_name(config.get_config(["--lr_schedule=plateau_acc"])))
    assert acc["recipe"] == "plateauacc20" and acc["random_seed"] == 1
    # the released routing of L_unc: in the name where the variant has the term
    routed = config.get_configs(["--uncertainty_routing=released", "--uncertainty=False,True"])
    assert [config.run_name(c) for c in routed] == [
        "mnist_ram_6_8x8_s2_k1_original_seed1", "mnist_ram_6_8x8_s2_k1_uncertainty_relroute_seed1"]
    cfg = config.get_config(flags + ["--lambda_intrinsic=0.01", "--intrinsic=True"])
    parsed = config.parse_run_name(config.run_name(cfg))
    assert parsed["recipe"] == "b128_std0.05_lr0.001_plateau20_tp200_lh256_tanh_blin_rw0.01"
    assert parsed["lambda_intrinsic"] == 0.01 and parsed["variant"] == "intrinsic"


# ------------------------------------------------------------------------------- one step
def test_a_run_starts_as_the_run_alone():
    """RecurrentAttention.for_runs gives run r exactly the weights of for_runs([cfg_r]) (and
    of a model built after torch.manual_seed(its weights' seed)), whatever the group and its order;
    the trainer draws run r's noise as the run alone does."""
    group = RecurrentAttention.for_runs(GROUP)
    backwards = RecurrentAttention.for_runs(GROUP[::-1])
    R = len(GROUP)
    for r, cfg in enumerate(GROUP):
        alone = RecurrentAttention.for_runs([cfg]).run_state(0)
        torch.manual_seed(config.seed_of(cfg.random_seed, "weights"))
        plain = RecurrentAttention.from_config(cfg).run_state(0)
        for state in (group.run_state(r), backwards.run_state(R - 1 - r), plain):
            assert state.keys() == alone.keys()
            for k in alone:
                assert torch.equal(state[k], alone[k]), (r, k)
    # the same seed gives the same weights whatever the variant; another seed other weights
    w = lambda r: group.run_state(r)["core.h2h.weight"]
    seeds = [c.random_seed for c in GROUP]
    assert torch.equal(w(seeds.index(1)), w(len(seeds) - 1 - seeds[::-1].index(1)))
    assert not torch.equal(w(seeds.index(1)), w(seeds.index(2)))
    with pytest.raises(KeyError):
        group.load_run_state(0, {k: v for k, v in alone.items() if k != "core.h2h.weight"})

    trainer = Trainer(GROUP, "cpu")
    noise = trainer.draw_noise(B)
    assert noise[0].shape == (R, B, 2) and noise[1].shape == (GROUP[0].num_glimpses, R, B, 2)
    for r, cfg in enumerate(GROUP):
        for a, b in zip(run_noise(noise, r), Trainer([cfg], "cpu").draw_noise(B)):
            assert torch.equal(a, b), r


def test_a_runs_loss_and_gradients_in_a_group_are_those_of_the_run_alone():
    """Each run of a group of eight (four variants, two seeds): its locations, reward, every
    loss term and every gradient equal those of a model of that run alone (R = 1, its
    weights loaded with load_run_state), on the same batch and noise."""
    group = Trainer(GROUP, "cpu")
    R = len(GROUP)
    x, y = batch(R)
    noise = group.draw_noise(B)
    locations, _, _ = group._forward_loss(x, y, noise)
    terms, reward, grads = loss_and_grads(group, x, y, noise)
    assert set(terms) == {"action", "baseline", "reinforce", "fit", "uncertainty", "intrinsic"}
    for r, cfg in enumerate(GROUP):
        alone = Trainer([cfg], "cpu")
        alone.model.load_run_state(0, group.model.run_state(r))
        args = (x[r:r + 1], y[r:r + 1], run_noise(noise, r))
        l_1, _, _ = alone._forward_loss(*args)
        t_1, r_1, g_1 = loss_and_grads(alone, *args)
        torch.testing.assert_close(locations[r], l_1[0], atol=1e-6, rtol=0)
        assert torch.equal(reward[r], r_1[0])
        for name in terms:
            torch.testing.assert_close(terms[name][r], t_1[name][0], atol=1e-6, rtol=1e-5,
                                       msg=f"run {r}: {name}")
        for name in grads:
            torch.testing.assert_close(grads[name][r], g_1[name][0], atol=1e-7, rtol=1e-5,
                                       msg=f"run {r}: {name}")


@pytest.mark.parametrize("change", ["weights", "batch", "noise", "learning rate"])
def test_no_cross_talk_between_runs(change):
    """Two identical groups, but in the second run j's weights, batch, noise or learning rate
    changed: over two Trainer.steps every other run's logged numbers and gradients, and its
    weights and Adam state after each step, are bit for bit those of the first group."""
    R, j = len(GROUP), 5
    groups = [Trainer(GROUP, "cpu") for _ in range(2)]
    x, y = batch(R)
    inputs = [(x.clone(), y.clone()), (x.clone(), y.clone())]
    lrs = [[3e-3] * R, [3e-3] * R]
    if change == "weights":
        with torch.no_grad():
            for p in groups[1].model.parameters():
                p[j].add_(0.1 * torch.randn_like(p[j]))
    elif change == "batch":
        x2, y2 = batch(R, seed=1)
        inputs[1][0][j], inputs[1][1][j] = x2[j], y2[j]
    elif change == "noise":
        groups[1].runs[j].generator.manual_seed(12345)
    elif change == "learning rate":
        lrs[1][j] = 0.0  # as for a run that stopped early
    for step in range(2):
        results = []
        for g, (xb, yb), lr in zip(groups, inputs, lrs):
            _, logs = g.step(xb, yb, lr)
            grads = {name: p.grad.clone() for name, p in g.model.named_parameters()}
            results.append((logs, grads, g.model.run_state, g.optimizer.run_state))
        (l_a, g_a, w_a, o_a), (l_b, g_b, w_b, o_b) = results
        for i in range(R):
            if i == j:
                continue
            assert torch.equal(l_a[i], l_b[i]), (step, i)
            for name in g_a:
                assert torch.equal(g_a[name][i], g_b[name][i]), (step, i, name)
            wa, wb, oa, ob = w_a(i), w_b(i), o_a(i), o_b(i)
            assert all(torch.equal(wa[k], wb[k]) for k in wa), (step, i)
            for kind in ("exp_avg", "exp_avg_sq"):
                assert all(torch.equal(oa[kind][k], ob[kind][k]) for k in oa[kind]), (step, i)
        # ... whereas run j did change (the change is one that matters)
        assert not all(torch.equal(w_a(j)[k], w_b(j)[k]) for k in w_a(j))


# ------------------------------------------------------------------------------- training
RESUME_GROUP = ["--random_seed=1,2", "--uncertainty=False,True"]  # four runs


def test_group_resume_between_epochs_is_exact(tmp_path):
    """A group of four runs, three epochs in one go, and one epoch then --resume=True to
    three: each run's checkpoints (weights, Adam state, schedule, policy generator, loaders'
    states, every TrainState field) and logs are bit for bit the same."""
    a, b = tmp_path / "a", tmp_path / "b"
    args = SMALL_RUN + RESUME_GROUP
    assert main.main(args + run_dirs(a) + ["--epochs=3"]) == 0
    assert main.main(args + run_dirs(b) + ["--epochs=1"]) == 0
    assert main.main(args + run_dirs(b) + ["--epochs=3", "--resume=True"]) == 0
    runs = names(*SMALL_RUN, *RESUME_GROUP)
    assert len(runs) == 4
    for name in runs:
        assert ckpt(a, name)["epoch"] == 3
        assert_same_training_state(ckpt(a, name), ckpt(b, name))
        assert_same_training_state(ckpt(a, name, "best"), ckpt(b, name, "best"))
        for log in ("train_iterations.csv", "epochs.csv"):
            assert read(f"{a}/logs/{name}/{log}") == read(f"{b}/logs/{name}/{log}"), name
    # four different runs, not four copies of one
    weights = [ckpt(a, name)["model"]["core.h2h.weight"] for name in runs]
    assert not any(torch.equal(weights[0], w) for w in weights[1:])


def _progress(stream, total):
    """Read a training process's stderr until its progress bar shows at least one of `total`
    steps done (or the stream ends); returns what was read."""
    shown = ""
    while not re.search(rf"\b[1-9]\d*/{total}\b", shown[-40:]):
        c = stream.read(1)
        if not c:
            break
        shown += c
    return shown


def test_sigint_saves_every_run_and_the_resumed_group_is_exact(tmp_path):
    """A real training process of a group of two gets SIGINT mid-epoch: it saves every run at
    the same step, says how to resume, exits 130; resuming it ends exactly where an
    uninterrupted group ends, run by run."""
    ref, run_dir = tmp_path / "ref", tmp_path / "sig"
    args = SMALL_RUN + ["--uncertainty=True", "--intrinsic=True", "--random_seed=1,2",
                        "--subset=3200", "--epochs=1"]
    runs = names(*args)
    assert len(runs) == 2
    assert main.main(args + run_dirs(ref)) == 0
    # Unbuffered, so that the first line arrives as it is printed whatever the environment.
    proc = subprocess.Popen([sys.executable, "main.py", *args, *run_dirs(run_dir)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    # Wait until training has started (the first line) and its progress bar shows a finished
    # step (a fixed wait would miss the epoch on a fast machine: 90 steps take about a second).
    first = proc.stdout.readline()
    assert "train" in first and all(name in first for name in runs), first
    shown = _progress(proc.stderr, total=90)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    err = shown + err
    assert proc.returncode == 130, err[-2000:]
    assert "--resume=True" in err and "SIGINT" in err
    saved = [ckpt(run_dir, name) for name in runs]
    assert all(s["epoch"] == 0 and 0 < s["batch"] < 90 for s in saved)  # mid-epoch
    assert saved[0]["batch"] == saved[1]["batch"]  # the runs move in step
    code, out, err = cli(*args, *run_dirs(run_dir), "--resume=True")
    assert code == 0, err[-2000:]
    for name in runs:
        assert f"resuming {name} from" in out
    assert f"step {saved[0]['batch'] + 1}" in out
    for name in runs:
        assert_same_training_state(ckpt(ref, name), ckpt(run_dir, name))
        assert read(f"{ref}/logs/{name}/train_iterations.csv") == \
            read(f"{run_dir}/logs/{name}/train_iterations.csv")


def test_a_nan_in_one_run_stops_the_group_naming_that_run(tmp_path, monkeypatch, capsys):
    """Run 1's L_fit becomes NaN at epoch 2, step 3: exit 1, the message names run 1 (not run
    0), the step and the term, and every run's checkpoints are left as they were."""
    args = SMALL_RUN + ["--uncertainty=True", "--random_seed=1,2", "--subset=320"] + \
        run_dirs(tmp_path)
    runs = names(*args)
    assert main.main(args + ["--epochs=1"]) == 0
    files = sorted(glob.glob(f"{tmp_path}/ckpt/*.pt"))
    assert len(files) == 4  # latest and best of each run
    before = {f: open(f, "rb").read() for f in files}
    real, calls = trainer_module.loss_terms, []

    def nan_in_run_1_at_third_step(out, y, weights):
        terms, reward = real(out, y, weights)
        calls.append(1)
        if len(calls) == 3:
            poisoned = terms["fit"].clone()
            poisoned[1] = float("nan")
            terms["fit"] = poisoned
        return terms, reward

    monkeypatch.setattr(trainer_module, "loss_terms", nan_in_run_1_at_third_step)
    capsys.readouterr()
    assert main.main(args + ["--epochs=2", "--resume=True"]) == 1
    err = capsys.readouterr().err
    assert f"the loss of {runs[1]} became nan" in err and runs[0] not in err
    assert "epoch 2, step 3" in err and "fit nan" in err and "action" in err
    assert {f: open(f, "rb").read() for f in files} == before


def test_a_run_that_stops_early_stops_while_the_others_go_on(tmp_path, monkeypatch, capsys):
    """--train_patience=1, and validation accuracies made to stall for run 0 after epoch 1
    while run 1's rise: run 0 trains two epochs, then its weights stop moving and its files
    stay as they were after epoch 2, while run 1 trains to --epochs. Resumed for a fifth
    epoch, the group ends where a group trained to five epochs in one go ends."""
    args = SMALL_RUN + ["--random_seed=1,2", "--subset=320", "--train_patience=1"]
    runs = names(*args)
    latest = [tmp_path / "ckpt" / f"{name}_latest.pt" for name in runs]
    real, seen = Trainer.evaluate_loss, []

    def stalls_for_run_0(self, loaders):
        results = real(self, loaders)
        epoch = self.runs[1].state.epoch + 1  # the epoch being validated
        # run 0's weights and latest file as they are when the epoch is validated, before
        # it is saved
        path = self.runs[0].ckpt_path["latest"]
        seen.append((self.model.run_state(0),
                     open(path, "rb").read() if os.path.exists(path) else None))
        return [(results[0][0], 0.5), (results[1][0], 0.1 * epoch)]

    monkeypatch.setattr(Trainer, "evaluate_loss", stalls_for_run_0)
    real_trace, traces = trainer_module.save_glimpse_trace, []
    monkeypatch.setattr(trainer_module, "save_glimpse_trace",
                        lambda path, *a: traces.append(path) or real_trace(path, *a))
    assert main.main(args + run_dirs(tmp_path) + ["--epochs=4"]) == 0
    out = capsys.readouterr().out
    assert f"[!] {runs[0]}: no better validation accuracy for 1 epochs: stopped early." in out
    assert runs[1] + ": no better" not in out
    assert [torch.load(p, weights_only=True)["epoch"] for p in latest] == [2, 4]
    assert torch.load(tmp_path / "ckpt" / f"{runs[0]}_best.pt", weights_only=True)["epoch"] == 1
    assert len(seen) == 4
    final = latest[0].read_bytes()
    for weights, file in seen[2:]:  # validating epochs 3 and 4: nothing of run 0 moved
        assert all(torch.equal(weights[k], seen[1][0][k]) for k in weights)
        assert file == final
    assert not all(torch.equal(seen[0][0][k], seen[1][0][k]) for k in seen[0][0])
    epochs = [read(tmp_path / "logs" / name / "epochs.csv").splitlines() for name in runs]
    assert [len(e) - 1 for e in epochs] == [2, 4]
    # the first batch's glimpses, once per epoch of each run while it trains
    assert sorted(os.path.relpath(p, tmp_path / "logs") for p in traces) == sorted(
        f"{name}/glimpses_epoch{e}.pt" for name, last in zip(runs, (2, 4))
        for e in range(1, last + 1))

    assert main.main(args + run_dirs(tmp_path) + ["--epochs=5", "--resume=True"]) == 0
    assert [torch.load(p, weights_only=True)["epoch"] for p in latest] == [2, 5]
    assert latest[0].read_bytes() == final
    assert all(torch.equal(w, seen[1][0][k]) for k, w in seen[-1][0].items())
    ref = tmp_path / "ref"
    assert main.main(args + run_dirs(ref) + ["--epochs=5"]) == 0
    for name in runs:
        assert_same_training_state(ckpt(ref, name), ckpt(tmp_path, name))


# ------------------------------------------------------------------------------- command line
CLI_GROUP = ["--random_seed=1,2", "--intrinsic=False,True"]
CLI_ARGS = SMALL_RUN + ["--subset=320", "--epochs=1"] + CLI_GROUP


@pytest.fixture(scope="module")
def trained_twice(tmp_path_factory):
    """`python main.py --random_seed=1,2 --intrinsic=False,True ...`, run twice into two
    folders (two processes, so that any state not seeded by the run would differ)."""
    dirs = [tmp_path_factory.mktemp("group_a"), tmp_path_factory.mktemp("group_b")]
    outs = []
    for d in dirs:
        code, out, err = cli(*CLI_ARGS, *run_dirs(d))
        assert code == 0, err[-2000:]
        outs.append(out)
    return dirs, outs


def test_the_command_line_trains_and_tests_every_run_of_the_group(trained_twice):
    """Four runs, each with its own checkpoints, logs and results, as a run trained alone
    writes them; then --is_train=False with the same lists tests all four again."""
    (tmp, _), (out, _) = trained_twice
    runs = names(*CLI_ARGS)
    assert len(runs) == 4 == len(set(runs))
    cfgs = {config.run_name(c): c for c in group_settings(*CLI_ARGS)}
    for name in runs:
        for kind in ("latest", "best"):
            saved = ckpt(tmp, name, kind)
            assert saved["epoch"] == 1
            assert (saved["config"]["random_seed"], saved["config"]["intrinsic"]) == (
                cfgs[name].random_seed, cfgs[name].intrinsic)
        rows = read(tmp / "logs" / name / "train_iterations.csv").splitlines()
        assert len(rows) == 1 + 9  # 288 training images, batches of 32
        assert len(read(tmp / "logs" / name / "epochs.csv").splitlines()) == 2
        results = glob.glob(str(tmp / "results" / name / "best-epoch1_N6_M1.json"))
        assert len(results) == 1 and json.load(open(results[0]))["run"] == name
        assert re.search(rf"{name} \(best, epoch 1, ours protocol\): test accuracy", out)
    assert sorted(os.listdir(tmp / "ckpt")) == sorted(f"{n}_{k}.pt" for n in runs
                                                      for k in ("best", "latest"))
    assert sorted(os.listdir(tmp / "logs")) == sorted(os.listdir(tmp / "results")) == \
        sorted(runs)

    for name in runs:
        os.remove(tmp / "results" / name / "best-epoch1_N6_M1.json")
    code, out, err = cli(*CLI_ARGS, *run_dirs(tmp), "--is_train=False")
    assert code == 0, err[-2000:]
    assert out.count("test accuracy") == 4 and "epoch 1/" not in out
    for name in runs:
        assert re.search(rf"{name} \(best, epoch 1, ours protocol\): test accuracy", out)
        assert os.path.getsize(tmp / "results" / name / "best-epoch1_N6_M1.json") > 0


def test_identical_runs_save_identical_states(trained_twice):
    """The same command in two processes: every run's checkpoints are bit for bit the same,
    random-generator states included (nothing unseeded, such as numpy's global state, is
    saved); and the runs of the group have states of their own."""
    (a, b), _ = trained_twice
    runs = names(*CLI_ARGS)
    for name in runs:
        for kind in ("latest", "best"):
            assert_same_training_state(ckpt(a, name, kind), ckpt(b, name, kind))
    policy = [ckpt(a, name)["rng"]["policy"] for name in runs]
    assert not torch.equal(policy[0], policy[2])  # seeds 1 and 2
