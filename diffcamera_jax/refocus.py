"""Refocus a photo from the command line.

    python -m diffcamera_jax.refocus --model DIR --image in.jpg --focus 0.3,0.7 --blur 12 \
        [--depth d.png] [--aperture 6[,rotation]] [--steps 28] [--seed 0] --out out.png

`--focus x,y` is relative to the image (x right, y down, in [0, 1]); `--blur K` is the CoC radius in
pixels at the input's resolution (0 = all in focus, i.e. deblur). Both may be repeated: every
focus x blur combination becomes one frame of a single batched sampling run, written as
`OUT_STEM_000.png`, ... plus `OUT_STEM_sheet.png` (a contact sheet) and, with `--gif`,
`OUT_STEM.gif`. Without `--depth` the model runs its no-depth path (trained under depth dropout),
or, with `--depth-model WEIGHTS` (Depth Anything V2, `diffcamera_jax.depth`), on a disparity map
estimated from the photo; `--save-depth d.png` writes that estimate as a 16-bit PNG (1 = nearest)
to inspect, edit and pass back as `--depth`. Before the model, the optics deblur the photo where
they explain its blur (the camera that explains it, with depth; one disk, without):
`--optics-prepass off` skips this non-learned step, `--camera-search-threshold` and
`--uniform-search-min-gain` set how sure it must be.
A FLUX export (LoRA + condition params) rebuilds its base from the paths its config records;
`--base-weights` / `--vae-weights` point elsewhere and `--fold-lora` folds the adapters in.
`--genfocus DIR` instead of `--model` runs the released Genfocus LoRAs on FLUX.1-dev
(`diffcamera_jax.inference.genfocus_refocuser`: deblur, then bokeh from a disparity map, which it
needs for any K > 0; disk aperture only; no optics pre-pass; `--max-side` default 1024).
`--aperture N[,DEG]`: 0 = disk, N >= 3 blades rotated by DEG degrees. The model works at the
resolution it was trained at (`--max-side` overrides it) and the frames are composed back at the
photo's size (`diffcamera_jax.inference.compose`); the working resolution, batch and memory plan are
printed on stderr. `--max-memory 8G` bounds what the programs may plan for; `--max-pixels` the
photo and depth sizes read (checked from their headers before decoding). No output may name an
input (the photo, a map, a weights file or the model folder) or another output, and every file is
written under a temporary name and renamed. Bad input prints one line on stderr and exits with
status 2.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Sequence


from diffcamera_jax import user_files
from diffcamera_jax.cli import (EXIT_BAD_INPUT, MAX_BLUR, MAX_FRAMES, ArgumentParser,
                                add_model_weight_flags, add_prepass_flags, ensure_writable_dir,
                                one_line, prepass_options)




def _pair(text: str) -> tuple[float, float]:
  parts = text.split(",")
  try:
    x, y = (float(p) for p in parts)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected x,y (two numbers), got {text!r}") from None
  return x, y


def _aperture(text: str) -> tuple[int, float]:
  parts = text.split(",")
  try:
    blades = int(parts[0])
    rotation = float(parts[1]) if len(parts) == 2 else 0.0
  except (ValueError, IndexError):
    raise argparse.ArgumentTypeError(f"expected BLADES[,DEGREES], got {text!r}") from None
  if len(parts) > 2 or blades < 0 or blades in (1, 2):
    raise argparse.ArgumentTypeError(f"blades must be 0 (disk) or >= 3, got {text!r}")
  return blades, math.radians(rotation)


def _size(text: str) -> int:
  from diffcamera_jax.inference.memory import parse_bytes
  try:
    return parse_bytes(text)
  except ValueError as e:
    raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
  p = ArgumentParser(prog="python -m diffcamera_jax.refocus", description=__doc__.split("\n\n")[0])
  which = p.add_mutually_exclusive_group(required=True)
  which.add_argument("--model", help="exported model directory")
  which.add_argument("--genfocus", help="Genfocus directory (LoRAs, prompt embeddings, FLUX.1-dev; "
                                        "docs/genfocus.md)")
  p.add_argument("--image", required=True, help="input photo (any size; EXIF orientation honoured)")
  p.add_argument("--focus", type=_pair, action="append", required=True,
                 help="focus point x,y in [0, 1] (repeatable)")
  p.add_argument("--blur", type=float, action="append", required=True,
                 help="blur level K: CoC radius in pixels at the input size (repeatable)")
  p.add_argument("--depth", help="depth or disparity map of the same size (16-bit PNG, PNG, .npy)")
  p.add_argument("--depth-kind", choices=("disparity", "depth"), default="disparity",
                 help="what --depth holds: disparity (larger = nearer; default) or depth")
  p.add_argument("--save-depth", default=None,
                 help="write the estimated disparity here (16-bit PNG; needs --depth-model)")
  add_model_weight_flags(p)
  p.add_argument("--fold-lora", action="store_true",
                 help="FLUX exports: fold the LoRA adapters into the base (no adapter cost)")
  p.add_argument("--aperture", type=_aperture, default=(0, 0.0),
                 help="BLADES[,DEGREES]: 0 = disk (default), >= 3 = polygon")
  p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--max-side", type=int, default=None,
                 help="longer side the model works at (default: the resolution it was trained "
                      "at); frames are composed back at the photo's size")
  p.add_argument("--max-memory", type=_size, default=None,
                 help="memory the inference programs may plan for, e.g. 8G (default: 80%% of "
                      "the accelerator's, half the free host memory on a CPU)")
  p.add_argument("--max-pixels", type=float, default=None,
                 help="largest photo or depth map read, in pixels (default 1e8)")
  p.add_argument("--batch-size", type=int, default=8, help="most frames per sampling batch")
  add_prepass_flags(p, both=False)
  p.add_argument("--gif", action="store_true", help="also write an animated GIF of the frames")
  p.add_argument("--quiet", action="store_true", help="no progress bar")
  p.add_argument("--out", required=True, help="output PNG (several frames: used as a stem)")
  return p


def check_args(args: argparse.Namespace) -> None:
  """Rejects bad values before anything is loaded; messages name the flag."""
  prepass_options(args)
  for x, y in args.focus:
    if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
      raise ValueError(f"--focus {x},{y}: both coordinates must be in [0, 1]")
  for k in args.blur:
    if not math.isfinite(k) or k < 0 or k > MAX_BLUR:
      raise ValueError(f"--blur {k}: must be a number in [0, {MAX_BLUR:g}] (pixels)")
  if len(args.focus) * len(args.blur) > MAX_FRAMES:
    raise ValueError(f"--focus x --blur: {len(args.focus)} x {len(args.blur)} frames, over the "
                     f"limit of {MAX_FRAMES} per run")
  if args.max_pixels is not None and not (math.isfinite(args.max_pixels) and args.max_pixels >= 64):
    raise ValueError(f"--max-pixels {args.max_pixels}: must be a finite number >= 64")
  if args.steps is not None and args.steps < 1:
    raise ValueError(f"--steps {args.steps}: must be >= 1")
  if (args.max_side is not None and args.max_side < 8) or args.batch_size < 1:
    raise ValueError("--max-side must be >= 8 and --batch-size >= 1")
  if args.model is not None and not os.path.isdir(args.model):
    raise ValueError(f"--model {args.model}: no such directory")
  if args.genfocus is not None:
    if not os.path.isdir(args.genfocus):
      raise ValueError(f"--genfocus {args.genfocus}: no such directory")
    if args.aperture[0] != 0:
      raise ValueError(f"--aperture {args.aperture[0]}: Genfocus renders a round aperture only")
    if args.fold_lora:
      raise ValueError("--fold-lora applies to FLUX exports (--model), not to --genfocus")
    if args.depth is None and args.depth_model is None and any(k > 0 for k in args.blur):
      raise ValueError("--genfocus: the bokeh stage needs a disparity map: give --depth or "
                       "--depth-model (or only --blur 0, the deblur stage)")
  if not args.out.lower().endswith((".png", ".jpg", ".jpeg")):
    raise ValueError(f"--out {args.out}: must end in .png or .jpg")
  ensure_writable_dir(os.path.dirname(os.path.abspath(args.out)), "--out folder")
  if args.depth_model is not None and not os.path.exists(args.depth_model):
    raise ValueError(f"--depth-model {args.depth_model}: no such file or folder")
  if args.save_depth is not None:
    if args.depth_model is None or args.depth:
      raise ValueError("--save-depth writes the estimated depth: it needs --depth-model and no "
                       "--depth")
    if not args.save_depth.lower().endswith(".png"):
      raise ValueError(f"--save-depth {args.save_depth}: must end in .png (16-bit)")
    ensure_writable_dir(os.path.dirname(os.path.abspath(args.save_depth)), "--save-depth folder")
  user_files.refuse_overwriting(
      output_paths(args),
      {"--image": args.image, "--depth": args.depth, "--model": args.model,
       "--depth-model": args.depth_model, "--base-weights": args.base_weights,
       "--vae-weights": args.vae_weights})


def output_paths(args: argparse.Namespace) -> dict[str, str]:
  """Every file the run writes, by what it is: the frames, the contact sheet and GIF, the depth."""
  n = len(args.focus) * len(args.blur)
  stem, ext = os.path.splitext(args.out)
  paths = {("--out" if n == 1 else f"--out frame {i}"): p
           for i, p in enumerate(frame_paths(args.out, n))}
  if n > 1:
    paths["--out contact sheet"] = f"{stem}_sheet{ext}"
  if args.gif:
    paths["--gif"] = f"{stem}.gif"
  if args.save_depth is not None:
    paths["--save-depth"] = args.save_depth
  return paths


def frame_paths(out: str, n: int) -> list[str]:
  """`out` itself for one frame, else `STEM_000.EXT`, `STEM_001.EXT`, ..."""
  if n == 1:
    return [out]
  stem, ext = os.path.splitext(out)
  return [f"{stem}_{i:03d}{ext}" for i in range(n)]


def run(args: argparse.Namespace) -> list[str]:
  """Loads inputs and model, refocuses, writes the files; returns the written paths."""
  from diffcamera_jax import imageio  # heavy imports only after the arguments are known good
  from diffcamera_jax.inference.prepare import camera_grid

  max_pixels = int(args.max_pixels or imageio.DEFAULT_MAX_PIXELS)
  image = imageio.load_image(args.image, max_pixels=max_pixels)
  disparity = None
  if args.depth:
    disparity = imageio.load_disparity(args.depth, kind=args.depth_kind, max_pixels=max_pixels)
    if disparity.shape != image.shape[:2]:
      raise ValueError(f"--depth {args.depth}: is {disparity.shape[1]}x{disparity.shape[0]} but the "
                       f"image is {image.shape[1]}x{image.shape[0]} (W x H)")
  focus, blur = camera_grid(args.focus, args.blur)
  written = []
  if disparity is None and args.depth_model:
    from diffcamera_jax.depth import load_depth_model
    disparity = load_depth_model(args.depth_model).estimate(image)
    print(f"refocus: depth estimated by {args.depth_model}", file=sys.stderr, flush=True)
    if args.save_depth:
      imageio.save_disparity_png(args.save_depth, disparity)
      written.append(args.save_depth)
  refocuser, steps_total, composed = _load_refocuser(args, image.shape[:2], len(focus),
                                                     disparity is not None)
  from tqdm import tqdm
  with tqdm(total=steps_total, desc="sampling", unit="step",
            disable=args.quiet, file=sys.stderr) as steps, \
       tqdm(total=len(focus) if composed else 0, desc="composing", unit="frame",
            disable=args.quiet or not composed, file=sys.stderr) as frames_bar:
    frames = refocuser.refocus(image, args.focus, args.blur, disparity=disparity,
                               blades=args.aperture[0], rotation=args.aperture[1], seed=args.seed,
                               on_step=lambda: steps.update(1),
                               on_frame=lambda: frames_bar.update(1))
  outputs = output_paths(args)
  paths = frame_paths(args.out, len(frames))
  for path, frame in zip(paths, frames):
    imageio.save_image(path, frame)
  if len(frames) > 1:
    labels = [f"({x:.2f},{y:.2f}) K={k:g}" for (x, y), k in zip(focus, blur)]
    sheet = imageio.contact_sheet(list(frames), labels, columns=len(args.blur))
    imageio.save_image(outputs["--out contact sheet"], sheet)
    paths.append(outputs["--out contact sheet"])
  if args.gif:
    imageio.save_gif(outputs["--gif"], list(frames))
    paths.append(outputs["--gif"])
  return paths + written


def _load_refocuser(args: argparse.Namespace, image_hw: tuple[int, int], frames: int,
                    depth: bool):
  """(refocuser, progress steps, whether frames are composed at the photo's size) for `--model`
  or `--genfocus`; its plan is printed on stderr."""
  if args.genfocus is not None:
    from diffcamera_jax.inference.genfocus_refocuser import DEFAULT_MAX_SIDE, GenfocusRefocuser
    from diffcamera_jax.inference.resize import working_size
    try:
      refocuser = GenfocusRefocuser.load(
          args.genfocus, base_weights=args.base_weights, vae_weights=args.vae_weights,
          max_side=args.max_side or DEFAULT_MAX_SIDE, max_memory=args.max_memory,
          **({"num_steps": args.steps} if args.steps else {}))
    except FileNotFoundError as e:
      raise ValueError(f"--genfocus: {e}") from None
    work_hw = working_size(*image_hw, refocuser.max_side)
    print(f"refocus: Genfocus at {work_hw[1]}x{work_hw[0]}, {refocuser.num_steps} steps per stage, "
          f"1 deblur + {len(args.focus) * sum(k > 0 for k in args.blur)} bokeh stage runs", file=sys.stderr, flush=True)
    bokeh_runs = len(args.focus) * sum(k > 0 for k in args.blur)
    return refocuser, 1 + bokeh_runs, work_hw != tuple(image_hw)
  from diffcamera_jax.inference.refocuser import Refocuser
  try:
    refocuser = Refocuser.load(args.model, max_side=args.max_side, batch_size=args.batch_size,
                               num_steps=args.steps, max_memory=args.max_memory,
                               base_weights=args.base_weights, vae_weights=args.vae_weights,
                               fold_lora=args.fold_lora, **prepass_options(args))
  except FileNotFoundError as e:
    raise ValueError(f"--model: {e}") from None
  plan = refocuser.plan_for(image_hw, frames, depth=depth)
  print(f"refocus: {plan.describe()}", file=sys.stderr, flush=True)
  batches = -(-frames // plan.batch)
  return refocuser, refocuser.num_steps * batches, plan.work_hw != plan.image_hw


def main(argv: Sequence[str] | None = None) -> int:
  try:
    args = build_parser().parse_args(argv)
    check_args(args)
    paths = run(args)
  except ValueError as e:
    print(f"refocus: error: {one_line(str(e))}", file=sys.stderr)
    return EXIT_BAD_INPUT
  for path in paths:
    print(path)
  return 0


if __name__ == "__main__":
  sys.exit(main())
