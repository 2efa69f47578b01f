"""Matplotlib figures for 2-D generative models: samples, trajectories, velocity fields and densities.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot (so nothing is shown, nothing
leaks into pyplot's figure registry, and any backend, Agg included, works); callers save it with
``fig.savefig(path)``. Points are ``(N, 2)`` tensors; matplotlib is imported only when a figure is drawn.

One module per kind of figure: :mod:`~hfgen.plotting.points` (samples, trajectories, histograms, the DDPM
processes), :mod:`~hfgen.plotting.fields` (velocity fields and densities), :mod:`~hfgen.plotting.animation`
(GIFs of moving points), :mod:`~hfgen.plotting.images` (image grids, reconstructions) and
:mod:`~hfgen.plotting.latent` (2-D latent spaces); :mod:`~hfgen.plotting.panels` holds what they share.
"""

from hfgen.plotting.animation import Animation, trajectory_animation
from hfgen.plotting.fields import plot_density, plot_velocity_field, plot_velocity_over_time
from hfgen.plotting.images import plot_image_grid, plot_reconstructions
from hfgen.plotting.latent import plot_latent_grid, plot_latent_scatter
from hfgen.plotting.points import (
    plot_diffusion_forward,
    plot_diffusion_reverse,
    plot_histograms_over_time,
    plot_samples,
    plot_trajectory,
)

__all__ = [
    "Animation",
    "plot_density",
    "plot_diffusion_forward",
    "plot_diffusion_reverse",
    "plot_histograms_over_time",
    "plot_image_grid",
    "plot_latent_grid",
    "plot_latent_scatter",
    "plot_reconstructions",
    "plot_samples",
    "plot_trajectory",
    "plot_velocity_field",
    "plot_velocity_over_time",
    "trajectory_animation",
]
