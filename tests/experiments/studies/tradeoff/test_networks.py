"""Study C's networks: the paper's families (shapes and parameter counts derived by hand from the
paper's layer sizes, ReLU latents, tanh outputs, the ViT's masking), this project's earlier
families unchanged, grayscale and RGB images, raster patches, the latent's reach, config checks."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from experiments.studies.tradeoff import networks as tn
from experiments.studies.tradeoff.configs import digits as tradeoff_digits
from experiments.studies.tradeoff.configs import mnist as tradeoff_mnist


def model_config(architecture, latent_dim=4, **overrides):
  c = tradeoff_digits.get_config().model
  c.architecture, c.latent_dim = architecture, latent_dim
  c.project_vit.d_model = c.mamba.d_model = 8
  c.project_vit.n_heads = 2
  c.mamba.d_state = 4
  c.cnn_large.channels, c.cnn_large.head_channels = (8, 8, 8, 8), 8  # its layers, narrower
  for key, value in overrides.items():
    c[key] = value
  return c


def build(architecture, image_size=8, num_classes=10, channels=1, **overrides):
  """The network in evaluation mode (BatchNorm's running averages, no dropout)."""
  net = tn.TradeoffNet(
    model_config(architecture, **overrides),
    image_size=image_size,
    num_classes=num_classes,
    channels=channels,
    rngs=nnx.Rngs(0),
  )
  net.eval()
  return net


def latent_shape(architecture, image_size, latent_dim=4):
  """The latent of one image at the digits config's sizes."""
  if architecture in ("cnn_small", "cnn_large"):  # two 2x2 pools: side / 4
    return (image_size // 4, image_size // 4, latent_dim)
  if architecture == "vit":  # 2 x 2 patches and the cls token
    return (1 + (image_size // 2) ** 2, latent_dim)
  return (latent_dim,)


def images_of(shape, key=1):
  return jax.random.uniform(jax.random.key(key), shape, minval=-1)


SIZES = [(a, 8) for a in tn.ARCHITECTURES] + [
  (a, 12) for a in ("cnn_small", "cnn_large", "vit", "mamba")
]


@pytest.mark.parametrize("architecture,image_size", SIZES)
def test_shapes_of_every_family(architecture, image_size):
  net = build(architecture, image_size, num_classes=7, head_hidden=5 if image_size == 12 else 0)
  images = images_of((4, image_size, image_size))
  z, reconstructions, logits = nnx.jit(lambda net, x: net(x))(net, images)
  assert z.shape == (4, *latent_shape(architecture, image_size))
  assert reconstructions.shape == (4, image_size, image_size)
  assert logits.shape == (4, 7)
  for out in (z, reconstructions, logits):
    assert out.dtype == jnp.float32 and np.all(np.isfinite(out))
  # The three parts are separate submodules: every parameter belongs to exactly one.
  total = len(jax.tree.leaves(nnx.state(net, nnx.Param)))
  assert sum(len(jax.tree.leaves(nnx.state(getattr(net, p), nnx.Param))) for p in tn.PARTS) == total


@pytest.mark.parametrize("architecture", tn.ARCHITECTURES)
def test_rgb_images_round_trip_in_their_shape(architecture):
  """(batch, S, S, 3) in, (batch, S, S, 3) out (traced, not run); (batch, S, S, 1) also works."""
  config = model_config(architecture)

  def run(images, channels):
    net = tn.TradeoffNet(config, image_size=8, num_classes=10, channels=channels, rngs=nnx.Rngs(0))
    net.eval()
    z, reconstructions, logits = net(images)
    return z, reconstructions, logits, tn.reconstruction_error(reconstructions, images)

  for shape, channels in (((2, 8, 8, 3), 3), ((2, 8, 8, 1), 1)):
    z, reconstructions, logits, error = jax.eval_shape(
      lambda x, c=channels: run(x, c), jax.ShapeDtypeStruct(shape, jnp.float32)
    )
    assert z.shape == (2, *latent_shape(architecture, 8))
    assert reconstructions.shape == shape and logits.shape == (2, 10) and error.shape == (2,)


# -- the paper's parameter counts, by hand from its layer sizes (10 classes) --------------------


def dense(a, b):
  return a * b + b


def conv(a, b, k):  # also a transposed convolution
  return a * b * k * k + b


def block(d, ratio=4):  # two LayerNorms, query, key, value and output maps, the MLP
  return 2 * 2 * d + 4 * dense(d, d) + dense(d, ratio * d) + dense(ratio * d, d)


def norms(*features):  # BatchNorm's scale and bias per feature (the paper's BatchNorm2d)
  return sum(2 * f for f in features)


def fc(widths):
  return sum(dense(a, b) for a, b in zip(widths, widths[1:]))


def paper_count(architecture, z, pixels=784, channels=1, latent_side=4):
  if architecture.startswith("fc_"):
    hidden, head = {
      "fc_small": ([], []),
      "fc_medium": ([616], [12]),
      "fc_large": ([716, 684, 616], [64]),
    }[architecture]
    encoder = fc([pixels, *hidden, z])
    return encoder + fc([z, *reversed(hidden), pixels]) + fc([z, *head, 10])
  if architecture == "cnn_small":
    encoder = conv(channels, 16, 3) + conv(16, 16, 3) + conv(16, z, 3) + norms(16, 16, z)
    decoder = conv(z, 16, 3) + conv(16, 16, 3) + conv(16, channels, 3)
    return encoder + decoder + dense(z * latent_side**2, 10)
  if architecture == "cnn_large":
    encoder = (
      conv(channels, 64, 7)
      + conv(64, 64, 7)
      + conv(64, 128, 5)
      + conv(128, 128, 5)
      + conv(128, z, 3)
      + norms(64, 64, 128, 128, z)
    )
    decoder = (
      conv(z, 128, 3)
      + conv(128, 128, 3)
      + conv(128, 64, 3)
      + conv(64, 64, 3)
      + conv(64, channels, 3)
    )
    head = conv(z, 256, 3) + conv(256, 256, 1) + norms(256, 256)
    head += dense(256 * (latent_side // 2) ** 2, 10)
    return encoder + decoder + head
  assert architecture == "vit"  # patch 7, 1 + 1 blocks, decoder width z, no mask token
  patch = 7 * 7 * channels
  encoder = dense(patch, z) + z + block(z) + 2 * z  # embedding, cls token, block, LayerNorm
  decoder = dense(z, z) + block(z) + 2 * z + dense(z, patch)
  return encoder + decoder + dense(z, 10)  # the head's BatchNorm has no scale or bias


def abstract_net(config, image_size, channels=1):
  """The network's structure and shapes, nothing computed."""
  return nnx.eval_shape(
    lambda: tn.TradeoffNet(
      config, image_size=image_size, num_classes=10, channels=channels, rngs=nnx.Rngs(0)
    )
  )


def count_parameters(config, image_size, channels=1):
  net = abstract_net(config, image_size, channels)
  return sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(net, nnx.Param)))


def output_shapes(config, input_shape, channels=1):
  """(latent, reconstruction, logits) shapes of a batch of input_shape, traced, not run."""

  def run(x):
    net = tn.TradeoffNet(
      config, image_size=input_shape[1], num_classes=10, channels=channels, rngs=nnx.Rngs(0)
    )
    net.eval()
    return net(x)

  outputs = jax.eval_shape(run, jax.ShapeDtypeStruct(input_shape, jnp.float32))
  return tuple(out.shape for out in outputs)


@pytest.mark.parametrize(
  "architecture,latent_dim,latent",
  [
    ("fc_small", 16, (16,)),
    ("fc_medium", 4, (4,)),
    ("fc_large", 128, (128,)),
    ("cnn_small", 16, (4, 4, 16)),  # the paper's 16 x 4 x 4 = 256
    ("cnn_large", 128, (3, 3, 128)),  # 28 -> 28 -> 28 -> 14 -> 7 -> 3
    ("vit", 8, (17, 8)),  # 16 patches of 7 x 7 and the cls token
  ],
)
def test_paper_families_at_mnist_sizes(architecture, latent_dim, latent):
  config = tradeoff_mnist.get_config().model
  config.architecture, config.latent_dim = architecture, latent_dim
  expected = paper_count(architecture, latent_dim, latent_side=latent[0])
  assert count_parameters(config, 28) == expected
  assert output_shapes(config, (2, 28, 28)) == ((2, *latent), (2, 28, 28), (2, 10))


def test_known_totals_at_mnist_sizes():
  """The totals the module docstring gives, from the formulas above."""
  assert paper_count("fc_small", 16) == 26_058
  assert paper_count("cnn_small", 16) == 12_251  # 12155 + 96 of BatchNorm
  assert paper_count("vit", 8) == 2_787  # (+ 8: the mask token, with masking)
  assert paper_count("cnn_large", 128, latent_side=3) == 1_738_251  # 1736203 + 2048 BatchNorm


def test_cnn_large_on_rgb_32_is_the_papers_cifar10_network():
  """32 x 32 x 3: latent 128 x 4 x 4 and a head whose linear layer reads 256 x 2 x 2 = 1024."""
  config = tradeoff_mnist.get_config().model
  config.architecture, config.latent_dim = "cnn_large", 128
  assert count_parameters(config, 32, channels=3) == paper_count(
    "cnn_large", 128, channels=3, latent_side=4
  )
  assert abstract_net(config, 32, channels=3).head.to_logits.kernel.shape == (1024, 10)
  latent, reconstruction, _ = output_shapes(config, (1, 32, 32, 3), channels=3)
  assert latent == (1, 4, 4, 128) and reconstruction == (1, 32, 32, 3)


def test_vit_mask_token_only_with_masking():
  config = tradeoff_mnist.get_config().model
  config.architecture, config.latent_dim = "vit", 8
  config.vit.masking_ratio = 0.75
  assert count_parameters(config, 28) == paper_count("vit", 8) + 8


def project_count(architecture, z):
  """This project's earlier families at the digits sizes (8 x 8, head_hidden 0), unchanged."""
  if architecture.startswith("project_fc_"):
    hidden = {"small": [64], "medium": [128, 64], "large": [256, 128, 64]}[architecture[11:]]
    return fc([64, *hidden, z]) + fc([z, *reversed(hidden), 64]) + dense(z, 10)
  if architecture == "project_cnn":  # (16, 32): 8 -> 4 -> 2
    encoder = conv(1, 16, 3) + conv(16, 32, 3) + dense(2 * 2 * 32, z)
    decoder = dense(z, 2 * 2 * 32) + conv(32, 16, 3) + conv(16, 16, 3) + conv(16, 1, 3)
    return encoder + decoder + dense(z, 10)
  assert architecture == "project_vit"  # width 32, 1 block, 16 patches of 2 x 2
  encoder = dense(4, 32) + 16 * 32 + block(32) + 2 * 32 + dense(32, z)
  decoder = dense(z, 32) + 16 * 32 + block(32) + 2 * 32 + dense(32, 4)
  return encoder + decoder + dense(z, 10)


@pytest.mark.parametrize("architecture", tn.PROJECT_ARCHITECTURES)
def test_project_families_keep_their_parameters(architecture):
  config = tradeoff_digits.get_config().model
  config.architecture, config.latent_dim = architecture, 16
  assert count_parameters(config, 8) == project_count(architecture, 16)
  assert tn.decoder_output(config) == "linear"


def test_torch_init_is_pytorchs_uniform_and_flax_init_its_own():
  """init "torch": every kernel and bias of the Linear, Conv and ConvTranspose layers uniform in
  +-1/sqrt(fan_in), fan_in as PyTorch computes it (a transposed convolution's from its output
  channels); "flax": zero biases, LeCun-normal kernels (beyond that bound somewhere)."""

  def layers(net):
    return [
      (path, layer)
      for path, layer in nnx.iter_graph(net)
      if isinstance(layer, (nnx.Linear, nnx.Conv, nnx.ConvTranspose))
    ]

  torch_net, flax_net = (build("cnn_small", latent_dim=4, init=init) for init in ("torch", "flax"))
  seen = set()
  for path, layer in layers(torch_net):
    kernel, bias = np.asarray(layer.kernel[...]), np.asarray(layer.bias[...])
    *window, fan_in, fan_out = kernel.shape
    if isinstance(layer, nnx.ConvTranspose):
      fan_in = fan_out  # PyTorch's weight is (in, out, k, k): its dimension 1 is out
    bound = 1.0 / math.sqrt(fan_in * math.prod(window))
    for values in (kernel, bias):
      assert np.abs(values).max() <= bound, path
    assert np.abs(kernel).max() > 0.8 * bound, path  # the whole range is used, not a part
    seen.add(type(layer))
  assert seen == {nnx.Linear, nnx.Conv, nnx.ConvTranspose}
  flax_layers = layers(flax_net)
  assert all(np.all(np.asarray(layer.bias[...]) == 0) for _, layer in flax_layers)
  fc = dict(layers(build("fc_medium", init="torch")))
  assert all(np.any(np.asarray(layer.bias[...]) != 0) for layer in fc.values())


# -- latents, outputs, masking --------------------------------------------------------------------


@pytest.mark.parametrize("architecture", ["fc_small", "fc_medium", "fc_large", "cnn_small"])
def test_paper_latents_are_rectified_and_outputs_squashed(architecture):
  net = build(architecture)
  images = 50.0 * images_of((8, 8, 8))  # far out of range: a linear output would leave [-1, 1]
  z, reconstructions, _ = net(images)
  assert np.all(np.asarray(z) >= 0) and np.any(np.asarray(z) == 0)
  assert np.all(np.abs(np.asarray(reconstructions)) <= 1)
  net_config = model_config(architecture)
  assert tn.decoder_output(net_config) == "tanh"
  net_config.decoder_output = "linear"
  linear = tn.TradeoffNet(net_config, image_size=8, num_classes=10, rngs=nnx.Rngs(0))
  linear.eval()
  _, unsquashed, _ = linear(images)
  np.testing.assert_allclose(np.tanh(unsquashed), reconstructions, rtol=1e-5, atol=1e-6)


def test_project_outputs_are_linear_unless_asked():
  images = 50.0 * images_of((8, 8, 8))
  _, reconstructions, _ = build("project_fc_small")(images)
  assert np.abs(np.asarray(reconstructions)).max() > 1
  _, squashed, _ = build("project_fc_small", decoder_output="tanh")(images)
  np.testing.assert_allclose(squashed, np.tanh(reconstructions), rtol=1e-5, atol=1e-6)
  assert tn.decoder_output(model_config("vit")) == "linear"  # the paper's ViT decoder
  assert tn.decoder_output(model_config("mamba")) == "linear"


def test_vit_masks_in_training_only():
  c = model_config("vit", latent_dim=8)
  c.vit.masking_ratio = 0.5
  net = tn.TradeoffNet(c, image_size=8, num_classes=10, rngs=nnx.Rngs(0))
  net.eval()  # masking follows the key alone (the head's BatchNorm reads its averages)
  images, target = images_of((3, 8, 8)), images_of((3, 8, 8), key=5)
  z, mask = tn.encode(net.encoder, images)  # no key: no masking
  assert mask is None

  @jax.jit
  def run(images, target):
    (z0, mask0), (z1, mask1) = [tn.encode(net.encoder, images, jax.random.key(k)) for k in (0, 1)]
    reconstructions = tn.decode(net.decoder, z0, mask0)
    # dropped patches changed: the kept ones' latent must not notice
    changed = jnp.where(mask0["pixel_mask"] == 0, images, -images)
    rgb = lambda x: jnp.stack([x] * 3, axis=-1)  # noqa: E731
    return {
      "evaluation": net.encoder(images),
      "z0": z0,
      "z1": z1,
      "z_changed": tn.encode(net.encoder, changed, jax.random.key(0))[0],
      "mask0": mask0,
      "reconstructions": reconstructions,
      "reconstructions1": tn.decode(net.decoder, z1, mask1),
      "logits": net.head(z0),
      "error": tn.reconstruction_error(reconstructions, target, mask0),
      "error_rgb": tn.reconstruction_error(rgb(reconstructions), rgb(target), mask0),
    }

  out = jax.tree.map(np.asarray, run(images, target))
  np.testing.assert_array_equal(out["evaluation"], np.asarray(jax.jit(net.encoder)(images)))
  np.testing.assert_allclose(out["evaluation"], z, atol=1e-6)  # evaluation: every patch
  assert z.shape == (3, 17, 8) and out["z0"].shape == (3, 1 + 8, 8)  # cls + half the patches
  assert not np.array_equal(out["z0"], out["z1"])
  pixel_mask = out["mask0"]["pixel_mask"]
  assert pixel_mask.shape == (3, 8, 8) and np.all(pixel_mask.mean(axis=(1, 2)) == 0.5)
  # every dropped patch is a whole 2 x 2 patch; the restore order is a permutation
  patches = np.asarray(tn.patchify(pixel_mask, 2))
  np.testing.assert_array_equal(patches.min(-1), patches.max(-1))
  assert np.all(np.sort(out["mask0"]["restore"], axis=1) == np.arange(16))
  assert out["reconstructions"].shape == (3, 8, 8) and out["logits"].shape == (3, 10)
  assert not np.array_equal(out["reconstructions"], out["reconstructions1"])
  np.testing.assert_allclose(out["z_changed"], out["z0"], atol=1e-6)
  # the masked MSE: over the dropped patches' pixels only
  error = (out["reconstructions"] - np.asarray(target)) ** 2
  expected = (error * pixel_mask).sum(axis=(1, 2)) / pixel_mask.sum(axis=(1, 2))
  np.testing.assert_allclose(out["error"], expected, rtol=1e-5)
  np.testing.assert_allclose(out["error_rgb"], expected, rtol=1e-5)


def test_patches_are_raster_order_and_invert():
  images = jnp.arange(2 * 6 * 6, dtype=jnp.float32).reshape(2, 6, 6)
  patches = tn.patchify(images, 2)
  assert patches.shape == (2, 9, 4)
  np.testing.assert_array_equal(patches[1, 0], images[1, :2, :2].ravel())
  np.testing.assert_array_equal(patches[1, 1], images[1, :2, 2:4].ravel())  # left to right
  np.testing.assert_array_equal(patches[1, 3], images[1, 2:4, :2].ravel())  # then down
  np.testing.assert_array_equal(tn.unpatchify(patches, 2), images)
  rgb = jnp.arange(2 * 6 * 6 * 3, dtype=jnp.float32).reshape(2, 6, 6, 3)
  patches = tn.patchify(rgb, 3)
  assert patches.shape == (2, 4, 27)
  np.testing.assert_array_equal(patches[0, 1], rgb[0, :3, 3:].ravel())
  np.testing.assert_array_equal(tn.unpatchify(patches, 3), rgb)


@pytest.mark.parametrize(
  "architecture,pool",
  [("mamba", "last"), ("mamba", "mean"), ("project_vit", "mean"), ("project_vit", "last")]
  + [("vit", None), ("cnn_small", None), ("cnn_large", None)],
)
def test_latent_sees_every_patch(architecture, pool):
  """The latent depends on the first and the last patch (the last position of a causal Mamba
  has seen the whole sequence)."""
  c = model_config(architecture)
  if pool:
    c[architecture].pool = pool
  net = tn.TradeoffNet(c, image_size=8, num_classes=10, rngs=nnx.Rngs(0))
  net.eval()
  images = images_of((1, 8, 8), key=2)
  grad = nnx.jit(lambda net, x: jax.grad(lambda y: jnp.sum(net.encoder(y) ** 2))(x))(net, images)[0]
  assert np.abs(grad[:2, :2]).sum() > 0 and np.abs(grad[-2:, -2:]).sum() > 0


@pytest.mark.parametrize("architecture", tn.ARCHITECTURES)
def test_zeroed_from_latent_layer_cuts_z_from_decoder_and_head(architecture):
  """The convention the task's tests rely on: `from_latent` is the only way z enters."""
  net = build(architecture, head_hidden=4)
  z = jax.random.normal(jax.random.key(3), (2, *latent_shape(architecture, 8)))
  for part in (net.decoder, net.head):
    part.from_latent.kernel[...] = jnp.zeros_like(part.from_latent.kernel[...])
    np.testing.assert_array_equal(part(z), part(2 * z + 1))


def test_bad_configs_name_the_field():
  cases = [
    (dict(architecture="resnet"), "config.model.architecture"),
    (dict(architecture="cnn"), "config.model.architecture"),  # renamed: project_cnn
    (dict(latent_dim=0), "config.model.latent_dim"),
    (dict(decoder_output="sigmoid"), "config.model.decoder_output"),
    (dict(architecture="project_fc_small", head_hidden=-1), "config.model.head_hidden"),
    (dict(architecture="vit", latent_dim=2), "config.model.latent_dim = 2 cannot be the vit"),
    (dict(architecture="vit", latent_dim=12), None),  # 12 is no multiple of 8 heads
    (dict(architecture="mamba", patch_size=3), "config.model.patch_size"),
    (dict(init="kaiming"), "config.model.init"),
  ]
  for overrides, field in cases:
    c = model_config(overrides.pop("architecture", "fc_small"), **overrides)
    if field is None:
      c.vit.n_heads = 8
      field = "config.model.latent_dim = 12 cannot be"
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
      tn.TradeoffNet(c, image_size=8, num_classes=10, rngs=nnx.Rngs(0))

  def fails(architecture, field, section, **values):
    c = model_config(architecture)
    for key, value in values.items():
      c[section][key] = value
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
      tn.TradeoffNet(c, image_size=8, num_classes=10, rngs=nnx.Rngs(0))

  fails("fc_medium", "config.model.fc_medium.hidden", "fc_medium", hidden=(50, 0))
  fails("fc_large", "config.model.fc_large.head_hidden", "fc_large", head_hidden=-1)
  fails("cnn_small", "config.model.cnn_small.pool", "cnn_small", pool=(True, True, True, True))
  fails(
    "cnn_small",
    "2x2 max pools do not fit an image side of 8",
    "cnn_small",
    channels=(16, 16, 16),
    kernel_sizes=(3, 3, 3, 3),
    pool=(True,) * 4,
    pool_padding=(0,) * 4,
  )
  fails("cnn_small", "config.model.cnn_small.pool_padding", "cnn_small", pool_padding=(0, 2, 0))
  fails("cnn_small", "config.model.cnn_small.kernel_sizes", "cnn_small", kernel_sizes=(3, 3))
  fails("cnn_large", "config.model.cnn_large.pool", "cnn_large", pool=(True, True))
  fails("cnn_large", "needs a side of 2", "cnn_large", pool=(False, False, True, True, True))
  fails("cnn_large", "config.model.cnn_large.dropout", "cnn_large", dropout=1.0)
  fails("vit", "config.model.vit.patch_size", "vit", patch_size=3)
  fails("vit", "config.model.vit.masking_ratio", "vit", masking_ratio=1.0)
  fails("vit", "keeps 0 of 16 patches", "vit", masking_ratio=0.99)
  fails("vit", "config.model.vit.decoder_dim", "vit", decoder_dim=6)
  fails("project_cnn", "config.model.project_cnn.channels", "project_cnn", channels=(8,) * 4)
  fails("project_cnn", "config.model.project_cnn.channels", "project_cnn", channels=(8, "x"))
  fails("project_fc_medium", "config.model.project_fc.medium", "project_fc", medium=(64, 0))
  fails("project_vit", "config.model.project_vit.pool", "project_vit", pool="cls")
  fails(
    "project_vit", "config.model.project_vit.d_model = 8 is not divisible", "project_vit", n_heads=3
  )


def test_losses_per_example():
  images = jnp.zeros((2, 2, 2)).at[1].set(1.0)
  np.testing.assert_allclose(tn.reconstruction_error(jnp.zeros((2, 2, 2)), images), [0.0, 1.0])
  rgb = jnp.zeros((2, 2, 2, 3)).at[1, ..., 0].set(3.0)
  np.testing.assert_allclose(tn.reconstruction_error(jnp.zeros((2, 2, 2, 3)), rgb), [0.0, 3.0])
  logits = jnp.array([[0.0, 0.0], [2.0, -1.0]])
  np.testing.assert_allclose(
    tn.cross_entropy(logits, jnp.array([1, 0])), [np.log(2.0), np.log1p(np.exp(-3.0))], rtol=1e-6
  )


def test_configs_fit_every_point_of_their_sweeps():
  """Every (architecture, latent size) of the digits and MNIST sweeps builds, and digits' FC
  widths follow the documented rule round(paper width * 64 / 784)."""
  for config in (tradeoff_digits.get_config(), tradeoff_mnist.get_config()):
    for architecture in config.sweep.architectures:
      for latent_dim in config.sweep.latent_dims:
        config.model.architecture, config.model.latent_dim = architecture, latent_dim
        tn.check_config(config.model, config.data.image_size, config.data.get("channels", 1))
  digits, paper = tradeoff_digits.get_config().model, tradeoff_mnist.get_config().model
  for size in ("fc_small", "fc_medium", "fc_large"):
    assert list(digits[size].hidden) == [round(w * 64 / 784) for w in paper[size].hidden]
    assert digits[size].head_hidden == paper[size].head_hidden
  assert list(paper.fc_medium.hidden) == [616] and list(paper.fc_large.hidden) == [716, 684, 616]
  assert (paper.fc_medium.head_hidden, paper.fc_large.head_hidden) == (12, 64)
