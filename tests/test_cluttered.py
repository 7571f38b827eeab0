"""Cluttered translated MNIST (data_loader; Mnih et al. 2014, Table 2): the digit intact where
it lands, distractors that are 8x8 crops of other images of the same part pasted by the
pixelwise maximum, the places and counts; the fixed validation and test sets (the same bytes
in every run, process and batch size, one copy per process); the settings, refused or named;
and short trainings through main.main, resumed bit for bit."""
import hashlib
import subprocess
import sys

import pytest
import torch

import config
import data_loader
import figures
import main
from conftest import DATA, ROOT, SMALL_RUN, assert_same_training_state, run_dirs, run_main, \
    settings

BACKGROUND = data_loader.normalise(torch.zeros((), dtype=torch.uint8))  # float32, as served


@pytest.fixture(autouse=True)
def fresh_caches():
    """The fixed sets and MNIST's bytes are cached per process: a test that fakes the data
    must neither see another test's sets nor leave its own behind."""
    data_loader._mnist_bytes.cache_clear()
    data_loader.fixed_canvases.cache_clear()
    yield
    data_loader._mnist_bytes.cache_clear()
    data_loader.fixed_canvases.cache_clear()


@pytest.fixture(scope="module")
def mnist_bytes():
    return data_loader.load_mnist_bytes(DATA, train=False)


def cfg_of(dataset, *flags):
    return settings(f"--dataset={dataset}", f"--data_dir={DATA}", *flags)


def _all(loader):
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


def naive_paint(digits, images, layout, size):
    """paint, one paste at a time by slicing: the reference the vectorised paint must equal."""
    B, C = digits.shape[:2]
    canvas = torch.zeros(B, C, size, size, dtype=torch.uint8)
    for b in range(B):
        i, j = layout["digit"][b].tolist()
        canvas[b, :, i:i + 28, j:j + 28] = torch.maximum(canvas[b, :, i:i + 28, j:j + 28],
                                                         digits[b])
        for d in range(layout["source"].shape[1]):
            r, c = layout["crop"][b, d].tolist()
            crop = images[layout["source"][b, d], :, r:r + 8, c:c + 8]
            i, j = layout["place"][b, d].tolist()
            canvas[b, :, i:i + 8, j:j + 8] = torch.maximum(canvas[b, :, i:i + 8, j:j + 8], crop)
    return canvas


# ------------------------------------------------------------------------------- the canvas
@pytest.mark.parametrize("dataset, size", [("cluttered", 60), ("cluttered100", 100)])
def test_without_distractors_the_digit_sits_intact_on_the_background(dataset, size,
                                                                     mnist_bytes):
    x, y = next(iter(data_loader.get_test_loader(cfg_of(dataset, "--distractors=0"), "cpu", 8)))
    digits = data_loader.normalise(mnist_bytes[0][:8])
    assert x.shape == (8, 1, size, size) and x.dtype == torch.float32
    assert torch.equal(y, mnist_bytes[1][:8])
    places = set()
    for b in range(8):
        where = [(i, j) for i in range(size - 27) for j in range(size - 27)
                 if torch.equal(x[b, :, i:i + 28, j:j + 28], digits[b])]
        assert len(where) == 1, where
        (i, j), = where
        places.add((i, j))
        assert i < size - 28 and j < size - 28  # translate's range, [0, S - 28)
        rest = x[b].clone()
        rest[:, i:i + 28, j:j + 28] = float("nan")
        rest = rest[~torch.isnan(rest)]
        assert rest.numel() == size * size - 28 * 28
        assert torch.all(rest == BACKGROUND)
    assert len(places) > 1


