"""The Genfocus forward on our FLUX.1 weights: condition-token streams with their own modulation
and adapters (`Genfocus/pipeline/flux.py`: `attn_forward`, `block_forward`,
`single_block_forward`, `transformer_forward`); see `models/genfocus.py` and docs/genfocus.md.
"""
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from diffcamera_jax.models.flux import (FluxConfig, apply_rope, chunked_attention, rope,
                                        timestep_embedding)

Dtype = Any
CONDITION_TIMESTEP = 0.0
CONDITION_GUIDANCE = 1.0

# ----------------------------------------------------------------------------- transformer
#
# Token layout: [text | image | condition 1 | condition 2 ...]. Text and image tokens are
# modulated by `vec` (t, guidance) and never see an adapter; condition tokens are modulated by
# `cond_vec` (t = 0, guidance 1) and see the adapters. Image and condition tokens go through the
# same (image-side) base weights, so each layer runs one base matmul over all of them and the
# low-rank update over the condition rows only.


def _dense(p: Mapping, x: jnp.ndarray, dtype: Dtype) -> jnp.ndarray:
  """`x W + b`."""
  y = jnp.dot(x.astype(dtype), p["kernel"].astype(dtype))
  return y + p["bias"].astype(dtype) if "bias" in p else y


def _adapted(p: Mapping, x: jnp.ndarray, plain: int, dtype: Dtype) -> jnp.ndarray:
  """`x W + b` for all tokens, plus `(x a) b` (scale 1) for tokens from index `plain` on."""
  y = _dense(p, x, dtype)
  if "lora_a" not in p or plain == x.shape[1]:
    return y
  delta = jnp.dot(jnp.dot(x[:, plain:].astype(dtype), p["lora_a"].astype(dtype)),
                  p["lora_b"].astype(dtype))
  return jnp.concatenate([y[:, :plain], y[:, plain:] + delta], axis=1)


def _layer_norm(x: jnp.ndarray) -> jnp.ndarray:
  x32 = x.astype(jnp.float32)
  mean = x32.mean(-1, keepdims=True)
  var = jnp.square(x32 - mean).mean(-1, keepdims=True)
  return ((x32 - mean) * jax.lax.rsqrt(var + 1e-6)).astype(x.dtype)


def _by_part(x: jnp.ndarray, plain: int, fn: Callable, main: tuple, cond: tuple) -> jnp.ndarray:
  """`fn(tokens, *main)` on tokens before `plain`, `fn(tokens, *cond)` on the rest."""
  if plain == x.shape[1]:
    return fn(x, *main)
  return jnp.concatenate([fn(x[:, :plain], *main), fn(x[:, plain:], *cond)], axis=1)


def _modulate(x: jnp.ndarray, shift: jnp.ndarray, scale: jnp.ndarray) -> jnp.ndarray:
  return (1 + scale[:, None]) * _layer_norm(x) + shift[:, None]


def _gate(y: jnp.ndarray, gate: jnp.ndarray) -> jnp.ndarray:
  return gate[:, None] * y


def _rms_norm(scale: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
  x32 = x.astype(jnp.float32)
  x32 = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + 1e-6)
  return x32.astype(x.dtype) * scale.astype(x.dtype)


def _mlp_embed(p: Mapping, x: jnp.ndarray, dtype: Dtype) -> jnp.ndarray:
  return _dense(p["out_layer"], jax.nn.silu(_dense(p["in_layer"], x, dtype)), dtype)


def _vector(params: Mapping, config: FluxConfig, t: jnp.ndarray, guidance: jnp.ndarray | None,
            y: jnp.ndarray, dtype: Dtype) -> jnp.ndarray:
  """The modulation vector of (timestep, guidance, pooled text), as `FluxTransformer` builds it."""
  vec = _mlp_embed(params["time_in"], timestep_embedding(t).astype(dtype), dtype)
  if config.guidance_embed:
    vec = vec + _mlp_embed(params["guidance_in"], timestep_embedding(guidance).astype(dtype), dtype)
  return vec + _mlp_embed(params["vector_in"], y.astype(dtype), dtype)


