"""Training data: procedural scenes, the `image_depth_folder` TFDS builder, the Grain host
pipeline (crops, camera sampling, batching, checkpointable iterators) and the on-device stage that
renders reference, targets, stacking mask and multi-focus images with `diffcamera_jax.optics`.

Submodules are imported explicitly (`from data_pipeline import procedural`) so that Grain worker
processes, which only need numpy, never import JAX or TensorFlow by accident.
"""