def test_every_pasted_pixel_is_the_max_of_what_was_pasted_there():
    """Random bytes (so that overlaps decide pixels) and many distractors (so that they
    overlap each other and the digit): paint equals pasting one at a time with the maximum."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (50, 1, 28, 28), generator=g, dtype=torch.uint8)
    own = torch.arange(20)
    clutter = data_loader.Clutter(60, 12)
    layout = data_loader.draw_clutter(own, torch.arange(50), clutter, g)
    canvas = data_loader.paint(images[own], images, layout, 60)
    assert canvas.shape == (20, 1, 60, 60) and canvas.dtype == torch.uint8
    assert torch.equal(canvas, naive_paint(images[own], images, layout, 60))
    # the overlaps happened: some pixel under two pastes shows neither a plain overwrite by
    # the last paste nor the first
    covered = torch.zeros(20, 60, 60, dtype=torch.int64)
    for b in range(20):
        i, j = layout["digit"][b].tolist()
        covered[b, i:i + 28, j:j + 28] += 1
        for i, j in layout["place"][b].tolist():
            covered[b, i:i + 8, j:j + 8] += 1
    assert (covered >= 2).sum() > 1000
    assert torch.all(canvas[:, 0][covered == 0] == 0)  # the background elsewhere


def test_draws_are_uniform_over_the_places_that_fit_and_the_other_images():
    g = torch.Generator().manual_seed(3)
    pool = torch.tensor([7, 3, 11, 5, 9])
    own = torch.full((20000,), 11)  # the middle of the pool, then its last image
    for clutter in (data_loader.Clutter(60, 4), data_loader.Clutter(100, 8)):
        layout = data_loader.draw_clutter(own, pool, clutter, g)
        S, D = clutter
        assert layout["digit"].shape == (20000, 2)
        assert layout["source"].shape == (20000, D)
        assert layout["crop"].shape == layout["place"].shape == (20000, D, 2)
        assert set(layout["digit"].unique().tolist()) == set(range(S - 28))
        assert set(layout["crop"].unique().tolist()) == set(range(28 - 8))
        assert set(layout["place"].unique().tolist()) == set(range(S - 8))
    for own_image in (11, 9):
        source = data_loader.draw_clutter(torch.full((20000,), own_image), pool,
                                          data_loader.Clutter(60, 4), g)["source"]
        counts = torch.bincount(source.flatten(), minlength=12)[pool]
        share = counts.float() / source.numel()
        for image, p in zip(pool.tolist(), share.tolist()):
            assert p == 0 if image == own_image else abs(p - 0.25) < 0.01, (own_image, image, p)


def record_layouts(monkeypatch):
    """Every layout the loaders draw: [(own, pool, layout)]."""
    drawn, draw = [], data_loader.draw_clutter

    def recording(own, pool, clutter, generator):
        layout = draw(own, pool, clutter, generator)
        drawn.append((torch.as_tensor(own).clone(), torch.as_tensor(pool).clone(), layout))
        return layout
    monkeypatch.setattr(data_loader, "draw_clutter", recording)
    return drawn


@pytest.mark.parametrize("dataset, size, flags, distractors", [
    ("cluttered", 60, [], 4), ("cluttered100", 100, [], 8),
    ("cluttered", 60, ["--distractors=2"], 2)])
def test_distractors_are_crops_of_other_images_of_the_same_part(dataset, size, flags,
                                                                distractors, monkeypatch):
    """Training batches cut their distractors from other training images, the validation set
    from other validation images, the test set from other test images; every canvas served
    is the digit and those crops, pasted by the maximum, normalised."""
    drawn = record_layouts(monkeypatch)
    cfg = cfg_of(dataset, "--subset=640", "--batch_size=64", *flags)
    train, valid = data_loader.get_train_valid_loaders(cfg, "cpu")
    images, labels = data_loader.load_mnist_bytes(DATA, train=True)
    (valid_own, valid_pool, valid_layout), = drawn  # the validation set, drawn whole
    train_part, valid_part = set(train.sampler.indices.tolist()), set(valid_own.tolist())
    assert len(train_part) == 576 and len(valid_part) == 64
    assert train_part | valid_part == set(range(640)) and not train_part & valid_part
    assert torch.equal(valid_pool, valid_own)
    x_valid, y_valid = _all(valid)
    assert x_valid.shape == (64, 1, size, size)
    assert torch.equal(y_valid, labels[valid_own])
    assert torch.equal(x_valid, data_loader.normalise(
        naive_paint(images[valid_own], images, valid_layout, size)))

    drawn.clear()
    for (x, y), (own, pool, layout) in zip(train, drawn):
        assert set(pool.tolist()) == train_part and set(own.tolist()) <= train_part
        assert layout["source"].shape == (len(own), distractors)
        assert set(layout["source"].flatten().tolist()) <= train_part
        assert torch.all(layout["source"] != own[:, None])
        assert torch.equal(y, labels[own])
        assert torch.equal(x, data_loader.normalise(naive_paint(images[own], images, layout,
                                                                size)))
    assert len(drawn) == len(train) == 9  # every batch drawn afresh, 576 / 64

    drawn.clear()
    test_x, test_y = _all(data_loader.get_test_loader(cfg, "cpu", 100))
    test_images, test_labels = data_loader.load_mnist_bytes(DATA, train=False)
    (own, pool, layout), = drawn
    assert torch.equal(own, torch.arange(10000)) and torch.equal(pool, own)
    assert torch.all(layout["source"] != own[:, None])
    assert test_x.shape == (640, 1, size, size) and torch.equal(test_y, test_labels[:640])
    cut = {k: v[:640] for k, v in layout.items()}
    assert torch.equal(test_x, data_loader.normalise(
        naive_paint(test_images[:640], test_images, cut, size)))


# ------------------------------------------------------------------------------- fixed sets
def _digest(x, y):
    return hashlib.sha256(x.numpy().tobytes()).hexdigest() + \
        hashlib.sha256(y.numpy().tobytes()).hexdigest()


# The served validation and test sets' digests (images, then labels), batch by batch.
FIXED_SETS = """
import hashlib, sys
import config, data_loader
cfg = config.get_config(sys.argv[1:-1])
batch = int(sys.argv[-1])
for loader in (data_loader.get_train_valid_loaders(cfg, "cpu")[1],
               data_loader.get_test_loader(cfg, "cpu", batch)):
    hx, hy = hashlib.sha256(), hashlib.sha256()
    for x, y in loader:
        hx.update(x.numpy().tobytes())
        hy.update(y.numpy().tobytes())
    print(hx.hexdigest() + hy.hexdigest())
