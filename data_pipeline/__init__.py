"""Training data on the host (numpy, Grain, TFDS): procedural scenes, the `image_depth_folder`
TFDS builder and the Grain pipeline (crops, camera sampling, batching, checkpointable iterators).
The device stage that renders the training example is the library's
(`diffcamera_jax.objective.example`); nothing here imports the library, except the dataset
command's entry point (`python -m data_pipeline.image_depth_folder`).

Submodules are imported explicitly (`from data_pipeline import procedural`) so that Grain worker
processes, which only need numpy, never import JAX or TensorFlow by accident.
"""

# The keys of a host batch (docs/architecture.md, "Host batch"): what the Grain pipeline yields
# and the device stage (`diffcamera_jax.objective.example.simulate`) reads.
HOST_BATCH_KEYS = ("image", "disparity", "source_focus", "source_blur", "target_focus",
                   "target_focus_2", "target_blur", "aperture_blades", "aperture_rotation")
