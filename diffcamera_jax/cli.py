"""What the command-line programs share: user errors end in one line and exit code 2.

A user error is a problem with what was given — a flag, a config field, a path, a file — and is
reported as `PROGRAM: error: MESSAGE` on stderr with exit code 2 and no traceback. Anything else
is an internal error and keeps Python's traceback (exit 1), so the two are never confused.

Exit codes: 0 done; 1 internal error; 2 user error; 3 training stopped on a non-finite loss;
4 training stopped because background work failed or a wait ran past its limit (`watchdog`).
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from typing import NoReturn, Sequence

from absl import flags
from etils import epath

EXIT_BAD_INPUT = 2
EXIT_NON_FINITE = 3
EXIT_STALLED = 4

# The largest blur (CoC radius, pixels at the photo's size) and the most frames one refocusing run
# accepts: bounds on what a user number can make the programs do.
MAX_BLUR = 150.0
MAX_FRAMES = 256


class UserError(ValueError):
  """A problem with the user's input (flag, config field, path, file); the message names it."""


class ArgumentParser(argparse.ArgumentParser):
  """argparse that raises a bad argument as `UserError` (one line, exit 2 in the programs)
  instead of printing its usage and exiting."""

  def error(self, message: str) -> NoReturn:
    raise UserError(message)


def ensure_writable_dir(path: str | os.PathLike, what: str) -> epath.Path:
  """Creates the folder `path` (local or any `etils.epath` URL) and checks a file can be written
  in it; raises `UserError` naming `what` and the path otherwise."""
  path = epath.Path(path)
  if path.exists() and not path.is_dir():
    raise UserError(f"{what} {path} exists and is not a directory")
  try:
    path.mkdir(parents=True, exist_ok=True)
    probe = path / f".write_probe.{os.getpid()}"
    probe.write_text("")
    probe.unlink()
  except OSError as error:
    raise UserError(f"{what} {path} is not usable: {error.strerror or error}") from None
  return path


def add_model_weight_flags(parser) -> None:
  """`--base-weights` / `--vae-weights` (FLUX exports) and `--depth-model`, shared by the
  refocus and evaluate programs."""
  parser.add_argument("--base-weights", default=None,
                      help="FLUX exports: the base transformer (.safetensors file, index or "
                           "folder, local or gs://) instead of the path recorded at training")
  parser.add_argument("--vae-weights", default=None,
                      help="FLUX exports: the VAE (ae.safetensors or diffusers vae/) instead of "
                           "the recorded path")
  parser.add_argument("--depth-model", default=None,
                      help="Depth Anything V2 weights (.safetensors file or folder): estimated "
                           "depth where none is given")


def add_prepass_flags(parser, *, both: bool) -> None:
  """`--optics-prepass` and its thresholds (`inference.options.InferenceOptions`), shared by the
  refocus and evaluate programs. With `both`, the default scores each model with and without."""
  choices = ("on", "off", "both") if both else ("on", "off")
  parser.add_argument("--optics-prepass", choices=choices, default="both" if both else "on",
                      help="deblur the photo by the optics first where they explain its blur "
                           "(not learned; 'both': a row each)")
  parser.add_argument("--camera-search-threshold", type=float, default=None,
                      help="residual ratio below which a camera explains the photo (default "
                           "0.04)")
  parser.add_argument("--uniform-search-min-gain", type=float, default=None,
                      help="evidence a uniform disk blur needs without depth (default 0.65)")


def prepass_options(args) -> dict:
  """The `InferenceOptions` fields the pre-pass flags set (unset flags: the option's default)."""
  out = {}
  for name in ("camera_search_threshold", "uniform_search_min_gain"):
    value = getattr(args, name)
    if value is not None:
      if not value > 0:
        raise UserError(f"--{name.replace('_', '-')} {value}: must be > 0")
      out[name] = float(value)
  if args.optics_prepass in ("on", "off"):
    out["optics_prepass"] = args.optics_prepass == "on"
  return out


def one_line(message: str, limit: int = 4) -> str:
  """A multi-line error (e.g. a checkpoint's list of wrong tensors) as one line: its first
  `limit` lines joined by "; ", and how many more there were."""
  text = str(message).strip()
  if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":  # a KeyError's quoted message
    text = text[1:-1]
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  more = len(lines) - limit
  return "; ".join(lines[:limit]) + (f"; ... and {more} more" if more > 0 else "")


def fail(program: str, message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
  """Prints `program: error: message` (one line) to stderr and exits with `code`."""
  print(f"{program}: error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
  sys.exit(code)


def _config_override_message(error: Exception, argv: Sequence[str]) -> str:
  """Names the `--config.*` override an ml_collections lookup error came from."""
  text = " ".join(str(error).replace("\\n", " ").replace("\\'", "'").split()).strip("'\" ")
  missing = re.match(r"'?([A-Za-z_][A-Za-z0-9_]*)'?", text)
  if missing:
    field = missing.group(1)
    for arg in argv:
      name = arg.split("=", 1)[0].lstrip("-")
      if name.startswith("config.") and name.split(".")[-1] == field:
        hint = re.search(r'Did you mean "([^"]+)"', text)
        return (f"--{name}: config has no field {name.split('.', 1)[1]!r}"
                + (f" (did you mean {hint.group(1)!r}?)" if hint else ""))
  return f"bad config override: {text}"


def _last_line(error: Exception) -> str:
  """The line of a (possibly multi-line, traceback-carrying) message that says what failed."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  return lines[-1] if lines else type(error).__name__


def absl_flags_parser(program: str, config_flags: Sequence[str] = ("config",)):
  """A `flags_parser` for `absl.app.run` that reports bad flags and config overrides (unknown
  field, malformed value, missing or broken config file) as one line with exit code 2.

  `config_flags` are `ml_collections` config-file flags, loaded here (they load lazily) so a
  missing file or a failing `get_config` is reported as the flag's problem.
  """
  def parse(argv: list[str]) -> list[str]:
    def given(name: str) -> str:
      return next((a for a in reversed(argv) if a.split("=", 1)[0].lstrip("-") == name),
                  f"--{name}")

    try:
      rest = flags.FLAGS(argv)
    except flags.Error as error:
      fail(program, _last_line(error) if "Traceback" in str(error) else str(error))
    except (AttributeError, KeyError) as error:  # ml_collections: a field the config lacks
      fail(program, _config_override_message(error, argv))
    except OSError as error:  # a config file that cannot be read, met while applying overrides
      fail(program, f"{given(config_flags[0]) if config_flags else ''}: {_last_line(error)}")
    for name in config_flags:
      try:
        value = getattr(flags.FLAGS, name)
        if value is not None:
          value.keys()  # a config that failed to load is a proxy that raises here
      except (AttributeError, KeyError) as error:
        fail(program, _config_override_message(error, argv))
      except Exception as error:  # the user's config file: missing, or its get_config failed
        fail(program, f"{given(name)}: {_last_line(error)}")
    return rest
  return parse
