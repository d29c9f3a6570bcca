"""Writes the Genfocus parity fixtures under tests/fixtures/genfocus/ with torch + diffusers + peft
(dev-only; the test suite reads the files with numpy).

The reference is Genfocus's pipeline (github.com/rayray9999/Genfocus, `Genfocus/pipeline/flux.py`
and the stage scripts `Inference_deblurNet.py`, `Inference_bokehNet.py`), re-implemented function
by function in `genfocus_reference.py` and run here on a tiny random model:

  transformer/config.json, transformer/diffusion_pytorch_model.safetensors
      a tiny random `FluxTransformer2DModel` (64 input channels: 16 VAE channels packed 2x2),
      weights rounded to float16 and stored so
  deblurNet.safetensors, bokehNet.safetensors
      random LoRAs on OminiControl's target modules (train/config/*.yaml of
      Yuanshi9815/OminiControl), written the way OminiControl's trainer writes them (`get_peft_model_state_dict` +
      `FluxPipeline.save_lora_weights`); ranks 4 and 2, the bokeh file in bfloat16
  deblur_prompt.safetensors, bokeh_prompt.safetensors
      random prompt embeddings (`txt`, `y`), the format `load_text_embeddings` reads
  <stage>_<H>x<W>.safetensors  (sizes 32x32, 64x64, 40x56 pixels)
      condition images, VAE posterior draws, condition tokens and ids, noise, timestep, guidance
      and the image-token velocity of one transformer call; at 40x56 also three sampling steps
  tiled.safetensors   one tiled velocity (deblur stage, a 32 x 36-token grid, 2 tiles)
  schedules.safetensors, tiles.json   scheduler sigmas and tile origins

The condition VAE is the committed tests/fixtures/flux/vae (FLUX structure, 4x downsampling).
The LoRAs are loaded the way the stage scripts load them (`FluxPipeline.load_lora_weights` +
`set_adapters`). With `--check-against DIR` (a Genfocus checkout) the same inputs also go through
Genfocus's own `Condition.encode`, `transformer_forward` and `generate`, and the tool fails unless
they agree with the re-implementation.

Run: `python tools/make_genfocus_fixtures.py [--out tests/fixtures/genfocus]
[--check-against /path/to/Genfocus]`.
"""
import argparse
import contextlib
import json
import os
import shutil
import sys
import types

import numpy as np
import torch
from diffusers import (AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline,
                       FluxTransformer2DModel)
from diffusers.pipelines.flux.pipeline_flux import calculate_shift, retrieve_timesteps
from peft import LoraConfig, get_peft_model_state_dict
from PIL import Image
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from make_flux_fixtures import randomize  # noqa: E402
from genfocus_reference import call, defocus, encode_images, group_mask_for  # noqa: E402

VAE_DIR = os.path.join(ROOT, "tests", "fixtures", "flux", "vae")
TRANSFORMER = dict(patch_size=1, in_channels=64, out_channels=64, num_layers=2,
                   num_single_layers=2, attention_head_dim=16, num_attention_heads=2,
                   joint_attention_dim=24, pooled_projection_dim=12, guidance_embeds=True,
                   axes_dims_rope=(4, 6, 6))
# FLUX.1-dev's scheduler/scheduler_config.json.
SCHEDULER = dict(base_image_seq_len=256, base_shift=0.5, max_image_seq_len=4096, max_shift=1.15,
                 num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True)
# OminiControl's `lora_config.target_modules` (train/config/spatial_alignment.yaml).
TARGETS = (r"(.*x_embedder|.*(?<!single_)transformer_blocks\.[0-9]+\.norm1\.linear"
           r"|.*(?<!single_)transformer_blocks\.[0-9]+\.attn\.to_k"
           r"|.*(?<!single_)transformer_blocks\.[0-9]+\.attn\.to_q"
           r"|.*(?<!single_)transformer_blocks\.[0-9]+\.attn\.to_v"
           r"|.*(?<!single_)transformer_blocks\.[0-9]+\.attn\.to_out\.0"
           r"|.*(?<!single_)transformer_blocks\.[0-9]+\.ff\.net\.2"
           r"|.*single_transformer_blocks\.[0-9]+\.norm\.linear"
           r"|.*single_transformer_blocks\.[0-9]+\.proj_mlp"
           r"|.*single_transformer_blocks\.[0-9]+\.proj_out"
           r"|.*single_transformer_blocks\.[0-9]+\.attn.to_k"
           r"|.*single_transformer_blocks\.[0-9]+\.attn.to_q"
           r"|.*single_transformer_blocks\.[0-9]+\.attn.to_v"
           r"|.*single_transformer_blocks\.[0-9]+\.attn.to_out)")
