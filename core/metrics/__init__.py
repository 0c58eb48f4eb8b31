"""Measurements: device memory, roofline floors, drift statistics."""
