r"""Model-level benchmark: a Mamba training step here and in the pure-PyTorch peer `mambapy`.

  python -m benchmarks.model_bench                 # both configurations, with the peer
  python -m benchmarks.model_bench --nopeer        # this library only
  python -m benchmarks.model_bench --configs=b --nopeer --remat=false --batch=8 \
      --layouts=loop,scan                          # compile and step time of both layer layouts

Configurations (issue 3): (a) the image-reconstruction model: d_model 16, 8 layers, d_state 8,
expand 2, dt_rank 1, batch 64, length 2049; (b) the in-context-learning model: d_model 256,
24 layers, d_state 16, batch 64, length 82 (the peer at --peer_batch_b, 32 by default: at 64 it
does not fit in 24 GB). One training step = forward, MSE loss against a random target, backward,
Adam update, float32. Each measurement runs in a fresh subprocess, so the peak resident memory
(ru_maxrss) is that configuration's alone, and so is the compile time (tracing plus XLA
compilation of the jitted step, before it first runs). This library runs without and with
per-layer rematerialisation (MambaConfig.remat), which trades about one extra forward for
memory, and in the layer layouts of --layouts (MambaConfig.scan_layers: "loop", "scan", or
"auto" for the config's default). The peer runs in `.venv-peer` (torch==2.13.0 CPU,
mambapy==1.2.0), which this script creates when missing: outside the project's dependencies.
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import time

from absl import app, flags

LAYOUTS = {"loop": False, "scan": True, "auto": None}  # --layouts -> MambaConfig.scan_layers
CONFIGS = {
  "a": dict(
    d_model=16, n_layers=8, d_state=8, d_conv=4, expand=2, dt_rank=1, batch=64, length=2049
  ),
  "b": dict(
    d_model=256, n_layers=24, d_state=16, d_conv=4, expand=2, dt_rank="auto", batch=64, length=82
  ),
}
PEER_ENV = ".venv-peer"
PEER_PACKAGES = ["torch==2.13.0", "mambapy==1.2.0", "numpy"]

_FLAGS = flags.FLAGS
flags.DEFINE_list("configs", ["a", "b"], "Configurations to run.")
flags.DEFINE_integer("repeats", 3, "Timed steps per measurement (median reported).")
flags.DEFINE_bool("peer", True, "Also measure mambapy in its own environment.")
flags.DEFINE_integer("peer_batch_b", 32, "The peer's batch at configuration b.")
flags.DEFINE_string("implementation", "auto", "Selective-scan implementation of this library.")
flags.DEFINE_list("remat", ["false", "true"], "Measure without and/or with per-layer remat.")
flags.DEFINE_list("layouts", ["auto"], "Layer layouts: loop, scan and/or auto (config default).")
flags.DEFINE_integer("batch", None, "Batch of every configuration (default: its own).")
flags.DEFINE_integer("n_layers", None, "Depth of every configuration (default: its own).")
flags.DEFINE_string("child", None, "Internal: run one measurement of this library (JSON spec).")


def measure_here(spec):
  """One configuration's training step in this library, in this process."""
  import jax
  import jax.numpy as jnp
  import optax
  from flax import nnx

  import mamba_jax

  config = mamba_jax.MambaConfig(
    d_model=spec["d_model"],
    n_layers=spec["n_layers"],
    d_state=spec["d_state"],
    d_conv=spec["d_conv"],
    expand=spec["expand"],
    dt_rank=spec["dt_rank"],
    scan_implementation=spec["implementation"],
    remat=spec["remat"],
    scan_layers=LAYOUTS[spec["layout"]],
  )
  model = mamba_jax.MambaModel(config, spec["d_model"], spec["d_model"], rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model, nnx.Param)
  tx = optax.adam(1e-3)
  keys = jax.random.split(jax.random.PRNGKey(0), 2)
  shape = (spec["batch"], spec["length"], spec["d_model"])
  x, target = jax.random.normal(keys[0], shape), jax.random.normal(keys[1], shape)

  def loss_fn(params):
    return jnp.mean((nnx.merge(graphdef, params)(x) - target) ** 2)

  @jax.jit
  def train_step(params, opt_state):
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  state = (params, tx.init(params))
  start = time.perf_counter()
  lowered = train_step.lower(*state)
  trace_seconds = time.perf_counter() - start
  compiled = lowered.compile()
  compile_seconds = time.perf_counter() - start
  *state, loss = compiled(*state)  # warm-up
  jax.block_until_ready(loss)
  times = []
  for _ in range(spec["repeats"]):
    start = time.perf_counter()
    *state, loss = compiled(*state)
    jax.block_until_ready(loss)
    times.append(time.perf_counter() - start)
  return {
    "step_seconds": statistics.median(times),
    "compile_seconds": compile_seconds,
    "trace_seconds": trace_seconds,
    "scan_layers": config.resolved_scan_layers,
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "parameters": mamba_jax.count_parameters(model),
  }


