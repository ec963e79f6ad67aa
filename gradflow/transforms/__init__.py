"""The primitives every gradflow optimizer is built from, one family per module."""
