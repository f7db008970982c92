"""The training system end to end, at a tiny size: the command line, data parallelism on 8 forced
CPU devices and over two processes, exact resume after a kill or SIGTERM, the non-finite stop,
fail-fast data, and a smoke run of every config.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from experiments import metrics

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OMNIGLOT_DIR = os.environ.get(
  "OMNIGLOT_DIR", os.path.join(ROOT, "..", "shared", "datasets", "omniglot")
)

# A study-A run small enough to compile and train in seconds.
TINY = [
  '--config.models=("mamba",)',
  "--config.batch_size=8",
  "--config.num_train_steps=6",
  "--config.log_every_steps=1",
  "--config.checkpoint_every_steps=2",
  "--config.data.image_size=16",
  "--config.sequence.train_length_min=2",
  "--config.sequence.train_length_max=4",
  "--config.sequence.num_queries=4",
  "--config.model.mamba.n_layers=1",
  "--config.model.mamba.d_state=4",
  "--config.model.transformer.n_layers=1",
  "--config.eval.lengths=(1,2)",
  "--config.eval.num_examples=8",
  "--config.eval.batch_size=8",
  "--config.eval.grid_lengths=(2,)",
  "--config.eval.grid_images=1",
]
STUDY_A = os.path.join(ROOT, "experiments", "studies", "length_generalisation", "configs")
DIGITS = os.path.join(STUDY_A, "digits.py")


def _env(devices=1, **extra):
  env = dict(
    os.environ,
    XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
    JAX_PLATFORMS="cpu",
    PYTHONPATH=ROOT,
  )
  env.update(extra)
  return env


def _command(workdir, *overrides, config=DIGITS):
  """TINY's flags, less any that `overrides` set again (a repeated tuple flag would append)."""
  keys = {o.split("=", 1)[0] for o in overrides}
  tiny = [t for t in TINY if t.split("=", 1)[0] not in keys]
  return [
    sys.executable,
    "-m",
    "experiments.main",
    f"--config={config}",
    f"--workdir={workdir}",
    *tiny,
    *overrides,
  ]


def _train(workdir, *overrides, devices=1, data_dir, config=DIGITS, check=True):
  result = subprocess.run(
    _command(workdir, f"--config.data.data_dir={data_dir}", *overrides, config=config),
    env=_env(devices),
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=600,
  )
  if check and result.returncode:
    raise AssertionError(f"training failed:\n{result.stderr[-3000:]}")
  return result


def run_main(config, workdir, overrides, devices=1):
  """`python -m experiments.main` with exactly these overrides on `devices` forced CPU devices."""
  subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.main",
      f"--config={config}",
      f"--workdir={workdir}",
      *overrides,
    ],
    env=_env(devices),
    cwd=ROOT,
    check=True,
    capture_output=True,
    timeout=600,
  )


def _losses(workdir):
  return [row["loss"] for row in metrics.read_jsonl(os.path.join(workdir, metrics.METRICS_FILE))]


def _final_params(workdir):
  """The parameters of the newest checkpoint, as {path: array}, via orbax's metadata-free read."""
  code = (
    "import sys, json, numpy as np, orbax.checkpoint as ocp, jax\n"
    "from experiments import checkpointing\n"
    "c = checkpointing.Checkpointer(sys.argv[1] + '/checkpoints', 1)\n"
    "step = c.latest_step()\n"
    "tree = ocp.StandardCheckpointer().restore(sys.argv[1] + f'/checkpoints/{step}/default')\n"
    "flat = jax.tree_util.tree_flatten_with_path(tree['params'])[0]\n"
    "arrays = {jax.tree_util.keystr(k): np.asarray(v) for k, v in flat}\n"
    "np.savez(sys.argv[2], step=step, **arrays)\n"
  )
  out = os.path.join(workdir, "final_params.npz")
  subprocess.run(
    [sys.executable, "-c", code, workdir, out],
    env=_env(),
    cwd=ROOT,
    check=True,
    capture_output=True,
    timeout=300,
  )
  with np.load(out) as f:
    return dict(f)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, data_dir):
  """One uninterrupted single-device run that several tests compare against."""
  workdir = str(tmp_path_factory.mktemp("reference"))
  _train(workdir, data_dir=data_dir)
  return workdir


