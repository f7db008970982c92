r"""Host memory of `load_pretrained`: the peak resident memory a load adds, against the loaded
parameters' bytes (issue 26).

  python -m benchmarks.checkpoint_memory_bench                  # safetensors, both shapes
  python -m benchmarks.checkpoint_memory_bench --format mamba_ssm   # pytorch_model.bin (torch)
  python -m benchmarks.checkpoint_memory_bench --code DIR       # the mamba_jax under DIR

Writes its own checkpoints (random weights, 24 layers, two shapes: hidden 512 with vocab 50280 as
mamba-130m, and hidden 640 with vocab 1024) in float32 and in bfloat16 to a temporary directory,
then loads each in a fresh process into its own dtype. The measure: the peak RSS (ru_maxrss)
minus the RSS just after the JAX backend started, over the loaded parameters' bytes. This parent
imports neither JAX nor numpy, so a child's ru_maxrss is its own (it carries over a fork). Goals:
float32 at most 1.3x; bfloat16 at most 1.3x of its (halved) parameter bytes plus the largest
tensor of the file.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = {"512x50280": (512, 50280), "640x1024": (640, 1024)}
N_LAYERS = 24
DTYPES = ("float32", "bfloat16")
GOAL = 1.3
MIB = 2**20


def _write(directory, d_model, vocab, dtype, format):
  """Child: a MambaLM with random parameters of `dtype`, saved in `format`; returns the bytes of
  its largest tensor as stored (a stacked parameter holds one tensor per layer)."""
  import jax
  import numpy as np
  from flax import nnx

  from mamba_jax import MambaConfig, MambaLM, save_pretrained

  config = MambaConfig(
    d_model=d_model, n_layers=N_LAYERS, vocab_size=vocab, param_dtype=getattr(jax.numpy, dtype)
  )
  model = nnx.eval_shape(lambda: MambaLM(config, rngs=nnx.Rngs(0)))
  state = nnx.state(model, nnx.Param)
  rng = np.random.default_rng(0)
  draw = lambda x: jax.device_put(rng.normal(0, 0.1, x.shape).astype(x.dtype))
  nnx.replace_by_pure_dict(state, jax.tree.map(draw, nnx.to_pure_dict(state)))
  nnx.update(model, state)
  save_pretrained(model, directory, format=format)
  sizes = [
    value[...].nbytes // (N_LAYERS if "stacked_layers" in path else 1)
    for path, value in nnx.to_flat_state(nnx.state(model, nnx.Param))
  ]
  return {"largest": max(sizes)}


def _measure(directory, dtype, format):
  """Child: (RSS after the backend started, peak RSS, parameter bytes) of one load, in bytes,
  and its wall-clock seconds.
  For a .bin, torch is imported before the first RSS (its import alone is some 230 MiB)."""
  import resource
  import time

  if format == "mamba_ssm":
    import torch  # noqa: F401

  import jax
  import jax.numpy as jnp
  from flax import nnx

  from mamba_jax import load_pretrained

  jnp.zeros(1).block_until_ready()
  with open("/proc/self/status") as f:
    base = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
  start = time.perf_counter()
  _, model = load_pretrained(directory, param_dtype=getattr(jnp, dtype))
  params = jax.block_until_ready(jax.tree.leaves(nnx.state(model, nnx.Param)))
  seconds = time.perf_counter() - start
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
  return {"base": base, "peak": peak, "params": sum(p.nbytes for p in params), "s": seconds}


def _child(args, pythonpath):
  command = [sys.executable, os.path.abspath(__file__), *args]
  env = {**os.environ, "PYTHONPATH": pythonpath, "JAX_PLATFORMS": "cpu"}
  result = subprocess.run(
    command, env=env, capture_output=True, text=True, cwd=tempfile.gettempdir()
  )
  if result.returncode:
    raise SystemExit(f"{' '.join(command[2:])} failed:\n{result.stderr[-3000:]}")
  return json.loads(result.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
  parser.add_argument("--format", choices=("hf", "mamba_ssm"), default="hf")
  parser.add_argument("--code", default=ROOT, help="directory whose mamba_jax is measured")
  parser.add_argument("--shapes", default=",".join(SHAPES), help=f"among {list(SHAPES)}")
  parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    kind, directory, *rest = args.child
    if kind == "write":
      d_model, vocab, dtype, format = rest
      print(json.dumps(_write(directory, int(d_model), int(vocab), dtype, format)))
    else:
      print(json.dumps(_measure(directory, *rest)))
    return
  print(f"mamba_jax from {os.path.abspath(args.code)}; format {args.format}; {N_LAYERS} layers")
  header = ("shape", "dtype", "params MiB", "largest MiB", "rise MiB", "rise/params", "goal MiB")
  print("{:<10} {:<9} {:>10} {:>11} {:>9} {:>11} {:>9}  met  load s".format(*header))
  with tempfile.TemporaryDirectory() as tmp:
    for shape in args.shapes.split(","):
      d_model, vocab = SHAPES[shape]
      for dtype in DTYPES:
        directory = os.path.join(tmp, f"{shape}-{dtype}")
        written = [directory, str(d_model), str(vocab), dtype, args.format]
        largest = _child(["--child", "write", *written], ROOT)["largest"]
        m = _child(
          ["--child", "measure", directory, dtype, args.format], os.path.abspath(args.code)
        )
        rise, params = m["peak"] - m["base"], m["params"]
        goal = GOAL * params + (largest if dtype == "bfloat16" else 0)
        print(
          f"{shape:<10} {dtype:<9} {params / MIB:>10.0f} "
          f"{largest / MIB:>11.0f} {rise / MIB:>9.0f} {rise / params:>10.2f}x "
          f"{goal / MIB:>9.0f}  {'yes' if rise <= goal else 'NO ':<3}  {m['s']:>6.2f}"
        )
        sys.stdout.flush()


if __name__ == "__main__":
  main()
