"""Every setting of the project, as command-line flags with the defaults of the released code.

Edit a default here or override it: `python main.py --uncertainty=True --num_glimpses=8`.
Booleans take `--flag=True` / `--flag=False`. The flags of GROUPED take comma-separated lists,
and then name a group of runs, every combination of their values, that trains in one process:
`--random_seed=1,2,3 --intrinsic=False,True` is six runs. Settings whose default depends on
the dataset (docs/method.md, "Training schedule and defaults") are `None` here and filled in by
`get_config` unless given on the command line.

Also the one definition of the four variants, of a run's name and its inverse, and of the
settings a checkpoint must share with the command line.
"""
import argparse
import itertools
import math
import re
import sys


class ConfigError(ValueError):
    """A setting that cannot work; main.py prints its message as one sentence and exits 2."""


def str2bool(v):
    if v.lower() in ("true", "1", "yes"):
        return True
    if v.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got '{v}'")


def listed(kind):
    """An argparse type: a comma-separated list of values of `kind` ('1,2,3' -> [1, 2, 3])."""
    def parse(text):
        values = []
        for v in text.split(","):
            try:
                values.append(kind(v))
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected {kind.__name__} values, one or a "
                                                 f"comma-separated list, got '{text}'")
        return values
    return parse


bools = listed(str2bool)

# The settings a group of runs may vary: everything else its runs share.
GROUPED = ("random_seed", "uncertainty", "intrinsic", "lambda_uncertainty", "lambda_intrinsic")


# The paper's settings for each dataset, used where the user set no value.
DATASET_DEFAULTS = {
    "mnist": dict(patch_size=8, num_patches=1, glimpse_scale=2, num_glimpses=6, std=0.10,
                  lambda_intrinsic=1e-1, lambda_uncertainty=1e-5),
    "translated": dict(patch_size=12, num_patches=3, glimpse_scale=2, num_glimpses=6, std=0.03,
                       lambda_intrinsic=1e-2, lambda_uncertainty=1e-5),
    # Mnih et al.'s Table 2 models; the std and the loss weights, which they do not give, are
    # translated MNIST's.
    "cluttered": dict(patch_size=12, num_patches=3, glimpse_scale=2, num_glimpses=8, std=0.03,
                      lambda_intrinsic=1e-2, lambda_uncertainty=1e-5, distractors=4),
    "cluttered100": dict(patch_size=12, num_patches=4, glimpse_scale=2, num_glimpses=8, std=0.03,
                         lambda_intrinsic=1e-2, lambda_uncertainty=1e-5, distractors=8),
}
IMAGE_SIZE = {"mnist": 28, "translated": 60, "cluttered": 60, "cluttered100": 100}
CLUTTERED = tuple(d for d, defaults in DATASET_DEFAULTS.items() if "distractors" in defaults)

class _Parser(argparse.ArgumentParser):
    def error(self, message):
        """One sentence and exit status 2, instead of argparse's usage dump."""
        self.exit(2, f"error: {message} (python main.py --help lists the flags)\n")


parser = _Parser(
    description="Recurrent Attention Model with the active-sampling objectives of Lu (2019).",
    formatter_class=argparse.ArgumentDefaultsHelpFormatter, allow_abbrev=False)

# The paper's new parameters.
paper = parser.add_argument_group("active sampling (Lu 2019)")
paper.add_argument("--uncertainty", type=bools, default=[False],
                   help="add the error network and the self-uncertainty terms L_fit + L_unc")
paper.add_argument("--intrinsic", type=bools, default=[False],
                   help="add the intrinsic term: cross-entropy of p_T to the uniform label")
paper.add_argument("--lambda_uncertainty", type=listed(float), default=None,
                   help="lambda_1, weight of L_unc = lambda_1 * sum_{b,t,k} e_t; "
                        "default 1e-5")
paper.add_argument("--lambda_intrinsic", type=listed(float), default=None,
                   help="lambda_2, weight of L_intr; the cross-entropy is SUMMED over the batch "
                        "(as in the released code), so the paper's values transfer only at batch "
                        "32; default 1e-1 (mnist), 1e-2 (the others)")
