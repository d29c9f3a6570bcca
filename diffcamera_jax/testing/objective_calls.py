"""The objective called the way the tests call it: its losses on a dict batch, its prior image as
a function."""


def refocus_losses(apply_fn, params, codec, batch: dict, rng, config, patch_size: int):
  """`Objective.losses` of `config` on a dict batch with every `Example` field."""
  from diffcamera_jax.objective.example import Example
  from diffcamera_jax.objective.objective import Objective
  return Objective.from_config(config).losses(apply_fn, params, codec, Example.from_dict(batch),
                                              rng, patch_size)


def prior_fn(config):
  """The objective's prior image of `config` as `fn(image, disparity, camera, keep)`."""
  from diffcamera_jax.objective.objective import Objective
  return Objective.from_config(config).prior_image
