"""Loading FLUX weights from local `.safetensors` files, without torch.

`load_flux_transformer` (original black-forest-labs or diffusers layout, single file or sharded
with an index), `load_autoencoder` (diffusers layout) and `load_genfocus_lora` (Genfocus's LoRA
files) fill a Flax params tree leaf by leaf, directly into the target sharding; `safetensors_io`
reads and writes the format with numpy.
"""
from diffcamera_jax.weights.load import load_autoencoder, load_flux_transformer, load_genfocus_lora
from diffcamera_jax.weights.safetensors_io import SafetensorsCheckpoint, save_file

__all__ = ["load_autoencoder", "load_flux_transformer", "load_genfocus_lora",
           "SafetensorsCheckpoint", "save_file"]