paper.add_argument("--uncertainty_routing", choices=["paper", "released"], default="paper",
                   help="paper: L_unc moves RAM through h_t and p_t, never the error network's "
                        "weights (the paper's intent); released: also the error network's "
                        "weights, as the released code does")
paper.add_argument("--dynamic", type=str2bool, default=False,
                   help="test with a per-sample dynamic number of glimpses (stop when the "
                        "confidence bounds of the two best classes separate)")
paper.add_argument("--exploration_rate", type=float, nargs="+", default=[0.3],
                   help="eps of the dynamic stopping rule; several values sweep them")
paper.add_argument("--stopping_rule", choices=["spec", "released"], nargs="+", default=None,
                   help="dynamic rule(s): spec stops each sample at the first step where the best "
                        "class's lower bound clears the runner-up's upper bound; released is the "
                        "released code's (the runner-up's lower bound, the last step at which the "
                        "rule held, whole minibatches of batch_size stopped together); default "
                        "spec (--protocol=ours), released (--protocol=author)")
paper.add_argument("--dataset", choices=sorted(DATASET_DEFAULTS), default="mnist",
                   help="28x28 MNIST; translated: MNIST pasted at a random place on a 60x60 "
                        "canvas; cluttered, cluttered100: the same on 60x60 and 100x100 canvases "
                        "with 8x8 distractor patches cut from other digits (Mnih et al. 2014)")

# The Recurrent Attention Model.
ram = parser.add_argument_group("glimpse network")
ram.add_argument("--patch_size", type=int, default=None, help="g: side of the smallest patch; "
                 "default 8 (mnist), 12 (the others)")
ram.add_argument("--glimpse_scale", type=int, default=None,
                 help="s: each patch is s times wider than the previous one; default 2")
ram.add_argument("--num_patches", type=int, default=None,
                 help="k: patches per glimpse; default 1 (mnist), 3 (translated, "
                      "cluttered), 4 (cluttered100)")
ram.add_argument("--loc_hidden", type=int, default=128, help="size of h_l, the location code")
ram.add_argument("--location_hidden", type=int, default=0,
                 help="beyond the paper: a hidden ReLU layer of this size in the location "
                      "network, mu_t = clamp(fc(relu(fc_hidden(h_t)))) (0: none, the paper's)")
ram.add_argument("--location_mean", default="clamp", choices=("clamp", "tanh"),
                 help="how the location network bounds mu_t to [-1, 1]: clamp, as the released "
                      "code does, or tanh (beyond the paper: the PyTorch port's), "
                      "mu_t = tanh(fc(h_t)), whose gradient never vanishes at the edges")
ram.add_argument("--baseline_relu", type=str2bool, default=True,
                 help="b_t = relu(fc(h_t)) as in the released code; False (beyond the paper): "
                      "b_t = fc(h_t), which can go below 0")
ram.add_argument("--glimpse_hidden", type=int, default=128, help="size of h_phi, the patch code")

core = parser.add_argument_group("core and policy")
core.add_argument("--num_glimpses", type=int, default=None,
                  help="T: glimpses per image in training (and in testing unless "
                       "--test_glimpses is set); default 6 (mnist, translated), 8 "
                       "(cluttered, cluttered100)")
core.add_argument("--hidden_size", type=int, default=256, help="size of h_t")
core.add_argument("--std", type=float, default=None,
                  help="standard deviation of the Gaussian location policy; "
                       "default 0.10 (mnist), 0.03 (the others)")
core.add_argument("--reinforce_weight", type=float, default=1.0,
                  help="beyond the paper: the weight of the REINFORCE term (the PyTorch port's "
                       "recipe: 0.01, a policy that moves slowly)")
core.add_argument("--M", type=int, nargs="+", default=[1],
                  help="Monte Carlo samples per test image, whose log-probabilities are "
                       "averaged; several values evaluate each (e.g. --M 1 10)")

evaluation = parser.add_argument_group("evaluation")
evaluation.add_argument("--test_glimpses", type=int, default=0,
                        help="N: glimpses per test image (0: num_glimpses); may exceed T")
