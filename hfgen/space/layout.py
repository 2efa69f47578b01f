"""The demo app's ``gr.Blocks`` interface: a model box with "Load", then a "Sample", a "Density" and a "Latent" tab,
each shown when the loaded pipeline supports it. Gradio is imported here only, when the interface is built."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from hfgen.space.callbacks import on_density, on_latent, sample_controls
from hfgen.space.describe import DIRECTIONS, ModelInfo
from hfgen.space.loading import load_model, load_pipeline
from hfgen.space.maps import LATENT_RANGE, latent_map
from hfgen.space.sampling import MAX_SAMPLES

if TYPE_CHECKING:
    import gradio as gr

__all__ = ["build_demo"]

#: the model line before any model is loaded
WELCOME = "Enter a saved pipeline's folder or Hub repo id, press Load."


@dataclass
class _Header:
    model_box: Any
    load_button: Any
    summary: Any
    status: Any
    current: Any


@dataclass
class _SampleTab:
    tab: Any
    steps: Any
    solver: Any
    direction: Any
    seed: Any
    count: Any
    button: Any
    samples: Any
    trajectory: Any
    velocity: Any


@dataclass
class _DensityTab:
    tab: Any
    grid: Any
    width: Any
    button: Any
    image: Any


@dataclass
class _LatentTab:
    tab: Any
    z1: Any
    z2: Any
    digit: Any
    map: Any


def _shows(info: ModelInfo | None, feature: str) -> bool:
    """Whether the loaded model (``info``; None before any) has ``feature``, a field of :class:`ModelInfo`."""
    return info is not None and bool(getattr(info, feature))


def _steps_settings(info: ModelInfo | None) -> dict[str, Any]:
    """Range, value and visibility of the steps slider: shown when the pipeline takes a choice of steps."""
    shown = info is not None and info.steps is not None
    return {"minimum": 1, "maximum": info.max_steps if shown else 1000, "value": info.steps if shown else 1,
            "visible": shown}  # fmt: skip


def _solver_settings(info: ModelInfo | None) -> dict[str, Any]:
    """Choices, value and visibility of the solver box: shown when the pipeline offers solvers."""
    return {"choices": list(info.solvers) if info else [], "value": info.default_solver if info else None,
            "visible": _shows(info, "solvers")}  # fmt: skip


def _latent_picture(info: ModelInfo | None) -> Image.Image | None:
    """The decoded latent grid of a model with a 2-D latent space (None otherwise)."""
    return latent_map(load_pipeline(info.name)) if _shows(info, "has_latent") else None


def _header(model: str | None, model_text: str, info: ModelInfo | None) -> _Header:
    import gradio as gr

    gr.Markdown("# hfgen\nSample a saved hfgen pipeline: flow matching, diffusion, bridges, VAEs and more.")
    with gr.Row():
        model_box = gr.Textbox(
            value=model or "", label="Model: folder or Hub repo id", placeholder="out/fm-checkerboard", scale=4
        )
        load_button = gr.Button("Load", scale=1)
    summary = gr.Markdown(model_text, elem_id="model")
    status = gr.Markdown("", elem_id="status")
    current = gr.State(info.name if info else None)
    return _Header(model_box, load_button, summary, status, current)


def _sample_tab(info: ModelInfo | None) -> _SampleTab:
    """Steps, solver, bridge direction, seed and number of samples → the samples, their trajectory (animated) and
    the velocity field over time."""
    import gradio as gr

    with gr.Tab("Sample", visible=_shows(info, "can_sample")) as tab:
        with gr.Row():
            steps = gr.Slider(**_steps_settings(info), step=1, label="steps")
            solver = gr.Dropdown(
                **_solver_settings(info), label="solver", info="sampler or ODE solver; 'scheduler' keeps the saved one"
            )
            direction = gr.Radio(
                list(DIRECTIONS), value=DIRECTIONS[0], label="direction", visible=_shows(info, "directions")
            )
        with gr.Row():
            seed = gr.Number(0, label="seed", precision=0, minimum=0)
            count = gr.Slider(1, MAX_SAMPLES, value=1000, step=1, label="number of samples")
        button = gr.Button("Sample", variant="primary", elem_id="sample-button")
        with gr.Row():
            samples = gr.Image(label="samples", type="pil", elem_id="samples", interactive=False)
            trajectory = gr.Image(
                label="trajectory",
                type="filepath",
                elem_id="trajectory",
                interactive=False,
                visible=_shows(info, "has_trajectory"),
            )
        velocity = gr.Image(
            label="velocity field v(x, t) over time",
            show_label=False,
            type="pil",
            elem_id="velocity",
            interactive=False,
            visible=_shows(info, "has_velocity"),
        )
    return _SampleTab(tab, steps, solver, direction, seed, count, button, samples, trajectory, velocity)


def _density_tab(info: ModelInfo | None) -> _DensityTab:
    """Grid size and half-width → the heat map of the model density."""
    import gradio as gr

    with gr.Tab("Density", visible=_shows(info, "has_density")) as tab:
        with gr.Row():
            grid = gr.Slider(10, 100, value=30, step=1, label="grid size (the cost grows as its square)")
            width = gr.Slider(0.5, 10, value=3, step=0.5, label="half-width h of the square [−h, h]²")
        button = gr.Button("Density")
        image = gr.Image(label="density", type="pil", elem_id="density", interactive=False)
    return _DensityTab(tab, grid, width, button, image)


def _latent_tab(info: ModelInfo | None) -> _LatentTab:
    """Two latent sliders → the decoded image, beside the decoded grid of the latent square."""
    import gradio as gr

    with gr.Tab("Latent", visible=_shows(info, "has_latent")) as tab:
        with gr.Row():
            z1 = gr.Slider(-LATENT_RANGE, LATENT_RANGE, value=0, step=0.05, label="z₁")
            z2 = gr.Slider(-LATENT_RANGE, LATENT_RANGE, value=0, step=0.05, label="z₂")
        with gr.Row():
            digit = gr.Image(label="decoded image", type="pil", elem_id="digit", interactive=False)
            picture = gr.Image(value=_latent_picture(info), label="latent map", type="pil", interactive=False)
    return _LatentTab(tab, z1, z2, digit, picture)


def _load_outputs(header: _Header, sampling: _SampleTab, density: _DensityTab, latent: _LatentTab) -> list[Any]:
    """The components "Load" updates, in the order of :func:`_load_updates`."""
    return [header.current, header.summary, header.status, sampling.tab, sampling.steps, sampling.solver,
            sampling.direction, density.tab, latent.tab, latent.map, sampling.samples, sampling.trajectory,
            sampling.velocity, density.image, latent.digit]  # fmt: skip


def _load_updates(info: ModelInfo | None, model_text: str) -> list[Any]:
    """What "Load" shows for the model ``info`` (None: none loaded): its name and line, the controls it takes, its
    latent map, and every output cleared."""
    import gradio as gr

    return [
        info.name if info is not None else None,
        model_text,
        "",
        gr.Tab(visible=_shows(info, "can_sample")),
        gr.Slider(**_steps_settings(info)),
        gr.Dropdown(**_solver_settings(info)),
        gr.Radio(value=DIRECTIONS[0], visible=_shows(info, "directions")),
        gr.Tab(visible=_shows(info, "has_density")),
        gr.Tab(visible=_shows(info, "has_latent")),
        _latent_picture(info),
        None,
        gr.Image(value=None, visible=_shows(info, "has_trajectory")),
        gr.Image(value=None, visible=_shows(info, "has_velocity")),
        None,
        None,
    ]


def on_load(name: str, current: str | None) -> list[Any]:
    """The "Load" button and the model box's Enter: load ``name``, keeping ``current`` when it fails."""
    return _load_updates(*load_model(name, current))


