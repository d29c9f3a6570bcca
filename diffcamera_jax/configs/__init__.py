"""Training configs (code, with variants) and their validation.

`default` (the schema every other config starts from), `gpu`, `tpu_v4` and `flux_lora`; each has
`get_config(arg)`. `validation.validate_config` checks a config before anything is built. The
repository's `configs/*.py` name these files for `--config=configs/NAME.py[:variant]`.
"""