evaluation.add_argument("--curve", type=str2bool, default=False,
                        help="also score the test accuracy after every N = 1..max_glimpses")
evaluation.add_argument("--max_glimpses", type=int, default=50,
                        help="N_max: length of the curve, and the cap of dynamic glimpses")
evaluation.add_argument("--results_dir", default="./results",
                        help="evaluation results (JSON) go to results_dir/<run name>/")
evaluation.add_argument("--protocol", choices=["ours", "author"], default="ours",
                        help="ours: seeds per evaluation batch of 1,000, Monte Carlo copies "
                             "averaged before a dynamic rule; author: as the released code, the "
                             "same seed before every batch of batch_size images and every copy "
                             "stopping on its own (docs/method.md, Evaluation protocols)")
evaluation.add_argument("--checkpoint", default=None,
                        help="with --is_train=False: test this checkpoint file; its stored "
                             "settings decide the model and the run name, so no training flags "
                             "are needed")
evaluation.add_argument("--num_test", type=int, default=0,
                        help="test on the first K test images only (0: all); unlike --subset it "
                             "keeps the run name")

data = parser.add_argument_group("data")
data.add_argument("--download", type=str2bool, default=False,
                  help="download MNIST through torchvision if its files are missing from data_dir")
data.add_argument("--distractors", type=int, default=None,
                  help="cluttered datasets only: 8x8 patches, each cut at a random place of "
                       "another image of the same split, pasted at random places on the "
                       "canvas; default 4 (cluttered), 8 (cluttered100)")
data.add_argument("--valid_size", type=float, default=0.1,
                  help="fraction of the 60,000 training images held out for validation (0: none; "
                       "the training metrics then choose the best checkpoint)")
data.add_argument("--batch_size", type=int, default=32, help="images per minibatch")
data.add_argument("--num_workers", type=int, default=0,
                  help="DataLoader worker processes that gather and normalise batches")
data.add_argument("--shuffle", type=str2bool, default=True,
                  help="shuffle the training images every epoch")
data.add_argument("--subset", type=int, default=0,
                  help="use only the first N training and N test images (0: all; all 10,000 "
                       "test images for N above it); for short trial runs, which get their own "
                       "run name")

train = parser.add_argument_group("training")
train.add_argument("--is_train", type=str2bool, default=True,
                   help="train (then test the best checkpoint), or only test a checkpoint")
train.add_argument("--epochs", type=int, default=100, help="maximum number of epochs")
train.add_argument("--init_lr", type=float, default=3e-4, help="Adam's initial learning rate")
train.add_argument("--lr_schedule", choices=["exp", "plateau", "plateau_acc"], default="exp",
                   help="exp: lr x0.95 after every epoch; plateau: ReduceLROnPlateau on the "
                        "validation loss; plateau_acc: on the validation accuracy (the "
                        "PyTorch port's; the loss holds the noisy REINFORCE terms)")
train.add_argument("--lr_patience", type=int, default=20,
                   help="epochs without a better validation loss (plateau_acc: accuracy) "
                        "before a plateau schedule cuts the lr tenfold (ReduceLROnPlateau's "
                        "default factor)")
train.add_argument("--train_patience", type=int, default=50,
                   help="stop after this many epochs without a better validation accuracy")
train.add_argument("--compile", type=str2bool, default=False,
                   help="compile the training step (forward and loss; autograd then builds one "
                        "fused backward) with torch.compile: about a minute to start, then "
                        "faster steps, the same results within float rounding")
train.add_argument("--compile_mode", choices=["default", "reduce-overhead"], default="default",
                   help="torch.compile's mode with --compile=True: reduce-overhead records the "
                        "step's GPU kernels once as CUDA graphs and replays them, without "
                        "launching each (on a CPU the same as default)")

misc = parser.add_argument_group("misc")
misc.add_argument("--use_gpu", type=str2bool, default=False, help="run on CUDA")
misc.add_argument("--best", type=str2bool, default=True,
                  help="test the best checkpoint (by validation accuracy), else the latest")