@pytest.mark.smoke
def test_run_writes_the_documented_outputs(reference_run):
  for name in (
    "config.json",
    "metrics.jsonl",
    "tensorboard",
    "checkpoints",
    "eval/length_sweep.csv",
    "eval/length_sweep.png",
    "eval/reconstructions_mamba.png",
    "eval/discretization.csv",
    "eval/stages.csv",
    "eval/stages.png",
    "eval/stages_mamba.png",
  ):
    assert os.path.exists(os.path.join(reference_run, name)), name
  rows = metrics.read_jsonl(os.path.join(reference_run, "metrics.jsonl"))
  assert [r["step"] for r in rows] == list(range(1, 7))
  assert all(np.isfinite(r["loss"]) for r in rows)
  with open(os.path.join(reference_run, "config.json")) as f:
    assert json.load(f)["batch_size"] == 8
  with open(os.path.join(reference_run, "eval", "length_sweep.csv")) as f:
    assert f.readline().strip() == "model,L,mse,n_images"
    lines = f.readlines()
  assert [line.split(",")[:2] for line in lines] == [
    ["mamba", "1"],
    ["mamba", "2"],
    ["mean_image", "1"],
    ["mean_image", "2"],
  ]
  with open(os.path.join(reference_run, "eval", "stages.csv")) as f:
    assert f.readline().strip() == "model,train_min,train_max,seed,L,k,mse"
    # L = 4 and 16 (1x and 4x the training maximum), k = 1, 2, 4, ... L; mamba and the mean image
    assert len(f.readlines()) == 2 * (3 + 5)


def test_eight_devices_follow_the_single_device_trajectory(reference_run, data_dir, tmp_path):
  _train(str(tmp_path), devices=8, data_dir=data_dir)
  np.testing.assert_allclose(_losses(str(tmp_path)), _losses(reference_run), rtol=1e-5, atol=1e-6)


def test_global_batch_not_divisible_by_devices_fails_at_start(data_dir, tmp_path):
  result = _train(
    str(tmp_path), "--config.batch_size=12", devices=8, data_dir=data_dir, check=False
  )
  assert result.returncode != 0
  assert "config.batch_size = 12 is not divisible by the number of devices, 8" in result.stderr


def test_two_processes_on_localhost_agree_with_one(reference_run, data_dir, tmp_path):
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  workdir = str(tmp_path)
  procs = [
    subprocess.Popen(
      _command(
        workdir,
        f"--config.data.data_dir={data_dir}",
        f"--coordinator_address=127.0.0.1:{port}",
        "--num_processes=2",
        f"--process_id={i}",
      ),
      env=_env(devices=1),
      cwd=ROOT,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(2)
  ]
  outputs = [p.communicate(timeout=600) for p in procs]
  for p, (_, err) in zip(procs, outputs):
    assert p.returncode == 0, err[-3000:]
  np.testing.assert_allclose(_losses(workdir), _losses(reference_run), rtol=1e-5, atol=1e-6)


def _wait_for_checkpoint(workdir, step, proc, timeout=300):
  path = os.path.join(workdir, "checkpoints", str(step), "commit_success.txt")
  deadline = time.time() + timeout
  while not os.path.exists(path):
    assert proc.poll() is None, "the run ended before it could be interrupted"
    assert time.time() < deadline, "no checkpoint appeared"
    time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_interrupted_run_resumes_to_the_same_parameters(reference_run, data_dir, tmp_path, sig):
  """Stopped once the step-2 checkpoint exists (killed outright, or SIGTERM as on preemption),
  then restarted with the same command: the final parameters equal the uninterrupted run's."""
  workdir = str(tmp_path)
  command = _command(
    workdir, f"--config.data.data_dir={data_dir}", "--config.num_train_steps=200"
  )  # long enough to interrupt mid-way
  proc = subprocess.Popen(
    command, env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
  )
  _wait_for_checkpoint(workdir, 2, proc)
  proc.send_signal(sig)
  _, err = proc.communicate(timeout=300)
  if sig == signal.SIGTERM:
    assert proc.returncode == 0, err[-2000:]  # clean exit after saving
  stopped_at = _final_params(workdir)["step"]
  assert 2 <= stopped_at < 200
  _train(workdir, data_dir=data_dir)  # the same run, restarted (to 6 steps like the reference)
  resumed, reference = _final_params(workdir), _final_params(reference_run)
  assert int(resumed.pop("step")) == int(reference.pop("step")) == 6
  assert resumed.keys() == reference.keys()
  for key in reference:
    np.testing.assert_array_equal(resumed[key], reference[key], err_msg=key)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(data_dir, tmp_path):
  """Warm-up from lr 0 to 1e30 over two steps: steps 1 and 2 are computed from unchanged
  parameters and saved; the update after step 2 diverges, so step 3's loss is not finite."""
  workdir = str(tmp_path)
  result = _train(
    workdir,
    "--config.optimizer.learning_rate=1e30",
    "--config.optimizer.grad_clip_norm=0",
    "--config.optimizer.schedule=warmup_constant",
    "--config.optimizer.warmup_steps=2",
    "--config.checkpoint_every_steps=1",
    "--config.num_train_steps=50",
    data_dir=data_dir,
    check=False,
  )
  assert result.returncode != 0
  assert "NonFiniteLossError" in result.stderr
  assert "at step 3" in result.stderr and "last good checkpoint (step 2)" in result.stderr
  saved = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())
  assert saved == [1, 2]  # nothing saved at or after the bad step