STAGES = {
    "deblur": dict(file="deblurNet.safetensors", adapter="deblurring", rank=4, alpha=8.0,
                   dtype=torch.float32, guidance=3.5, seed=10),
    "bokeh": dict(file="bokehNet.safetensors", adapter="bokeh", rank=2, alpha=2.0,
                  dtype=torch.bfloat16, guidance=1.0, seed=20),
}
SIZES = ((32, 32), (64, 64), (40, 56))  # pixels; the fixture VAE downsamples 4x
SAMPLED_SIZE, SAMPLE_STEPS, NUM_STEPS, STEP_INDEX = (40, 56), 3, 28, 3
K, TEXT_LEN = 15.0, 5
TILE_SIZE, TILED_GRID = 32, (32, 36)


# ----------------------------------------------------------------------------- building


def build_model(out):
  torch.manual_seed(0)
  model = FluxTransformer2DModel(**TRANSFORMER).eval()
  randomize(model, seed=1)
  with torch.no_grad():
    for p in model.parameters():
      p.copy_(p.half().float())  # stored as float16 below: exactly these values
  model.half().save_pretrained(os.path.join(out, "transformer"))
  return FluxTransformer2DModel.from_pretrained(os.path.join(out, "transformer"),
                                                torch_dtype=torch.float32).eval()


def write_lora(out, stage):
  """Random adapters in OminiControl's layout and file format (its trainer's `save_lora`)."""
  spec = STAGES[stage]
  model = FluxTransformer2DModel(**TRANSFORMER)
  model.add_adapter(LoraConfig(r=spec["rank"], lora_alpha=spec["alpha"],
                               init_lora_weights="gaussian", target_modules=TARGETS),
                    adapter_name=spec["adapter"])
  g = torch.Generator().manual_seed(spec["seed"])
  with torch.no_grad():
    for name, p in model.named_parameters():
      if "lora_" in name:
        p.copy_((0.3 * torch.randn(p.shape, generator=g)).to(spec["dtype"]).float())
  state = get_peft_model_state_dict(model, adapter_name=spec["adapter"])
  state = {k: v.to(spec["dtype"]) for k, v in state.items()}
  FluxPipeline.save_lora_weights(save_directory=out, weight_name=spec["file"],
                                 transformer_lora_layers=state, safe_serialization=True)
  return len(state)


def make_pipe(out, stage):
  """Follows the stage scripts: FLUX pipeline, `load_lora_weights(..., adapter_name)` and
  `set_adapters([adapter])` (the text encoders are not needed: embeddings are given)."""
  vae = AutoencoderKL.from_pretrained(VAE_DIR).eval()
  transformer = FluxTransformer2DModel.from_pretrained(os.path.join(out, "transformer"),
                                                       torch_dtype=torch.float32).eval()
  pipe = FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER), vae=vae,
                      text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None,
                      transformer=transformer)
  spec = STAGES[stage]
  pipe.load_lora_weights(out, weight_name=spec["file"], adapter_name=spec["adapter"])
  pipe.set_adapters([spec["adapter"]])
  return pipe


def schedule(pipe, num_steps, image_tokens):
  """Follows `generate`: sigmas `linspace(1, 1/N, N)`, `mu = calculate_shift(...)`."""
  sigmas = np.linspace(1.0, 1 / num_steps, num_steps)
  c = pipe.scheduler.config
  mu = calculate_shift(image_tokens, c.base_image_seq_len, c.max_image_seq_len, c.base_shift,
                       c.max_shift)
  timesteps, _ = retrieve_timesteps(pipe.scheduler, num_steps, "cpu", None, sigmas, mu=mu)
  return timesteps, pipe.scheduler.sigmas.clone()


