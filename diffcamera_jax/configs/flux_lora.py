"""DiffCamera as the paper trains it: LoRA on a frozen FLUX.1 transformer, FLUX VAE latents.

Variants (`--config=configs/flux_lora.py:VARIANT`):
  ""      TPU pod, 512^2, FLUX.1-dev in bf16, FSDP over every chip, scanned + rematted blocks;
          global batch 32: one example per device on a v4-32 (9.1 GiB of a 16 GiB TensorCore
          in the compiled plan; two per device do not fit), four per chip on a v5p-8 fits too;
  "1024"  the same at 1024^2 (4x the tokens per image): needs 95 GiB chips (v5p: 55.7 GiB per
          chip at two examples per chip); one example per v4 TensorCore does not fit
          (docs/results/flux_compiled_plans.json, docs/flux.md);
  "tiny"  a random tiny FLUX and VAE on procedural scenes, no weight files: CPU tests and smoke
          runs (the random base comes from `config.seed`; see docs/flux.md).
Weights are local paths (memory-mapped) or bucket paths (`gs://...`, streamed leaf by leaf into
the shardings, no local copy): the transformer as the original single file
(`flux1-dev.safetensors`) or diffusers' `transformer/` directory (sharded, with its index), the
VAE as the original `ae.safetensors` or diffusers' `vae/` directory; text embeddings are one
precomputed prompt
(`.safetensors`/`.npz` with `txt` [Lt, 4096] and `y` [768]; zeros when empty). The "tiny"
FLUX variant comes with the tiny VAE and 8 text tokens (models/flux_diffcamera.py).
"""
import ml_collections

from diffcamera_jax.configs import default


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  """FLUX + LoRA configuration; `arg` in {"", "1024", "tiny"}."""
  config = default.get_config()
  config.model.name = "flux"
  config.model.latent_mode = "vae"
  config.model.patch_size = 2  # FLUX packs 2x2 latent pixels per token
  config.model.dtype = "bfloat16"
  config.model.param_dtype = "bfloat16"  # the frozen base; adapters and conditions stay f32
  config.model.remat = "full"
  config.model.scan_layers = True

  config.flux.variant = "dev"
  config.flux.transformer_weights = "/data/flux1-dev/flux1-dev.safetensors"  # local, memory-mapped
  config.flux.vae_weights = "/data/flux1-dev/vae"
  config.flux.text_embeddings = ""  # e.g. /data/prompts/refocus.safetensors
  config.flux.lora_rank = 64
  config.flux.lora_alpha = 64.0
  config.flux.lora_targets = ("attn", "mlp")  # groups of FLUX dense layers (models/flux.py)

  config.data.source = "tfds"
  config.data.tfds_data_dir = "gs://YOUR_BUCKET/tfds"
  config.data.image_size = (512, 512)
  config.data.batch_size = 32
  config.data.num_workers = 16
  config.data.prefetch_buffer = 4
  config.mesh.shape = (1, -1, 1)  # pure FSDP: the 12B base is sharded over every chip

  config.optim.learning_rate = 1e-4
  config.optim.warmup_steps = 500
  config.optim.weight_decay = 0.0
  config.optim.ema_decay = 0.999
  config.train.num_steps = 30_000
  config.train.log_every = 50
  config.train.eval_every = 2_000
  config.train.checkpoint_every = 1_000
  config.train.watchdog_seconds = 1800  # a large state to a bucket
  config.eval.num_scenes = 32
  config.eval.sample_steps = 28
  config.objective.sample_steps = 28
  config.objective.prior = "none"  # the physics prior is a DiT input only
  config.objective.flow_mse_floor = 0.0  # VAE latents: plain squared error, as in the paper

  if arg == "1024":
    config.data.image_size = (1024, 1024)
    config.data.batch_size = 32
  elif arg == "tiny":
    config.flux.variant = "tiny"
    config.flux.transformer_weights = ""
    config.flux.vae_weights = ""
    config.flux.lora_rank = 4
    config.flux.lora_alpha = 4.0
    config.model.dtype = "float32"
    config.model.param_dtype = "float32"
    config.model.remat = "none"
    config.model.scan_layers = False
    config.data.source = "procedural"
    config.data.tfds_data_dir = ""
    config.data.image_size = (32, 32)
    config.data.batch_size = 2
    config.data.num_workers = 0
    config.mesh.shape = (-1, 1, 1)
    config.optim.learning_rate = 1e-2
    config.optim.warmup_steps = 0
    config.train.num_steps = 4
    config.eval.num_scenes = 2
    config.eval.sample_steps = 2
    config.objective.sample_steps = 2
  elif arg:
    raise ValueError(f"configs/flux_lora.py: unknown variant {arg!r} (expected '', '1024' or 'tiny')")
  return config
