"""LPIPS weights for `diffcamera_jax.evaluation.lpips` from the official PyTorch files (dev-only; needs torch).

Convert (local files only; nothing is downloaded):

    python tools/convert_lpips.py convert --net alex \
        --backbone alexnet-owt-7be5be79.pth --lin lpips/weights/v0.1/alex.pth --out lpips_alex.npz
    python tools/convert_lpips.py convert --net vgg \
        --backbone vgg16-397923af.pth --lin lpips/weights/v0.1/vgg.pth --out lpips_vgg.safetensors

`--backbone` is torchvision's ImageNet state dict of `alexnet` / `vgg16` (only `features.*` is
kept), `--lin` the `lpips` package's v0.1 linear layers (`lin{l}.model.1.weight`; by default the
copy inside an installed `lpips` package). The output holds the names documented in
`diffcamera_jax/evaluation/lpips.py` and is checked by loading it back.

Test fixtures (`tests/fixtures/lpips/`): the official `lpips` package (0.1.x, `pip install --no-deps
lpips`) run on small random networks of the AlexNet and VGG16 layouts. torchvision is not needed:
its `alexnet().features` / `vgg16().features` layer lists are rebuilt here, with small widths, and
handed to `lpips.LPIPS(pnet_rand=True, pretrained=False)`, whose own code does the scaling layer,
slicing, normalisation, linear layers and averaging.

    python tools/convert_lpips.py fixtures
"""
from __future__ import annotations

import argparse
import os
import sys
import types

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from diffcamera_jax.evaluation import lpips as jlpips  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "lpips")
# Small conv widths for the fixtures (keeps them well under 1 MB).
FIXTURE_WIDTHS = {"alex": (16, 24, 32, 24, 24), "vgg": (8, 8, 12, 12, 16, 16, 16, 16, 16, 16, 16, 16, 16)}
FIXTURE_SIZES = {"alex": 48, "vgg": 32}


def _torch_load(path):
  import torch
  sd = torch.load(path, map_location="cpu", weights_only=True)
  if isinstance(sd, dict) and "state_dict" in sd:
    sd = sd["state_dict"]
  return {k: v.detach().float().numpy() for k, v in sd.items()}


def _default_lin(net: str) -> str:
  import importlib.util
  spec = importlib.util.find_spec("lpips")
  if spec is None:
    raise SystemExit("--lin not given and the lpips package is not installed")
  return os.path.join(spec.submodule_search_locations[0], "weights", "v0.1", f"{net}.pth")


def convert(args) -> None:
  backbone = {k: v for k, v in _torch_load(args.backbone).items() if k.startswith("features.")}
  lin = _torch_load(args.lin or _default_lin(args.net))
  params = jlpips.canonical_names({**backbone, **lin})
  keep = {f"features.{i}.{p}" for i in jlpips.conv_indices(args.net) for p in ("weight", "bias")}
  keep |= {f"lin{l}.weight" for l in range(5)}
  params = {k: v for k, v in params.items() if k in keep}
  jlpips.check_params(args.net, params)
  jlpips.save_params(args.out, params)
  loaded = jlpips.LPIPS.load(args.out)
  assert loaded.net == args.net, (loaded.net, args.net)
  print(f"{args.out}: {len(params)} tensors, net {args.net}")


