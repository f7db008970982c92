"""The training-time rotation (torchvision's RandomRotation): the geometry on fake images (90
degrees is np.rot90, 0 the identity, a bright spot moves where the rotation matrix sends it,
counter-clockwise, the corners filled), and the angles (uniform in [-d, d), one per example, a
pure function of (key, global stream position))."""

import jax
import numpy as np
import pytest

from experiments.data import augment


def _random_images(shape, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


@pytest.mark.parametrize("shape", [(3, 6, 6), (2, 7, 7), (2, 6, 6, 3)])
def test_ninety_degrees_is_rot90(shape):
  images = _random_images(shape)
  rotated = np.asarray(augment.rotate(images, np.full(len(images), 90.0)))
  # np.rot90 turns counter-clockwise as displayed (row 0 on top), torchvision's direction.
  np.testing.assert_array_equal(rotated, np.rot90(images, 1, axes=(1, 2)))
  back = np.asarray(augment.rotate(images, np.full(len(images), -90.0)))
  np.testing.assert_array_equal(back, np.rot90(images, -1, axes=(1, 2)))


def test_angle_zero_is_the_identity():
  images = _random_images((4, 9, 9, 3))
  np.testing.assert_array_equal(np.asarray(augment.rotate(images, np.zeros(4))), images)
  key = jax.random.key(3)
  same = augment.random_rotation(images, key, np.arange(4), 0.0)
  np.testing.assert_array_equal(np.asarray(same), images)


def _centroid(image):
  rows, cols = np.nonzero(image > 0)
  return np.array([cols.mean(), rows.mean()]), len(rows)


@pytest.mark.parametrize("angle", [12.0, -15.0, 9.0])
def test_a_bright_spot_moves_where_the_rotation_matrix_says(angle):
  """A 3 x 3 bright block at (x, y) = (15, 4) of a dark 21 x 21 image, centre (10, 10): the
  rotated image's bright pixels centre on c + R(-angle) (p - c), x to the right and y down, i.e.
  counter-clockwise on screen for a positive angle; the other direction lands elsewhere."""
  image = np.full((21, 21), -1.0, np.float32)
  image[3:6, 14:17] = 1.0
  (out,) = np.asarray(augment.rotate(image[None], [angle]))
  assert set(np.unique(out)) <= {-1.0, 1.0}  # nearest neighbour: no new values
  a = np.deg2rad(angle)
  centre, spot = np.array([10.0, 10.0]), np.array([15.0, 4.0])
  forward = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])  # R(-a) in (x, y-down)
  expected = centre + forward @ (spot - centre)
  centroid, count = _centroid(out)
  assert 6 <= count <= 12  # the block survives, about its area of 9 pixels
  np.testing.assert_allclose(centroid, expected, atol=0.5)
  wrong_way = centre + forward.T @ (spot - centre)
  assert np.linalg.norm(centroid - wrong_way) > 1.5
  if angle > 0:  # counter-clockwise on screen: a spot right of and above the centre moves up
    assert centroid[1] < spot[1]


def test_pixels_from_outside_are_filled():
  """Corners come from outside the image: torchvision's fill 0 on [0, 1] is -1 here (black)."""
  images = np.ones((1, 16, 16, 3), np.float32)
  (out,) = np.asarray(augment.rotate(images, [15.0]))
  for corner in (out[0, 0], out[0, -1], out[-1, 0], out[-1, -1]):
    np.testing.assert_array_equal(corner, [augment.ROTATION_FILL] * 3)
  assert augment.ROTATION_FILL == -1.0
  np.testing.assert_array_equal(out[4:12, 4:12], 1.0)  # the middle stays inside
  (grey,) = np.asarray(augment.rotate(images[..., 0], [15.0], fill=0.25))
  assert grey[0, 0] == 0.25 and grey[8, 8] == 1.0


def test_angles_are_uniform_per_example_and_reproducible():
  key = jax.random.key(0)
  index = np.arange(4000)
  angles = np.asarray(augment.rotation_angles(key, index, 15.0))
  assert angles.shape == (4000,) and angles.dtype == np.float32
  assert angles.min() >= -15.0 and angles.max() < 15.0
  assert len(np.unique(angles)) > 3990  # one per example
  assert abs(angles.mean()) < 0.5 and abs(angles.std() - 15 / np.sqrt(3)) < 0.3
  assert np.mean(angles < -10) == pytest.approx(1 / 6, abs=0.02)
  np.testing.assert_array_equal(np.asarray(augment.rotation_angles(key, index, 15.0)), angles)
  # The angle of an example depends on its stream position alone, not on its batch-mates: a
  # host reading a slice, or a resumed run, sees the same angles.
  np.testing.assert_array_equal(
    np.asarray(augment.rotation_angles(key, index[1000:1003], 15.0)), angles[1000:1003]
  )
  other = np.asarray(augment.rotation_angles(jax.random.key(1), index[:100], 15.0))
  assert not np.array_equal(other, angles[:100])


