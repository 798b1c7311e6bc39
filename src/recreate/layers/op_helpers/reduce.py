"""Keras-only helper functions for recreate.layers.Op (reduce ATen ops); no torch here."""

from __future__ import annotations

HELPERS: dict = {}