def _torchvision_stub(widths):
  """A `torchvision` module whose `models.alexnet` / `models.vgg16` give torchvision's `features`
  layer lists (same indices, kernels, strides, paddings, pools) with the given conv widths."""
  import torch.nn as nn

  def alexnet(pretrained=False, **_):
    c = widths["alex"]
    return types.SimpleNamespace(features=nn.Sequential(
        nn.Conv2d(3, c[0], 11, 4, 2), nn.ReLU(True), nn.MaxPool2d(3, 2),
        nn.Conv2d(c[0], c[1], 5, padding=2), nn.ReLU(True), nn.MaxPool2d(3, 2),
        nn.Conv2d(c[1], c[2], 3, padding=1), nn.ReLU(True),
        nn.Conv2d(c[2], c[3], 3, padding=1), nn.ReLU(True),
        nn.Conv2d(c[3], c[4], 3, padding=1), nn.ReLU(True), nn.MaxPool2d(3, 2)))

  def vgg16(pretrained=False, **_):
    c, layers, c_in, i = widths["vgg"], [], 3, 0
    for block in (2, 2, 3, 3, 3):
      for _ in range(block):
        layers += [nn.Conv2d(c_in, c[i], 3, padding=1), nn.ReLU(True)]
        c_in, i = c[i], i + 1
      layers.append(nn.MaxPool2d(2, 2))
    return types.SimpleNamespace(features=nn.Sequential(*layers))

  tv = types.ModuleType("torchvision")
  tv.models = types.SimpleNamespace(alexnet=alexnet, vgg16=vgg16)
  return tv


def fixtures(args) -> None:
  import torch
  sys.modules["torchvision"] = _torchvision_stub(FIXTURE_WIDTHS)
  import lpips
  os.makedirs(FIXTURES, exist_ok=True)
  for n, net in enumerate(("alex", "vgg")):
    params = jlpips.random_params(net, seed=10 + n, channels=FIXTURE_WIDTHS[net])
    model = lpips.LPIPS(pretrained=False, net=net, pnet_rand=True, verbose=False)
    taps = [params[f"lin{l}.weight"].shape[1] for l in range(5)]
    lins = [lpips.NetLinLayer(c, use_dropout=True) for c in taps]
    for l, layer in enumerate(lins):
      setattr(model, f"lin{l}", layer)
    model.lins = torch.nn.ModuleList(lins)
    model.eval()
    state = {}
    for name in model.state_dict():
      idx = name.split(".")
      if name.startswith("net.slice"):  # net.slice{s}.{i}.weight -> features.{i}.weight
        state[name] = torch.from_numpy(params[f"features.{idx[2]}.{idx[3]}"])
      elif name.startswith("lins."):  # lins.{l}.model.1.weight (the same module as lin{l})
        state[name] = torch.from_numpy(params[f"lin{idx[1]}.weight"])
      elif name.startswith("lin"):  # lin{l}.model.1.weight
        state[name] = torch.from_numpy(params[f"{idx[0]}.weight"])
    missing = set(model.state_dict()) - set(state)
    assert not [m for m in missing if not m.startswith("scaling_layer")], missing
    model.load_state_dict(state, strict=False)
    size = FIXTURE_SIZES[net]
    rng = np.random.default_rng(100 + n)
    a = rng.uniform(size=(3, size, size, 3)).astype(np.float32)
    b = np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1).astype(np.float32)
    b[2] = rng.uniform(size=(size, size, 3))  # an unrelated image
    to_t = lambda x: torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
      dist, per_layer = model(to_t(a), to_t(b), retPerLayer=True, normalize=True)
    per_layer = np.stack([p.reshape(-1).numpy() for p in per_layer], -1)
    jlpips.save_params(os.path.join(FIXTURES, f"{net}_weights.npz"), params)
    np.savez_compressed(os.path.join(FIXTURES, f"{net}_io.npz"), a=a, b=b,
                        distance=dist.reshape(-1).numpy(), per_layer=per_layer,
                        lpips_version=np.array(lpips.__version__ if hasattr(lpips, "__version__")
                                               else "0.1"))
    print(net, dist.reshape(-1).numpy())


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  sub = p.add_subparsers(dest="cmd", required=True)
  c = sub.add_parser("convert")
  c.add_argument("--net", choices=("alex", "vgg"), required=True)
  c.add_argument("--backbone", required=True, help="torchvision alexnet/vgg16 state dict (.pth)")
  c.add_argument("--lin", help="lpips v0.1 linear layers (.pth); default: the installed package's")
  c.add_argument("--out", required=True, help=".npz or .safetensors")
  sub.add_parser("fixtures")
  args = p.parse_args()
  {"convert": convert, "fixtures": fixtures}[args.cmd](args)


if __name__ == "__main__":
  main()