def _modulation(p: Mapping, vec: jnp.ndarray, cond_vec: jnp.ndarray, n: int,
                dtype: Dtype) -> tuple[list, list]:
  """(shift, scale, gate) chunks for the plain tokens (base) and the conditions (adapted)."""
  main = jnp.split(_dense(p, jax.nn.silu(vec), dtype), n, -1)
  return main, jnp.split(_adapted(p, jax.nn.silu(cond_vec)[:, None], 0, dtype)[:, 0], n, -1)


def _heads(qkv: jnp.ndarray, config: FluxConfig, norm: Mapping) -> tuple[jnp.ndarray, ...]:
  q, k, v = jnp.split(qkv.reshape(*qkv.shape[:2], 3, config.num_heads, config.head_dim), 3, axis=2)
  return (_rms_norm(norm["query_norm"]["scale"], q[:, :, 0]),
          _rms_norm(norm["key_norm"]["scale"], k[:, :, 0]), v[:, :, 0])


def _attention(q, k, v, rope_cs, plain: int, cond_lengths: tuple[int, ...], isolate: bool,
               chunk: int) -> jnp.ndarray:
  """Attention over [text | image | conditions]: text and image queries see every token; each
  condition's queries see text, image and itself only (Genfocus's `group_mask`) when `isolate`."""
  q, k = apply_rope(q, *rope_cs), apply_rope(k, *rope_cs)
  if not isolate or len(cond_lengths) < 2:
    return chunked_attention(q, k, v, chunk)
  outs, start = [chunked_attention(q[:, :plain], k, v, chunk)], plain
  for n in cond_lengths:
    own = lambda x: jnp.concatenate([x[:, :plain], x[:, start:start + n]], axis=1)
    outs.append(chunked_attention(q[:, start:start + n], own(k), own(v), chunk))
    start += n
  return jnp.concatenate(outs, axis=1)


def _double_block(p, carry, vec, cond_vec, rope_cs, cond_lengths, isolate, config, dtype, chunk):
  """One double-stream block. `carry = (txt, x)` with x = [image | conditions]: text through the
  `txt_*` weights, x through the `img_*` weights, adapters on the conditions."""
  txt, x = carry
  lt, li = txt.shape[1], x.shape[1] - sum(cond_lengths)
  t_mod = jnp.split(_dense(p["txt_mod"]["lin"], jax.nn.silu(vec), dtype), 6, -1)
  i_mod, c_mod = _modulation(p["img_mod"]["lin"], vec, cond_vec, 6, dtype)
  tq, tk, tv = _heads(_dense(p["txt_attn"]["qkv"], _modulate(txt, *t_mod[:2]), dtype), config,
                      p["txt_attn"]["norm"])
  h = _by_part(x, li, _modulate, i_mod[:2], c_mod[:2])
  iq, ik, iv = _heads(_adapted(p["img_attn"]["qkv"], h, li, dtype), config, p["img_attn"]["norm"])
  cat = lambda a, b: jnp.concatenate([a, b], axis=1)
  out = _attention(cat(tq, iq), cat(tk, ik), cat(tv, iv), rope_cs, lt + li, cond_lengths,
                   isolate, chunk)
  txt = txt + _gate(_dense(p["txt_attn"]["proj"], out[:, :lt], dtype), t_mod[2])
  mlp = lambda h, f: _dense(f["fc2"], jax.nn.gelu(_dense(f["fc1"], h, dtype), approximate=True),
                            dtype)
  txt = txt + _gate(mlp(_modulate(txt, *t_mod[3:5]), p["txt_mlp"]), t_mod[5])
  x = x + _by_part(_adapted(p["img_attn"]["proj"], out[:, lt:], li, dtype), li, _gate,
                   i_mod[2:3], c_mod[2:3])
  h = _by_part(x, li, _modulate, i_mod[3:5], c_mod[3:5])
  h = jax.nn.gelu(_dense(p["img_mlp"]["fc1"], h, dtype), approximate=True)
  x = x + _by_part(_adapted(p["img_mlp"]["fc2"], h, li, dtype), li, _gate, i_mod[5:], c_mod[5:])
  return txt, x