misc.add_argument("--random_seed", type=listed(int), default=[1],
                  help="seed of every random number of the run")
misc.add_argument("--data_dir", default="./data", help="folder holding MNIST/raw/")
misc.add_argument("--ckpt_dir", default="./ckpt", help="where checkpoints are written")
misc.add_argument("--logs_dir", default="./logs", help="tensorboard logs and training CSVs")
misc.add_argument("--use_tensorboard", type=str2bool, default=True,
                  help="write tensorboard event files to logs_dir/<run name>")
misc.add_argument("--resume", type=str2bool, default=False,
                  help="continue training from the latest checkpoint")
misc.add_argument("--debug", type=str2bool, default=False,
                  help="show the full traceback of an error instead of one sentence")
misc.add_argument("--plot_freq", type=int, default=1,
                  help="every that many epochs, save the first training batch's images and "
                       "glimpse locations (0: never)")


# The four variants of the paper: (--uncertainty, --intrinsic).
VARIANTS = {"original": (False, False), "uncertainty": (True, False),
            "intrinsic": (False, True), "both": (True, True)}

# Settings a checkpoint must share with the flags to be loaded at all (the shapes and the
# meaning of the weights), and in addition to be trained further.
ARCHITECTURE = ("dataset", "distractors", "patch_size", "num_patches", "glimpse_scale",
                "glimpse_hidden", "loc_hidden", "hidden_size", "location_hidden", "location_mean",
                "baseline_relu")
TRAINING = ARCHITECTURE + ("num_glimpses", "std", "reinforce_weight", "uncertainty",
                           "intrinsic", "uncertainty_routing", "lambda_uncertainty",
                           "lambda_intrinsic", "batch_size", "init_lr",
                           "lr_schedule", "lr_patience", "train_patience", "valid_size",
                           "subset", "shuffle", "random_seed")
def training_settings(cfg):
    """The TRAINING settings a checkpoint must share with cfg to be trained further: all but
    those of a term cfg's variant leaves out, which change nothing in its training (original
    RAM resumes whatever lambda_1 it was started with, as its run name, NAMED_WEIGHTS, does not
    hold lambda_1 either)."""
    idle = {key for key, (_, flag) in NAMED_WEIGHTS.items() if not getattr(cfg, flag)}
    if not cfg.uncertainty:
        idle.add("uncertainty_routing")  # where L_unc's gradient goes, without an L_unc
    return tuple(key for key in TRAINING if key not in idle)


# Settings added after checkpoints were first shipped: a checkpoint without one was made with
# this value (utils.load_checkpoint fills it in).
ADDED_SETTINGS = {key: parser.get_default(key)
                  for key in ("location_hidden", "location_mean", "baseline_relu",
                              "reinforce_weight", "uncertainty_routing", "distractors")}

# The paper's training recipe, and the run-name tag of each of its settings where a run
# differs from it (the paper's std is the dataset's, DATASET_DEFAULTS). Runs of two recipes
# never share a name, so never share files.
RECIPE_TAGS = {"batch_size": lambda c: f"b{c.batch_size}", "std": lambda c: f"std{c.std:g}",
               "init_lr": lambda c: f"lr{c.init_lr:g}",
               "lr_schedule": lambda c: f"{c.lr_schedule.replace('_', '')}{c.lr_patience}",
               "train_patience": lambda c: f"tp{c.train_patience}",
               "location_hidden": lambda c: f"lh{c.location_hidden}",
               "location_mean": lambda c: c.location_mean,  # "tanh", the one other value
               "baseline_relu": lambda c: "blin",  # the one other value
               "reinforce_weight": lambda c: f"rw{c.reinforce_weight:g}",
               # the one other value, where the variant has the term
               "uncertainty_routing": lambda c: "relroute" if c.uncertainty else "",
               # the paper's count is the cluttered dataset's (None for the others)
               "distractors": lambda c: (f"d{c.distractors}" if c.distractors
                                         != DATASET_DEFAULTS[c.dataset].get("distractors") else "")}