def ensure_peer_env(root):
  python = os.path.join(root, PEER_ENV, "bin", "python")
  if not os.path.exists(python):
    print(f"Creating {PEER_ENV} with {' '.join(PEER_PACKAGES)} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", os.path.join(root, PEER_ENV)], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True)
  return python


def _run_child(command, root):
  result = subprocess.run(command, capture_output=True, text=True, cwd=root)
  if result.returncode:
    return {"error": (result.stderr or result.stdout).strip().splitlines()[-1:]}
  return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv):
  del argv
  if _FLAGS.child:
    print(json.dumps(measure_here(json.loads(_FLAGS.child))))
    return
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the checkout
  peer_python = ensure_peer_env(root) if _FLAGS.peer else None
  import jax

  print(
    f"# Mamba training step: {time.strftime('%Y-%m-%d')}, JAX {jax.__version__} "
    f"({jax.default_backend()}, scan implementation {_FLAGS.implementation}), "
    f"{os.cpu_count()} CPU cores, median of {_FLAGS.repeats} steps after warm-up"
  )
  print(
    "| config | implementation | layers | batch | length | step s | tokens/s | peak RSS MiB | "
    "compile s (trace) |\n|---|---|---|---|---|---|---|---|---|",
    flush=True,
  )
  rows = {}
  for name in _FLAGS.configs:
    spec = dict(CONFIGS[name], repeats=_FLAGS.repeats, implementation=_FLAGS.implementation)
    if _FLAGS.batch:
      spec["batch"] = _FLAGS.batch
    if _FLAGS.n_layers:
      spec["n_layers"] = _FLAGS.n_layers
    runs = []
    for remat in _FLAGS.remat:
      for layout in _FLAGS.layouts:
        ours = dict(spec, remat=remat.lower() == "true", layout=layout)
        runs.append(
          (
            "mamba_jax" + (" remat" if ours["remat"] else ""),
            ours,
            [sys.executable, "-m", "benchmarks.model_bench", f"--child={json.dumps(ours)}"],
          )
        )
    if peer_python:
      peer_spec = dict(
        spec, batch=_FLAGS.peer_batch_b if name == "b" else spec["batch"], dt_rank=spec["dt_rank"]
      )
      runs.append(
        (
          "mambapy 1.2.0",
          peer_spec,
          [peer_python, os.path.join(root, "benchmarks", "peer_mambapy.py"), json.dumps(peer_spec)],
        )
      )
    for label, run_spec, command in runs:
      result = _run_child(command, root)
      rows[(name, label, run_spec.get("layout"))] = (run_spec, result)
      layers = {True: "scan", False: "loop"}.get(result.get("scan_layers"), "")
      if "error" in result:
        print(
          f"| {name} | {label} | | {run_spec['batch']} | {run_spec['length']} | failed: "
          f"{result['error']} | | | |",
          flush=True,
        )
        continue
      tokens = run_spec["batch"] * run_spec["length"] / result["step_seconds"]
      compile_time = (
        f"{result['compile_seconds']:.1f} ({result['trace_seconds']:.1f})"
        if "compile_seconds" in result
        else ""
      )
      print(
        f"| {name} | {label} | {layers} | {run_spec['batch']} | {run_spec['length']} | "
        f"{result['step_seconds']:.3f} | {tokens:,.0f} | {result['peak_rss_mib']:,.0f} | "
        f"{compile_time} |",
        flush=True,
      )
  per_token = lambda r: r[1]["step_seconds"] / (r[0]["batch"] * r[0]["length"])
  for (name, label, *_), ours in rows.items():
    peer = rows.get((name, "mambapy 1.2.0", None))
    if label.startswith("mamba_jax") and peer and "error" not in ours[1] and "error" not in peer[1]:
      layers = "scan" if ours[1]["scan_layers"] else "loop"
      print(
        f"config {name}, {label} ({layers} layers): per-token training time "
        f"{per_token(peer) / per_token(ours):.1f}x faster than mambapy; peak memory "
        f"{ours[1]['peak_rss_mib'] / peer[1]['peak_rss_mib']:.2f}x of mambapy's"
      )


if __name__ == "__main__":
  app.run(main)
