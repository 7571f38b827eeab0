"""MNIST files, translated MNIST, the train/valid split and the fixed translated test set."""
import os
import shutil

import pytest
import torch

import data_loader
from conftest import DATA, group_settings, settings

RAW_DIR = os.path.join(DATA, "MNIST", "raw")

FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
         "t10k-labels-idx1-ubyte"]
BACKGROUND = (0 - data_loader.MNIST_MEAN) / data_loader.MNIST_STD


@pytest.fixture(scope="module")
def mnist_test():
    return data_loader.load_mnist(DATA, train=False)


def find_digit(canvas, digit):
    """All (i, j) where the 28x28 digit sits exactly in the 60x60 canvas."""
    return [(i, j) for i in range(60 - 28 + 1) for j in range(60 - 28 + 1)
            if torch.equal(canvas[..., i:i + 28, j:j + 28], digit)]


# ------------------------------------------------------------------------------- translate
def test_translate_pastes_digit_intact_on_min_background(mnist_test):
    x = mnist_test[0][:16]
    out = data_loader.translate(x, torch.Generator().manual_seed(5))
    assert out.shape == (16, 1, 60, 60)
    assert x.min().item() == pytest.approx(BACKGROUND, abs=1e-6)
    for b in range(16):
        where = find_digit(out[b], x[b])
        assert len(where) == 1, where
        i, j = where[0]
        outside = out[b].clone()
        outside[..., i:i + 28, j:j + 28] = float("nan")
        rest = outside[~torch.isnan(outside)]
        assert rest.numel() == 60 * 60 - 28 * 28
        assert torch.all(rest == x.min())


def test_translate_background_is_batch_min_and_channels_kept():
    """The canvas is filled with the minimum of the whole batch, not of each image."""
    x = torch.rand(3, 2, 28, 28) + 1.0
    x[0, 1, 5, 5] = -3.0
    out = data_loader.translate(x, torch.Generator().manual_seed(0))
    assert out.shape == (3, 2, 60, 60)
    for b in range(3):
        (i, j), = find_digit(out[b], x[b])  # both channels at the same place
        mask = torch.ones(60, 60, dtype=torch.bool)
        mask[i:i + 28, j:j + 28] = False
        assert torch.all(out[b][:, mask] == -3.0)


