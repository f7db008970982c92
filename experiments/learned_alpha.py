"""What the length-adaptive exponent alpha learned, for studies A and B.

Every length-adaptive Mamba block holds alpha, shape (d_inner,), in its `discretization`
(mamba_jax.discretization.Discretization; docs/design.md section 4.2). It starts at 0, so an
alpha that stays at 0 means the model is the fixed one. These helpers find every alpha in a
model's parameters, per layer under either layout (a stacked MambaStack holds one (n_layers,
d_inner) array), and summarise it: as training metrics (mean, min and max over channels and
layers) and as `eval/discretization.csv` (one row per model and layer).
"""

import csv
import os

import jax
import jax.numpy as jnp

from mamba_jax.optim import is_stacked

CSV_FILE = "discretization.csv"
CSV_FIELDS = ("model", "layer", "alpha_mean", "alpha_min", "alpha_max")


def _key_names(path):
  names = [getattr(key, "key", getattr(key, "name", None)) for key in path]
  return [name for name in names if name != "value"]  # an nnx.Variable's own leaf


def _layer_index(names):
  """The per-layer layout's index: the key after `layers` (an int or a digit string)."""
  for before, name in zip(names, names[1:]):
    if before == "layers" and str(name).isdigit():
      return int(name)
  return None


def alpha_by_layer(params):
  """[(layer, alpha (d_inner,))] for every alpha of a model's parameters (nnx.Param state or a
  pure dict), ordered by layer; [] for a model without a length-adaptive step."""
  found = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    names = _key_names(path)
    if names[-2:] != ["discretization", "alpha"]:
      continue
    if is_stacked(path):
      found += [(layer, leaf[layer]) for layer in range(leaf.shape[0])]
    else:
      layer = _layer_index(names)
      found.append((len(found) if layer is None else layer, leaf))
  return sorted(found, key=lambda item: item[0])


def alpha_metrics(name, params):
  """{alpha_mean_<name>, alpha_min_<name>, alpha_max_<name>} over every channel and layer of
  model `name` (jit-able); {} when it has no alpha."""
  alphas = [alpha for _, alpha in alpha_by_layer(params)]
  if not alphas:
    return {}
  every = jnp.concatenate([jnp.ravel(alpha).astype(jnp.float32) for alpha in alphas])
  return {
    f"alpha_mean_{name}": jnp.mean(every),
    f"alpha_min_{name}": jnp.min(every),
    f"alpha_max_{name}": jnp.max(every),
  }


def alpha_rows(name, params):
  """CSV rows {model, layer, alpha_mean, alpha_min, alpha_max}, one per layer with alpha."""
  return [
    {
      "model": name,
      "layer": layer,
      "alpha_mean": float(jnp.mean(alpha)),
      "alpha_min": float(jnp.min(alpha)),
      "alpha_max": float(jnp.max(alpha)),
    }
    for layer, alpha in alpha_by_layer(params)
  ]


def write_csv(out_dir, params_by_model):
  """Writes out_dir/discretization.csv for {model name: params} (header only when no model has
  alpha); returns the rows. Only the first process writes."""
  rows = [row for name, params in params_by_model.items() for row in alpha_rows(name, params)]
  if jax.process_index() == 0:
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, CSV_FILE), "w", newline="") as f:
      writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
      writer.writeheader()
      writer.writerows(rows)
  return rows