def _wire(header: _Header, sampling: _SampleTab, density: _DensityTab, latent: _LatentTab, gif_dir: Path) -> None:
    """Connect the buttons and sliders to their callbacks (:mod:`hfgen.space.callbacks`)."""

    def on_sample(
        name: str | None, steps: float, solver: str | None, seed: float, num_samples: float, direction: str
    ) -> tuple[Image.Image | None, str | None, Image.Image | None, str]:
        return sample_controls(name, steps, solver, seed, num_samples, direction, gif_dir)

    outputs = _load_outputs(header, sampling, density, latent)
    header.load_button.click(on_load, inputs=[header.model_box, header.current], outputs=outputs)
    header.model_box.submit(on_load, inputs=[header.model_box, header.current], outputs=outputs)
    sampling.button.click(
        on_sample,
        inputs=[header.current, sampling.steps, sampling.solver, sampling.seed, sampling.count, sampling.direction],
        outputs=[sampling.samples, sampling.trajectory, sampling.velocity, header.status],
    )
    density.button.click(
        on_density, inputs=[header.current, density.grid, density.width], outputs=[density.image, header.status]
    )
    for slider in (latent.z1, latent.z2):
        slider.change(on_latent, inputs=[header.current, latent.z1, latent.z2], outputs=[latent.digit, header.status])


def build_demo(model: str | None = None) -> gr.Blocks:
    """The Gradio app: a model box (folder or Hub repo id) with "Load"; a "Sample" tab (steps, solver, seed, number
    of samples, bridge direction → samples, animated trajectory, velocity field over time), a "Density" tab and a
    "Latent" tab (two sliders → the decoded image), each shown when the loaded pipeline supports it. ``model`` is
    loaded at start; a folder that fails to load shows its error in the page, and the model loaded before stays."""
    import gradio as gr

    gif_dir = Path(tempfile.mkdtemp(prefix="hfgen-space-"))
    info, model_text = load_model(model) if model else (None, WELCOME)
    with gr.Blocks(title="hfgen demo", delete_cache=(3600, 3600)) as demo:
        header = _header(model, model_text, info)
        with gr.Tabs():
            sampling = _sample_tab(info)
            density = _density_tab(info)
            latent = _latent_tab(info)
        _wire(header, sampling, density, latent, gif_dir)
    return demo