def stage_case(pipe, stage, hw, prompt, g):
  """Inputs and reference outputs of one (stage, size)."""
  spec = STAGES[stage]
  h, w = hw
  lh, lw = h // 4, w // 4  # latent grid of the fixture VAE
  photo = torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8).numpy()
  conds = [(Image.fromarray(photo), True)]
  case = {"photo": torch.from_numpy(photo)}
  if stage == "bokeh":
    depth = (0.5 + 4.0 * torch.rand(h, w, generator=g)).numpy().astype(np.float32)
    depth[0, :3] = 0.0  # invalid pixels: treated as infinitely far
    disparity = 1.0 / np.where(depth > 0.0, depth, np.finfo(np.float32).max)
    focus = float(disparity[h // 2, w // 2])
    cond_map = defocus(disparity, K, focus)
    conds.append((cond_map, False))
    case.update(depth=torch.from_numpy(depth), disparity=torch.from_numpy(disparity),
                focus=torch.tensor(focus), k=torch.tensor(K), defocus=cond_map[0, 0])
  tokens, ids = [], []
  for i, (image, preprocess) in enumerate(conds):
    eps = torch.randn(1, 16, lh, lw, generator=g)
    tok, idx = encode_images(pipe, image, preprocess, eps)
    tokens.append(tok), ids.append(idx)
    case[f"cond{i}_eps"] = eps.permute(0, 2, 3, 1).contiguous()
    case[f"cond{i}_tokens"], case[f"cond{i}_ids"] = tok, idx
  noise = pipe._pack_latents(torch.randn(1, 16, lh, lw, generator=g), 1, 16, lh, lw)
  img_ids = pipe._prepare_latent_image_ids(1, lh // 2, lw // 2, "cpu", torch.float32)
  timesteps, sigmas = schedule(pipe, NUM_STEPS, noise.shape[1])
  t = timesteps[STEP_INDEX].expand(1) / 1000
  v = call(pipe.transformer, noise, img_ids, tokens, ids, prompt, t, spec["guidance"],
           spec["adapter"])
  case.update(noise=noise, img_ids=img_ids, t=t, guidance=torch.tensor([spec["guidance"]]),
              velocity=v)
  if hw == SAMPLED_SIZE:
    timesteps, _ = schedule(pipe, SAMPLE_STEPS, noise.shape[1])
    latents = noise
    for step in timesteps:  # follows `generate`'s denoising loop (non-tiled)
      v = call(pipe.transformer, latents, img_ids, tokens, ids, prompt,
               step.expand(1) / 1000, spec["guidance"], spec["adapter"])
      latents = pipe.scheduler.step(v, step, latents)[0]
    case.update(sample_steps=torch.tensor(SAMPLE_STEPS), sampled=latents)
  return case, (conds, tokens, noise)


def tile_origins(latent_h, latent_w, tile=TILE_SIZE):
  """Follows `generate`'s tiling: stride tile - tile/8, last tile flush, 'xy' meshgrid order."""
  stride = tile - tile // 8
  hs = np.arange(0, max(1, latent_h - tile + 1), stride, dtype=np.int32)
  ws = np.arange(0, max(1, latent_w - tile + 1), stride, dtype=np.int32)
  if hs[-1] + tile < latent_h:
    hs = np.append(hs, latent_h - tile)
  if ws[-1] + tile < latent_w:
    ws = np.append(ws, latent_w - tile)
  hh, ww = np.meshgrid(hs, ws)
  return hh.ravel(), ww.ravel()


def tiled_case(pipe, prompt, g):
  """One tiled velocity, following `generate`'s TILED_DENOISE branch (deblur stage)."""
  spec = STAGES["deblur"]
  gh, gw = TILED_GRID
  half = lambda t: t.half().float()  # stored as float16: exactly these values
  noise = half(torch.randn(1, gh * gw, 64, generator=g))
  cond = half(torch.randn(1, gh * gw, 64, generator=g))
  fixed_ids = pipe._prepare_latent_image_ids(1, TILE_SIZE, TILE_SIZE, "cpu", torch.float32)
  coord_to_idx = torch.arange(gh * gw).reshape(gh, gw)
  d = torch.linspace(-2, 2, TILE_SIZE)
  weights = torch.exp(-(d[:, None] ** 2 + d[None] ** 2)).flatten()
  acc, total = torch.zeros_like(noise), torch.zeros(noise.shape[:2])
  timesteps, _ = schedule(pipe, NUM_STEPS, gh * gw)
  t = timesteps[STEP_INDEX].expand(1) / 1000
  for ch, cw in zip(*tile_origins(gh, gw)):
    idx = coord_to_idx[ch:ch + TILE_SIZE, cw:cw + TILE_SIZE].flatten()
    v = call(pipe.transformer, noise[:, idx], fixed_ids, [cond[:, idx]], [fixed_ids], prompt, t,
             spec["guidance"], spec["adapter"])
    acc[:, idx] += v * weights.unsqueeze(0).unsqueeze(-1)
    total[:, idx] += weights
  return {"noise": noise.half(), "cond0_tokens": cond.half(), "t": t.contiguous(),
          "guidance": torch.tensor([spec["guidance"]]), "velocity": acc / total.unsqueeze(-1)}


def prompt_for(out, stage, g):
  prompt = {"txt": torch.randn(1, TEXT_LEN, TRANSFORMER["joint_attention_dim"], generator=g),
            "y": torch.randn(1, TRANSFORMER["pooled_projection_dim"], generator=g)}
  save_file(prompt, os.path.join(out, f"{stage}_prompt.safetensors"))
  return {**prompt, "txt_ids": torch.zeros(TEXT_LEN, 3)}


# ----------------------------------------------------------------------------- cross-check


def import_genfocus(src):
  """Genfocus's `Genfocus.pipeline.flux` from a checkout (cv2 stubbed if absent: unused here)."""
  try:
    import cv2  # noqa: F401
  except ImportError:
    sys.modules["cv2"] = types.ModuleType("cv2")
  sys.path.insert(0, os.path.abspath(src))
  import Genfocus.pipeline.flux as genfocus
  return genfocus


@contextlib.contextmanager
def posterior_draws(draws):
  """Makes the VAE's posterior sampling return `draws` in order (Genfocus samples it)."""
  import diffusers.models.autoencoders.vae as vae_module
  real = vae_module.randn_tensor
  queue = list(draws)
  vae_module.randn_tensor = lambda shape, **kw: queue.pop(0).reshape(shape).to(kw.get("dtype"))
  try:
    yield
  finally:
    vae_module.randn_tensor = real


def check(src, pipe, stage, hw, case, conds, prompt):
  """Runs Genfocus's own code on the same inputs; returns the largest absolute differences."""
  G = import_genfocus(src)
  spec = STAGES[stage]
  n = len(conds)
  eps = [case[f"cond{i}_eps"].permute(0, 3, 1, 2) for i in range(n)]
  if stage == "deblur":
    conditions = [G.Condition(conds[0][0], spec["adapter"], [0, 0], 1.0)]
  else:
    conditions = [G.Condition(conds[0][0], spec["adapter"]),
                  G.Condition(conds[1][0], spec["adapter"], [0, 0], 1.0, No_preprocess=True)]
  diffs = {}
  with posterior_draws(eps):
    encoded = [c.encode(pipe) for c in conditions]
  for i, (tok, ids) in enumerate(encoded):
    diffs[f"cond{i}_tokens"] = float((tok - case[f"cond{i}_tokens"]).abs().max())
    diffs[f"cond{i}_ids"] = float((ids - case[f"cond{i}_ids"]).abs().max())
  b = 1
  g = torch.tensor([spec["guidance"]]).expand(b)
  v = G.transformer_forward(
      pipe.transformer, image_features=[case["noise"], *[e[0] for e in encoded]],
      text_features=[prompt["txt"]], img_ids=[case["img_ids"], *[e[1] for e in encoded]],
      txt_ids=[prompt["txt_ids"]], timesteps=[case["t"], case["t"]] + [torch.zeros([1])] * n,
      pooled_projections=[prompt["y"]] * (2 + n), guidances=[g, g] + [torch.ones([1])] * n,
      adapters=[None, None] + [spec["adapter"]] * n, group_mask=group_mask_for(n))[0]
  diffs["velocity"] = float((v - case["velocity"]).abs().max())
  if "sampled" in case:
    with posterior_draws(eps):
      latents = G.generate(pipe, height=hw[0], width=hw[1], prompt_embeds=prompt["txt"],
                           pooled_prompt_embeds=prompt["y"], num_inference_steps=SAMPLE_STEPS,
                           guidance_scale=spec["guidance"], latents=case["noise"],
                           conditions=conditions, NO_TILED_DENOISE=True,
                           output_type="latent").images
    diffs["sampled"] = float((latents - case["sampled"]).abs().max())
  return diffs


def check_tiled(src, out, prompt, g):
  """Genfocus's `generate` with tiling (one step, a random 8x VAE so 512 pixels are 32 tokens)
  against the re-implemented tiled branch on the same condition tokens."""
  G = import_genfocus(src)
  pipe = make_pipe(out, "deblur")
  vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=16,
                      down_block_types=("DownEncoderBlock2D",) * 4,
                      up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 8, 16, 16),
                      layers_per_block=1, norm_num_groups=4, use_quant_conv=False,
                      use_post_quant_conv=False, scaling_factor=0.3611, shift_factor=0.1159).eval()
  randomize(vae, seed=5)
  pipe = FluxPipeline(scheduler=pipe.scheduler, vae=vae, text_encoder=None, tokenizer=None,
                      text_encoder_2=None, tokenizer_2=None, transformer=pipe.transformer)
  h, w = 16 * TILED_GRID[0], 16 * TILED_GRID[1]
  photo = Image.fromarray(torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8).numpy())
  eps = torch.randn(1, 16, h // 8, w // 8, generator=g)
  noise = torch.randn(1, TILED_GRID[0] * TILED_GRID[1], 64, generator=g)
  cond, _ = encode_images(pipe, photo, True, eps)
  with posterior_draws([eps]):
    theirs = G.generate(pipe, height=h, width=w, prompt_embeds=prompt["txt"],
                        pooled_prompt_embeds=prompt["y"], num_inference_steps=1, latents=noise,
                        conditions=[G.Condition(photo, "deblurring", [0, 0], 1.0)],
                        output_type="latent").images
  # Re-implementation of the same single step.
  spec = STAGES["deblur"]
  fixed_ids = pipe._prepare_latent_image_ids(1, TILE_SIZE, TILE_SIZE, "cpu", torch.float32)
  coord_to_idx = torch.arange(noise.shape[1]).reshape(*TILED_GRID)
  d = torch.linspace(-2, 2, TILE_SIZE)
  weights = torch.exp(-(d[:, None] ** 2 + d[None] ** 2)).flatten()
  acc, total = torch.zeros_like(noise), torch.zeros(noise.shape[:2])
  timesteps, sigmas = schedule(pipe, 1, noise.shape[1])
  t = timesteps[0].expand(1) / 1000
  for ch, cw in zip(*tile_origins(*TILED_GRID)):
    idx = coord_to_idx[ch:ch + TILE_SIZE, cw:cw + TILE_SIZE].flatten()
    v = call(pipe.transformer, noise[:, idx], fixed_ids, [cond[:, idx]], [fixed_ids], prompt, t,
             spec["guidance"], spec["adapter"])
    acc[:, idx] += v * weights.unsqueeze(0).unsqueeze(-1)
    total[:, idx] += weights
  ours = noise + (sigmas[1] - sigmas[0]) * acc / total.unsqueeze(-1)
  return float((theirs - ours).abs().max())


# ----------------------------------------------------------------------------- main


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default=os.path.join("tests", "fixtures", "genfocus"))
  parser.add_argument("--check-against", default="",
                      help="a Genfocus checkout: also run its own code and require agreement")
  args = parser.parse_args()
  shutil.rmtree(args.out, ignore_errors=True)
  os.makedirs(args.out)
  torch.set_grad_enabled(False)
  build_model(args.out)
  for stage in STAGES:
    print(f"{STAGES[stage]['file']}: {write_lora(args.out, stage)} tensors")
  g = torch.Generator().manual_seed(7)
  report = {}
  for stage in STAGES:
    pipe = make_pipe(args.out, stage)
    prompt = prompt_for(args.out, stage, g)
    for hw in SIZES:
      case, (conds, _, _) = stage_case(pipe, stage, hw, prompt, g)
      save_file({k: v.contiguous() for k, v in case.items()},
                os.path.join(args.out, f"{stage}_{hw[0]}x{hw[1]}.safetensors"))
      if args.check_against:
        report[f"{stage}_{hw[0]}x{hw[1]}"] = check(args.check_against, pipe, stage, hw, case,
                                                   conds, prompt)
    if stage == "deblur":
      save_file(tiled_case(pipe, prompt, g), os.path.join(args.out, "tiled.safetensors"))
      if args.check_against:
        report["tiled_generate_step"] = check_tiled(args.check_against, args.out, prompt, g)
  pipe = make_pipe(args.out, "deblur")
  schedules = {}
  for steps, tokens in ((28, 16), (28, 4096), (8, 1152)):
    timesteps, sigmas = schedule(pipe, steps, tokens)
    schedules[f"sigmas_{steps}_{tokens}"] = sigmas
    schedules[f"timesteps_{steps}_{tokens}"] = timesteps
  save_file(schedules, os.path.join(args.out, "schedules.safetensors"))
  tiles = {f"{gh}x{gw}": [list(map(int, o)) for o in zip(*tile_origins(gh, gw))]
           for gh, gw in ((32, 32), (32, 36), (64, 64), (40, 100), (75, 50))}
  with open(os.path.join(args.out, "tiles.json"), "w") as f:
    json.dump(tiles, f, indent=1)
  if args.check_against:
    print(json.dumps(report, indent=1))
    worst = max(v for r in report.values() for v in (r.values() if isinstance(r, dict) else [r]))
    if worst > 1e-5:
      raise SystemExit(f"re-implementation differs from Genfocus's code by {worst}")
  total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(args.out) for f in fs)
  print(f"wrote fixtures to {args.out} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
  main()
