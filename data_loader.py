"""MNIST, 60x60 translated MNIST and cluttered translated MNIST as in-memory tensors, served
in minibatches.

The four IDX files live in `data_dir/MNIST/raw/` (torchvision's layout), gzipped or not; the
repository ships the gzipped ones, so a fresh clone needs no network. Images are normalised
with MNIST's mean and std batch by batch; the raw uint8 pixels are read once per process and
shared by every run of a group (a float32 copy per run would cost 188 MB each), so a batch is
one indexing operation.

Translated MNIST (docs/method.md): the 28x28 digit is pasted at a uniform random top-left corner in
[0, 32)^2 of a 60x60 canvas filled with the batch's minimum (the normalised background).
Training and validation batches are translated afresh every time; the test set is translated
once with seed 0, so every evaluation sees the same 10,000 images.

Cluttered translated MNIST (Mnih et al. 2014; `cluttered`: 60x60, 4 distractors;
`cluttered100`: 100x100, 8): the digit is placed as in translated MNIST, at a corner uniform in
[0, S - 28)^2, and each distractor is an 8x8 patch cut at a corner uniform in [0, 20)^2 of an
image drawn uniformly among the other images of the same part (training, validation or test),
pasted at a corner uniform in [0, S - 8)^2; where pastes overlap, a pixel keeps the maximum.
Canvases are made from the raw uint8 pixels (0 is the background) and normalised batch by
batch: max commutes with the increasing normalisation. Training canvases are drawn afresh every
batch from the run's own generator. The validation and test sets are drawn once, whole, from
fixed seeds (config.seed_of), so they hold the same bytes in every run, on every machine and
at every batch size; the training/validation split is fixed too, and one copy of each set
serves every run of a process.
"""
import functools
import gzip
import os
import shutil
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from config import CLUTTERED, IMAGE_SIZE, seed_of
from utils import replacing, save_checkpoint

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
CANVAS, DIGIT = 60, 28
PATCH = 8  # side of a distractor

# name -> (IDX magic number, number of items): what a valid file must say in its header.
MNIST_FILES = {
    "train-images-idx3-ubyte": (2051, 60000),
    "train-labels-idx1-ubyte": (2049, 60000),
    "t10k-images-idx3-ubyte": (2051, 10000),
    "t10k-labels-idx1-ubyte": (2049, 10000),
}


class DataError(RuntimeError):
    """Missing or malformed data files; main.py prints the message and exits 1."""


def _check_idx(path, magic, count):
    """Check the IDX header and the file size, so a truncated or foreign file fails clearly."""
    expected = 16 + count * DIGIT * DIGIT if magic == 2051 else 8 + count
    with open(path, "rb") as f:
        header = f.read(8)
    found_magic = int.from_bytes(header[:4], "big") if len(header) >= 4 else None
    found_count = int.from_bytes(header[4:8], "big") if len(header) == 8 else None
    size = os.path.getsize(path)
    if found_magic != magic or found_count != count or size != expected:
        raise DataError(f"{path} is not a valid MNIST file: expected magic number {magic}, "
                        f"{count} items and {expected} bytes, found magic number {found_magic}, "
                        f"{found_count} items and {size} bytes.")