PAPER_RECIPE = {key: parser.get_default(key) for key in RECIPE_TAGS}  # std: None here


def recipe_name(cfg):
    """Where the run's recipe differs from the paper's, as run-name tags: '' for the paper's
    recipe, else e.g. '_b128_std0.05_plateau20'."""
    paper = dict(PAPER_RECIPE, std=DATASET_DEFAULTS[cfg.dataset]["std"])
    tags = [tag(cfg) for key, tag in RECIPE_TAGS.items() if getattr(cfg, key) != paper[key]]
    return "".join(f"_{tag}" for tag in tags if tag)


# The random streams of a training run, each drawn from a generator of its own (seed_of).
TRAINING_STREAMS = ("split", "weights", "policy", "train_order", "train_translation",
                    "train_workers", "valid_order", "valid_translation", "valid_workers")
# The cluttered datasets' fixed sets, the same in every run: clutter_split, the torch
# permutation that holds out their validation images; valid_clutter and test_clutter, the
# canvases of their validation and test sets. Negative, so that no run's stream (all >= 0)
# can take them.
FIXED_STREAMS = {"clutter_split": -1, "valid_clutter": -2, "test_clutter": -3}


def seed_of(seed, stream, batch=0):
    """The seed of one random stream of the run --random_seed=seed (>= 1): no two streams of a
    run share a seed, nor do the training streams of two runs (tests/test_data.py).

    Training, TRAINING_STREAMS[k]: 100 * seed + 10 + k. split: the numpy permutation that holds
    out the validation images; weights: torch's global generator before the model is built;
    policy: l_0 and the policy noise; <loader>_order / _translation / _workers: the loader's
    shuffles, canvas positions, and DataLoader's base seed (drawn even without workers).
    Testing, fixed by the published results: "test_author", the run's seed before every batch
    (the released code's); "test_ours", seed * 1_000_003 + batch before evaluation batch
    `batch`; "test_canvas", 0, the released code's seed of the translated test set.
    The cluttered datasets' fixed sets, FIXED_STREAMS, take no run seed (None will do)."""
    if stream in TRAINING_STREAMS:
        return 100 * seed + 10 + TRAINING_STREAMS.index(stream)
    if stream in FIXED_STREAMS:
        return FIXED_STREAMS[stream]
    return {"test_author": seed, "test_ours": seed * 1_000_003 + batch, "test_canvas": 0}[stream]


def variant_name(cfg):
    """'original', 'uncertainty', 'intrinsic' or 'both', from the two flags."""
    return next(v for v, flags in VARIANTS.items() if flags == (cfg.uncertainty, cfg.intrinsic))


def variant_flags(variant):
    """The command-line flags of a variant: ['--uncertainty=...', '--intrinsic=...']."""
    uncertainty, intrinsic = VARIANTS[variant]
    return [f"--uncertainty={uncertainty}", f"--intrinsic={intrinsic}"]


# The loss weights a run's name carries where its variant has the term and the weight is not
# the dataset's default: flag -> (tag in the name, the variant flag of the term).
NAMED_WEIGHTS = {"lambda_uncertainty": ("lu", "uncertainty"),
                 "lambda_intrinsic": ("li", "intrinsic")}


def run_name(cfg):
    """Names checkpoints and logs, so that no two variants, datasets or settings collide.

    A loss weight other than the dataset's default is part of the name (_lu<lambda_1>,
    _li<lambda_2>: NAMED_WEIGHTS) where the variant has its term."""
    default = DATASET_DEFAULTS[cfg.dataset]
    weights = "".join(f"_{tag}{getattr(cfg, key):g}" for key, (tag, flag) in NAMED_WEIGHTS.items()
                      if getattr(cfg, flag) and getattr(cfg, key) != default[key])
    name = (f"{cfg.dataset}_ram_{cfg.num_glimpses}_{cfg.patch_size}x{cfg.patch_size}"
            f"_s{cfg.glimpse_scale}_k{cfg.num_patches}_{variant_name(cfg)}{weights}"
            f"{recipe_name(cfg)}_seed{cfg.random_seed}")
    return name + (f"_subset{cfg.subset}" if cfg.subset else "")


