r"""The Bernoulli–Bernoulli RBM on binarised MNIST-family images as a :class:`~hfgen.training.task.TrainingTask`:
arguments, an exactly resumable batch stream with persistent chains in the checkpoint, held-out metrics (AIS
log-likelihood, pseudo-likelihood, reconstruction error), figures (samples, filters, chains) and the model card.

Training minimises the surrogate ``mean F(v_data) − mean F(v_neg)`` (:func:`~hfgen.methods.rbm.free_energy_loss`),
whose gradient is minus the CD estimate of ``∇ log p``: ``v_neg`` is ``k`` block-Gibbs sweeps from the data (CD-k,
Hinton 2002) or from persistent chains carried across updates (PCD, Tieleman 2008). Test log-likelihoods are
``log p(v) = −F(v) − log Ẑ`` with ``log Ẑ`` from annealed importance sampling (Salakhutdinov & Murray 2008).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from hfgen.arguments.rbm import RBMArguments
from hfgen.data.images import binarize_test_images, dynamic_binarize
from hfgen.methods.rbm import (
    ais_log_likelihood,
    base_rate_visible_bias,
    contrastive_divergence,
    filter_images,
    pseudo_log_likelihood,
    reconstruction_error,
)
from hfgen.model_cards.rbm import rbm_card
from hfgen.models.rbm import RBMModel, sample_bernoulli
from hfgen.pipelines.rbm import RBMPipeline
from hfgen.schedulers.gibbs import GibbsScheduler
from hfgen.training.engine import progress_bar
from hfgen.training.evaluation import evaluate_in_process
from hfgen.training.image_data import ImageStreamTask, check_images
from hfgen.training.task import Progress
from hfgen.training.trainer import Trainer, train_in_process
from hfgen.utils import batch_generator

__all__ = ["evaluate_rbm", "RBMTask", "train_rbm"]

#: stream indices of ``batch_generator`` outside the process streams 0, 1, … and the epoch permutations' −1: chain
#: starts and the fixed binarisation of the images
CHAIN_STREAM, BINARIZATION_STREAM = -2, -3


def load_rbm_data(args: RBMArguments) -> dict[str, Tensor]:
    """Train and test images ``(N, C, H, W)`` in [0, 1] as :class:`RBMTask` takes them (grey levels; the
    binarisation is the task's)."""
    data = args.load_images()
    return {"train_images": data["train_images"], "test_images": data["test_images"]}


def binarize_images(images: Tensor, mode: str, seed: int, split: str) -> Tensor:
    """Binary images: ``"threshold"``, ``1[x > 0.5]``; otherwise one draw ``x ~ Bernoulli(pixel)``, the same on every
    call: training images (``"fixed"``) from ``batch_generator(seed, −3, 0)``, test images from
    :func:`~hfgen.data.images.binarize_test_images` (seed ``TEST_BINARIZATION_SEED``, whatever the run's seed)."""
    if mode == "threshold":
        return (images > 0.5).to(images.dtype)
    if split == "test":
        return binarize_test_images(images)
    return dynamic_binarize(images, batch_generator(seed, BINARIZATION_STREAM, 0))


class RBMTask(ImageStreamTask):
    r"""Train an :class:`~hfgen.models.rbm.RBMModel` by CD-k or PCD-k on binarised images.

    Micro-batch ``k`` of process ``s`` (of ``P``) is a pure function of ``(seed, s, k)``: epoch ``e`` uses the
    permutation of the training images drawn from ``batch_generator(seed, −1, e)``, process ``s`` takes
    ``perm[s::P]``; with dynamic binarisation ``v ~ Bernoulli(pixels)`` and then every Gibbs draw come from
    ``batch_generator(seed, s, k)``. The persistent chains (PCD) start at ``v ~ Bernoulli(σ(b_A))`` (the base-rate
    model) from ``batch_generator(seed, −2, s)`` and are the task's state: saved in every checkpoint (all processes'
    chains) and restored on resume, so a resumed run ends bit for bit where an uninterrupted one ends.
    """

    name = "rbm"
    card = staticmethod(rbm_card)
    evaluation_fields, fast_evaluation_sizes = ("num_validation_samples", "num_nll_images"), (500, 500)
    args: RBMArguments

    def __init__(self, args: RBMArguments, data: Mapping[str, Tensor] | None = None):
        super().__init__(args)
        data = dict(data) if data is not None else load_rbm_data(args)
        shape = (args.num_channels, args.image_size, args.image_size)
        train = check_images(data.get("train_images"), "train_images", shape)
        grey = args.binarize == "dynamic"
        self.train_images = train if grey else binarize_images(train, args.binarize, args.seed, "train")
        test = check_images(data.get("test_images"), "test_images", shape)
        self.test_images = binarize_images(test, args.binarize, args.seed, "test")
        self.base_visible_bias = base_rate_visible_bias(self.train_images)
        self.chains: Tensor | None = None
        self._pipeline: RBMPipeline | None = None
        self._validation_pending = False

    @property
    def persistent(self) -> bool:
        return self.args.method == "pcd"

    def build_model(self) -> RBMModel:
        """The RBM with ``W ~ N(0, s²)``, ``c = 0`` and the base-rate visible biases ``b = log p̄ / (1 − p̄)``."""
        args = self.args
        model = RBMModel(
            num_visible=args.num_visible,
            num_hidden=args.num_hidden,
            image_size=args.image_size,
            in_channels=args.num_channels,
            weight_init_std=args.weight_init_std,
        )
        with torch.no_grad():
            model.visible_bias.copy_(self.base_visible_bias)
        return model

    def batch(self, index: int, stream: int, num_streams: int) -> tuple[Tensor, torch.Generator]:
        """Micro-batch ``index`` of process ``stream`` of ``num_streams``: binary images ``(B, V)`` and the generator
        of the Gibbs draws (which first binarises the images when ``binarize="dynamic"``)."""
        generator = batch_generator(self.args.seed, stream, index)
        images = self.train_images[self.rows(index, stream, num_streams)].flatten(1)
        if self.args.binarize == "dynamic":
            images = dynamic_binarize(images, generator)
        return images, generator

    def initial_chains(self, stream: int) -> Tensor:
        """Process ``stream``'s persistent chains at the start: ``num_chains`` draws of the base-rate model."""
        probabilities = torch.sigmoid(self.base_visible_bias).expand(self.args.num_chains, -1)
        return sample_bernoulli(probabilities, batch_generator(self.args.seed, CHAIN_STREAM, stream))

    def start_stream(self, stream: int) -> None:
        if self.persistent and self.chains is None:
            self.chains = self.initial_chains(stream)

    def loss(self, model: torch.nn.Module, batch: Any, device: torch.device) -> Tensor:
        """``mean F(v_data) − mean F(v_neg)``; with PCD the chain ends become the next persistent chains."""
        images, generator = batch
        if device.type != "cpu":  # the Gibbs draws are made on the device, seeded from the batch's generator
            generator = torch.Generator(device).manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
        chains = self.chains.to(device) if self.persistent else None
        out = contrastive_divergence(model, images.to(device), self.args.gibbs_steps, generator, chains=chains)
        if self.persistent:
            self.chains = out.negative_samples.detach().cpu()
        return out.loss

    def state_dict(self) -> dict[str, Tensor]:
        """``{"chains": (P · num_chains, V)}``: every process's persistent chains, process ``s`` in rows block ``s``
        (PCD; nothing for CD)."""
        if not self.persistent or self.chains is None:
            return {}
        from accelerate import PartialState
        from accelerate.utils import gather

        state = PartialState()
        chains = gather(self.chains.to(state.device)).cpu() if state.num_processes > 1 else self.chains
        return {"chains": chains.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if not self.persistent:
            super().load_state_dict(state)
            return
        from accelerate import PartialState

        process = PartialState()
        chains = state.get("chains")
        expected = (process.num_processes * self.args.num_chains, self.args.num_visible)
        if chains is None or tuple(chains.shape) != expected:
            got = None if chains is None else tuple(chains.shape)
            raise ValueError(f"the checkpoint's persistent chains must have shape {expected}, got {got}")
        if not bool(((chains == 0) | (chains == 1)).all()):
            raise ValueError("the checkpoint's persistent chains must be binary states (0 or 1)")
        mine = chains.reshape(process.num_processes, self.args.num_chains, self.args.num_visible)
        self.chains = mine[process.process_index].clone()

    def pipeline(self, model: RBMModel) -> RBMPipeline:
        return RBMPipeline(model, GibbsScheduler())

    def validation_due(self, progress: Progress) -> bool:
        """As the Trainer's, and remembers it so that :meth:`evaluate` uses the cheaper validation AIS."""
        self._validation_pending = super().validation_due(progress)
        return self._validation_pending

    @torch.no_grad()
    def sample(self, pipeline: RBMPipeline, num_samples: int, generator: torch.Generator) -> Tensor:
        """Images ``p(v | h_S)`` after ``num_sample_steps`` Gibbs sweeps from uniform binary noise."""
        self._pipeline = pipeline
        return pipeline(num_samples, self.args.num_sample_steps, generator=generator).images.cpu()

    @torch.no_grad()
    def score(self, samples: Tensor, generator: torch.Generator) -> dict[str, float]:
        """Held-out reconstruction error ``Σ_i (v_i − p(v_i | h))²`` and pseudo-log-likelihood (per image, means over
        ``num_eval_images`` binarised test images) of the pipeline that drew ``samples``."""
        if self._pipeline is None:
            raise RuntimeError("score() needs the pipeline of a preceding sample() call")
        model = self._pipeline.model
        images = self.test_images[: self.args.num_eval_images].flatten(1).to(model.device, model.dtype)
        errors = reconstruction_error(model, images, generator).double()
        pseudo = pseudo_log_likelihood(model, images, generator=generator).double()
        return {
            "reconstruction_error": float(errors.mean()),
            "pseudo_log_likelihood": float(pseudo.mean()),
            "pseudo_log_likelihood_stderr": float(pseudo.std() / math.sqrt(pseudo.numel()))
            if pseudo.numel() > 1
            else 0.0,
            "num_eval_images": int(images.shape[0]),
        }

    def evaluate(
        self, trainer: Trainer, pipeline: RBMPipeline, num_samples: int, num_likelihood_points: int, seed: int
    ) -> tuple[dict[str, Any], Tensor | None]:
        """:meth:`score` of ``num_samples`` Gibbs samples and the AIS log-likelihood of ``num_likelihood_points``
        test images (:func:`ais_log_likelihood`; ``validation_ais_num_betas`` at a validation, ``ais_num_betas``
        otherwise), computed on the main process."""
        validating, self._validation_pending = self._validation_pending, False
        metrics, samples = trainer.evaluate_pipeline(pipeline, num_samples, 0, seed)
        if num_likelihood_points and trainer.is_main:
            quick = validating or self.args.fast_evaluation()
            betas = self.args.validation_ais_num_betas if quick else self.args.ais_num_betas
            metrics |= self.ais_log_likelihood(pipeline.model, num_likelihood_points, betas, shown=trainer.announcing)
        return metrics, samples

    def ais_log_likelihood(
        self, model: RBMModel, num_images: int, num_betas: int, seed: int = 0, shown: bool = False
    ) -> dict[str, float]:
        """See :func:`ais_log_likelihood` (the first ``num_images`` binarised test images, base-rate base model,
        AIS seeded by ``seed``); ``shown``: with a progress bar over the ``β`` steps."""
        images = self.test_images[:num_images].flatten(1)
        chains = self.args.ais_num_chains
        if not shown:
            return ais_log_likelihood(model, images, self.base_visible_bias, chains, num_betas, seed)
        with progress_bar(num_betas, f"AIS log Z: {chains} chains") as bar:
            return ais_log_likelihood(
                model, images, self.base_visible_bias, chains, num_betas, seed, progress=bar.update
            )

    def figures(self, pipeline: RBMPipeline, samples: Tensor | None) -> dict[str, Any]:
        from hfgen import plotting

        model = pipeline.model
        figures = {"filters.png": plotting.plot_image_grid(filter_images(model, 100), title="filters: columns of W")}
        if samples is not None:
            title = f"p(v | h) after {self.args.num_sample_steps} Gibbs sweeps from noise"
            figures["samples.png"] = plotting.plot_image_grid(samples[:64], title=title)
        if self.persistent and self.chains is not None:
            chains = self.chains[:64].reshape(-1, *model.image_shape)
            figures["chains.png"] = plotting.plot_image_grid(chains, title="persistent chains (binary states)")
        return figures

    def validation_figures(self, pipeline: RBMPipeline, samples: Tensor | None) -> dict[str, Any]:
        return self.figures(pipeline, samples)

    def final_figures(self, pipeline: RBMPipeline) -> dict[str, Any]:
        return self.figures(pipeline, self.sample(pipeline, 64, torch.Generator().manual_seed(2)))


def train_rbm(
    args: RBMArguments, data: Mapping[str, Tensor] | None = None
) -> tuple[RBMPipeline, dict[str, Any], RBMTask]:
    """Train in this process without writing outputs (benchmarks, notebooks); returns the pipeline, the training
    numbers and the task (which holds the binarised data)."""
    task = RBMTask(args, data)
    result = train_in_process(task)
    return result.pipeline, result.metrics, task


def evaluate_rbm(pipeline: RBMPipeline, task: RBMTask, seed: int = 1) -> dict[str, Any]:
    """Final metrics of a trained pipeline in this process: reconstruction error and pseudo-likelihood on
    ``num_eval_images`` test images and the AIS log-likelihood of ``num_nll_images`` (``ais_num_betas``)."""
    args = task.args
    metrics = evaluate_in_process(task, pipeline, args.num_validation_samples, 0, seed)
    if args.num_nll_images:
        metrics |= task.ais_log_likelihood(pipeline.model, args.num_nll_images, args.ais_num_betas)
    return metrics
