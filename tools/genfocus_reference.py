"""Genfocus's inference pipeline (github.com/rayray9999/Genfocus, `Genfocus/pipeline/flux.py` and
the stage scripts) re-implemented in torch, function by function, on diffusers modules: the
per-token-group LoRA switch, the grouped transformer forward and the condition encoding. Each
function names the one it follows. `make_genfocus_fixtures.py` runs it on a tiny random model to
write the parity fixtures (dev-only: torch, diffusers, peft).
"""
import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.models.embeddings import apply_rotary_emb
from peft.tuners.tuners_utils import BaseTunerLayer

MAX_COC = 100.0  # `Inference_bokehNet.py`'s defocus normalisation


# ----------------------------------------------------------------------------- reference forward


@contextlib.contextmanager
def specify_lora(modules, adapter):
  """Follows `specify_lora`: inside the context, every active adapter of the peft layers among
  `modules` has scale 1 if it is `adapter`, else 0 (so `None` disables them all)."""
  layers = [m for m in modules if isinstance(m, BaseTunerLayer)]
  saved = [{a: m.scaling[a] for a in m.active_adapters if a in m.scaling} for m in layers]
  for m in layers:
    for a in m.active_adapters:
      if a in m.scaling:
        m.scaling[a] = 1 if a == adapter else 0
  try:
    yield
  finally:
    for m, scales in zip(layers, saved):
      for a, s in scales.items():
        m.scaling[a] = s


