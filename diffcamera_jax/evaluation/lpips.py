"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual
Metric"), version 0.1 of the official `lpips` package, in JAX. Images `[..., H, W, 3]` in [0, 1].

    d(x, y) = sum_l mean_{h,w} sum_c w_l[c] * (f_l(x)[h,w,c] / |f_l(x)[h,w]| - f_l(y)[h,w,c] / |f_l(y)[h,w]|)^2

where `f_l` are five ReLU feature maps of a backbone (AlexNet or VGG16 `features`, as torchvision
defines them), `|.|` is the L2 norm over channels (+1e-10) and `w_l >= 0` is the learned 1x1
linear layer of level l. Inputs are mapped to [-1, 1] and then through the official ScalingLayer:
`(2x - 1 - SHIFT) / SCALE`.

Weights are read from a LOCAL `.npz` or `.safetensors` file (nothing is downloaded). Tensor names
and layouts are those of the PyTorch state dicts, so a file is the torchvision backbone's
`features` plus the `lpips` package's linear layers:

| name | shape | what |
|---|---|---|
| `features.{i}.weight` | `[out, in, kh, kw]` (OIHW) | conv i of torchvision `alexnet().features` (i in 0, 3, 6, 8, 10) or `vgg16().features` (i in 0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28) |
| `features.{i}.bias` | `[out]` | its bias |
| `lin{l}.weight` | `[1, C_l, 1, 1]` or `[C_l]` | linear layer of level l = 0..4 (`lin{l}.model.1.weight` in the `lpips` package's `alex.pth` / `vgg.pth`; that name is accepted too) |

The backbone is recognised from the names (`features.28.weight` -> VGG16, else AlexNet). Channel
counts are taken from the weights, so smaller networks of the same layout work too (tests use
them). `tools/convert_lpips.py` writes such a file from the official `.pth` files.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

# The official ScalingLayer (lpips v0.1): applied to inputs already mapped to [-1, 1].
SHIFT = np.array([-0.030, -0.088, -0.188], np.float32)
SCALE = np.array([0.458, 0.448, 0.450], np.float32)
EPS = 1e-10  # lpips.normalize_tensor

# Layer programs of torchvision's `features`, cut where the lpips package taps them (after the
# ReLU of relu1..relu5). ("conv", index, stride, padding) | ("pool", window, stride) | "tap".
# Every conv is followed by a ReLU.
_ALEX = (("conv", 0, 4, 2), "tap", ("pool", 3, 2), ("conv", 3, 1, 2), "tap", ("pool", 3, 2),
         ("conv", 6, 1, 1), "tap", ("conv", 8, 1, 1), "tap", ("conv", 10, 1, 1), "tap")
_VGG = (("conv", 0, 1, 1), ("conv", 2, 1, 1), "tap", ("pool", 2, 2),
        ("conv", 5, 1, 1), ("conv", 7, 1, 1), "tap", ("pool", 2, 2),
        ("conv", 10, 1, 1), ("conv", 12, 1, 1), ("conv", 14, 1, 1), "tap", ("pool", 2, 2),
        ("conv", 17, 1, 1), ("conv", 19, 1, 1), ("conv", 21, 1, 1), "tap", ("pool", 2, 2),
        ("conv", 24, 1, 1), ("conv", 26, 1, 1), ("conv", 28, 1, 1), "tap")
PROGRAMS = {"alex": _ALEX, "vgg": _VGG}
# Channels of the official networks (features of relu1..relu5).
CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}
_OFFICIAL_WIDTHS = {"alex": (64, 192, 384, 256, 256),
                    "vgg": (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)}
_KERNELS = {"alex": {0: 11, 3: 5, 6: 3, 8: 3, 10: 3}, "vgg": {i: 3 for i in
                                                             (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)}}


def conv_indices(net: str) -> tuple[int, ...]:
  return tuple(op[1] for op in PROGRAMS[net] if isinstance(op, tuple) and op[0] == "conv")


def feature_shapes(net: str, height: int, width: int) -> list[tuple[int, int]]:
  """Spatial sizes of the five tapped feature maps for an `height x width` input."""
  h, w, out = height, width, []
  for op in PROGRAMS[net]:
    if op == "tap":
      out.append((h, w))
    elif op[0] == "conv":
      k, s, p = _KERNELS[net][op[1]], op[2], op[3]
      h, w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    else:
      k, s = op[1], op[2]
      h, w = (h - k) // s + 1, (w - k) // s + 1
    if h < 1 or w < 1:
      break
  return out


def min_size(net: str) -> int:
  """Smallest square input whose five feature maps are all non-empty."""
  size = 1
  while len(feature_shapes(net, size, size)) < 5:
    size += 1
  return size


