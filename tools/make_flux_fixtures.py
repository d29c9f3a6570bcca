"""Writes the FLUX parity fixtures under tests/fixtures/flux/ using torch + diffusers (dev-only).

Builds a tiny random `FluxTransformer2DModel` and a tiny `AutoencoderKL` with the FLUX VAE's
structure (16 latent channels, no quant convs, FLUX scaling/shift), fills every parameter with
random values (norm scales and biases too, so every path matters), and saves:

  transformer/            diffusers `save_pretrained` output, sharded (index.json + shards)
  transformer_original.safetensors   the same weights in the original black-forest-labs layout
  transformer_io.safetensors         inputs and the reference output of the transformer
  vae/                    diffusers `save_pretrained` output (config.json + weights)
  vae_io.safetensors      images, posterior mean/logvar, latents and the decoded reference
  ae_original.safetensors the same VAE in black-forest-labs' single-file layout (`ae.safetensors`),
                          checked by converting it back with diffusers' own LDM-VAE converter

Run: `python tools/make_flux_fixtures.py [--out tests/fixtures/flux]`. The test suite reads the
files with numpy only; torch and diffusers are needed only here.
"""
import argparse
import os
import shutil

import torch
from diffusers import AutoencoderKL, FluxTransformer2DModel
from safetensors.torch import save_file

TRANSFORMER = dict(patch_size=1, in_channels=16, out_channels=16, num_layers=2,
                   num_single_layers=2, attention_head_dim=16, num_attention_heads=2,
                   joint_attention_dim=24, pooled_projection_dim=12, guidance_embeds=True,
                   axes_dims_rope=(4, 6, 6))
VAE = dict(in_channels=3, out_channels=3, latent_channels=16,
           down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
           block_out_channels=(8, 16, 16), layers_per_block=1, norm_num_groups=4,
           use_quant_conv=False, use_post_quant_conv=False, scaling_factor=0.3611,
           shift_factor=0.1159)


