"""The device example and the stage that makes it: render a batch's reference, targets, stacking
mask and multi-focus image.

`Example` is the typed contract between data and model: the train step, the memory plan and the
benchmarks read its fields and shapes from here. `simulate` makes one from a host batch: pure JAX
on the accelerator (never in Grain workers), jit-able; given a batch sharded over the batch
dimension (`pipeline.to_global_batch`), every op is per example, so XLA keeps the
work and the outputs sharded the same way. The three single-focus renders (reference, target,
second target) run as one `optics.render` call over a 3B batch.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from data_pipeline import HOST_BATCH_KEYS
from data_pipeline.cameras import blur_pixels
from diffcamera_jax import optics
from diffcamera_jax.optics.render import DEFAULT_MAX_RADIUS


# Field -> (per-example shape, dtype); "image" is (H, W, 3), "map" is (H, W).
_FIELDS = {
    "image": ("image", jnp.float32), "disparity": ("map", jnp.float32),
    "source_focus": ((2,), jnp.float32), "source_blur": ((), jnp.float32),
    "target_focus": ((2,), jnp.float32), "target_focus_2": ((2,), jnp.float32),
    "target_blur": ((), jnp.float32), "aperture_blades": ((), jnp.int32),
    "aperture_rotation": ((), jnp.float32),
    "reference": ("image", jnp.float32), "target": ("image", jnp.float32),
    "target_2": ("image", jnp.float32), "target_focus_disparity": ((), jnp.float32),
    "target_focus_disparity_2": ((), jnp.float32), "stack_mask": ("map", jnp.float32),
    "multifocus": ("image", jnp.float32),
}


@flax.struct.dataclass
class Example:
  """One device batch of training examples, leading dim B (a pytree: jit, shard, tree.map).

  The host keys (`HOST_BATCH_KEYS`: all-in-focus `image` [B, H, W, 3] in [0, 1], `disparity`
  [B, H, W] in [0, 1] with 1 = near, the source camera `source_focus` [B, 2] (x, y in [0, 1]) and
  `source_blur` [B] (CoC radius, pixels at this size), the stacking pair's `target_focus`,
  `target_focus_2` [B, 2] and shared `target_blur` [B], the aperture `aperture_blades` [B] int
  (0 = disk) and `aperture_rotation` [B]), and the rendered ones: `reference`, `target`,
  `target_2` [B, H, W, 3], the targets' focal disparities [B], `stack_mask` [B, H, W] (1 where
  the first target's plane is the nearer in disparity) and `multifocus` [B, H, W, 3].
  """
  image: jax.Array
  disparity: jax.Array
  source_focus: jax.Array
  source_blur: jax.Array
  target_focus: jax.Array
  target_focus_2: jax.Array
  target_blur: jax.Array
  aperture_blades: jax.Array
  aperture_rotation: jax.Array
  reference: jax.Array
  target: jax.Array
  target_2: jax.Array
  target_focus_disparity: jax.Array
  target_focus_disparity_2: jax.Array
  stack_mask: jax.Array
  multifocus: jax.Array

  @classmethod
  def shapes(cls, batch_size: int, image_hw: tuple[int, int]) -> dict[str, tuple[tuple, Any]]:
    """Field -> (shape, dtype) of a batch of `batch_size` examples at `image_hw`."""
    h, w = image_hw
    named = {"image": (h, w, 3), "map": (h, w)}
    return {k: ((batch_size, *(named[s] if isinstance(s, str) else s)), d)
            for k, (s, d) in _FIELDS.items()}

  @classmethod
  def abstract(cls, batch_size: int, image_hw: tuple[int, int],
               sharding: Callable[[tuple], Any] | None = None) -> "Example":
    """An `Example` of `jax.ShapeDtypeStruct`s (ahead-of-time lowering, memory plans);
    `sharding(shape)` gives each field's sharding."""
    return cls(**{k: jax.ShapeDtypeStruct(s, d, sharding=sharding(s) if sharding else None)
                  for k, (s, d) in cls.shapes(batch_size, image_hw).items()})

  @classmethod
  def from_dict(cls, values: dict[str, Any]) -> "Example":
    """An `Example` from a dict with every field (extra keys ignored); names what is missing."""
    missing = [k for k in _FIELDS if k not in values]
    if missing:
      raise KeyError(f"device example lacks fields {missing} (see objective/example.py, Example)")
    return cls(**{k: values[k] for k in _FIELDS})

  def to_dict(self) -> dict[str, Any]:
    """Field name -> array."""
    return {k: getattr(self, k) for k in _FIELDS}


def max_blur_radius(data_config: Any) -> float:
  """The largest CoC radius (pixels) the config's cameras can produce at the training size.

  |D - d_f| <= 1, so it is the largest blur; pass it as `simulate(..., max_radius=...)` so the
  renderer builds only the depth layers it can need.
  """
  return max(blur_pixels(data_config.blur_range[1], data_config.image_size,
                         data_config.blur_reference_size), 1.0)