@dataclasses.dataclass(frozen=True)
class LPIPS:
  """An LPIPS network: `net` ("alex" | "vgg") and its parameters (torch names, see module doc).

  Call it on two image batches `[..., H, W, 3]` in [0, 1] -> distances `[...]` (jitted).
  """
  net: str
  params: Mapping[str, jax.Array]

  def __post_init__(self):
    check_params(self.net, self.params)

  def __call__(self, a, b) -> jax.Array:
    return lpips_distance(self.params, a, b, net=self.net)

  def per_layer(self, a, b) -> jax.Array:
    """The five per-level terms `[..., 5]` whose sum is the distance."""
    return _per_layer(self.params, jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32),
                      net=self.net)

  @classmethod
  def load(cls, path: str) -> "LPIPS":
    params = load_params(path)
    return cls(detect_net(params), {k: jnp.asarray(v) for k, v in params.items()})


def detect_net(params: Mapping[str, np.ndarray]) -> str:
  return "vgg" if "features.28.weight" in params else "alex"


def check_params(net: str, params: Mapping[str, np.ndarray]) -> None:
  """Raises ValueError unless `params` is a complete, consistent `net` (see the module doc)."""
  if net not in PROGRAMS:
    raise ValueError(f"net must be one of {sorted(PROGRAMS)}, got {net!r}")
  missing = [f"features.{i}.{p}" for i in conv_indices(net) for p in ("weight", "bias")
             if f"features.{i}.{p}" not in params] + [f"lin{l}.weight" for l in range(5)
                                                       if f"lin{l}.weight" not in params]
  if missing:
    raise ValueError(f"LPIPS ({net}) weights lack {missing}")
  channels, taps = 3, []
  for op in PROGRAMS[net]:
    if op == "tap":
      taps.append(channels)
    elif op[0] == "conv":
      w, b = params[f"features.{op[1]}.weight"], params[f"features.{op[1]}.bias"]
      k = _KERNELS[net][op[1]]
      if w.ndim != 4 or w.shape[1:] != (channels, k, k) or b.shape != (w.shape[0],):
        raise ValueError(f"features.{op[1]}: expected weight [out, {channels}, {k}, {k}] and bias "
                         f"[out], got {tuple(w.shape)} and {tuple(b.shape)}")
      channels = w.shape[0]
  for l, c in enumerate(taps):
    lin = params[f"lin{l}.weight"]
    if lin.shape not in ((c,), (1, c, 1, 1)):
      raise ValueError(f"lin{l}.weight: expected [1, {c}, 1, 1] or [{c}], got {tuple(lin.shape)}")
    if np.any(np.asarray(lin) < 0):
      raise ValueError(f"lin{l}.weight: LPIPS linear layers must be non-negative")


def _conv(x, w, b, stride, pad):
  y = jax.lax.conv_general_dilated(x, w, (stride, stride), ((pad, pad), (pad, pad)),
                                   dimension_numbers=("NHWC", "OIHW", "NHWC"),
                                   precision=jax.lax.Precision.HIGHEST)
  return jax.nn.relu(y + b)


def _maxpool(x, window, stride):
  # torch MaxPool2d (no padding, floor mode) == VALID windows.
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, window, window, 1),
                               (1, stride, stride, 1), "VALID")


def features(params: Mapping[str, jax.Array], x: jax.Array, *, net: str) -> list[jax.Array]:
  """The five tapped ReLU feature maps `[N, h, w, C]` of scaled inputs `x` `[N, H, W, 3]`."""
  taps = []
  for op in PROGRAMS[net]:
    if op == "tap":
      taps.append(x)
    elif op[0] == "conv":
      x = _conv(x, params[f"features.{op[1]}.weight"], params[f"features.{op[1]}.bias"],
                op[2], op[3])
    else:
      x = _maxpool(x, op[1], op[2])
  return taps


def scale_inputs(image: jax.Array) -> jax.Array:
  """[0, 1] -> [-1, 1] -> the official ScalingLayer."""
  return (2.0 * image - 1.0 - SHIFT) / SCALE


def _unit(f):
  return f / (jnp.sqrt(jnp.sum(f * f, axis=-1, keepdims=True)) + EPS)


def _unit_features(params, x, *, net):
  return [_unit(f) for f in features(params, scale_inputs(x), net=net)]


def _layer_terms(params, fa, fb):
  terms = []
  for l, (ua, ub) in enumerate(zip(fa, fb)):
    w = params[f"lin{l}.weight"].reshape(-1)
    terms.append(jnp.mean(jnp.einsum("nhwc,c->nhw", (ua - ub) ** 2, w, precision="highest"),
                          axis=(1, 2)))
  return jnp.stack(terms, -1)


