"""The built-in synthetic scene: a textured room rendered by ray casting along handheld camera
sequences and written as a Cambridge, 7-Scenes or COLMAP dataset (see `synthesize`)."""

from geoposenet.synthetic.core import PRESETS, SynthReport, synthesize

__all__ = ["PRESETS", "SynthReport", "synthesize"]
