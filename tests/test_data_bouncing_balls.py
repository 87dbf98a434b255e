"""Bouncing balls: shapes, seeding, physics invariants, renderer against the dense formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probseq.data.bouncing_balls import (
    _collide,
    _reflect_walls,
    _render_dense,
    generate_bouncing_balls,
    render_balls,
    simulate_bouncing_balls,
)
from probseq.data.registry import load_dataset
from probseq.errors import UserError

SMALL = dict(n_train=6, n_valid=2, n_test=3, n_frames=20)


def test_dataset_shapes_spec_and_meta():
    data = load_dataset("bouncing-balls", **SMALL)
    assert data.spec.kind == "binary" and data.spec.dim == 900
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 6, "valid": 2, "test": 3}
    for seq in data.splits["train"]:
        assert seq.shape == (20, 900) and seq.dtype == torch.float32
        assert float(seq.min()) >= 0.0 and float(seq.max()) <= 1.0
    assert data.meta["frame_shape"] == [30, 30]
    frames = torch.stack(data.splits["train"])
    # every frame shows balls (lit pixels) and mostly background; 3 discs of radius 1.2 in a 10x10
    # box cover 3 * pi * 1.2^2 / 100 = 13.6% of the area; the soft rim makes the mean a bit smaller
    assert bool((frames.amax(-1) > 0.9).all())
    assert 0.08 < float(frames.mean()) < 0.16


def test_options_change_the_data():
    data = load_dataset("bouncing-balls", n_train=2, n_valid=1, n_test=1, n_frames=7, size=16,
                        n_balls=2, radius=2.0, box=8.0)
    assert data.splits["train"][0].shape == (7, 256) and data.spec.dim == 256
    assert data.meta["frame_shape"] == [16, 16]


def test_deterministic_by_seed_and_prefix_stable():
    a = load_dataset("bouncing-balls", **SMALL)
    b = load_dataset("bouncing-balls", **SMALL)
    c = load_dataset("bouncing-balls", **{**SMALL, "seed": 1})
    more = load_dataset("bouncing-balls", **{**SMALL, "n_train": 9, "n_valid": 1})
    for split in ("train", "valid", "test"):
        assert all(torch.equal(x, y) for x, y in zip(a.splits[split], b.splits[split]))
    assert not any(torch.equal(x, y) for x, y in zip(a.splits["train"], c.splits["train"]))
    # the test split and the first sequences of train do not depend on the other sizes
    assert all(torch.equal(x, y) for x, y in zip(a.splits["test"], more.splits["test"]))
    assert all(torch.equal(x, y) for x, y in zip(a.splits["train"], more.splits["train"][:6]))
    assert torch.equal(a.splits["valid"][0], more.splits["valid"][0])
    # splits differ from each other
    assert not torch.equal(a.splits["train"][0], a.splits["test"][0])


def test_generator_seed_sequence_is_not_consumed():
    seed = np.random.SeedSequence(7)
    assert torch.equal(generate_bouncing_balls(2, n_frames=5, seed=seed),
                       generate_bouncing_balls(2, n_frames=5, seed=seed))


@pytest.mark.parametrize("speed", [0.5, 7.3])
def test_balls_stay_inside_the_box(speed):
    # speed 7.3 per frame crosses the box (free span 7.6) in about one frame: many multi-fold steps
    traj = simulate_bouncing_balls(40, 60, speed=speed, seed=3)
    x, r = traj.positions, traj.radii[None, None, :, None]
    assert (x >= r - 1e-12).all() and (x <= traj.box - r + 1e-12).all()


def test_kinetic_energy_conserved_and_collisions_happen():
    traj = simulate_bouncing_balls(50, 100, n_balls=3, radius=[0.8, 1.2, 1.6], seed=11)
    energy = traj.kinetic_energy()
    np.testing.assert_allclose(energy, energy[:, :1].repeat(100, axis=1), rtol=1e-12)
    # the invariant is not vacuous: balls did meet (centres within r_i + r_j at some frame) and
    # the speed of individual balls changed (only a collision can change a ball's speed)
    d01 = np.linalg.norm(traj.positions[:, :, 0] - traj.positions[:, :, 1], axis=-1)
    assert (d01 < 0.8 + 1.2 + 0.5).any()
    speeds = np.linalg.norm(traj.velocities, axis=-1)
    assert (np.abs(speeds - speeds[:, :1]) > 1e-3).any()
    # initial velocity matrices have Frobenius norm 0.5 (Sutskever's generator)
    np.testing.assert_allclose(np.linalg.norm(traj.velocities[:, 0], axis=(-2, -1)), 0.5)


def test_head_on_collision_of_unequal_masses_matches_1d_formula():
    # oracle: 1-D elastic collision  v1' = ((m1 - m2) v1 + 2 m2 v2) / (m1 + m2), and symmetric
    radii, masses = np.array([1.0, 2.0]), np.array([1.0, 4.0])
    x = np.array([[[3.0, 5.0], [5.9, 5.0]]])  # overlapping along x
    v = np.array([[[0.7, 0.0], [-0.2, 0.0]]])  # approaching
    new = _collide(x, v, radii, masses)
    m1, m2, v1, v2 = 1.0, 4.0, 0.7, -0.2
    assert new[0, 0, 0] == pytest.approx(((m1 - m2) * v1 + 2 * m2 * v2) / (m1 + m2))
    assert new[0, 1, 0] == pytest.approx(((m2 - m1) * v2 + 2 * m1 * v1) / (m1 + m2))
    assert new[0, :, 1] == pytest.approx([0.0, 0.0])
    # momentum and energy conserved
    assert (masses[:, None] * new[0]).sum(0) == pytest.approx((masses[:, None] * v[0]).sum(0))
    assert (masses * (new[0] ** 2).sum(-1)).sum() == pytest.approx((masses * (v[0] ** 2).sum(-1)).sum())
    # separating or non-touching pairs are left alone
    assert np.array_equal(_collide(x, -v, radii, masses), -v)
    far = np.array([[[1.5, 5.0], [8.0, 5.0]]])
    assert np.array_equal(_collide(far, v, radii, masses), v)


def test_oblique_equal_mass_collision_exchanges_normal_components():
    x = np.array([[[4.0, 4.0], [5.0, 5.0]]])  # line of centres along (1, 1) / sqrt 2
    v = np.array([[[0.3, 0.1], [0.0, 0.0]]])
    new = _collide(x, v, np.array([1.0, 1.0]), np.array([1.0, 1.0]))
    n = np.array([1.0, 1.0]) / np.sqrt(2)
    normal_part = (v[0, 0] @ n) * n
    np.testing.assert_allclose(new[0, 0], v[0, 0] - normal_part)
    np.testing.assert_allclose(new[0, 1], normal_part)


def test_wall_reflection_is_a_mirror():
    radii = np.array([1.0])
    x = np.array([[[0.7, 9.4]]])  # 0.3 past the left wall, 0.4 past the top one (box 10, r 1)
    v = np.array([[[-0.5, 0.6]]])
    new_x, new_v = _reflect_walls(x, v, radii, 10.0)
    np.testing.assert_allclose(new_x, [[[1.3, 8.6]]])
    np.testing.assert_allclose(new_v, [[[0.5, -0.6]]])
    inside = np.array([[[5.0, 5.0]]])
    assert np.array_equal(_reflect_walls(inside, v, radii, 10.0)[1], v)


@pytest.mark.parametrize("size, radius", [(30, 1.2), (17, [0.5, 1.0, 2.0])])
def test_window_renderer_equals_dense_formula(size, radius):
    traj = simulate_bouncing_balls(6, 15, n_balls=3, radius=radius, seed=5, speed=2.0)
    fast = render_balls(traj.positions, radii=traj.radii, size=size, chunk=4)
    dense = _render_dense(traj.positions, radii=traj.radii, size=size)
    assert fast.shape == (6, 15, size * size)
    assert float((fast - dense).abs().max()) < 1e-5
    assert float(dense.max()) > 0.99  # discs are drawn


def test_single_ball_image_geometry():
    # one ball at the centre of pixel (row 4, col 7) of a 20x20 grid over a 10x10 box
    pos = np.array([[[[7.5 * 0.5, 4.5 * 0.5]]]])
    image = render_balls(pos, radii=1.0, size=20)[0, 0].reshape(20, 20)
    assert image[4, 7] == pytest.approx(1.0)  # exp(0)
    # a pixel at distance d = 0.5 = r/2 has exp(-(1/4)^4)
    assert image[4, 8] == pytest.approx(np.exp(-(0.25 ** 4)), rel=1e-6)
    assert image[4, 11] == 0.0 and image[8, 7] == 0.0  # beyond 1.73 r: exactly dark
    assert torch.equal(image[4, 3:12], image[4, 3:12].flip(0))  # symmetric about the centre


@pytest.mark.parametrize("options, fragment", [
    (dict(n_train=0), "at least 1"),
    (dict(colour="red"), "unknown bouncing-balls option"),
    (dict(n_frames="many"), "must be an integer"),
    (dict(n_balls=40, radius=2.0), "could not place"),
    (dict(radius=6.0), "do not fit"),
    (dict(binarize="maybe"), "true or false"),
])
def test_bad_options_are_user_errors(options, fragment):
    with pytest.raises(UserError, match=fragment):
        load_dataset("bouncing-balls", **{**SMALL, **options})


def test_files_are_refused(tmp_path):
    with pytest.raises(UserError, match="generated"):
        load_dataset("bouncing-balls", data_dir=tmp_path)


def test_options_are_visible_in_the_loader_signature():
    # probseq's command line routes `--set key=value` to a dataset by its loader's parameters
    import inspect

    from probseq.data.sets.bouncing_balls import DEFAULTS, load_bouncing_balls

    params = set(inspect.signature(load_bouncing_balls).parameters)
    assert {"n_train", "n_valid", "n_test", "n_frames", "size", "n_balls", "radius", "box", "speed",
            "seed"} <= params
    assert DEFAULTS["n_frames"] == 100 and DEFAULTS["size"] == 30 and DEFAULTS["radius"] == 1.2


def test_string_options_from_the_command_line_are_converted():
    data = load_dataset("bouncing-balls", **{k: str(v) for k, v in SMALL.items()}, radius="1.0")
    assert len(data.splits["train"]) == 6 and data.meta["radius"] == 1.0


def test_binarize_draws_each_pixel_from_its_intensity_and_is_reproducible():
    soft = load_dataset("bouncing-balls", **SMALL)
    hard = load_dataset("bouncing-balls", **SMALL, binarize="true")
    again = load_dataset("bouncing-balls", **SMALL, binarize=True)
    assert hard.meta["binarize"] is True and soft.meta["binarize"] is False
    for split in ("train", "valid", "test"):
        for p, b, b2 in zip(soft.split(split), hard.split(split), again.split(split)):
            assert set(b.unique().tolist()) <= {0.0, 1.0}
            assert torch.equal(b, b2)
            assert bool(((p == 0) <= (b == 0)).all()) and bool(((p == 1) <= (b == 1)).all())
    p = torch.cat(soft.split("train")).flatten()
    b = torch.cat(hard.split("train")).flatten()
    rims = (p > 0.05) & (p < 0.95)
    # E[b] = p on the fractional rim pixels: the mean of Bernoulli(p) draws is within 4 standard errors
    se = float((p[rims] * (1 - p[rims])).sum().sqrt()) / int(rims.sum())
    assert abs(float(b[rims].mean() - p[rims].mean())) < 4 * se
