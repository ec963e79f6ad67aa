"""Experiments: test landscapes and compiled optimizer races."""