# The words of RECIPE_TAGS, before their numbers.
_RECIPE_WORDS = ("b", "std", "lr", "plateau", "plateauacc", "tp", "lh", "tanh", "blin", "rw",
                 "relroute", "d")
_RUN_NAME = re.compile(r"^(?P<dataset>\w+?)_ram_(?P<num_glimpses>\d+)_(?P<patch_size>\d+)x\d+"
                       r"_s(?P<glimpse_scale>\d+)_k(?P<num_patches>\d+)_(?P<variant>"
                       + "|".join(VARIANTS) + ")"
                       + "".join(rf"(?:_{tag}(?P<{key}>[\d.e+-]+))?"
                                 for key, (tag, _) in NAMED_WEIGHTS.items())
                       + rf"(?P<recipe>(?:_(?:{'|'.join(_RECIPE_WORDS)})[\d.e+-]*)*)"
                       + r"_seed(?P<random_seed>\d+)(?:_subset(?P<subset>\d+))?$")


def parse_run_name(name):
    """The inverse of run_name: {dataset, num_glimpses, patch_size, glimpse_scale, num_patches,
    variant, the NAMED_WEIGHTS (None where the name has none), recipe (recipe_name without its
    first underscore), random_seed, subset}, or None for a name run_name does not make."""
    m = _RUN_NAME.match(name)
    if m is None:
        return None
    d = m.groupdict()
    parsed = {k: v if k in ("dataset", "variant") else int(v or 0) for k, v in d.items()
              if k not in NAMED_WEIGHTS and k != "recipe"}
    parsed["recipe"] = d["recipe"].lstrip("_")
    parsed.update({k: None if d[k] is None else float(d[k]) for k in NAMED_WEIGHTS})
    return parsed


def get_configs(argv=None):
    """The settings of every run the flags name: one per combination of the values of the
    GROUPED flags, each with the dataset's defaults filled in and checked.

    Unknown flags and malformed values exit through argparse (status 2); impossible
    combinations raise ConfigError."""
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    lists = {key: getattr(args, key) or [None] for key in GROUPED}
    cfgs = []
    for values in itertools.product(*lists.values()):
        cfg = argparse.Namespace(**dict(vars(args), **dict(zip(GROUPED, values))))
        for key, value in DATASET_DEFAULTS[cfg.dataset].items():
            if getattr(cfg, key) is None:
                setattr(cfg, key, value)
        if cfg.stopping_rule is None:
            cfg.stopping_rule = ["released" if cfg.protocol == "author" else "spec"]
        if cfg.checkpoint is None:  # else adopt_settings fills it in from the file's T
            cfg.test_glimpses = cfg.test_glimpses or cfg.num_glimpses
        check_config(cfg)
        cfgs.append(cfg)
    # One run per name: combinations that differ only in the weight of a term the variant
    # does not have are the same run.
    unique = {}
    for cfg in cfgs:
        unique.setdefault(run_name(cfg), cfg)
    cfgs = list(unique.values())
    if len(cfgs) > 1 and args.checkpoint:
        raise ConfigError("--checkpoint names one checkpoint: give the grouped flags one value "
                          "each with it")
    return cfgs


def get_config(argv=None):
    """The settings of the one run the flags name (get_configs for a group)."""
    cfgs = get_configs(argv)
    if len(cfgs) > 1:
        raise ConfigError(f"the flags name {len(cfgs)} runs where one was expected")
    return cfgs[0]


def adopt_settings(cfg, saved, keys):
    """--checkpoint: the settings `keys` of the run that wrote the checkpoint replace the
    command line's, which keeps the evaluation flags (N, M, curve, protocol, ...)."""
    for key in keys:
        setattr(cfg, key, saved[key])
    cfg.test_glimpses = cfg.test_glimpses or cfg.num_glimpses
    check_config(cfg)


