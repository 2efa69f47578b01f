"""The demo Space: load any saved hfgen pipeline and sample it in a Gradio app (``app.py`` at the repository root).

The callbacks are plain functions of a pipeline, without Gradio. :func:`describe` finds what a pipeline offers
(steps, solvers, bridge directions, velocity field, density, 2-D latent) from its ``__call__`` signature, its
scheduler, its methods and its output, so a new pipeline needs no change here: one whose output has ``images``
shows them as a grid. :func:`sample`, :func:`density_image`, :func:`decode_latent` and :func:`latent_map` draw
with :mod:`hfgen.plotting`. :func:`build_demo` lays out the ``gr.Blocks`` interface; Gradio is imported there only.

One module per job: :mod:`~hfgen.space.describe` (what a pipeline offers), :mod:`~hfgen.space.loading` (loading and
caching), :mod:`~hfgen.space.sampling` (a draw from the sampling controls), :mod:`~hfgen.space.figures` (its
pictures), :mod:`~hfgen.space.maps` (the density and latent tabs), :mod:`~hfgen.space.callbacks` (what the buttons
do), :mod:`~hfgen.space.layout` (the interface) and :mod:`~hfgen.space.messages` (checks of the controls' values).
"""

from hfgen.space.callbacks import on_density, on_latent, sample_controls
from hfgen.space.describe import ModelInfo, describe
from hfgen.space.layout import build_demo
from hfgen.space.loading import NOT_A_PIPELINE, clear_cache, load_model, load_pipeline
from hfgen.space.maps import DIGIT_SIZE, LATENT_RANGE, decode_latent, density_image, latent_map
from hfgen.space.sampling import MAX_SAMPLES, MAX_SEED, SampleResult, sample

__all__ = [
    "DIGIT_SIZE",
    "LATENT_RANGE",
    "MAX_SAMPLES",
    "MAX_SEED",
    "NOT_A_PIPELINE",
    "ModelInfo",
    "SampleResult",
    "build_demo",
    "clear_cache",
    "decode_latent",
    "density_image",
    "describe",
    "latent_map",
    "load_model",
    "load_pipeline",
    "on_density",
    "on_latent",
    "sample",
    "sample_controls",
]
