"""Keras-only helper functions for recreate.layers.Op (nn ATen ops); no torch here."""

from __future__ import annotations

HELPERS: dict = {}