"""


def test_fixed_sets_are_the_same_bytes_in_two_processes_whatever_the_seed_and_batch():
    flags = ["--dataset=cluttered100", "--subset=640", f"--data_dir={DATA}"]
    digests = []
    for seed, batch in ((1, 1000), (2, 32)):
        r = subprocess.run([sys.executable, "-c", FIXED_SETS, *flags, f"--random_seed={seed}",
                            f"--batch_size={batch}", str(batch)],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        digests.append(r.stdout.split())
    assert digests[0] == digests[1] and len(digests[0]) == 2
    # and the same as this process's, built whole at once
    cfg = settings(*flags)
    assert digests[0] == [_digest(*_all(data_loader.get_train_valid_loaders(cfg, "cpu")[1])),
                          _digest(*_all(data_loader.get_test_loader(cfg, "cpu", 640)))]


def test_runs_of_two_seeds_share_one_validation_set_and_differ_in_training():
    cfgs = config.get_configs(["--dataset=cluttered", "--subset=640", f"--data_dir={DATA}",
                               "--random_seed=1,2", "--batch_size=64"])
    (train1, valid1), (train2, valid2) = [data_loader.get_train_valid_loaders(c, "cpu")
                                          for c in cfgs]
    assert torch.equal(train1.sampler.indices, train2.sampler.indices)  # a fixed split
    # one tensor for the whole group, not one copy per run
    assert valid1.loader.dataset.images.data_ptr() == valid2.loader.dataset.images.data_ptr()
    assert valid1.loader.dataset.images.dtype == torch.uint8
    x1, y1 = _all(valid1)
    x2, y2 = _all(valid2)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert torch.equal(_all(valid1)[0], x1)  # and on every validation
    # training canvases come from each run's own generator, afresh every epoch
    first = next(iter(train1))[0]
    assert not torch.equal(first, next(iter(train2))[0])
    assert not torch.equal(first, next(iter(train1))[0])


def test_the_split_is_fixed_disjoint_shuffled_and_90_10():
    cfg = cfg_of("cluttered", "--random_seed=7")
    train, valid = data_loader.clutter_split(60000, 6000)
    assert len(train) == 54000 and len(valid) == 6000
    assert set(train.tolist()) | set(valid.tolist()) == set(range(60000))
    assert not set(train.tolist()) & set(valid.tolist())
    assert set(valid.tolist()) != set(range(6000))
    assert torch.equal(data_loader.get_train_valid_loaders(cfg, "cpu")[0].sampler.indices, train)


def test_test_set_is_the_same_at_any_batch_size_and_its_subsets_are_its_first_images():
    full = cfg_of("cluttered")
    x, y = _all(data_loader.get_test_loader(full, "cpu", 1000))
    assert x.shape == (10000, 1, 60, 60)
    x32, y32 = _all(data_loader.get_test_loader(full, "cpu", 32))
    assert torch.equal(x, x32) and torch.equal(y, y32)
    first, _ = _all(data_loader.get_test_loader(full, "cpu", 1000, num_test=300))
    assert torch.equal(first, x[:300])
    sub, _ = _all(data_loader.get_test_loader(cfg_of("cluttered", "--subset=500"), "cpu", 64))
    assert torch.equal(sub, x[:500])
    # the fixed sets are a dataset's: another count of distractors, other canvases
    other, _ = _all(data_loader.get_test_loader(cfg_of("cluttered", "--distractors=3"), "cpu",
                                                1000, num_test=300))
    assert not torch.equal(other, first)


# ------------------------------------------------------------------------------- settings
def test_defaults_follow_mnih_et_al():
    c60, c100 = cfg_of("cluttered"), cfg_of("cluttered100")
    for c, k, d in ((c60, 3, 4), (c100, 4, 8)):
        assert (c.num_glimpses, c.patch_size, c.glimpse_scale, c.num_patches) == (8, 12, 2, k)
        assert (c.std, c.lambda_intrinsic, c.lambda_uncertainty) == (0.03, 1e-2, 1e-5)
        assert c.distractors == d
    assert cfg_of("mnist").distractors is None and cfg_of("translated").distractors is None
    assert cfg_of("cluttered", "--distractors=0").distractors == 0
    assert set(config.IMAGE_SIZE) == set(figures.DATASET_TITLES) == set(config.DATASET_DEFAULTS)


def test_run_name_says_a_count_of_distractors_other_than_the_default():
    assert config.run_name(cfg_of("cluttered")) == "cluttered_ram_8_12x12_s2_k3_original_seed1"
    assert config.run_name(cfg_of("cluttered100", "--distractors=8")) == \
        "cluttered100_ram_8_12x12_s2_k4_original_seed1"
    cfg = cfg_of("cluttered100", "--distractors=0", "--intrinsic=True", "--batch_size=64")
    name = config.run_name(cfg)
    assert name == "cluttered100_ram_8_12x12_s2_k4_intrinsic_b64_d0_seed1"
    parsed = config.parse_run_name(name)
    assert parsed["dataset"] == "cluttered100" and parsed["recipe"] == "b64_d0"
    assert parsed["num_patches"] == 4 and parsed["variant"] == "intrinsic"


@pytest.mark.parametrize("flags, message", [
    (["--dataset=cluttered", "--distractors=-1"], "--distractors must not be negative, got -1"),
    (["--distractors=2"], "--distractors applies to the cluttered datasets (cluttered, "
                          "cluttered100) only, not to mnist"),
    (["--dataset=translated", "--distractors=0"], "not to translated"),
    (["--dataset=cluttered", "--num_patches=4"], "the largest patch (96 pixels: patch_size 12 "
                                                 "x glimpse_scale 2^3) is larger than the 60x60 "
                                                 "cluttered image"),
    (["--dataset=cluttered100", "--num_patches=5"], "larger than the 100x100 cluttered100"),
    (["--dataset=cluttered100", "--patch_size=101", "--num_patches=1"], "larger than the 100x100"),
    (["--dataset=cluttered", "--subset=19"], "leaves a single training or validation image"),
])
def test_bad_settings_are_one_sentence_and_exit_2(flags, message, tmp_path):
    code, out, err = run_main(*flags, *run_dirs(tmp_path))
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    with pytest.raises(config.ConfigError):
        settings(*flags)


def test_settings_that_fit_are_accepted():
    assert cfg_of("cluttered100").num_patches == 4  # 12 x 2^3 = 96 fits 100
    assert cfg_of("cluttered", "--patch_size=15", "--num_patches=3").patch_size == 15  # 60
    assert cfg_of("cluttered", "--subset=19", "--distractors=0").subset == 19
    assert cfg_of("cluttered", "--subset=20").subset == 20  # 18 and 2 images
    assert cfg_of("cluttered", "--subset=5", "--valid_size=0").subset == 5


# ------------------------------------------------------------------------------- training
def test_a_short_training_and_test_on_cluttered100(tmp_path):
    args = SMALL_RUN + run_dirs(tmp_path) + ["--dataset=cluttered100", "--subset=192",
                                             "--epochs=1", "--uncertainty=True",
                                             "--intrinsic=True"]
    code, out, err = run_main(*args)
    assert code == 0, err
    assert "test accuracy" in out
    name = "cluttered100_ram_8_12x12_s2_k4_both_seed1_subset192"
    ckpt = torch.load(tmp_path / "ckpt" / f"{name}_best.pt", weights_only=True)
    assert ckpt["config"]["distractors"] == 8 and ckpt["config"]["dataset"] == "cluttered100"
    assert (tmp_path / "results" / name).is_dir()


def test_cluttered_resume_is_exact(tmp_path):
    """Training canvases come from the loader's generator, whose state the checkpoint keeps."""
    a, b = tmp_path / "a", tmp_path / "b"
    args = SMALL_RUN + ["--dataset=cluttered", "--subset=256", "--distractors=2",
                        "--num_glimpses=3"]
    assert main.main(args + run_dirs(a) + ["--epochs=2"]) == 0
    assert main.main(args + run_dirs(b) + ["--epochs=1"]) == 0
    assert main.main(args + run_dirs(b) + ["--epochs=2", "--resume=True"]) == 0
    run = "cluttered_ram_3_12x12_s2_k3_original_d2_seed1_subset256"
    for kind in ("latest", "best"):
        assert_same_training_state(*(torch.load(f"{t}/ckpt/{run}_{kind}.pt", weights_only=True)
                                     for t in (a, b)))