def randomize(model: torch.nn.Module, seed: int) -> None:
  """Random weights at a sane scale; norm scales near 1; biases small but non-zero."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      noise = torch.randn(p.shape, generator=g)
      if p.ndim == 1 and ("norm" in name and name.endswith("weight")):
        p.copy_(1.0 + 0.2 * noise)
      elif p.ndim == 1:
        p.copy_(0.1 * noise)
      else:
        fan_in = p[0].numel()
        p.copy_(noise / fan_in ** 0.5)


def to_original(sd: dict, num_layers: int, num_single: int) -> dict:
  """diffusers FLUX transformer state dict -> original (black-forest-labs) names, fused qkv."""
  out, used = {}, set()

  def take(dst, *srcs, swap=False):
    for kind in ("weight", "bias"):
      parts = [sd[f"{s}.{kind}"] for s in srcs]
      used.update(f"{s}.{kind}" for s in srcs)
      t = torch.cat(parts, 0)
      if swap:
        scale, shift = t.chunk(2, 0)
        t = torch.cat([shift, scale], 0)
      out[f"{dst}.{kind}"] = t.contiguous()

  take("img_in", "x_embedder")
  take("txt_in", "context_embedder")
  for ours, theirs in (("time_in", "timestep_embedder"), ("guidance_in", "guidance_embedder"),
                       ("vector_in", "text_embedder")):
    take(f"{ours}.in_layer", f"time_text_embed.{theirs}.linear_1")
    take(f"{ours}.out_layer", f"time_text_embed.{theirs}.linear_2")
  take("final_layer.linear", "proj_out")
  take("final_layer.adaLN_modulation.1", "norm_out.linear", swap=True)
  for i in range(num_layers):
    d, b = f"double_blocks.{i}", f"transformer_blocks.{i}"
    take(f"{d}.img_mod.lin", f"{b}.norm1.linear")
    take(f"{d}.txt_mod.lin", f"{b}.norm1_context.linear")
    take(f"{d}.img_attn.qkv", f"{b}.attn.to_q", f"{b}.attn.to_k", f"{b}.attn.to_v")
    take(f"{d}.txt_attn.qkv", f"{b}.attn.add_q_proj", f"{b}.attn.add_k_proj",
         f"{b}.attn.add_v_proj")
    take(f"{d}.img_attn.proj", f"{b}.attn.to_out.0")
    take(f"{d}.txt_attn.proj", f"{b}.attn.to_add_out")
    take(f"{d}.img_mlp.0", f"{b}.ff.net.0.proj")
    take(f"{d}.img_mlp.2", f"{b}.ff.net.2")
    take(f"{d}.txt_mlp.0", f"{b}.ff_context.net.0.proj")
    take(f"{d}.txt_mlp.2", f"{b}.ff_context.net.2")
    for stream, q, k in (("img", "norm_q", "norm_k"), ("txt", "norm_added_q", "norm_added_k")):
      out[f"{d}.{stream}_attn.norm.query_norm.scale"] = sd[f"{b}.attn.{q}.weight"]
      out[f"{d}.{stream}_attn.norm.key_norm.scale"] = sd[f"{b}.attn.{k}.weight"]
      used.update({f"{b}.attn.{q}.weight", f"{b}.attn.{k}.weight"})
  for i in range(num_single):
    s, b = f"single_blocks.{i}", f"single_transformer_blocks.{i}"
    take(f"{s}.linear1", f"{b}.attn.to_q", f"{b}.attn.to_k", f"{b}.attn.to_v", f"{b}.proj_mlp")
    take(f"{s}.linear2", f"{b}.proj_out")
    take(f"{s}.modulation.lin", f"{b}.norm.linear")
    out[f"{s}.norm.query_norm.scale"] = sd[f"{b}.attn.norm_q.weight"]
    out[f"{s}.norm.key_norm.scale"] = sd[f"{b}.attn.norm_k.weight"]
    used.update({f"{b}.attn.norm_q.weight", f"{b}.attn.norm_k.weight"})
  if used != set(sd):
    raise RuntimeError(f"conversion left out {sorted(set(sd) - used)}")
  return out


def transformer_fixture(out: str) -> None:
  torch.manual_seed(0)
  model = FluxTransformer2DModel(**TRANSFORMER).eval()
  randomize(model, seed=1)
  model.save_pretrained(os.path.join(out, "transformer"), max_shard_size="200KB")
  sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
  save_file(to_original(sd, TRANSFORMER["num_layers"], TRANSFORMER["num_single_layers"]),
            os.path.join(out, "transformer_original.safetensors"))

  g = torch.Generator().manual_seed(2)
  b, h, w, lt = 2, 4, 6, 5  # 4x6 packed tokens = an 8x12 latent
  rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
  img_ids = torch.stack([torch.zeros_like(rows), rows, cols], -1).reshape(-1, 3).float()
  img_ids = torch.cat([img_ids, img_ids + torch.tensor([1.0, 0.0, 0.0])])  # a second, "reference" grid
  txt_ids = torch.zeros(lt, 3)
  inputs = dict(
      img=torch.randn(b, img_ids.shape[0], TRANSFORMER["in_channels"], generator=g),
      txt=torch.randn(b, lt, TRANSFORMER["joint_attention_dim"], generator=g),
      y=torch.randn(b, TRANSFORMER["pooled_projection_dim"], generator=g),
      timesteps=torch.tensor([0.25, 0.9]), guidance=torch.tensor([1.0, 3.5]),
      img_ids=img_ids, txt_ids=txt_ids)
  with torch.no_grad():
    ref = model(hidden_states=inputs["img"], encoder_hidden_states=inputs["txt"],
                pooled_projections=inputs["y"], timestep=inputs["timesteps"],
                img_ids=img_ids, txt_ids=txt_ids, guidance=inputs["guidance"]).sample
  save_file({**inputs, "output": ref}, os.path.join(out, "transformer_io.safetensors"))


def vae_fixture(out: str) -> None:
  torch.manual_seed(0)
  vae = AutoencoderKL(**VAE).eval()
  randomize(vae, seed=3)
  vae.save_pretrained(os.path.join(out, "vae"))
  g = torch.Generator().manual_seed(4)
  images = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1  # the VAE's [-1, 1] range, NCHW
  latents = torch.randn(2, VAE["latent_channels"], 8, 8, generator=g)
  with torch.no_grad():
    dist = vae.encode(images).latent_dist
    decoded = vae.decode(latents).sample
  nhwc = lambda t: t.permute(0, 2, 3, 1).contiguous()
  save_file({"images": nhwc(images), "mean": nhwc(dist.mean), "logvar": nhwc(dist.logvar),
             "latents": nhwc(latents), "decoded": nhwc(decoded)},
            os.path.join(out, "vae_io.safetensors"))


def ae_original_fixture(out: str) -> None:
  """The committed diffusers VAE renamed to the original layout; diffusers must map it back."""
  import json
  import re

  from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
  from safetensors.torch import load_file
  state = load_file(os.path.join(out, "vae", "diffusion_pytorch_model.safetensors"))
  with open(os.path.join(out, "vae", "config.json")) as f:
    config = json.load(f)
  levels = len(config["block_out_channels"])
  attention = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
  original = {}
  for name, value in state.items():
    new = name.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
    new = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", new)
    new = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", new)
    new = re.sub(r"decoder\.up_blocks\.(\d+)\.resnets\.",
                 lambda m: f"decoder.up.{levels - 1 - int(m.group(1))}.block.", new)
    new = re.sub(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.",
                 lambda m: f"decoder.up.{levels - 1 - int(m.group(1))}.upsample.", new)
    new = re.sub(r"mid_block\.resnets\.(\d+)\.", lambda m: f"mid.block_{int(m.group(1)) + 1}.", new)
    if m := re.search(r"mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.", new):
      new = new.replace(m.group(0), f"mid.attn_1.{attention[m.group(1)]}.")
      if value.ndim == 2:
        value = value[:, :, None, None]
    original[new] = value.contiguous()
  back = convert_ldm_vae_checkpoint(original, config)
  assert set(back) == set(state), set(back) ^ set(state)
  assert all(torch.equal(back[k].reshape(state[k].shape), state[k]) for k in state)
  save_file(original, os.path.join(out, "ae_original.safetensors"))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default=os.path.join("tests", "fixtures", "flux"))
  parser.add_argument("--ae-original-only", action="store_true",
                      help="only (re)write ae_original.safetensors from the committed VAE")
  args = parser.parse_args()
  if args.ae_original_only:
    ae_original_fixture(args.out)
    return
  for sub in ("transformer", "vae"):
    shutil.rmtree(os.path.join(args.out, sub), ignore_errors=True)
  os.makedirs(args.out, exist_ok=True)
  transformer_fixture(args.out)
  vae_fixture(args.out)
  ae_original_fixture(args.out)
  total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(args.out) for f in fs)
  print(f"wrote fixtures to {args.out} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
  main()