def test_random_rotation_is_rotate_by_the_angles():
  images = _random_images((8, 24, 24, 3))
  key, index = jax.random.key(5), np.arange(40, 48)
  out = np.asarray(augment.random_rotation(images, key, index, 15.0))
  angles = np.asarray(augment.rotation_angles(key, index, 15.0))
  np.testing.assert_array_equal(out, np.asarray(augment.rotate(images, angles)))
  # Small images barely move under small angles (nearest neighbour); beyond 5 degrees they do.
  assert np.sum(np.abs(angles) > 5) >= 3
  for image, rotated, angle in zip(images, out, angles):
    if abs(angle) > 5:
      assert not np.array_equal(image, rotated)


@pytest.mark.parametrize("degrees", [-1, 181, "15", True, None, (15,)])
def test_bad_degrees_name_the_field(degrees):
  with pytest.raises(ValueError, match=r"config\.data\.random_rotation_degrees = "):
    augment.check_rotation_degrees(degrees)


def test_good_degrees():
  assert augment.check_rotation_degrees(0) == 0.0
  assert augment.check_rotation_degrees(15) == 15.0
  assert augment.check_rotation_degrees(180.0) == 180.0


# -- RandomAffine (the image-reconstruction paper's, study A) -------------------------------------


def test_affine_without_scale_or_shift_is_a_clockwise_rotation():
  """F.affine turns clockwise: its angle a is F.rotate's -a; angle 0, scale 1, shift 0 is the
  identity."""
  images = _random_images((3, 11, 11))
  ones, shifts = np.ones(3), np.zeros((3, 2))
  np.testing.assert_array_equal(
    np.asarray(augment.affine(images, np.zeros(3), ones, shifts)), images
  )
  angles = np.array([37.0, -120.0, 90.0])
  np.testing.assert_array_equal(
    np.asarray(augment.affine(images, angles, ones, shifts, fill=-1.0)),
    np.asarray(augment.rotate(images, -angles)),
  )


def test_affine_shifts_by_whole_pixels_and_scales_about_the_centre():
  images = _random_images((1, 12, 12))
  (out,) = np.asarray(augment.affine(images, [0.0], [1.0], [[3.0, -2.0]]))  # 3 right, 2 up
  np.testing.assert_array_equal(out[:10, 3:], images[0, 2:, :9])
  assert np.all(out[:, :3] == augment.AFFINE_FILL) and np.all(out[10:] == augment.AFFINE_FILL)
  # scale 2: a spot 3 pixels right of the centre (10, 10) of a 21 x 21 image lands 6 right
  spot = np.full((1, 21, 21), -1.0, np.float32)
  spot[0, 10, 13] = 1.0
  (zoomed,) = np.asarray(augment.affine(spot, [0.0], [2.0], [[0.0, 0.0]], fill=-1.0))
  centroid, count = _centroid(zoomed)
  np.testing.assert_allclose(centroid, [16.0, 10.0], atol=0.6)
  assert 2 <= count <= 6  # one pixel grows to about 2 x 2


def test_affine_draws_follow_the_paper_per_example():
  key, size = jax.random.key(0), 128
  index = augment.example_keys_index(np.arange(4000))
  angles, scales, shifts = (np.asarray(a) for a in augment.affine_parameters(key, index, size))
  assert angles.min() >= -180 and angles.max() <= 180 and np.ptp(angles) > 350
  assert scales.min() >= 0.5 and scales.max() <= 1.5 and np.ptp(scales) > 0.99
  assert np.all(shifts == np.round(shifts)) and np.abs(shifts).max() == round(0.4 * size)
  assert len(np.unique(angles)) > 3990  # one draw per example
  # a pure function of (key, example index): the same example in another batch, same draw
  again = augment.affine_parameters(key, index[[7, 3]], size)
  np.testing.assert_array_equal(np.asarray(again[0]), angles[[7, 3]])
  images = _random_images((2, 16, 16))
  source = augment.AffineSource([{"image": image} for image in images], key)
  np.testing.assert_array_equal(
    source[1]["image"], np.asarray(augment.random_affine(images[1:], key, [1]))[0]
  )
  assert not np.array_equal(source[1]["image"], images[1])
  reads = []

  class Counted(list):
    def __getitem__(self, index):
      reads.append(index)
      return list.__getitem__(self, index)

  once = augment.AffineSource(Counted({"image": image} for image in images), key)
  np.testing.assert_array_equal(once[1]["image"], once[1]["image"])  # transformed once, kept
  assert reads == [1]