def prepare_mnist(data_dir, download=False):
    """Make sure the four uncompressed IDX files are in data_dir/MNIST/raw and valid.

    Decompresses shipped .gz files; downloads through torchvision only when files are missing
    and `download` is set."""
    raw = os.path.join(data_dir, "MNIST", "raw")
    for name in MNIST_FILES:
        path, gz = os.path.join(raw, name), os.path.join(raw, name + ".gz")
        if not os.path.exists(path) and os.path.exists(gz):
            try:
                with gzip.open(gz, "rb") as src, replacing(path, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            except (OSError, EOFError) as e:
                raise DataError(f"{gz} could not be decompressed ({e}).") from e
    missing = [n for n in MNIST_FILES if not os.path.exists(os.path.join(raw, n))]
    if missing and download:
        from torchvision.datasets import MNIST
        MNIST(data_dir, train=True, download=True)
        missing = [n for n in MNIST_FILES if not os.path.exists(os.path.join(raw, n))]
    if missing:
        raise DataError(f"MNIST files missing from {os.path.abspath(raw)}: "
                        f"{', '.join(missing)} (gzipped or not); copy them there, "
                        f"or pass --download=True on a machine with internet access.")
    for name, (magic, count) in MNIST_FILES.items():
        _check_idx(os.path.join(raw, name), magic, count)


def load_mnist_bytes(data_dir, train, download=False):
    """(images, labels): the raw uint8 images (N, 1, 28, 28) and int64 labels (N,).

    Read through torchvision.datasets.MNIST the first time; its tensors are then cached in
    data_dir/MNIST/processed/, because importing torchvision alone takes seconds."""
    prepare_mnist(data_dir, download)
    split = "train" if train else "t10k"
    # The cache is valid only for the very raw files it was made from.
    stamp = [(os.path.getsize(p), os.stat(p).st_mtime_ns) for p in
             (os.path.join(data_dir, "MNIST", "raw", f"{split}-{kind}-idx{d}-ubyte")
              for kind, d in (("images", 3), ("labels", 1)))]
    cache = os.path.join(data_dir, "MNIST", "processed", f"ram_{split}.pt")
    try:
        data, targets, cached_stamp = torch.load(cache, weights_only=True)
        if cached_stamp != stamp:
            raise ValueError("stale cache")
    except (OSError, RuntimeError, ValueError):
        from torchvision.datasets import MNIST
        ds = MNIST(data_dir, train=train, download=False)
        data, targets = ds.data, ds.targets
        save_checkpoint((data, targets, stamp), cache)  # atomic: never half a cache
    return data.unsqueeze(1), targets.long()


def normalise(x):
    """uint8 pixels of any shape -> float32, normalised with MNIST's mean and std."""
    return x.float().div_(255).sub_(MNIST_MEAN).div_(MNIST_STD)


def load_mnist(data_dir, train, download=False):
    """(images, labels): normalised float images (N, 1, 28, 28) and int64 labels (N,)."""
    images, labels = load_mnist_bytes(data_dir, train, download)
    return normalise(images), labels


def translate(x, generator=None):
    """Paste each 28x28 image of x (B, C, 28, 28) at a random place on a 60x60 canvas filled
    with x's minimum: (B, C, 60, 60). One scatter for the whole batch."""
    B, C = x.shape[:2]
    # corners in [0, 32): randint's upper bound is exclusive
    corner = torch.randint(0, CANVAS - DIGIT, (B, 2), generator=generator,
                           device=generator.device if generator is not None else x.device)
    corner = corner.to(x.device)
    offs = torch.arange(DIGIT, device=x.device)
    rows = corner[:, 0, None, None] + offs[None, :, None]
    cols = corner[:, 1, None, None] + offs[None, None, :]
    idx = (rows * CANVAS + cols).reshape(B, 1, DIGIT * DIGIT).expand(B, C, DIGIT * DIGIT)
    canvas = x.new_full((B, C, CANVAS * CANVAS), x.min().item())
    canvas.scatter_(2, idx, x.reshape(B, C, DIGIT * DIGIT))
    return canvas.reshape(B, C, CANVAS, CANVAS)


class Clutter(NamedTuple):
    """A cluttered dataset's canvas side and number of distractors."""
    size: int
    distractors: int


def _corners(shape, inner, outer, generator):
    """Top-left corners (*shape, 2), (row, column), of inner x inner squares in an outer x outer
    one, uniform in [0, outer - inner)^2: translate's range."""
    return torch.randint(0, outer - inner, (*shape, 2), generator=generator)


def draw_clutter(own, pool, clutter, generator):
    """The random part of the cluttered canvases of the images `own` (B,), indices into an
    image tensor whose part (training, validation or test) is `pool` (P,), which holds them.

    A dict: "digit" (B, 2), the digit's corner on the canvas; "source" (B, D), the image each
    distractor is cut from, uniform among the pool's images other than its own digit; "crop"
    (B, D, 2), the patch's corner in that image; "place" (B, D, 2), its corner on the canvas.
    Drawn in that order from the CPU `generator`."""
    B, D = len(own), clutter.distractors
    own, pool = torch.as_tensor(own), torch.as_tensor(pool)
    digit = _corners((B,), DIGIT, clutter.size, generator)
    if B and D:
        # Uniform over the P - 1 other images: a draw among pool[:-1] that hits the digit's
        # own image takes pool[-1], the one image the draw leaves out, instead.
        source = pool[torch.randint(0, len(pool) - 1, (B, D), generator=generator)]
        source = torch.where(source == own[:, None], pool[-1], source)
    else:  # nothing to draw (and a pool of one image, which has no other, may draw nothing)
        source = torch.zeros(B, D, dtype=torch.long)
    return {"digit": digit, "source": source, "crop": _corners((B, D), PATCH, DIGIT, generator),
            "place": _corners((B, D), PATCH, clutter.size, generator)}


def _window(corners, side, size):
    """Flat pixel indices (n, side * side) of the side x side squares at `corners` (n, 2) of a
    size x size image, row-major."""
    offs = torch.arange(side)
    rows = corners[:, 0, None, None] + offs[None, :, None]
    cols = corners[:, 1, None, None] + offs[None, None, :]
    return (rows * size + cols).reshape(len(corners), side * side)


def paint(digits, images, layout, size):
    """Cluttered canvases (B, C, size, size) uint8: the digits (B, C, 28, 28) and the
    distractors that `layout` (draw_clutter) cuts from `images` (N, C, 28, 28), both uint8,
    pasted in turn onto a background of 0, every pixel the maximum of what is pasted on it."""
    B, C = digits.shape[:2]
    D = layout["source"].shape[1]
    flat = images.reshape(len(images), C, DIGIT * DIGIT)
    window = _window(layout["crop"].reshape(-1, 2), PATCH, DIGIT)  # (B D, 64)
    crops = flat[layout["source"].reshape(-1, 1, 1), torch.arange(C)[None, :, None],
                 window[:, None, :]].reshape(B, D, C, PATCH * PATCH)
    canvas = digits.new_zeros(B, C, size * size)
    pastes = [(digits.reshape(B, C, DIGIT * DIGIT), layout["digit"], DIGIT)]
    pastes += [(crops[:, d], layout["place"][:, d], PATCH) for d in range(D)]
    for patch, corner, side in pastes:
        idx = _window(corner, side, size)[:, None, :].expand(B, C, side * side)
        canvas.scatter_(2, idx, torch.maximum(canvas.gather(2, idx), patch))
    return canvas.reshape(B, C, size, size)


def clutter_split(n, held_out):
    """(train, valid), int64 indices: the cluttered datasets' split of the first n training
    images, the same in every run: a fixed permutation of them, its first `held_out` held out."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(
        seed_of(None, "clutter_split")))
    return order[held_out:], order[:held_out]


@functools.lru_cache(maxsize=2)  # the training and the test images
def _mnist_bytes(data_dir, train, download):
    """load_mnist_bytes, read once per process: every run of a group indexes the same tensors."""
    return load_mnist_bytes(data_dir, train, download)


@functools.lru_cache(maxsize=2)  # a dataset's validation and test sets
def fixed_canvases(data_dir, download, part, clutter, n=0, held_out=0):
    """(canvases, labels): a cluttered dataset's fixed set, uint8 (K, 1, S, S) and int64 (K,),
    drawn whole from a fixed seed, once per process. part "valid": the `held_out` validation
    images of clutter_split(n, held_out); part "test": the 10,000 test images."""
    images, labels = _mnist_bytes(data_dir, part == "valid", download)
    own = clutter_split(n, held_out)[1] if part == "valid" else torch.arange(len(labels))
    generator = torch.Generator().manual_seed(seed_of(None, f"{part}_clutter"))
    layout = draw_clutter(own, own, clutter, generator)
    return paint(images[own], images, layout, clutter.size), labels[own]


class _Batches(Dataset):
    """Indexed by a whole list of indices: one __getitem__ per minibatch, not per image."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, idx):
        idx = torch.as_tensor(idx)
        return self.images[idx], self.labels[idx], idx


class EpochSampler:
    """Yields lists of indices, a fresh permutation every epoch drawn from its own generator.

    Its state is saved in checkpoints so that training resumes, even mid-epoch, on the very
    same batches: mid-epoch it is the generator state this epoch's order was drawn from plus
    the number of batches already served; between epochs, the state the next draw starts from.
    """

    def __init__(self, indices, batch_size, shuffle, seed):
        self.indices = torch.as_tensor(indices)
        self.batch_size, self.shuffle = batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch_state = self.generator.get_state()
        self.skip = 0

    def __len__(self):
        return (len(self.indices) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        self.epoch_state = self.generator.get_state()
        order = self.indices
        if self.shuffle:
            order = order[torch.randperm(len(order), generator=self.generator)]
        start, self.skip = self.skip, 0
        for b in range(start, len(self)):
            yield order[b * self.batch_size:(b + 1) * self.batch_size].tolist()

    def state_dict(self, batches_done):
        if batches_done == 0:
            return {"generator": self.generator.get_state(), "skip": 0}
        return {"generator": self.epoch_state, "skip": batches_done}

    def load_state_dict(self, state):
        self.generator.set_state(state["generator"])
        self.skip = state["skip"]


class Loader:
    """Minibatches (x, y) on `device`: x (B, 1, S, S) normalised, y (B,) int64.

    With `translated`, every batch is pasted afresh onto a 60x60 canvas, and with `clutter`
    (a Clutter) onto a cluttered canvas whose distractors come from the loader's own images;
    either way the places are drawn from a CPU generator of its own (the same canvases on CPU
    and CUDA). uint8 images are normalised batch by batch."""

    def __init__(self, images, labels, indices, batch_size, shuffle, seeds, translated, device,
                 num_workers=0, clutter=None):
        """seeds: {"order", "translation", "workers"}, the seeds of the loader's generators."""
        self.sampler = EpochSampler(indices, batch_size, shuffle, seeds["order"])
        # generator: without one, every new DataLoader iterator draws its workers' base seed
        # from the global generator, which would shift the model's random numbers on resume.
        self.loader = DataLoader(_Batches(images, labels), sampler=self.sampler, batch_size=None,
                                 num_workers=num_workers, persistent_workers=num_workers > 0,
                                 pin_memory=torch.device(device).type == "cuda",
                                 generator=torch.Generator().manual_seed(seeds["workers"]))
        self.translated, self.clutter, self.device = translated, clutter, device
        self.images = images
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seeds["translation"])
        self.num_images = len(self.sampler.indices)

    def __len__(self):
        return len(self.sampler)

    def __iter__(self):
        for x, y, idx in self.loader:
            if self.clutter is not None:
                layout = draw_clutter(idx, self.sampler.indices, self.clutter, self.generator)
                x = paint(x, self.images, layout, self.clutter.size)
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            if x.dtype == torch.uint8:
                x = normalise(x)
            yield (translate(x, self.generator) if self.translated else x), y

    def state_dict(self, batches_done=0):
        return {"sampler": self.sampler.state_dict(batches_done),
                "translation": self.generator.get_state()}

    def load_state_dict(self, state):
        self.sampler.load_state_dict(state["sampler"])
        self.generator.set_state(state["translation"])


def get_train_valid_loaders(cfg, device):
    """90/10 split of the 60,000 training images (of the first `subset` with --subset): seeded
    by the run for mnist and translated, fixed for the cluttered datasets, whose validation
    canvases are fixed too (fixed_canvases) and shared by every run of the process."""
    def seeds(part):
        return {s: seed_of(cfg.random_seed, f"{part}_{s}")
                for s in ("order", "translation", "workers")}
    images, labels = _mnist_bytes(cfg.data_dir, True, cfg.download)
    n = cfg.subset or len(labels)
    if cfg.dataset in CLUTTERED:
        clutter = Clutter(IMAGE_SIZE[cfg.dataset], cfg.distractors)
        held_out = int(np.floor(cfg.valid_size * n))
        valid_x, valid_y = fixed_canvases(cfg.data_dir, cfg.download, "valid", clutter, n,
                                          held_out)
        common = dict(translated=False, device=device, num_workers=cfg.num_workers)
        train = Loader(images, labels, clutter_split(n, held_out)[0], cfg.batch_size,
                       cfg.shuffle, seeds("train"), clutter=clutter, **common)
        valid = Loader(valid_x, valid_y, np.arange(held_out), cfg.batch_size, False,
                       seeds("valid"), **common)
        return train, valid
    order = np.random.RandomState(seed_of(cfg.random_seed, "split")).permutation(n)
    split = int(np.floor(cfg.valid_size * n))
    translated = cfg.dataset == "translated"
    common = dict(translated=translated, device=device, num_workers=cfg.num_workers)
    train = Loader(images, labels, order[split:], cfg.batch_size, cfg.shuffle, seeds("train"),
                   **common)
    valid = Loader(images, labels, order[:split], cfg.batch_size, False, seeds("valid"), **common)
    return train, valid


def get_test_loader(cfg, device, batch_size, num_test=0):
    """The 10,000 test images (the first `subset` with --subset), in order; translated or
    cluttered once with a fixed seed, so that every evaluation sees the same images. With
    num_test = K (--num_test), the first K of them: the very images, canvases included, that a
    full evaluation starts with (with --subset too, for the cluttered sets)."""
    if cfg.dataset in CLUTTERED:
        images, labels = fixed_canvases(cfg.data_dir, cfg.download, "test",
                                        Clutter(IMAGE_SIZE[cfg.dataset], cfg.distractors))
    else:
        images, labels = load_mnist(cfg.data_dir, train=False, download=cfg.download)
    n = min(cfg.subset, len(labels)) if cfg.subset else len(labels)
    images, labels = images[:n], labels[:n]
    if cfg.dataset == "translated":
        images = translate(images, torch.Generator().manual_seed(seed_of(cfg.random_seed,
                                                                         "test_canvas")))
    n = min(n, num_test) if num_test else n
    # In order and translated already: the loader's own generators draw nothing that matters.
    return Loader(images[:n], labels[:n], np.arange(n), batch_size, False,
                  dict(order=0, translation=0, workers=0), translated=False, device=device,
                  num_workers=cfg.num_workers)
