"""The built-in offline model: a small captioner + scorer trained on `capfleet synth` scenes.

Its weights ship inside the package (model/), reproduced by scripts/build_builtin_model.py.
"""

from pathlib import Path

MODEL_DIR = Path(__file__).resolve().parent / "model"