def test_worker_processes_serve_the_same_batches():
    """The canvases are drawn in this process, from the loader's generator, whatever gathers
    the digits."""
    batches = []
    for workers in (0, 1):
        cfg = cfg_of("cluttered", "--subset=256", "--batch_size=64", f"--num_workers={workers}")
        train, _ = data_loader.get_train_valid_loaders(cfg, "cpu")
        batches.append(_all(train))
    assert torch.equal(batches[0][0], batches[1][0]) and torch.equal(batches[0][1], batches[1][1])


def test_the_same_canvases_on_every_device(device):
    """The places are drawn on the CPU and the bytes normalised where the model runs: CUDA
    serves the CPU's canvases, bit for bit."""
    cfg = cfg_of("cluttered100", "--subset=256", "--batch_size=64")
    on_cpu, on_device = (data_loader.get_train_valid_loaders(cfg, d) for d in ("cpu", device))
    for a, b in zip(on_cpu, on_device):
        for (xa, ya), (xb, yb) in zip(a, b):
            assert xb.device.type == device.type
            assert torch.equal(xa, xb.cpu()) and torch.equal(ya, yb.cpu())
    xa, _ = _all(data_loader.get_test_loader(cfg, "cpu", 100))
    xb, _ = _all(data_loader.get_test_loader(cfg, device, 100))
    assert torch.equal(xa, xb.cpu())
