"""notebooks/evaluate.ipynb runs headless, top to bottom, on a tiny exported model."""
import os

import flax.linen as nn
import jax
import nbformat
import pytest
from nbclient import NotebookClient

from diffcamera_jax.configs.default import get_config
from diffcamera_jax.exported import save_exported
from diffcamera_jax.models import build_model, example_inputs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_evaluate_notebook_executes(tmp_path, monkeypatch):
  config = get_config("tiny")
  model, codec = build_model(config)
  params = model.init({"params": jax.random.key(0)}, *example_inputs(codec, (32, 32)))["params"]
  save_exported(str(tmp_path / "model"), config, nn.meta.unbox(params))
  monkeypatch.setenv("DIFFCAMERA_MODEL", str(tmp_path / "model"))
  monkeypatch.setenv("DIFFCAMERA_SCENES", "2")
  monkeypatch.setenv("PYTHONPATH", ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  nb = nbformat.read(os.path.join(ROOT, "notebooks", "evaluate.ipynb"), as_version=4)
  NotebookClient(nb, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": ROOT}}).execute()
  outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
  assert not [o for o in outputs if o.output_type == "error"]
  images = [o for o in outputs if "image/png" in o.get("data", {})]
  svgs = [o for o in outputs if "image/svg+xml" in o.get("data", {})]
  assert len(images) == 3 and len(svgs) == 2
  text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
  assert "renderer (true depth)" in text and "LVCorr" in text