_unit_features = jax.jit(_unit_features, static_argnames=("net",))
_layer_terms = jax.jit(_layer_terms)


def _per_layer(params, a, b, *, net):
  if a.shape != b.shape or a.ndim < 3 or a.shape[-1] != 3:
    raise ValueError(f"lpips: expected two [..., H, W, 3] images of the same shape, got "
                     f"{a.shape} and {b.shape}")
  if len(feature_shapes(net, *a.shape[-3:-1])) < 5:
    raise ValueError(f"lpips ({net}): images of {a.shape[-3]}x{a.shape[-2]} are too small, need "
                     f"at least {min_size(net)}x{min_size(net)}")
  batch = a.shape[:-3]
  # Both images through the same compiled feature function (two calls, not one fused program), so
  # identical inputs give bit-identical features and LPIPS(x, x) is exactly 0.
  fa = _unit_features(params, a.reshape((-1,) + a.shape[-3:]), net=net)
  fb = _unit_features(params, b.reshape((-1,) + b.shape[-3:]), net=net)
  return _layer_terms(params, fa, fb).reshape(batch + (5,))


def lpips_distance(params: Mapping[str, jax.Array], a, b, *, net: str) -> jax.Array:
  """LPIPS between images `a`, `b` `[..., H, W, 3]` in [0, 1] -> `[...]` (0 = identical)."""
  return _per_layer(params, jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32),
                    net=net).sum(-1)


_LIN_ALIAS = re.compile(r"^lin(\d)\.model\.1\.weight$")


def canonical_names(params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Renames the lpips package's `lin{l}.model.1.weight` to `lin{l}.weight`; drops `net.`/`module.`
  prefixes (`net.features.0.weight` -> `features.0.weight`)."""
  out = {}
  for k, v in params.items():
    for prefix in ("module.", "net."):
      if k.startswith(prefix):
        k = k[len(prefix):]
    m = _LIN_ALIAS.match(k)
    out[f"lin{m.group(1)}.weight" if m else k] = np.asarray(v, np.float32)
  return out


def load_params(path: str) -> dict[str, np.ndarray]:
  """Reads a local `.npz` or `.safetensors` LPIPS weight file (float32 numpy arrays)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"LPIPS weights {path}: no such file")
  if path.endswith(".npz"):
    with np.load(path) as f:
      params = {k: f[k] for k in f.files}
  elif path.endswith(".safetensors"):
    from safetensors.numpy import load_file
    params = load_file(path)
  else:
    raise ValueError(f"LPIPS weights {path}: expected a .npz or .safetensors file")
  params = canonical_names(params)
  check_params(detect_net(params), params)
  return params


def save_params(path: str, params: Mapping[str, np.ndarray]) -> None:
  """Writes `.npz` or `.safetensors` (by extension) with the names of the module doc."""
  params = {k: np.ascontiguousarray(np.asarray(v, np.float32)) for k, v in canonical_names(params).items()}
  if path.endswith(".safetensors"):
    from safetensors.numpy import save_file
    save_file(params, path)
  elif path.endswith(".npz"):
    np.savez(path, **params)
  else:
    raise ValueError(f"{path}: expected a .npz or .safetensors path")


def random_params(net: str, seed: int = 0, channels: tuple[int, ...] | None = None,
                  kernel_scale: float = 1.0) -> dict[str, np.ndarray]:
  """Random weights of `net`'s layout (He-initialised convs, uniform [0, 1) linear layers).

  `channels`: output channels of every conv (default: the official network's). Deterministic for
  a seed (NumPy's PCG64), for tests and benchmarks of the formula without trained weights.
  """
  rng = np.random.default_rng(seed)
  convs = conv_indices(net)
  if channels is None:
    channels = _OFFICIAL_WIDTHS[net]
  if len(channels) != len(convs):
    raise ValueError(f"{net}: need {len(convs)} conv widths, got {len(channels)}")
  params, c_in, taps = {}, 3, []
  widths = dict(zip(convs, channels))
  for op in PROGRAMS[net]:
    if op == "tap":
      taps.append(c_in)
    elif op[0] == "conv":
      k, c_out = _KERNELS[net][op[1]], widths[op[1]]
      std = kernel_scale * np.sqrt(2.0 / (c_in * k * k))
      params[f"features.{op[1]}.weight"] = (rng.standard_normal((c_out, c_in, k, k)) * std).astype(np.float32)
      params[f"features.{op[1]}.bias"] = (0.1 * rng.standard_normal(c_out)).astype(np.float32)
      c_in = c_out
  for l, c in enumerate(taps):
    params[f"lin{l}.weight"] = rng.uniform(size=(1, c, 1, 1)).astype(np.float32)
  return params
