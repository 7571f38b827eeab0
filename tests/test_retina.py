"""modules.Retina against a plain per-sample slicing reference (docs/method.md, "The model",
Retina): the summed-area table must give each block's mean, rounded once to float32."""

import pytest
import torch
import torch.nn.functional as F

from data_loader import normalise
from modules import Retina


def reference_retina(x, l, g, k, s):
    """One sample at a time: zero-pad, slice the n x n patch covering [c - n//2, c - n//2 + n)
    around c = floor((l + 1) / 2 * size) (row from l[:, 1] with H, column from l[:, 0] with W),
    average-pool it with kernel n // g, and concatenate the flattened patches, patch-major,
    then C, g, g."""
    B, C, H, W = x.shape
    out = []
    for b in range(B):
        # Centre computed in the tensor's own dtype, as the formula reads.
        row = int(torch.floor((l[b, 1] + 1) / 2 * H).item())
        col = int(torch.floor((l[b, 0] + 1) / 2 * W).item())
        feats = []
        for i in range(k):
            n = g * s**i
            xp = F.pad(x[b], (n, n, n, n))  # generous zero padding on every side
            top, left = row - n // 2 + n, col - n // 2 + n
            patch = xp[:, top:top + n, left:left + n]
            assert patch.shape == (C, n, n)
            pooled = F.avg_pool2d(patch.unsqueeze(0), kernel_size=n // g).squeeze(0)
            assert pooled.shape == (C, g, g)
            feats.append(pooled.reshape(-1))
        out.append(torch.cat(feats))
    return torch.stack(out)


def edge_locations(H, W, device, extra_random=24, seed=0):
    """Corners, edges, values just inside the edges, pixel boundaries, and random points."""
    special = [-1.0, 1.0, 0.0, -1 + 1e-3, 1 - 1e-3, -0.5, 0.5, -1 + 1e-6, 1 - 1e-6,
               2 * 1 / H - 1, 2 * (H - 1) / H - 1]
    pts = [(a, b) for a in (-1.0, 1.0, 0.0) for b in (-1.0, 1.0, 0.0)]  # corners, edge midpoints
    pts += [(a, a) for a in special] + [(a, -a) for a in special]
    pts += [(a, 0.3) for a in special] + [(-0.7, a) for a in special]
    gen = torch.Generator().manual_seed(seed)
    rnd = torch.rand(extra_random, 2, generator=gen) * 2 - 1
    l = torch.cat([torch.tensor(pts, dtype=torch.float32), rnd])
    return l.to(device)


CASES = [
    # (g, k, s, H, W, C)
    (8, 1, 2, 28, 28, 1),
    (8, 1, 2, 28, 28, 3),
    (8, 1, 2, 60, 60, 1),
    (12, 3, 2, 60, 60, 1),
    (12, 3, 2, 60, 60, 3),
    (12, 3, 2, 28, 28, 1),  # largest patch (48) wider than the image
    (8, 2, 2, 28, 28, 3),
    (4, 3, 3, 28, 28, 2),   # scale 3: pooling kernels 1, 3, 9
    (6, 2, 2, 28, 40, 1),   # not square: row uses H, column uses W (docstring)
]


@pytest.mark.parametrize("g,k,s,H,W,C", CASES)
def test_retina_matches_per_sample_reference(g, k, s, H, W, C, device):
    torch.manual_seed(0)
    l = edge_locations(H, W, device)
    x = torch.randn(len(l), C, H, W, device=device) + 0.5  # non-zero mean: padding must be 0
    got = Retina(g, k, s)(x, l)
    want = reference_retina(x.cpu(), l.cpu(), g, k, s)
    assert got.shape == (len(l), k * g * g * C)
    torch.testing.assert_close(got.cpu(), want, rtol=1e-6, atol=1e-6)
    # Exactly the mean computed in float64 and rounded once: the table loses nothing that
    # float32 can hold.
    assert torch.equal(got.cpu(), reference_retina(x.cpu().double(), l.cpu(), g, k, s).float())


@pytest.mark.parametrize("g,k,s,H", [(8, 1, 2, 28), (12, 3, 2, 60), (12, 4, 2, 100)])
def test_retina_of_normalised_pixels_is_exact(g, k, s, H, device):
    """For MNIST's normalised uint8 pixels the table's sums are exact: the innermost patch
    (r = 1) is the pixels bit for bit, and every pooled pixel is the float32 rounding of the
    exact block mean (the float64 reference of slicing and pooling)."""
    l = edge_locations(H, H, "cpu", seed=4)
    gen = torch.Generator().manual_seed(3)
    x = normalise(torch.randint(0, 256, (len(l), 1, H, H), dtype=torch.uint8, generator=gen))
    got = Retina(g, k, s)(x.to(device), l.to(device)).cpu()
    assert torch.equal(got[:, :g * g], reference_retina(x, l, g, 1, s))
    assert torch.equal(got, reference_retina(x.double(), l, g, k, s).float())


def test_retina_order_is_patch_major_then_channel(device):
    """Distinguish patch-major (k, C, g, g) from channel-major orders with a constant image
    per channel: channel c is all c + 1, so each pooled patch of a centred glimpse is constant."""
    g, k, s, C = 4, 2, 2, 3
    x = torch.stack([torch.full((16, 16), c + 1.0) for c in range(C)]).unsqueeze(0).to(device)
    l = torch.zeros(1, 2, device=device)
    got = Retina(g, k, s)(x, l).view(k, C, g * g).cpu()
    for p in range(k):
        for c in range(C):
            assert torch.all(got[p, c] == c + 1.0), (p, c)


@pytest.mark.parametrize("g,k,s,H", [(8, 1, 2, 28), (12, 3, 2, 60)])
@pytest.mark.parametrize("value", [1.0, -0.4242])
def test_corner_sees_zeros_outside_image(g, k, s, H, value, device):
    """Pixels outside the image read as 0 even when the whole image is a non-zero constant."""
    x = torch.full((2, 1, H, H), value, device=device)
    l = torch.tensor([[-1.0, -1.0], [1.0, 1.0]], device=device)
    got = Retina(g, k, s)(x, l).view(2, k, g, g).cpu()
    half = g // 2
    # Top-left corner: the patch covers [-n/2, n/2) on both axes; only its bottom-right
    # quadrant lies inside the image.
    tl = got[0]
    assert torch.all(tl[:, :half, :] == 0)
    assert torch.all(tl[:, :, :half] == 0)
    assert torch.allclose(tl[:, half:, half:], torch.full_like(tl[:, half:, half:], value))
    # Bottom-right corner: c = H, the patch covers [H - n/2, H + n/2): only its top-left
    # quadrant is inside.
    br = got[1]
    assert torch.all(br[:, half:, :] == 0)
    assert torch.all(br[:, :, half:] == 0)
    assert torch.allclose(br[:, :half, :half], torch.full_like(br[:, :half, :half], value))


def test_centre_pixel_convention(device):
    """A single bright pixel: with g = 2, k = 1 the 2x2 patch covers [c - 1, c + 1), so a
    pixel at (r, q) appears at patch position (1, 1) exactly when the centre is (r, q), with
    the centre floor((l + 1) / 2 * H), row from l_y and column from l_x."""
    H = 28
    x = torch.zeros(1, 1, H, H, device=device)
    r, q = 5, 20
    x[0, 0, r, q] = 1.0
    # l chosen so that floor((l + 1) / 2 * H) hits row r and column q exactly (mid-pixel).
    ly, lx = 2 * (r + 0.5) / H - 1, 2 * (q + 0.5) / H - 1
    l = torch.tensor([[lx, ly], [ly, lx]], device=device)
    got = Retina(2, 1, 2)(x.expand(2, -1, -1, -1), l).view(2, 2, 2).cpu()
    assert got[0].tolist() == [[0.0, 0.0], [0.0, 1.0]]
    assert got[1].sum() == 0  # swapped coordinates look elsewhere


def test_retina_batch_vectorised_equals_single_samples(device):
    """Each sample's glimpse depends on its own image and location only."""
    torch.manual_seed(1)
    x = torch.randn(7, 1, 60, 60, device=device)
    l = torch.rand(7, 2, device=device) * 2 - 1
    r = Retina(12, 3, 2)
    batched = r(x, l)
    for b in range(7):
        assert torch.equal(batched[b:b + 1], r(x[b:b + 1], l[b:b + 1]))
