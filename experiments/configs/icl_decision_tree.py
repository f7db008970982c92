r"""Study B: in-context learning of decision tree (DESIGN.md 6B); settings in icl_base.py.

Paper scale (GPU/TPU):  python -m experiments.main \
    --config=experiments/configs/icl_decision_tree.py --workdir=runs/icl_decision_tree
Small CPU run:          python -m experiments.main \
    --config=experiments/configs/icl_decision_tree.py:cpu --workdir=runs/icl_decision_tree_cpu
"""

from experiments.configs import icl_base


def get_config(variant="paper"):
  return icl_base.get_config("decision_tree", variant)
