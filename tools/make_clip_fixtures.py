"""Test fixtures for `diffcamera_jax.evaluation.clip_image` (dev-only; needs torch and `transformers`).

    python tools/make_clip_fixtures.py

Builds a tiny random `transformers.CLIPVisionModelWithProjection` (4 heads of 8 channels, so the
head count must come from `config.json`), saves it with `save_pretrained` (`config.json` +
`model.safetensors`, the layout of a downloaded Hugging Face model) into `tests/fixtures/clip/`,
and records its `image_embeds` for fixed images at the model's input size (so preprocessing is
only the CLIP mean/std normalisation, which is done here in NumPy).
"""
import os

import numpy as np
import torch
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "clip")
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)


def main() -> None:
  torch.manual_seed(0)
  config = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                            num_attention_heads=4, image_size=32, patch_size=8,
                            projection_dim=16, hidden_act="quick_gelu", layer_norm_eps=1e-5)
  model = CLIPVisionModelWithProjection(config).eval()
  with torch.no_grad():  # larger than the default init, so that every term matters
    for p in model.parameters():
      p.add_(0.05 * torch.randn_like(p))
  os.makedirs(OUT, exist_ok=True)
  model.save_pretrained(OUT, safe_serialization=True)
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(3, 32, 32, 3)).astype(np.float32)
  images[1] = np.clip(images[0] + rng.normal(0, 0.1, images[0].shape), 0, 1)
  pixels = torch.from_numpy((images - MEAN) / STD).permute(0, 3, 1, 2).contiguous()
  with torch.no_grad():
    embeds = model(pixel_values=pixels).image_embeds.numpy()
  np.savez_compressed(os.path.join(OUT, "io.npz"), images=images, image_embeds=embeds)
  print(sorted(os.listdir(OUT)), embeds.shape)


if __name__ == "__main__":
  main()