def test_missing_tfds_data_set_fails_fast_with_instructions(tmp_path):
  result = _train(
    str(tmp_path), "--config.data.name=mnist", data_dir=str(tmp_path / "empty"), check=False
  )
  assert result.returncode != 0
  assert "tfds build mnist --file_format=array_record" in result.stderr


@pytest.mark.skipif(
  not os.path.isdir(OMNIGLOT_DIR),
  reason=f"Omniglot archives not found at {OMNIGLOT_DIR} (set OMNIGLOT_DIR)",
)
@pytest.mark.parametrize("name", ["omniglot.py", "omniglot_cpu.py"])
def test_omniglot_config_smoke_run(data_dir, tmp_path, name):
  config = os.path.join(STUDY_A, name)
  _train(
    str(tmp_path),
    f"--config.data.omniglot_dir={OMNIGLOT_DIR}",
    "--config.data.image_size=32",
    "--config.num_train_steps=2",
    "--config.eval.lengths=(2,)",
    config=config,
    data_dir=data_dir,
  )
  assert os.path.exists(os.path.join(tmp_path, "eval", "length_sweep.csv"))


def test_every_model_variant_trains_and_evaluate_cli_rewrites_eval(data_dir, tmp_path):
  workdir = str(tmp_path)
  _train(
    workdir,
    "--config.models=('mamba','mamba_length_adaptive','mamba_length_token','transformer')",
    "--config.num_train_steps=2",
    data_dir=data_dir,
  )
  os.remove(os.path.join(workdir, "eval", "length_sweep.csv"))
  subprocess.run(
    [sys.executable, "-m", "experiments.evaluate", f"--workdir={workdir}"],
    env=_env(),
    cwd=ROOT,
    check=True,
    capture_output=True,
    timeout=600,
  )
  with open(os.path.join(workdir, "eval", "length_sweep.csv")) as f:
    models = {line.split(",")[0] for line in f.readlines()[1:]}
  assert models == {
    "mamba",
    "mamba_length_adaptive",
    "mamba_length_token",
    "transformer",
    "mean_image",
  }
  with open(os.path.join(workdir, "eval", "discretization.csv")) as f:
    assert f.readline().strip() == "model,layer,alpha_mean,alpha_min,alpha_max"
    assert [line.split(",")[:2] for line in f] == [["mamba_length_adaptive", "0"]]
  logged = metrics.read_jsonl(os.path.join(workdir, metrics.METRICS_FILE))[-1]
  assert {"alpha_mean_mamba_length_adaptive", "alpha_max_mamba_length_adaptive"} <= set(logged)