def attn_forward(attn, hidden, adapters, hidden_text=(), rotary=None, group_mask=None):
  """Follows `attn_forward` (no KV cache): text branches through add_*_proj, the other branches
  through to_q/k/v and to_out.0 under their adapter; each query branch attends to the
  concatenated keys of the branches `group_mask` allows."""
  b = hidden[0].shape[0]
  n_text = len(hidden_text)
  qs, ks, vs = [], [], []
  heads = lambda x: x.view(b, -1, attn.heads, x.shape[-1] // attn.heads).transpose(1, 2)
  for h in hidden_text:
    q, k, v = map(heads, (attn.add_q_proj(h), attn.add_k_proj(h), attn.add_v_proj(h)))
    qs.append(attn.norm_added_q(q)), ks.append(attn.norm_added_k(k)), vs.append(v)
  for i, h in enumerate(hidden):
    with specify_lora((attn.to_q, attn.to_k, attn.to_v), adapters[i + n_text]):
      q, k, v = map(heads, (attn.to_q(h), attn.to_k(h), attn.to_v(h)))
    qs.append(attn.norm_q(q)), ks.append(attn.norm_k(k)), vs.append(v)
  if rotary is not None:
    qs = [apply_rotary_emb(q, rotary[i]) for i, q in enumerate(qs)]
    ks = [apply_rotary_emb(k, rotary[i]) for i, k in enumerate(ks)]
  outs = []
  for i, q in enumerate(qs):
    keep = [j for j in range(len(ks)) if group_mask is None or bool(group_mask[i][j])]
    o = F.scaled_dot_product_attention(q, torch.cat([ks[j] for j in keep], 2),
                                       torch.cat([vs[j] for j in keep], 2))
    outs.append(o.transpose(1, 2).reshape(b, -1, attn.heads * q.shape[-1]))
  text_out = [attn.to_add_out(outs[i]) for i in range(n_text)]
  out = []
  for i in range(len(hidden)):
    h = outs[i + n_text]
    if getattr(attn, "to_out", None) is not None:
      with specify_lora((attn.to_out[0],), adapters[i + n_text]):
        h = attn.to_out[0](h)
    out.append(h)
  return (out, text_out) if n_text else out


def block_forward(block, images, texts, tembs, adapters, rotary, group_mask):
  """Follows `block_forward` (double-stream block, one modulation per branch)."""
  n_text = len(texts)
  txt_mod = [block.norm1_context(h, emb=tembs[i]) for i, h in enumerate(texts)]
  img_mod = []
  for i, h in enumerate(images):
    with specify_lora((block.norm1.linear,), adapters[i + n_text]):
      img_mod.append(block.norm1(h, emb=tembs[i + n_text]))
  img_attn, txt_attn = attn_forward(block.attn, [m[0] for m in img_mod], adapters,
                                    [m[0] for m in txt_mod], rotary, group_mask)
  texts_out = []
  for i, h in enumerate(texts):
    _, gate_msa, shift_mlp, scale_mlp, gate_mlp = txt_mod[i]
    h = h + txt_attn[i] * gate_msa.unsqueeze(1)
    norm = block.norm2_context(h) * (1 + scale_mlp[:, None]) + shift_mlp[:, None]
    texts_out.append(block.ff_context(norm) * gate_mlp.unsqueeze(1) + h)
  images_out = []
  for i, h in enumerate(images):
    _, gate_msa, shift_mlp, scale_mlp, gate_mlp = img_mod[i]
    h = h + img_attn[i] * gate_msa.unsqueeze(1)
    norm = block.norm2(h) * (1 + scale_mlp[:, None]) + shift_mlp[:, None]
    with specify_lora((block.ff.net[2],), adapters[i + n_text]):
      images_out.append(h + block.ff(norm) * gate_mlp.unsqueeze(1))
  return images_out, texts_out


def single_block_forward(block, hidden, tembs, adapters, rotary, group_mask):
  """Follows `single_block_forward`: each branch modulated by its own temb."""
  norms, mlps, gates = [], [], []
  for i, h in enumerate(hidden):
    with specify_lora((block.norm.linear, block.proj_mlp), adapters[i]):
      h_norm, gate = block.norm(h, emb=tembs[i])
      mlps.append(block.act_mlp(block.proj_mlp(h_norm)))
    norms.append(h_norm), gates.append(gate)
  attn = attn_forward(block.attn, norms, adapters, rotary=rotary, group_mask=group_mask)
  out = []
  for i, h in enumerate(hidden):
    with specify_lora((block.proj_out,), adapters[i]):
      out.append(gates[i].unsqueeze(1) * block.proj_out(torch.cat([attn[i], mlps[i]], 2)) + h)
  return out


def transformer_forward(model, image_features, text_features, img_ids, txt_ids, pooled,
                        timesteps, guidances, adapters, group_mask):
  """Follows `transformer_forward`: branches [text, image, conditions...] with one temb each
  (timestep and guidance scaled by 1000), x_embedder under each image branch's adapter, the
  final norm and projection on the image branch."""
  n_text = len(text_features)
  images = []
  for i, f in enumerate(image_features):
    with specify_lora((model.x_embedder,), adapters[i + n_text]):
      images.append(model.x_embedder(f))
  texts = [model.context_embedder(f) for f in text_features]
  tembs = [model.time_text_embed(t * 1000, g * 1000, p) if g is not None
           else model.time_text_embed(t * 1000, p) for t, g, p in zip(timesteps, guidances, pooled)]
  rotary = [model.pos_embed(ids) for ids in (*txt_ids, *img_ids)]
  for block in model.transformer_blocks:
    images, texts = block_forward(block, images, texts, tembs, adapters, rotary, group_mask)
  hidden = [*texts, *images]
  for block in model.single_transformer_blocks:
    hidden = single_block_forward(block, hidden, tembs, adapters, rotary, group_mask)
  return model.proj_out(model.norm_out(hidden[n_text], tembs[n_text]))


def group_mask_for(num_conditions):
  """Follows `generate`: condition branches do not attend to one another."""
  mask = torch.ones([num_conditions + 2] * 2, dtype=torch.bool)
  mask[2:, 2:] = torch.diag(torch.tensor([1] * num_conditions))
  return mask


def call(model, latents, ids, conds, cond_ids, prompt, t, guidance, adapter):
  """One `transformer_forward` the way `generate` calls it (non-tiled branch)."""
  b, n = latents.shape[0], len(conds)
  g = torch.tensor([guidance]).expand(b)
  return transformer_forward(
      model, image_features=[latents, *conds], text_features=[prompt["txt"]],
      img_ids=[ids, *cond_ids], txt_ids=[prompt["txt_ids"]],
      pooled=[prompt["y"]] * 2 + [prompt["y"]] * n,
      timesteps=[t, t] + [torch.zeros([1])] * n, guidances=[g, g] + [torch.ones([1])] * n,
      adapters=[None, None] + [adapter] * n, group_mask=group_mask_for(n))


# ----------------------------------------------------------------------------- conditions


def encode_images(pipe, image, preprocess, eps):
  """Follows `encode_images` / `Condition.encode`: (optional) image-processor preprocessing, a
  VAE posterior sample `mean + std * eps`, FLUX's shift and scale, 2x2 packing, image-grid ids."""
  x = pipe.image_processor.preprocess(image) if preprocess else image
  dist = pipe.vae.encode(x.to(pipe.dtype)).latent_dist
  z = (dist.mean + dist.std * eps - pipe.vae.config.shift_factor) * pipe.vae.config.scaling_factor
  tokens = pipe._pack_latents(z, *z.shape)
  ids = pipe._prepare_latent_image_ids(z.shape[0], z.shape[2] // 2, z.shape[3] // 2, "cpu",
                                       pipe.dtype)
  return tokens, ids


def defocus(disparity, k, focus):
  """Follows `Inference_bokehNet.py`: `clamp(|K (d - d_f)| / MAX_COC, 0, 1)`, repeated to RGB."""
  defocus_abs = np.abs(k * (disparity - np.float32(focus)))
  return (torch.from_numpy(defocus_abs).unsqueeze(0).float() / MAX_COC).clamp(0, 1).repeat(
      3, 1, 1).unsqueeze(0)
