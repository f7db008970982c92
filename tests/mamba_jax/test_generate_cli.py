"""`python -m mamba_jax.generate` on a tiny checkpoint with a tiny tokenizer built here, and the
function `mamba_jax.generate` surviving an import of the module of the same name.

Needs safetensors (the checkpoint) and, for text prompts, tokenizers; never torch.
"""

import importlib
import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mamba_jax
from mamba_jax import decode
from mamba_jax.checkpoints import save_pretrained

pytest.importorskip("safetensors")
from tests.mamba_jax.test_checkpoints import random_model, tiny  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORDS = ["[UNK]", "the", "cat", "sat", "on", "mat"]


@pytest.fixture(scope="module")
def model():
  return random_model(tiny(vocab_size=50), seed=3)


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory):
  directory = tmp_path_factory.mktemp("checkpoint")
  save_pretrained(model, directory)
  return directory


@pytest.fixture(scope="module")
def checkpoint_with_tokenizer(model, tmp_path_factory):
  """The tiny model beside a word-level tokenizer covering its 50 ids."""
  tokenizers = pytest.importorskip("tokenizers")
  directory = tmp_path_factory.mktemp("with_tokenizer")
  save_pretrained(model, directory)
  vocab = {word: index for index, word in enumerate(WORDS + [f"w{i}" for i in range(6, 50)])}
  tokenizer = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
  tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
  tokenizer.decoder = tokenizers.decoders.WordPiece()  # joins words with spaces
  tokenizer.save(str(directory / "tokenizer.json"))
  return directory


def greedy(model, ids, n):
  return np.asarray(decode.generate(model, jnp.asarray([ids]), n, temperature=0.0))[0].tolist()


def printed_ids(output, label):
  return [int(x) for x in re.search(rf"{label} ids: \[([\d, ]*)\]", output).group(1).split(",")]


def test_command_with_a_text_prompt(model, checkpoint_with_tokenizer):
  """The real command line, in a fresh interpreter."""
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "mamba_jax.generate",
      "--checkpoint",
      str(checkpoint_with_tokenizer),
      "--prompt",
      "the cat sat on the",
      "--max_new_tokens",
      "6",
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=600,
    env={**os.environ, "JAX_PLATFORMS": "cpu"},
  )
  assert result.returncode == 0, result.stderr
  assert printed_ids(result.stdout, "prompt") == [1, 2, 3, 4, 1]
  new = printed_ids(result.stdout, "new")
  assert new == greedy(model, [1, 2, 3, 4, 1], 6)
  vocab = WORDS + [f"w{i}" for i in range(6, 50)]
  assert "text: the cat sat on the " + " ".join(vocab[i] for i in new) in result.stdout
  assert re.search(r"6 new tokens in [\d.]+ s: [\d.]+ tokens/s", result.stdout)


def test_token_ids_without_a_tokenizer(model, checkpoint, capsys):
  from mamba_jax.generate import main

  assert (
    main(["--checkpoint", str(checkpoint), "--prompt_ids", "4,5,6", "--max_new_tokens", "4"]) == 0
  )
  output = capsys.readouterr().out
  assert printed_ids(output, "new") == greedy(model, [4, 5, 6], 4)
  assert "tokens/s" in output and "text:" not in output


def test_sampling_options_are_passed_on(model, checkpoint, capsys):
  from mamba_jax.generate import main

  main(
    [
      "--checkpoint",
      str(checkpoint),
      "--prompt_ids",
      "7,8",
      "--max_new_tokens",
      "5",
      "--temperature",
      "0.8",
      "--top_k",
      "3",
      "--seed",
      "11",
    ]
  )
  expected = decode.generate(
    model, jnp.asarray([[7, 8]]), 5, temperature=0.8, top_k=3, rng=jax.random.key(11)
  )
  assert printed_ids(capsys.readouterr().out, "new") == np.asarray(expected)[0].tolist()


@pytest.mark.parametrize(
  "argv, message",
  [
    (["--prompt", "the cat"], r"tokenizer\.json.*--prompt_ids"),
    (["--prompt_ids", "1,99"], r"ids \[99\].*0\.\.49"),
  ],
)
def test_bad_prompts_say_what_to_do(checkpoint, argv, message):
  from mamba_jax.generate import main

  with pytest.raises(SystemExit, match=message):
    main(["--checkpoint", str(checkpoint), *argv])


def test_argument_errors(checkpoint):
  from mamba_jax.generate import parse_args

  for argv in (
    ["--prompt_ids", "1,x"],
    ["--prompt_ids", "1", "--max_new_tokens", "0"],
    ["--prompt", "a", "--prompt_ids", "1"],
    [],
  ):
    with pytest.raises(SystemExit):
      parse_args(["--checkpoint", str(checkpoint), *argv])


