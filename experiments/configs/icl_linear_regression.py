r"""Study B: in-context learning of linear regression (DESIGN.md 6B); settings in icl_base.py.

Paper scale (GPU/TPU):  python -m experiments.main \
    --config=experiments/configs/icl_linear_regression.py --workdir=runs/icl_linear_regression
Small CPU run:          python -m experiments.main \
    --config=experiments/configs/icl_linear_regression.py:cpu --workdir=runs/icl_linear_regression_cpu
"""

from experiments.configs import icl_base


def get_config(variant="paper"):
  return icl_base.get_config("linear_regression", variant)