def _placements(draws=6000, seed=0):
    x = torch.ones(draws, 1, 28, 28)
    x[:, :, 0, 0] = 2.0  # marks the digit's top-left corner; background is the min, 1
    out = data_loader.translate(x, torch.Generator().manual_seed(seed))
    flat = out.view(draws, -1)
    assert torch.all((flat == 2.0).sum(1) == 1)
    idx = flat.argmax(1)
    return (idx // 60).tolist(), (idx % 60).tolist()


def test_translate_placements_fit_the_canvas_and_reach_every_place_that_fits():
    rows, cols = _placements()
    for v in (rows, cols):
        assert min(v) == 0
        assert set(v) >= set(range(32))
        assert max(v) <= 60 - 28  # the digit never leaves the canvas


def test_translate_placements_uniform_in_0_32():
    rows, cols = _placements()
    assert set(rows) == set(range(32))
    assert set(cols) == set(range(32))


def test_translate_is_seeded():
    x = torch.randn(50, 1, 28, 28)
    a = data_loader.translate(x, torch.Generator().manual_seed(1))
    b = data_loader.translate(x, torch.Generator().manual_seed(1))
    c = data_loader.translate(x, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


# ----------------------------------------------------------------------- translated test set
def _all(loader):
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


def test_translated_test_set_is_fixed(mnist_test):
    cfg = settings("--dataset=translated", f"--data_dir={DATA}")
    x1, y1 = _all(data_loader.get_test_loader(cfg, "cpu", 1000))
    x2, y2 = _all(data_loader.get_test_loader(cfg, "cpu", 768))  # batch size must not matter
    assert x1.shape == (10000, 1, 60, 60)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert torch.equal(y1, mnist_test[1])  # in order
    x3, _ = _all(data_loader.get_test_loader(cfg, "cpu", 1000))  # and on every evaluation
    assert torch.equal(x1, x3)
    # the first test digits are pasted intact, and not all at the same place
    places = set()
    for b in range(10):
        (where,) = find_digit(x1[b], mnist_test[0][b])
        places.add(where)
    assert len(places) > 1


# --------------------------------------------------------------------------- train / valid
@pytest.fixture
def fake_mnist(monkeypatch):
    """Training 'images' whose every pixel is their own index, so the split can be read off
    the batches without loading MNIST."""
    calls = []

    def fake_load(data_dir, train, download=False):
        calls.append(train)
        n = 60000 if train else 10000
        images = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 28, 28)
        return images, torch.arange(n) % 10

    monkeypatch.setattr(data_loader, "_mnist_bytes", fake_load)
    return calls


def _indices(loader):
    out = []
    for x, y in loader:
        ids = x[:, 0, 0, 0].long()
        assert torch.all(x == ids.view(-1, 1, 1, 1).float())  # untouched images
        assert torch.equal(y, ids % 10)  # labels travel with their images
        out += ids.tolist()
    return out


def _split(seed, extra=()):
    cfg = settings(f"--random_seed={seed}", "--batch_size=2000", f"--data_dir={DATA}", *extra)
    train, valid = data_loader.get_train_valid_loaders(cfg, "cpu")
    return _indices(train), _indices(valid), train


def test_split_is_seeded_disjoint_and_90_10(fake_mnist):
    tr1, va1, _ = _split(1)
    assert fake_mnist == [True]
    assert len(tr1) == 54000 and len(va1) == 6000
    assert len(set(tr1)) == 54000 and len(set(va1)) == 6000
    assert not set(tr1) & set(va1)
    assert set(tr1) | set(va1) == set(range(60000))
    tr1b, va1b, _ = _split(1)
    assert va1b == va1 and set(tr1b) == set(tr1)
    tr2, va2, _ = _split(2)
    assert set(va2) != set(va1)
    assert set(va1) != set(range(6000))  # shuffled, not the first 10%


def test_split_of_subset(fake_mnist):
    tr, va, _ = _split(1, ["--subset=1000"])
    assert len(tr) == 900 and len(va) == 100
    assert set(tr) | set(va) == set(range(1000))


def test_train_order_reshuffled_every_epoch(fake_mnist):
    tr, _, train = _split(1, ["--subset=2000"])
    second = _indices(train)
    assert sorted(second) == sorted(tr) and second != tr


@pytest.mark.parametrize("dataset", ["mnist", "translated"])
def test_runs_of_a_group_share_one_uint8_copy_of_the_images(dataset):
    """Every run of a group indexes the same uint8 tensor (not a float copy of its own, 188 MB
    a run), and its batches come out normalised: MNIST's background, digits above it."""
    cfgs = group_settings(f"--dataset={dataset}", "--random_seed=1,2", f"--data_dir={DATA}")
    loaders = [data_loader.get_train_valid_loaders(cfg, "cpu") for cfg in cfgs]
    tensors = [loader.images for pair in loaders for loader in pair]
    assert all(t.dtype == torch.uint8 for t in tensors)
    assert len({t.data_ptr() for t in tensors}) == 1
    x, _ = next(iter(loaders[1][0]))
    assert x.dtype == torch.float32 and x.shape[-1] == (60 if dataset == "translated" else 28)
    assert x.min().item() == pytest.approx(BACKGROUND, abs=1e-6)
    assert x.max().item() == pytest.approx((1 - data_loader.MNIST_MEAN) / data_loader.MNIST_STD,
                                           abs=1e-5)


# ------------------------------------------------------------------------------ data files
def test_fresh_data_dir_with_gz_files_loads(tmp_path, mnist_test):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in FILES:
        shutil.copy(os.path.join(RAW_DIR, name + ".gz"), raw)
    x_train, y_train = data_loader.load_mnist(str(tmp_path), train=True)
    x_test, y_test = data_loader.load_mnist(str(tmp_path), train=False)
    assert x_train.shape == (60000, 1, 28, 28) and y_train.shape == (60000,)
    assert x_test.shape == (10000, 1, 28, 28) and y_test.shape == (10000,)
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.int64
    assert torch.equal(x_test, mnist_test[0]) and torch.equal(y_test, mnist_test[1])
    # normalised with MNIST's training mean and std
    assert abs(x_train.mean().item()) < 1e-3 and abs(x_train.std().item() - 1) < 1e-3
    assert sorted(y_train.unique().tolist()) == list(range(10))
    assert x_train.min().item() == pytest.approx(BACKGROUND, abs=1e-6)


def test_empty_data_dir_gives_data_error(tmp_path):
    with pytest.raises(data_loader.DataError) as err:
        data_loader.load_mnist(str(tmp_path), train=True)
    msg = str(err.value)
    assert os.path.join(str(tmp_path), "MNIST", "raw") in msg
    for name in FILES:
        assert name in msg


def test_corrupt_gz_gives_data_error(tmp_path):
    """A corrupt .gz gives a DataError naming it, and leaves no half-decompressed file (nor
    its temporary) that a later load would take for data."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in FILES:
        (raw / (name + ".gz")).write_bytes(b"not a gzip file")
    with pytest.raises(data_loader.DataError) as err:
        data_loader.load_mnist(str(tmp_path), train=False)
    assert ".gz" in str(err.value)
    assert sorted(os.listdir(raw)) == sorted(name + ".gz" for name in FILES)


def test_no_two_random_streams_share_a_seed():
    """config.seed_of: within a run, the training streams, the testing ones (ten batches of
    our protocol) and the cluttered datasets' fixed ones all differ, the policy's and the
    validation canvas's among them; across runs 1..200 no training stream repeats, and no
    stream of any run takes a fixed stream's seed, which is the same in every run."""
    import config
    testing = lambda s: [config.seed_of(s, "test_author"), config.seed_of(s, "test_canvas")] + \
        [config.seed_of(s, "test_ours", b) for b in range(10)]
    training = lambda s: [config.seed_of(s, k) for k in config.TRAINING_STREAMS]
    fixed = lambda s: [config.seed_of(s, k) for k in ("clutter_split", "valid_clutter",
                                                      "test_clutter")]
    for s in range(1, 201):
        seeds = training(s) + testing(s) + fixed(s)
        assert len(set(seeds)) == len(seeds), s
        assert fixed(s) == fixed(1) == fixed(None)
    every = [v for s in range(1, 201) for v in training(s)]
    assert len(set(every)) == len(every)
    assert not set(fixed(1)) & {v for s in range(1, 201) for v in training(s) + testing(s)}
    assert config.seed_of(1, "policy") != config.seed_of(1, "valid_translation")

