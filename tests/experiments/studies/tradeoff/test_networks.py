"""Study C's networks: shapes of every family, raster patches, the latent's reach, config checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from experiments.studies.tradeoff import networks as tn
from experiments.studies.tradeoff.configs import digits as tradeoff_digits


def model_config(architecture, latent_dim=3, **overrides):
  c = tradeoff_digits.get_config().model
  c.architecture, c.latent_dim = architecture, latent_dim
  c.vit.d_model = c.mamba.d_model = 8
  c.vit.n_heads = 2
  c.mamba.d_state = 4
  for key, value in overrides.items():
    c[key] = value
  return c


def build(architecture, image_size=8, num_classes=10, **overrides):
  return tn.TradeoffNet(
    model_config(architecture, **overrides),
    image_size=image_size,
    num_classes=num_classes,
    rngs=nnx.Rngs(0),
  )


@pytest.mark.parametrize(
  "architecture,image_size",
  [(a, 8) for a in tn.ARCHITECTURES] + [("fc_large", 12), ("cnn", 12), ("vit", 12), ("mamba", 12)],
)
def test_shapes_of_every_family(architecture, image_size):
  net = build(architecture, image_size, num_classes=7, head_hidden=5 if image_size == 12 else 0)
  images = jax.random.uniform(jax.random.key(1), (4, image_size, image_size), minval=-1)
  z, reconstructions, logits = nnx.jit(lambda net, x: net(x))(net, images)
  assert z.shape == (4, 3)
  assert reconstructions.shape == (4, image_size, image_size)
  assert logits.shape == (4, 7)
  for out in (z, reconstructions, logits):
    assert out.dtype == jnp.float32 and np.all(np.isfinite(out))
  # The three parts are separate submodules: every parameter belongs to exactly one.
  total = len(jax.tree.leaves(nnx.state(net, nnx.Param)))
  assert sum(len(jax.tree.leaves(nnx.state(getattr(net, p), nnx.Param))) for p in tn.PARTS) == total


def test_patches_are_raster_order_and_invert():
  images = jnp.arange(2 * 6 * 6, dtype=jnp.float32).reshape(2, 6, 6)
  patches = tn.patchify(images, 2)
  assert patches.shape == (2, 9, 4)
  np.testing.assert_array_equal(patches[1, 0], images[1, :2, :2].ravel())
  np.testing.assert_array_equal(patches[1, 1], images[1, :2, 2:4].ravel())  # left to right
  np.testing.assert_array_equal(patches[1, 3], images[1, 2:4, :2].ravel())  # then down
  np.testing.assert_array_equal(tn.unpatchify(patches, 2), images)


@pytest.mark.parametrize(
  "architecture,pool", [("mamba", "last"), ("mamba", "mean"), ("vit", "mean"), ("vit", "last")]
)
def test_sequence_latent_sees_every_patch(architecture, pool):
  """The latent depends on the first and the last patch (the last position of a causal Mamba
  has seen the whole sequence)."""
  c = model_config(architecture)
  c[architecture].pool = pool
  net = tn.TradeoffNet(c, image_size=8, num_classes=10, rngs=nnx.Rngs(0))
  images = jax.random.uniform(jax.random.key(2), (1, 8, 8), minval=-1)
  grad = nnx.jit(lambda net, x: jax.grad(lambda y: jnp.sum(net.encoder(y) ** 2))(x))(net, images)[0]
  assert np.abs(grad[:2, :2]).sum() > 0 and np.abs(grad[-2:, -2:]).sum() > 0


@pytest.mark.parametrize("architecture", tn.ARCHITECTURES)
def test_zeroed_from_latent_layer_cuts_z_from_decoder_and_head(architecture):
  """The convention the task's tests rely on: `from_latent` is the only way z enters."""
  net = build(architecture, head_hidden=4)
  for part in (net.decoder, net.head):
    part.from_latent.kernel[...] = jnp.zeros_like(part.from_latent.kernel[...])
    z = jax.random.normal(jax.random.key(3), (2, 3))
    np.testing.assert_array_equal(part(z), part(2 * z + 1))


def test_bad_configs_name_the_field():
  cases = [
    (dict(architecture="resnet"), 8, "config.model.architecture"),
    (dict(latent_dim=0), 8, "config.model.latent_dim"),
    (dict(head_hidden=-1), 8, "config.model.head_hidden"),
    (dict(architecture="cnn", cnn_channels=(8, 8, 8, 8)), 8, "config.model.cnn_channels"),
    (dict(architecture="cnn", cnn_channels=(8, "x")), 8, "config.model.cnn_channels"),
    (dict(architecture="mamba", patch_size=3), 8, "config.model.patch_size"),
    (dict(architecture="fc_medium"), 8, None),
  ]
  for overrides, size, field in cases:
    c = model_config(overrides.pop("architecture", "fc_small"), **overrides)
    if field is None:
      c.fc.medium = (64, 0)
      field = "config.model.fc.medium"
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
      tn.TradeoffNet(c, image_size=size, num_classes=10, rngs=nnx.Rngs(0))
  c = model_config("vit")
  c.vit.pool = "cls"
  with pytest.raises(ValueError, match=r"config\.model\.vit\.pool"):
    tn.TradeoffNet(c, image_size=8, num_classes=10, rngs=nnx.Rngs(0))
  c.vit.pool, c.vit.n_heads = "mean", 3
  with pytest.raises(ValueError, match=r"config\.model\.vit\.d_model = 8 is not divisible"):
    tn.TradeoffNet(c, image_size=8, num_classes=10, rngs=nnx.Rngs(0))


def test_losses_per_example():
  images = jnp.zeros((2, 2, 2)).at[1].set(1.0)
  np.testing.assert_allclose(tn.reconstruction_error(jnp.zeros((2, 2, 2)), images), [0.0, 1.0])
  logits = jnp.array([[0.0, 0.0], [2.0, -1.0]])
  np.testing.assert_allclose(
    tn.cross_entropy(logits, jnp.array([1, 0])), [np.log(2.0), np.log1p(np.exp(-3.0))], rtol=1e-6
  )


def test_paper_scale_config_fits_mnist():
  from experiments.studies.tradeoff.configs import mnist

  config = mnist.get_config()
  for architecture in config.sweep.architectures:
    config.model.architecture = architecture
    tn.check_config(config.model, config.data.image_size)  # raises if a size does not fit
