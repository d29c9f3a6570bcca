"""Laptop / CPU default: procedural scenes, a small in-context DiT in pixel mode.

`python -m diffcamera_jax.train --config=configs/default.py` trains a model that refocuses the
built-in procedural scenes within minutes on a 2-core CPU. Variants: `--config=configs/default.py:tiny`
shrinks everything further (tests, smoke runs).
"""
import ml_collections


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  """Returns the default configuration; `arg='tiny'` gives the test-sized variant."""
  config = ml_collections.ConfigDict()
  config.seed = 0

  # ---------------------------------------------------------------- data
  config.data = ml_collections.ConfigDict()
  config.data.source = "procedural"  # "procedural" | "tfds"
  config.data.tfds_name = "image_depth_folder"
  config.data.tfds_data_dir = ""  # local dir or gs:// bucket path with the prepared dataset
  config.data.split = "train"
  config.data.procedural_seed = 0  # training scenes; evaluation uses a disjoint held-out seed
  config.data.image_size = (64, 64)  # (H, W) of training crops
  config.data.batch_size = 16  # global batch (examples; each yields a stacking pair of targets)
  config.data.num_workers = 0  # Grain mp_prefetch worker processes (0 = in-process)
  config.data.prefetch_buffer = 2
  config.data.shuffle_seed = 0
  config.data.gamma = 2.2  # sRGB <-> linear light inside the renderer
  # Cameras, sampled on the host. Blur is a CoC radius in pixels at `blur_reference_size`,
  # rescaled to the training resolution (0-40 at 512^2, scaled with resolution).
  config.data.blur_range = (0.0, 40.0)
  config.data.blur_reference_size = 512
  config.data.p_source_all_in_focus = 0.3  # reference is the all-in-focus image (K_s = 0)
  config.data.p_target_all_in_focus = 0.25  # target K_t = 0: the deblur task
  config.data.aperture_blades = (0,)  # choices; 0 = disk, n >= 3 = n-gon
  config.data.random_aperture_rotation = True

  # ---------------------------------------------------------------- model
  config.model = ml_collections.ConfigDict()
  config.model.name = "dit"  # "dit" | "flux" | "regression" (the learned baseline)
  config.model.size = "S"  # see diffcamera_jax/models/sizes.py
  config.model.latent_mode = "pixels"  # "pixels" | "vae"
  # Patch 8 at 64x64: 64 target tokens. At patch 4 (256 tokens) a 2-core CPU manages ~0.4
  # steps/s, at patch 8 ~1.2 (measured), so a 15-minute run gets ~3x the updates.
  config.model.patch_size = 8
  config.model.vae_params = ""  # params file for latent_mode="vae"
  config.model.dtype = "float32"  # compute dtype; "bfloat16" on accelerators
  config.model.param_dtype = "float32"
  config.model.remat = "none"  # "none" | "full" | "dots" (named remat policies)
  config.model.scan_layers = False
  # Channels of a convolutional stem and head at full latent resolution around the tokens, one
  # per stride 1, 2, ..., patch_size / 2 (models/pixel_path.py); () = tokens alone.
  config.model.pixel_widths = ()
  # Condition the blocks' adaLN on the camera too (beside the in-context camera tokens).
  config.model.camera_adaln = False
  # Give the pixel stem the signed circle of confusion of the requested camera (needs pixel_widths).
  config.model.defocus_map = False
  config.model.attention_chunk = 0  # query block size of attention; > 0 bounds its memory
  # "fold": depth patches projected and added to the reference tokens (sequence 2N + camera);
  # "tokens": depth as its own N tokens (3N + camera). See docs/model.md.
  config.model.depth_mode = "fold"
  config.model.camera_frequencies = 8  # Fourier features of the camera condition
  config.model.rope_theta = 10_000.0
  config.model.mlp_activation = "relu2"  # "relu2" | "gelu" | "silu" (docs/model.md)
  config.model.dropout = 0.0
  # The restoration stage (objective.prior="restore", models/restorer.py): a conv U-Net over the
  # photo and its Wiener deconvolutions by disks of these radii (pixels), predicting a sharp image
  # and (at the training size) a disparity map.
  # The learned baseline's U-Net widths (model.name="regression", models/regression.py).
  config.model.regression_widths = (24, 48, 96)
  config.model.restorer = ml_collections.ConfigDict()
  config.model.restorer.widths = (16, 32, 64)  # channels at full, 1/2 and 1/4 resolution
  config.model.restorer.depth_widths = (8, 16, 32)  # the disparity U-Net's
  config.model.restorer.radii = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0)
  config.model.restorer.regularization = 1e-2  # Wiener noise-to-signal ratio
  # A second U-Net corrects a given map (models/restorer.py); train it with
  # objective.p_depth_corrupt > 0. The variant "refine_depth" does both.
  config.model.restorer.refine_depth = False
  config.model.restorer.refine_widths = (16, 32, 64)  # the map-correcting U-Net's
  # AutoencoderKL-style VAE for latent_mode="vae" (random init unless vae_params is set).
  config.model.vae = ml_collections.ConfigDict()
  config.model.vae.channels = 32
  config.model.vae.channel_mult = (1, 2, 2, 4)  # downsampling 2**(len - 1) = 8
  config.model.vae.num_res_blocks = 1
  config.model.vae.latent_channels = 4
  config.model.vae.scaling_factor = 1.0
  config.model.vae.shift_factor = 0.0

  # ---------------------------------------------------------------- FLUX backbone (model.name="flux")
  config.flux = ml_collections.ConfigDict()
  config.flux.variant = "dev"  # named FLUX size (see diffcamera_jax/models/flux.py)
  config.flux.transformer_weights = ""  # .safetensors file, or a sharded index.json
  config.flux.vae_weights = ""
  config.flux.text_embeddings = ""  # precomputed T5/CLIP embeddings (.npy/.safetensors); zeros if empty
  config.flux.lora_rank = 16
  config.flux.lora_alpha = 16.0
  config.flux.lora_targets = ("attn", "mlp")

  # ---------------------------------------------------------------- objective
  config.objective = ml_collections.ConfigDict()
  config.objective.stack_weight = 1.0  # lambda_stack
  config.objective.p_depth_drop = 0.2  # depth replaced by the learned null embedding
  # Fraction of training maps replaced by inaccurate ones (objective/depth_errors.py).
  config.objective.p_depth_corrupt = 0.0
  # Logit-normal t sampling, centred high: evaluation samples in one step (t = 1, the conditional
  # mean), and a 2000-step sweep scored +0.07 dB deblur / +0.14 dB refocus PSNR at mean 1.5 over
  # mean 0 (docs/results/sweep_h200).
  config.objective.timestep_mean = 1.5
  config.objective.timestep_std = 1.0
  config.objective.shift_base = 0.5  # ... with the SD3/FLUX resolution-dependent shift
  config.objective.shift_max = 1.15
  # Residual parameterisation: the flow generates enc(target) - enc(reference), so an
  # undertrained model degrades towards returning the reference rather than noise (docs/model.md).
  config.objective.residual = True
  # "x0": the network outputs the clean (residual) latent, v = (x_t - x0_hat) / t, loss on x0.
  # With patch 8 a token holds 192 values but the S model is 128 wide: a velocity output must
  # carry the noise through that bottleneck and cannot (measured: output PSNR 12 at step 500).
  config.objective.prediction = "x0"  # "velocity" | "x0"
  # The physics prior the flow starts from, which the DiT also sees (diffcamera_jax/objective/prior.py,
  # docs/model.md). "restore": the render of the restoration stage's sharp estimate, with the
  # given depth or the stage's own disparity estimate. "render": the re-render of the reference
  # with the given depth (the reference itself without depth). "none": the change from the
  # reference alone, as in the paper.
  config.objective.prior = "restore"  # "none" | "render" | "restore"
  # The restoration stage's own losses: sharp image (log or squared error, below), plus its
  # disparity and blur map estimates (absolute errors) at these relative weights.
  config.objective.restore_weight = 1.0
  # > 0: the sharp-image term is the per-example log error (mean PSNR, as evaluated) with this
  # floor on each example's MSE; 0: plain squared error (objective.restoration_losses).
  config.objective.restore_mse_floor = 1e-5
  config.objective.depth_weight = 1.0
  config.objective.depth_error = "abs"  # "abs" | "squared" (objective.restoration_losses)
  # With model.restorer.refine_depth: the weight of the corrected maps' squared error.
  config.objective.refine_weight = 10.0
  config.objective.blur_map_weight = 0.1
  # > 0 (prediction "x0" only): the flow term is the per-example log error of the clean latent
  # with this floor on each example's MSE ([0, 1] image scale); 0: plain squared error.
  config.objective.flow_mse_floor = 1e-5
  # Euler steps for evaluation and refocusing. One step returns the network's estimate of the
  # conditional mean (best PSNR); more steps draw a sample, sharper but farther from the truth
  # in PSNR (README, Results).
  config.objective.sample_steps = 1
  # The optics pre-pass that may deblur a photo before the model is an inference option
  # (diffcamera_jax/inference/options.py), not part of training.

  # ---------------------------------------------------------------- optimiser
  config.optim = ml_collections.ConfigDict()
  config.optim.learning_rate = 1.5e-3
  config.optim.restorer_lr_scale = 2.0  # the restoration stage's rate: 3e-3
  config.optim.warmup_steps = 30
  config.optim.weight_decay = 0.01
  config.optim.b1 = 0.9
  config.optim.b2 = 0.99
  config.optim.grad_clip_norm = 1.0
  # The evaluated params are the EMA ones: 0.99 averages ~100 steps (runs of a few hundred steps).
  config.optim.ema_decay = 0.99
  config.optim.end_lr_fraction = 0.1  # cosine decay ends at this fraction of learning_rate

  # ---------------------------------------------------------------- sharding
  config.mesh = ml_collections.ConfigDict()
  config.mesh.shape = (-1, 1, 1)  # (data, fsdp, tensor); -1 fills the remaining devices
  config.mesh.axis_names = ("data", "fsdp", "tensor")
  # Logical axis name -> mesh axes. Params and activations carry the logical names.
  config.mesh.logical_axis_rules = (
      ("batch", ("data", "fsdp")),
      ("embed", "fsdp"),
      ("mlp", "tensor"),
      ("heads", "tensor"),
      ("kv", None),
      ("length", None),
      ("channels", None),
      ("modulation", None),
      ("layers", None),
      ("vae_in", None),
      ("vae_out", None),
  )

  # ---------------------------------------------------------------- training loop
  config.train = ml_collections.ConfigDict()
  config.train.num_steps = 1150  # under 15 minutes alone on a 2-core CPU (README, Results)
  config.train.log_every = 25
  config.train.eval_every = 500
  config.train.checkpoint_every = 250
  config.train.keep_checkpoints = 3
  config.train.async_checkpointing = True
  # The longest the trainer waits on a data batch, a step (collectives included; the first step,
  # which compiles, is exempt) or a checkpoint save before it names the wait and exits (code 4).
  config.train.watchdog_seconds = 600

  # ---------------------------------------------------------------- evaluation during training
  config.eval = ml_collections.ConfigDict()
  config.eval.num_scenes = 16
  # Validation scenes: a seed of their own, apart from training (0) and the benchmark (10 000).
  config.eval.procedural_seed = 20_000
  config.eval.sample_steps = 1

  if arg == "tiny":
    config.data.image_size = (32, 32)
    config.data.batch_size = 4
    config.model.size = "tiny"
    config.model.patch_size = 4
    config.train.num_steps = 10
    config.train.log_every = 2
    config.train.eval_every = 5
    config.train.checkpoint_every = 5
    config.train.watchdog_seconds = 60
    config.eval.num_scenes = 2
    config.eval.sample_steps = 2
    config.objective.sample_steps = 2
  elif arg == "paper":
    apply_paper(config)
    config.train.num_steps = 1700  # about 30 minutes alone on a 2-core CPU (README, Results)
  elif arg == "regression":
    apply_regression(config)
  elif arg == "refine_depth":
    apply_refine_depth(config)
  elif arg:
    raise ValueError(f"configs/default.py: unknown variant {arg!r} "
                     "(expected '', 'tiny', 'paper', 'regression' or 'refine_depth')")
  return config


