"""Readers and writers at the doors: files (and ``keras.Model`` objects) in and out.

Formats register in ``formats.py`` (how a new reader joins is told there); the names below are
the ones the rest of surgeon uses.
"""

from __future__ import annotations

from surgeon.io.files import format_for_output
from surgeon.io.formats import detect_input, read_model, write_model

__all__ = ["read_model", "write_model", "detect_input", "format_for_output"]
