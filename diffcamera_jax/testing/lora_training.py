"""LoRA training by masking, for tests: the optimiser and gradients restricted to the trainable
leaves of one full parameter tree (the trainer splits the tree instead, `training.state`)."""
from collections.abc import Callable
from typing import Any

import jax
import optax

from diffcamera_jax.models.lora import merge_params, split_params


def masked_optimizer(tx: optax.GradientTransformation, mask: Any) -> optax.GradientTransformation:
  """`tx` on the leaves where `mask` is True; zero updates and no state for the rest."""
  labels = jax.tree_util.tree_map(lambda m: "trainable" if m else "frozen", mask)
  return optax.multi_transform({"trainable": tx, "frozen": optax.set_to_zero()}, labels)


def value_and_grad_trainable(loss_fn: Callable[..., Any], params: Any, mask: Any,
                             has_aux: bool = False) -> tuple[Any, dict]:
  """`jax.value_and_grad(loss_fn)` with respect to the trainable leaves only.

  Gradients of the frozen base are never formed (not even as zeros), so a LoRA step costs the
  activation gradients plus the adapters' weight gradients, not the base's. Returns
  `(value, grads)` with `grads` the nested dict of the trainable leaves.
  """
  trainable, frozen = split_params(params, mask)
  return jax.value_and_grad(lambda t: loss_fn(merge_params(t, frozen)), has_aux=has_aux)(
      trainable)
