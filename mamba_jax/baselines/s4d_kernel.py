"""The diagonal LTI SSM of S4D as a causal convolution: its kernel, and the FFT that applies it.

Per channel h the SSM x_t = exp(dt A) x_{t-1} + (exp(dt A) - 1) / A * B u_t, y_t = Re(C x_t),
discretised by zero-order hold as the S4D paper's (and Grazzi et al.'s) code, is a convolution
y = K * u with K_l = Re(sum_n C_n B_n (exp(dt A_n) - 1) / A_n * exp(dt A_n l)). With B = 1 only
the product C_n B_n is identifiable, so B is folded into C, as in that code. A complex A comes in
conjugate pairs; one of each pair is kept and the sum doubled (N real states = N / 2 modes).

Why a convolution: it is exact and needs only the (channels, length) kernel and the spectra of
the inputs, O(L log L) per channel. A complex recurrence (associative scan) would hold the
(batch, length, channels, N / 2) complex state: 32 times the memory at N = 64.
"""

import jax
import jax.numpy as jnp


def s4d_kernel(log_dt, A_real_log, A_imag, C, length):
  """The convolution kernel K (channels, length), float32.

  log_dt (channels,): step dt = exp(log_dt). A_real_log (channels, modes): Re A = -exp(it).
  A_imag (channels, modes) or None: Im A; with it the modes are one of each conjugate pair
  (K doubles the real part), without it A is real. C (channels, modes), complex or real: the
  output matrix with B folded in.
  """
  dt = jnp.exp(log_dt.astype(jnp.float32))[:, None]
  A = -jnp.exp(A_real_log.astype(jnp.float32))
  if A_imag is not None:
    A = jax.lax.complex(A, A_imag.astype(jnp.float32))
  dtA = dt * A
  C_discrete = C * jnp.expm1(dtA) / A  # zero-order hold of the input matrix (B = 1)
  powers = jnp.exp(dtA[:, :, None] * jnp.arange(length, dtype=jnp.float32))  # (ch, modes, L)
  kernel = jnp.einsum("hn,hnl->hl", C_discrete, powers)
  return 2.0 * jnp.real(kernel) if A_imag is not None else kernel.astype(jnp.float32)


def causal_convolution(u, kernel):
  """y_t = sum_{s <= t} kernel[:, t - s] u_s per channel, by FFT of size 2L (no wrap-around).

  u (batch, length, channels), kernel (channels, length) -> (batch, length, channels) float32."""
  length = u.shape[1]
  n = 2 * length
  u_f = jnp.fft.rfft(u.astype(jnp.float32), n=n, axis=1)
  k_f = jnp.fft.rfft(kernel.astype(jnp.float32), n=n, axis=-1).T  # (n // 2 + 1, channels)
  return jnp.fft.irfft(u_f * k_f, n=n, axis=1)[:, :length]
