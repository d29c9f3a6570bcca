"""Installs `diffcamera_jax` (optics, models, training, inference) and `data_pipeline`."""
from setuptools import find_packages, setup

RUNTIME = [
    # JAX 0.10.x is the newest for Python 3.11; newer releases need Python >= 3.12.
    "jax>=0.9,<0.13",
    "flax>=0.12,<0.14",
    "optax>=0.2.5",
    "orbax-checkpoint>=0.11",
    "etils[epath]>=1.5",  # paths local or in buckets (workdirs, checkpoints, samples)
    "grain>=0.2.12",
    "tensorflow-datasets>=4.9.8",
    "array-record>=0.8",
    # clu's metric writers and periodic actions import TensorFlow.
    "tensorflow-cpu>=2.19",
    "tensorboard>=2.19",
    "clu>=0.0.12",
    "ml-collections>=1.0",
    "einops>=0.8",
    "numpy>=1.26",
    "Pillow>=10.0",
    "safetensors>=0.4",
    "dm-pix>=0.4.3",
    "tqdm>=4.66",
    # tensorflow-datasets needs it to construct builders (not always pulled in by its own metadata).
    "importlib_resources>=6.0",
]

TEST = [
    "pytest>=8.0",
    "pytest-timeout>=2.3",
    "pytest-xdist>=3.5",  # the suite runs its test files in parallel worker processes
    "portpicker>=1.6",  # free ports for the multi-process tests
    "nbclient>=0.10",
    "nbformat>=5.10",
    "ipykernel>=6.29",
]

setup(
    name="diffcamera_jax",
    version="0.1.0",
    description="DiffCamera refocusing diffusion transformer in JAX/Flax, TPU-first.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["diffcamera_jax", "diffcamera_jax.*", "data_pipeline", "data_pipeline.*"]),
    install_requires=RUNTIME,
    extras_require={"test": TEST},
)
