"""Config variants written as text: `NAME=field=value,field=value` (`tools/design_sweep.py`'s
`--variant`), values parsed as Python literals, else kept as strings."""
import ast
import re


def parse_variant(text: str) -> tuple[str, dict]:
  """`NAME=field=value,field=value` -> (NAME, {field: value})."""
  name, _, rest = text.partition("=")
  if not name:
    raise ValueError(f"variant {text!r}: expected NAME=field=value,...")
  overrides = {}
  # A comma starts a new override only before `field=` (values such as tuples hold commas too).
  for item in filter(None, re.split(r",(?=\s*[A-Za-z_][\w.]*=)", rest)):
    field, sep, value = item.strip().partition("=")
    if not sep:
      raise ValueError(f"variant {text!r}: override {item!r} is not field=value")
    try:
      overrides[field] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      overrides[field] = value
  return name, overrides