def check_config(cfg):
    """Raise ConfigError, in one sentence, for settings that cannot work."""
    canvas = IMAGE_SIZE[cfg.dataset]
    # The cluttered training and validation parts cut each distractor from another of their
    # images: each needs two, or none (no validation).
    n = cfg.subset or 60000
    parts = (n - math.floor(cfg.valid_size * n), math.floor(cfg.valid_size * n))
    largest = (cfg.patch_size * cfg.glimpse_scale ** (cfg.num_patches - 1)
               if cfg.num_patches >= 1 else 0)
    rules = [
        (cfg.std > 0, f"--std must be positive, got {cfg.std}"),
        (cfg.reinforce_weight >= 0, f"--reinforce_weight must not be negative, got "
                                    f"{cfg.reinforce_weight}"),
        (cfg.random_seed >= 1, f"--random_seed must be at least 1, got {cfg.random_seed}"),
        (cfg.patch_size >= 1, f"--patch_size must be at least 1, got {cfg.patch_size}"),
        (cfg.glimpse_scale >= 1, f"--glimpse_scale must be at least 1, got {cfg.glimpse_scale}"),
        (cfg.num_patches >= 1, f"--num_patches must be at least 1, got {cfg.num_patches}"),
        (cfg.distractors is None or cfg.dataset in CLUTTERED,
         f"--distractors applies to the cluttered datasets ({', '.join(CLUTTERED)}) only, not "
         f"to {cfg.dataset}"),
        ((cfg.distractors or 0) >= 0,
         f"--distractors must not be negative, got {cfg.distractors}"),
        (not cfg.distractors or all(p != 1 for p in parts),
         f"--subset={cfg.subset} with --valid_size={cfg.valid_size} leaves a single training "
         f"or validation image, which has no other image to cut distractors from"),
        (cfg.location_hidden >= 0, f"--location_hidden must not be negative, got "
                                   f"{cfg.location_hidden}"),
        (largest <= canvas, f"the largest patch ({largest} pixels: patch_size {cfg.patch_size} "
                            f"x glimpse_scale {cfg.glimpse_scale}^{cfg.num_patches - 1}) is larger "
                            f"than the {canvas}x{canvas} {cfg.dataset} image"),
        (cfg.num_glimpses >= 1, f"--num_glimpses must be at least 1, got {cfg.num_glimpses}"),
        (cfg.test_glimpses >= 0, f"--test_glimpses must not be negative, got {cfg.test_glimpses}"),
        (cfg.max_glimpses >= 1, f"--max_glimpses must be at least 1, got {cfg.max_glimpses}"),
        (0 <= cfg.valid_size < 1, f"--valid_size must be in [0, 1), got {cfg.valid_size}"),
        (cfg.batch_size >= 1, f"--batch_size must be at least 1, got {cfg.batch_size}"),
        (min(cfg.M) >= 1, f"--M must be at least 1, got {cfg.M}"),
        (cfg.lambda_uncertainty >= 0,
         f"--lambda_uncertainty must not be negative, got {cfg.lambda_uncertainty}"),
        (cfg.lambda_intrinsic >= 0,
         f"--lambda_intrinsic must not be negative, got {cfg.lambda_intrinsic}"),
        (cfg.epochs >= 1, f"--epochs must be at least 1, got {cfg.epochs}"),
        (cfg.init_lr > 0, f"--init_lr must be positive, got {cfg.init_lr}"),
        (cfg.num_workers >= 0, f"--num_workers must not be negative, got {cfg.num_workers}"),
        (0 <= cfg.subset <= 60000, f"--subset must be in [0, 60000], got {cfg.subset}"),
        (cfg.plot_freq >= 0, f"--plot_freq must not be negative, got {cfg.plot_freq}"),
        (all(e >= 0 for e in cfg.exploration_rate),
         f"--exploration_rate must not be negative, got {cfg.exploration_rate}"),
        (cfg.num_test >= 0, f"--num_test must not be negative, got {cfg.num_test}"),
        (cfg.checkpoint is None or not cfg.is_train,
         "--checkpoint names a checkpoint to test: pass --is_train=False with it "
         "(to continue training a run, use --resume=True)"),
    ]
    for ok, message in rules:
        if not ok:
            raise ConfigError(message)
