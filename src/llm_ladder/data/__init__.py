"""Data shipped with the tool: evaluation and calibration text, the edit passage, task suites, NLTK's tokenizer."""

from pathlib import Path

DATA_DIR = Path(__file__).parent