def simulate(batch: dict[str, jax.Array], rng: jax.Array | None = None, *, gamma: float = 2.2,
             max_radius: float = DEFAULT_MAX_RADIUS) -> Example:
  """Renders one training example per batch entry (`Example`).

  Args:
    batch: a host batch (HOST_BATCH_KEYS), numpy or (sharded) jax arrays, leading dim B.
    rng: optional key for augmentation: each example is mirrored left-right with probability 1/2
      (image, disparity, focus x -> 1 - x, aperture rotation -> pi - rotation) before rendering, and
      the returned host keys are the mirrored ones. None: no augmentation, host keys unchanged.
    gamma: sRGB <-> linear light exponent used inside the renderer (static).
    max_radius: largest CoC radius the renderer supports (static); see `max_blur_radius`.

  Returns:
    The `Example`: the host keys plus the rendered reference, targets, mask and multi-focus image.
  """
  missing = [k for k in HOST_BATCH_KEYS if k not in batch]
  if missing:
    raise KeyError(f"batch is missing keys {missing}; expected {HOST_BATCH_KEYS}")
  out = {k: jnp.asarray(batch[k]) for k in HOST_BATCH_KEYS}
  if rng is not None:
    out = mirror(out, jax.random.bernoulli(rng, 0.5, out["source_blur"].shape))
  image, disparity = out["image"], out["disparity"]
  aperture = optics.Aperture(out["aperture_blades"], out["aperture_rotation"])

  d_s = optics.focus_disparity(disparity, out["source_focus"])
  d_1 = optics.focus_disparity(disparity, out["target_focus"])
  d_2 = optics.focus_disparity(disparity, out["target_focus_2"])
  triple = lambda a, b, c: jnp.concatenate([a, b, c], axis=0)
  renders = optics.render(
      triple(image, image, image), triple(disparity, disparity, disparity),
      triple(d_s, d_1, d_2), triple(out["source_blur"], out["target_blur"], out["target_blur"]),
      aperture=jax.tree.map(lambda x: triple(x, x, x), aperture), gamma=gamma,
      max_radius=max_radius)
  reference, target, target_2 = jnp.split(renders, 3, axis=0)
  multifocus = optics.render_multifocus(image, disparity, d_1, d_2, out["target_blur"],
                                        aperture=aperture, gamma=gamma, max_radius=max_radius)
  return Example(**out, reference=reference, target=target, target_2=target_2,
                 target_focus_disparity=d_1, target_focus_disparity_2=d_2,
                 stack_mask=stack_mask(disparity, d_1, d_2), multifocus=multifocus)


def make_simulate_fn(config: Any, mesh: jax.sharding.Mesh | None = None,
                     batch_axes: Sequence[str] = ("data", "fsdp"),
                     ) -> Callable[[dict[str, jax.Array], jax.Array | None], Example]:
  """`simulate` jitted with the config's gamma and blur bound: `fn(batch, rng) -> example`.

  With a `mesh`, every output is constrained to be sharded over `batch_axes` on its leading dim
  (axes absent from the mesh are ignored), matching `pipeline.to_global_batch`.
  """
  fn = functools.partial(simulate, gamma=float(config.data.gamma),
                         max_radius=max_blur_radius(config.data))
  if mesh is None:
    return jax.jit(fn)
  axes = tuple(a for a in batch_axes if a in mesh.axis_names)
  if not axes:
    raise ValueError(f"batch_axes {tuple(batch_axes)} name none of the mesh axes {mesh.axis_names}")
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(axes))
  return jax.jit(fn, out_shardings=sharding)


def mirror(batch: dict[str, jax.Array], flip: jax.Array) -> dict[str, jax.Array]:
  """Mirrors the examples where `flip` [B] is True left-right, cameras included.

  A focus point (x, y) moves to (1 - x, y); a polygon aperture with vertices at angles
  rotation + 2 pi k / n becomes the one at pi - rotation (disks are unchanged).
  """
  def where(value, flipped):
    return jnp.where(flip.reshape(flip.shape + (1,) * (value.ndim - 1)), flipped, value)

  out = dict(batch)
  out["image"] = where(batch["image"], batch["image"][:, :, ::-1])
  out["disparity"] = where(batch["disparity"], batch["disparity"][:, :, ::-1])
  for key in ("source_focus", "target_focus", "target_focus_2"):
    point = batch[key]
    out[key] = where(point, point.at[:, 0].set(1.0 - point[:, 0]))
  rotation = batch["aperture_rotation"]
  polygon = batch["aperture_blades"] >= 3
  out["aperture_rotation"] = where(rotation, jnp.where(polygon, jnp.pi - rotation, rotation))
  return out


def stack_mask(disparity: jax.Array, focus_disparity_1: jax.Array,
               focus_disparity_2: jax.Array) -> jax.Array:
  """The stacking mask `[..., H, W]`: 1 where plane 1 is at least as near in disparity as plane 2
  (`|D - d1| <= |D - d2|`), else 0 (float32)."""
  d = jnp.asarray(disparity, jnp.float32)
  d1 = jnp.asarray(focus_disparity_1, jnp.float32)[..., None, None]
  d2 = jnp.asarray(focus_disparity_2, jnp.float32)[..., None, None]
  return (jnp.abs(d - d1) <= jnp.abs(d - d2)).astype(jnp.float32)