@pytest.fixture
def damaged_checkpoint(checkpoint, tmp_path):
  """The tiny checkpoint's config.json beside weights that cannot be read."""
  (tmp_path / "config.json").write_text((checkpoint / "config.json").read_text())
  (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
  return tmp_path


@pytest.mark.parametrize(
  "argv, message",
  [
    (["--temperature", "-0.5"], None),
    (["--top_k", "0"], None),
    (["--top_k", "51"], r"^error: --top_k 51: expected at most the vocabulary size, 50$"),
  ],
)
def test_sampling_arguments_are_refused_before_the_weights_are_read(
  damaged_checkpoint, argv, message, capsys
):
  from mamba_jax.generate import main

  with pytest.raises(SystemExit) as error:
    main(["--checkpoint", str(damaged_checkpoint), "--prompt_ids", "1", *argv])
  if message is None:  # argparse's usage error
    assert error.value.code == 2 and argv[0] in capsys.readouterr().err
  else:
    assert re.match(message, str(error.value.code))


def test_a_load_error_is_one_error_line(damaged_checkpoint):
  from mamba_jax.generate import main

  with pytest.raises(SystemExit, match=r"^error: load_pretrained: .* not a readable safetensors"):
    main(["--checkpoint", str(damaged_checkpoint), "--prompt_ids", "1"])


def test_a_hub_id_that_cannot_be_had_is_one_error_line(tmp_path, monkeypatch):
  from mamba_jax.generate import main

  monkeypatch.setitem(sys.modules, "huggingface_hub", None)
  monkeypatch.chdir(tmp_path)
  with pytest.raises(SystemExit, match=r"^error: .*hf download state-spaces/mamba-130m-hf"):
    main(["--checkpoint", "state-spaces/mamba-130m-hf", "--prompt_ids", "1"])


def test_a_weights_file_finds_the_tokenizer_beside_it(model, checkpoint_with_tokenizer, capsys):
  from mamba_jax.generate import main

  weights = checkpoint_with_tokenizer / "model.safetensors"
  main(["--checkpoint", str(weights), "--prompt", "the cat", "--max_new_tokens", "2"])
  output = capsys.readouterr().out
  assert printed_ids(output, "prompt") == [1, 2]
  assert printed_ids(output, "new") == greedy(model, [1, 2], 2)


def test_the_function_survives_an_import_of_the_module(model):
  module = importlib.import_module("mamba_jax.generate")
  assert mamba_jax.generate is module  # what Python does to the package attribute on import
  prompt = jnp.asarray([[1, 2, 3]])
  expected = decode.generate(model, prompt, 4, temperature=0.0)
  np.testing.assert_array_equal(mamba_jax.generate(model, prompt, 4, temperature=0.0), expected)
  from mamba_jax import generate

  np.testing.assert_array_equal(generate(model, prompt, 4, temperature=0.0), expected)
  assert "generate" in mamba_jax.__all__


def expected_with_eos(row, eos):
  """`row` up to its first eos, then eos as padding."""
  row = list(row)
  end = row.index(eos) + 1 if eos in row else len(row)
  return row[:end] + [eos] * (len(row) - end)


def test_generate_stops_each_sequence_at_eos(model):
  prompt = jnp.asarray([[1, 2, 3], [4, 5, 6]])
  plain = np.asarray(decode.generate(model, prompt, 8, rng=jax.random.key(1))).tolist()
  eos = plain[0][2]
  stopped = np.asarray(decode.generate(model, prompt, 8, rng=jax.random.key(1), eos_token_id=eos))
  assert stopped.tolist() == [expected_with_eos(row, eos) for row in plain]
  assert stopped.tolist() != plain  # the padding replaced some tokens
  with pytest.raises(ValueError, match="eos_token_id"):
    decode.generate(model, prompt, 8, eos_token_id=56)


def test_the_command_stops_at_the_checkpoints_eos(model, checkpoint, tmp_path, capsys):
  from mamba_jax.generate import main

  plain = greedy(model, [4, 5, 6], 4)  # the shapes of test_token_ids_without_a_tokenizer
  eos = plain[1]
  for name in ("config.json", "model.safetensors"):
    (tmp_path / name).write_bytes((checkpoint / name).read_bytes())
  raw = json.loads((tmp_path / "config.json").read_text())
  (tmp_path / "config.json").write_text(json.dumps({**raw, "eos_token_id": eos}))
  argv = ["--checkpoint", str(tmp_path), "--prompt_ids", "4,5,6", "--max_new_tokens", "4"]
  main(argv)
  output = capsys.readouterr().out
  assert printed_ids(output, "new") == plain[: plain.index(eos) + 1]
  assert f"stopped at eos_token_id {eos}" in output and "4 new tokens in" in output
  main([*argv, "--eos_token_id", "-1"])
  assert printed_ids(capsys.readouterr().out, "new") == plain
