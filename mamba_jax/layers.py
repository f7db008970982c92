"""Small layers shared by the Mamba block, the models and the baselines.

Initialisers follow PyTorch's defaults where mamba_ssm relies on them (nn.Linear, nn.Conv1d:
uniform in +-1/sqrt(fan_in)), so that a freshly built model has mamba_ssm's statistics.
"""

import jax
import jax.numpy as jnp
from flax import nnx


def uniform_init(limit):
  """Initialiser drawing U(-limit, +limit)."""

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, jnp.float32, -limit, limit).astype(dtype)

  return init


def torch_linear(in_features, out_features, *, use_bias, dtype, param_dtype, rngs, scale=1.0):
  """nnx.Linear with PyTorch nn.Linear's default weight init (times scale) and zero bias.

  mamba_ssm's `_init_weights` zeroes Linear biases and keeps the default weight init, except for
  out_proj, which it rescales (the `scale` argument).
  """
  return nnx.Linear(
    in_features,
    out_features,
    use_bias=use_bias,
    dtype=dtype,
    param_dtype=param_dtype,
    kernel_init=uniform_init(scale / in_features**0.5),
    bias_init=nnx.initializers.zeros_init(),
    rngs=rngs,
  )


class RMSNorm(nnx.Module):
  """x / sqrt(mean(x^2) + eps) * weight, computed in float32, returned in `dtype`."""

  def __init__(self, features, *, eps=1e-5, dtype=jnp.float32, param_dtype=jnp.float32):
    self.eps = eps
    self.dtype = dtype
    self.weight = nnx.Param(jnp.ones((features,), param_dtype))

  def __call__(self, x):
    x32 = x.astype(jnp.float32)
    rstd = jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.eps)
    return (x32 * rstd * self.weight[...].astype(jnp.float32)).astype(self.dtype)


class CausalConv1d(nnx.Module):
  """Depthwise causal convolution over time: y_t = bias + sum_k weight[:, k] * x_{t-K+1+k}.

  Layout of mamba_ssm's nn.Conv1d(groups=channels) weight with the singleton axis dropped:
  weight (channels, kernel_size), so the decode cache (batch, channels, kernel_size) lines up
  with it. Init as PyTorch's Conv1d: U(+-1/sqrt(kernel_size)) for weight and bias.
  """

  def __init__(
    self, channels, kernel_size, *, use_bias=True, dtype=jnp.float32, param_dtype=jnp.float32, rngs
  ):
    self.kernel_size = kernel_size
    self.dtype = dtype
    init = uniform_init(1.0 / kernel_size**0.5)
    self.weight = nnx.Param(init(rngs.params(), (channels, kernel_size), param_dtype))
    self.bias = nnx.Param(init(rngs.params(), (channels,), param_dtype)) if use_bias else None

  def __call__(self, x):
    """x: (batch, length, channels) -> (batch, length, channels) in `dtype`."""
    x = x.astype(self.dtype)
    length = x.shape[1]
    weight = self.weight[...].astype(self.dtype)
    padded = jnp.pad(x, ((0, 0), (self.kernel_size - 1, 0), (0, 0)))
    y = sum(padded[:, k : k + length] * weight[:, k] for k in range(self.kernel_size))
    return y + self.bias[...].astype(self.dtype) if self.bias is not None else y

  def step(self, x, conv_state):
    """One time step. x: (batch, channels); conv_state: (batch, channels, kernel_size) holding the
    last kernel_size inputs, oldest first. Returns (y, new conv_state)."""
    conv_state = jnp.concatenate([conv_state[:, :, 1:], x[:, :, None].astype(conv_state.dtype)], -1)
    y = jnp.sum(conv_state.astype(self.dtype) * self.weight[...].astype(self.dtype), axis=-1)
    y = y + self.bias[...].astype(self.dtype) if self.bias is not None else y
    return y, conv_state