def _single_block(p, x, vec, cond_vec, rope_cs, cond_lengths, isolate, config, dtype, chunk):
  """One single-stream block on x = [text | image | conditions]: text and image share `vec`, the
  conditions have their own modulation (Genfocus's per-branch `single_block_forward`)."""
  d, plain = config.hidden_size, x.shape[1] - sum(cond_lengths)
  mod, c_mod = _modulation(p["modulation"]["lin"], vec, cond_vec, 3, dtype)
  h = _adapted(p["linear1"], _by_part(x, plain, _modulate, mod[:2], c_mod[:2]), plain, dtype)
  q, k, v = _heads(h[..., :3 * d], config, p["norm"])
  attn = _attention(q, k, v, rope_cs, plain, cond_lengths, isolate, chunk)
  mlp = jax.nn.gelu(h[..., 3 * d:], approximate=True)
  out = _adapted(p["linear2"], jnp.concatenate([attn, mlp], -1), plain, dtype)
  return x + _by_part(out, plain, _gate, mod[2:], c_mod[2:])


def _blocks(params: Mapping, name: str, count: int, step: Callable, carry: Any) -> Any:
  """`step(block_params, carry)` over a stack: scanned (`name`) or numbered (`name_0`, ...)."""
  if name in params:
    return jax.lax.scan(lambda c, p: (step(p, c), None), carry, params[name])[0]
  for i in range(count):
    carry = step(params[f"{name}_{i}"], carry)
  return carry


def velocity(params: Mapping, config: FluxConfig, img: jnp.ndarray, img_ids: jnp.ndarray,
             conditions: Sequence[jnp.ndarray], cond_ids: Sequence[jnp.ndarray],
             txt: jnp.ndarray, txt_ids: jnp.ndarray, y: jnp.ndarray, t: jnp.ndarray,
             guidance: jnp.ndarray | None = None, *, condition_t: float = CONDITION_TIMESTEP,
             condition_guidance: float = CONDITION_GUIDANCE, isolate_conditions: bool = True,
             dtype: Dtype = jnp.float32, attention_chunk: int = 0) -> jnp.ndarray:
  """Velocity `[B, L, out_channels]` of the image tokens, Genfocus's `transformer_forward`.

  img `[B, L, in_channels]` packed noisy latents; conditions: packed condition latents
  `[B, L_i, in_channels]`; *_ids `[L, 3]` position ids; txt `[B, Lt, C]` and its ids (zeros);
  y `[B, vec_in_dim]` pooled text; t `[B]` in [0, 1]; guidance `[B]` (guidance-distilled
  configs). Image and text tokens see the base weights at (t, guidance); condition tokens the
  adapters at (`condition_t`, `condition_guidance`); conditions attend to each other only if not
  `isolate_conditions`. `params`: base FLUX params (scanned or not) with the adapter leaves of
  `weights.load_genfocus_lora` merged in.
  """
  if len(conditions) != len(cond_ids):
    raise ValueError(f"velocity: {len(conditions)} conditions but {len(cond_ids)} id arrays")
  if config.guidance_embed and guidance is None:
    raise ValueError("velocity: `guidance` is required by a guidance-distilled config")
  b, li = img.shape[:2]
  cond_lengths = tuple(c.shape[1] for c in conditions)
  x = _adapted(params["img_in"], jnp.concatenate([img, *conditions], axis=1), li, dtype)
  txt = _dense(params["txt_in"], txt, dtype)
  vec = _vector(params, config, t, guidance, y, dtype)
  cond_vec = _vector(params, config, jnp.full((b,), condition_t, jnp.float32),
                     jnp.full((b,), condition_guidance, jnp.float32), y, dtype)
  ids = jnp.concatenate([jnp.broadcast_to(i, (b, *i.shape[-2:]))
                         for i in (txt_ids, img_ids, *cond_ids)], axis=1)
  rope_cs = rope(ids, config.axes_dim, config.theta)
  kw = dict(vec=vec, cond_vec=cond_vec, rope_cs=rope_cs, cond_lengths=cond_lengths,
            isolate=isolate_conditions, config=config, dtype=dtype, chunk=attention_chunk)
  txt, x = _blocks(params, "double_blocks", config.depth,
                   lambda p, c: _double_block(p, c, **kw), (txt, x))
  x = _blocks(params, "single_blocks", config.depth_single,
              lambda p, c: _single_block(p, c, **kw), jnp.concatenate([txt, x], axis=1))
  final = params["final_layer"]
  shift, scale = jnp.split(_dense(final["adaLN_modulation"], jax.nn.silu(vec), dtype), 2, -1)
  lt = txt.shape[1]
  return _dense(final["linear"], _modulate(x[:, lt:lt + li], shift, scale), dtype)
