"""render / render_multifocus: shapes, batching, jit/vmap/grad, per-example apertures, errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffcamera_jax import optics

SIZE = 32
RNG = np.random.default_rng(0)
IMAGE = RNG.random((3, SIZE, SIZE, 3)).astype(np.float32)
DISPARITY = np.tile(np.linspace(0.0, 1.0, SIZE, dtype=np.float32), (3, SIZE, 1))
FOCUS = np.array([0.2, 0.5, 0.9], np.float32)
BLUR = np.array([4.0, 9.0, 0.0], np.float32)


def _render(image, disparity, focus, blur, **kw):
  return optics.render(image, disparity, focus, blur, max_radius=12.0, **kw)


def test_batched_render_equals_per_example_renders_and_vmap():
  aperture = optics.Aperture(np.array([0, 6, 3], np.int32), np.array([0.0, 0.3, 1.0], np.float32))
  batched = np.asarray(jax.jit(lambda *a: _render(*a, aperture=aperture))(IMAGE, DISPARITY, FOCUS, BLUR))
  mapped = jax.vmap(lambda i, d, f, k, b, r: _render(i, d, f, k, aperture=optics.Aperture(b, r)))(
      IMAGE, DISPARITY, FOCUS, BLUR, aperture.blades, aperture.rotation)
  for n in range(3):
    single = _render(IMAGE[n], DISPARITY[n], float(FOCUS[n]), float(BLUR[n]),
                     aperture=optics.Aperture(int(aperture.blades[n]), float(aperture.rotation[n])))
    assert single.shape == (SIZE, SIZE, 3)
    np.testing.assert_allclose(batched[n], np.asarray(single), atol=3e-4)  # float32 FFT round-off, amplified near black by gamma
  np.testing.assert_allclose(np.asarray(mapped), batched, atol=3e-4)  # float32 FFT round-off, amplified near black by gamma


def test_gradients_wrt_image_and_blur_are_finite():
  def loss(image, blur):
    return jnp.sum(_render(image, DISPARITY[0], 0.3, blur) ** 2)

  g_image, g_blur = jax.jit(jax.grad(loss, argnums=(0, 1)))(IMAGE[0], 6.0)
  assert np.all(np.isfinite(np.asarray(g_image))) and np.isfinite(float(g_blur))
  assert float(g_blur) != 0.0  # the blur level changes the picture, and the gradient says so
  black = np.zeros_like(IMAGE[0])  # gamma's power law at 0 keeps a finite gradient too
  assert np.all(np.isfinite(np.asarray(jax.grad(loss)(black, 6.0))))


def test_multifocus_equals_render_where_one_plane_is_the_only_depth():
  image = IMAGE[0]
  constant = np.full((SIZE, SIZE), 0.35, np.float32)  # nearer plane 1 (0.3) than plane 2 (0.8)
  multi = optics.render_multifocus(image, constant, 0.3, 0.8, 20.0, max_radius=12.0)
  np.testing.assert_allclose(np.asarray(multi), np.asarray(_render(image, constant, 0.3, 20.0)), atol=1e-5)
  two_planes = np.where(np.arange(SIZE)[None, :] < SIZE // 2, 0.3, 0.8).astype(np.float32)
  two_planes = np.broadcast_to(two_planes, (SIZE, SIZE))
  multi = optics.render_multifocus(image, two_planes, 0.8, 0.3, 20.0, max_radius=12.0)
  np.testing.assert_allclose(np.asarray(multi), image, atol=1e-5)  # both planes sharp


def test_multifocus_keeps_depth_order_between_the_groups():
  # near plane group (disparity 0.9, blurred) must spread over the far group, not under it
  image = np.zeros((SIZE, SIZE, 3), np.float32)
  image[:, :SIZE // 2] = (1.0, 0.0, 0.0)
  disparity = np.where(np.arange(SIZE)[None, :] < SIZE // 2, 0.95, 0.05).astype(np.float32)
  disparity = np.broadcast_to(disparity, (SIZE, SIZE))
  out = np.asarray(optics.render_multifocus(image, disparity, 0.0, 0.7, 30.0, max_radius=12.0, gamma=1.0))
  assert out[:, SIZE // 2 + 2, 0].mean() > 0.1  # near red region's blur covers the far side


@pytest.mark.parametrize("image,disparity,focus,blur,name", [
    (IMAGE[0, ..., :2], DISPARITY[0], 0.5, 1.0, "image"),
    (IMAGE, DISPARITY[:2], 0.5, 1.0, "disparity"),
    (IMAGE, DISPARITY, np.zeros(2), 1.0, "focus_disparity"),
    (IMAGE, DISPARITY, 0.5, np.zeros((3, 1)), "blur"),
])
def test_bad_shapes_raise_naming_the_argument(image, disparity, focus, blur, name):
  with pytest.raises(ValueError, match=name):
    _render(image, disparity, focus, blur)