def apply_regression(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The learned baseline: the regression U-Net (`models/regression.py`) trained by the same
  trainer on the same data, with the squared error of its image to both targets of each example
  (`prediction="x0"`, no stacking term) and one sampling step, so its output is the image. Its
  steps take about the default model's wall-clock (README, Results)."""
  config.model.name = "regression"
  config.train.num_steps = 1376
  config.objective.prior = "none"
  config.objective.residual = False
  config.objective.prediction = "x0"
  config.objective.flow_mse_floor = 0.0
  config.objective.stack_weight = 0.0
  config.objective.sample_steps = 1
  config.eval.sample_steps = 1
  return config


def apply_refine_depth(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The default model taught to correct inaccurate depth maps: half the training maps are
  replaced by wrong ones (`objective/depth_errors.py`) and the restoration stage's disparity U-Net
  corrects the given map, which the prior then renders with (README, Results)."""
  config.model.restorer.refine_depth = True
  config.objective.p_depth_corrupt = 0.5
  # Twice the default's steps: on its own, the correcting U-Net needed ~3000 steps of 16 maps to
  # correct them (tools/refine_depth_study.py, docs/results/refine_depth).
  config.train.num_steps = 2300
  return config


def apply_paper(config: ml_collections.ConfigDict,
                pixel_widths: tuple[int, ...] = (16, 32, 64)) -> ml_collections.ConfigDict:
  """The paper's formulation: rectified flow on the target given the reference, its disparity and
  the camera, with the stacking constraint and depth dropout; no physics prior and no optics
  before the model (`docs/model.md`, *The paper variant*). Plain squared flow error; the DiT gets
  the pixel stem and head (`pixel_widths`, one per stride-2 step of the patch), the camera in
  its adaLN and the requested camera's signed circle of confusion as a stem input."""
  config.objective.prior = "none"
  config.objective.flow_mse_floor = 0.0
  config.model.pixel_widths = tuple(pixel_widths)
  config.model.camera_adaln = True
  config.model.defocus_map = True
  return config
