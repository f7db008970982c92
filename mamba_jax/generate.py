"""`python -m mamba_jax.generate`: continue a prompt with a checkpoint and report the speed.

  python -m mamba_jax.generate --checkpoint DIR --prompt "Mamba is" --max_new_tokens 50
  python -m mamba_jax.generate --checkpoint DIR --prompt_ids 1,2,3 --max_new_tokens 50

DIR is anything `mamba_jax.checkpoints.load_pretrained` reads. A text prompt goes through DIR's
tokenizer.json with the `tokenizers` package (the interop extra); without one, give token ids.
The speed is measured on a second, compiled run: new tokens per second, prompt included.

The package exports the *function* `mamba_jax.generate` (from mamba_jax.decode). Importing this
module as `mamba_jax.generate` makes Python rebind that package attribute to the module, so the
module is made callable and forwards to the function: `mamba_jax.generate(model, prompt, n)`
works whether or not this module was ever imported. `python -m` does not rebind it.
"""

import argparse
import pathlib
import sys
import time
import types

import jax
import jax.numpy as jnp
import numpy as np

from mamba_jax import checkpoints, decode, hub

TOKENIZER_NAME = "tokenizer.json"
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def parse_args(argv=None):
  parser = argparse.ArgumentParser(
    prog="python -m mamba_jax.generate", description=(__doc__ or "").split("\n\n")[0]
  )
  parser.add_argument(
    "--checkpoint",
    required=True,
    help="directory with config.json and weights (mamba_ssm or transformers)",
  )
  prompt = parser.add_mutually_exclusive_group(required=True)
  prompt.add_argument("--prompt", help="text, encoded with the checkpoint's tokenizer.json")
  prompt.add_argument("--prompt_ids", help="comma-separated token ids, e.g. 1,2,3")
  parser.add_argument("--max_new_tokens", type=int, default=32)
  parser.add_argument("--temperature", type=float, default=0.0, help="0 is greedy")
  parser.add_argument("--top_k", type=int, default=None)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument(
    "--eos_token_id",
    type=int,
    default=None,
    help="stop at this token (default: config.json's eos_token_id, if any; -1: never stop)",
  )
  parser.add_argument(
    "--dtype", choices=sorted(_DTYPES), default="float32", help="parameter and compute dtype"
  )
  args = parser.parse_args(argv)
  if args.max_new_tokens < 1:
    parser.error(f"--max_new_tokens {args.max_new_tokens}: expected at least 1")
  if not args.temperature >= 0:
    parser.error(f"--temperature {args.temperature}: expected >= 0 (0 is greedy)")
  if args.top_k is not None and args.top_k < 1:
    parser.error(f"--top_k {args.top_k}: expected at least 1")
  if args.prompt_ids is not None:
    try:
      args.prompt_ids = [int(token) for token in args.prompt_ids.split(",") if token.strip()]
    except ValueError:
      parser.error(f"--prompt_ids {args.prompt_ids!r}: expected comma-separated integers")
    if not args.prompt_ids:
      parser.error("--prompt_ids: expected at least one token id")
  return args


def _load_tokenizer(checkpoint, required):
  """The checkpoint's tokenizers.Tokenizer, or None when it has none and none is required.
  checkpoint: its directory, or a file in it."""
  checkpoint = pathlib.Path(checkpoint)
  path = (checkpoint.parent if checkpoint.is_file() else checkpoint) / TOKENIZER_NAME
  if not path.is_file():
    if required:
      raise SystemExit(f"error: --prompt needs {path}; pass token ids with --prompt_ids instead")
    return None
  try:
    import tokenizers
  except ImportError:
    if required:
      raise SystemExit(
        "error: --prompt needs the tokenizers package: "
        f"{checkpoints.INTEROP_EXTRA}; or pass --prompt_ids"
      ) from None
    return None
  return tokenizers.Tokenizer.from_file(str(path))


def _prompt_ids(args, vocab_size):
  """(prompt ids, tokenizer or None), checked against the vocabulary with --top_k."""
  if args.top_k is not None and args.top_k > vocab_size:
    raise ValueError(f"--top_k {args.top_k}: expected at most the vocabulary size, {vocab_size}")
  tokenizer = _load_tokenizer(args.checkpoint, required=args.prompt is not None)
  if args.prompt is not None:
    assert tokenizer is not None  # required=True: _load_tokenizer exits otherwise
    ids = tokenizer.encode(args.prompt).ids
  else:
    ids = args.prompt_ids
  bad = [token for token in ids if not 0 <= token < vocab_size]
  if not ids or bad:
    raise SystemExit(
      f"error: prompt ids {bad or ids}: expected a non-empty prompt of ids in 0..{vocab_size - 1}"
    )
  return ids, tokenizer


def _eos_token_id(args, vocab_rows):
  """--eos_token_id, else the checkpoint's; None for -1 or when there is none."""
  eos = args.eos_token_id
  if eos is None:
    return checkpoints.checkpoint_eos_token_id(args.checkpoint)
  if eos == -1:
    return None
  if not 0 <= eos < vocab_rows:
    raise ValueError(f"--eos_token_id {eos}: expected -1 or a token id in 0..{vocab_rows - 1}")
  return eos


def main(argv=None):
  args = parse_args(argv)
  dtype = _DTYPES[args.dtype]
  try:  # everything that can be checked is, before the weights are read
    if hub.is_hub_id(args.checkpoint):
      args.checkpoint = str(hub.download(args.checkpoint))
    config = checkpoints.load_config(args.checkpoint, dtype=dtype, param_dtype=dtype)
    ids, tokenizer = _prompt_ids(args, config.vocab_size)
    eos = _eos_token_id(args, config.padded_vocab_size)
    config, model = checkpoints.load_pretrained(args.checkpoint, dtype=dtype, param_dtype=dtype)
  except (ValueError, ImportError, OSError) as error:
    raise SystemExit(f"error: {error}") from None
  prompt = jnp.asarray([ids], jnp.int32)
  rng = jax.random.key(args.seed)

  def run():
    start = time.perf_counter()
    tokens = decode.generate(
      model,
      prompt,
      args.max_new_tokens,
      temperature=args.temperature,
      top_k=args.top_k,
      rng=rng,
      eos_token_id=eos,
    )
    tokens = np.asarray(jax.block_until_ready(tokens))[0]
    return tokens, time.perf_counter() - start

  _, first_seconds = run()  # compiles
  new_tokens, seconds = run()
  computed = len(new_tokens)  # the token loop runs max_new_tokens steps whatever EOS does
  if eos is not None and eos in new_tokens:  # the rest is padding
    new_tokens = new_tokens[: new_tokens.tolist().index(eos) + 1]
    print(f"stopped at eos_token_id {eos} after {len(new_tokens)} new tokens")
  print(f"prompt ids: {ids}")
  print(f"new ids: {new_tokens.tolist()}")
  if tokenizer is not None:
    print(f"text: {tokenizer.decode(list(ids) + new_tokens.tolist())}")
  print(
    f"{computed} new tokens in {seconds:.3f} s: {computed / seconds:.1f} "
    f"tokens/s (first run, compiling: {first_seconds:.2f} s; {jax.devices()[0].platform})"
  )
  return 0


class _CallableModule(types.ModuleType):
  """This module, answering calls as `mamba_jax.decode.generate` (see the module docstring)."""

  def __call__(self, *args, **kwargs):
    return decode.generate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
  sys.exit(main())
