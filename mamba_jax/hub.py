"""Hugging Face Hub model ids ("state-spaces/mamba-130m-hf") as checkpoint directories.

`load_pretrained` takes a local directory first; a name that is none but looks like a Hub id is
downloaded through huggingface_hub when it is installed, into its usual cache (so a second load,
or one under HF_HUB_OFFLINE=1, reads the cache). Only the files a load reads are fetched:
config.json, tokenizer.json and the safetensors weights, or pytorch_model.bin when a repository
has no safetensors. Any failure is one line that says how to download by hand.
"""

import pathlib
import re

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_COMMON = ["config.json", "tokenizer.json"]
_SAFETENSORS = ["model.safetensors", "model.safetensors.index.json", "model-*.safetensors"]
_TORCH = ["pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*.bin"]


def is_hub_id(name):
  return bool(_HUB_ID.fullmatch(str(name))) and not pathlib.Path(name).exists()


def download(repo_id):
  """The local snapshot directory of the Hub model `repo_id` (ValueError if it cannot be had)."""
  by_hand = (
    f"download it by hand where there is network: `hf download {repo_id} --local-dir DIR` "
    "(huggingface_hub's command), then load DIR"
  )
  try:
    import huggingface_hub
  except ImportError:
    raise ValueError(
      f"load_pretrained: '{repo_id}' is no local file or directory, and loading it from the "
      f"Hugging Face Hub needs the huggingface_hub package (pip install huggingface_hub); or "
      f"{by_hand}"
    ) from None
  try:
    directory = pathlib.Path(
      huggingface_hub.snapshot_download(repo_id, allow_patterns=_COMMON + _SAFETENSORS)
    )
    if not any(directory.glob("*.safetensors")):
      directory = pathlib.Path(
        huggingface_hub.snapshot_download(repo_id, allow_patterns=_COMMON + _TORCH)
      )
  except Exception as error:  # offline, no such repository, gated, interrupted: all the same here
    reason = (str(error).splitlines() or [""])[0].split(". ")[0][:200]
    raise ValueError(
      f"load_pretrained: '{repo_id}' is no local file or directory, and could not download "
      f"'{repo_id}' from the Hugging Face Hub ({type(error).__name__}: {reason}); {by_hand}"
    ) from None
  return directory
