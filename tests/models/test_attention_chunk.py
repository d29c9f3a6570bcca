"""Query-chunked attention equals full attention, values and gradients, for any chunk size."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffcamera_jax.models.layers import dot_product_attention


@pytest.mark.parametrize("chunk", [1, 5, 16, 64])
def test_chunked_attention_matches_full(chunk):
  kq, kk, kv = jax.random.split(jax.random.key(0), 3)
  shape = (2, 37, 3, 8)  # length not a multiple of the chunk: the padding path is exercised
  q, k, v = (jax.random.normal(key, shape) for key in (kq, kk, kv))
  full = dot_product_attention(q, k, v)
  chunked = dot_product_attention(q, k, v, chunk)
  np.testing.assert_allclose(chunked, full, rtol=1e-5, atol=1e-6)

  loss = lambda c: lambda q, k, v: jnp.sum(jnp.sin(dot_product_attention(q, k, v, c)))
  grads_full = jax.grad(loss(0), argnums=(0, 1, 2))(q, k, v)
  grads_chunked = jax.grad(loss(chunk), argnums=(0, 1, 2))(q, k, v)
  for a, b in zip(grads_chunked, grads_full):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_chunked_attention_bounds_score_memory():
  q = jax.ShapeDtypeStruct((4, 2048, 4, 32), jnp.float32)
  def peak(chunk):  # forward + backward, where the full version keeps the scores alive
    grad = jax.grad(lambda q: jnp.sum(dot_product_attention(q, q, q, chunk) ** 2))
    return jax.jit(grad).lower(q).compile().memory_analysis().temp_size_in_bytes
  full_scores = 4 * 4 * 2048 * 2048 * 4
  chunk_scores = full_scores // 8
  full, chunked = peak(0), peak(256)
  assert full >= 2 * full_scores  # scores and their gradient, both [B, H, L, L]
  assert chunked < 5 * chunk_scores and chunked < full / 4
