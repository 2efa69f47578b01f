"""What every training script shares: arguments, the one Trainer, checkpoints, evaluation and outputs, and each
model family's task.

A script under ``training/`` parses its arguments dataclass (:func:`parse_arguments`: command line, YAML or
JSON), builds its :class:`TrainingTask` and calls :func:`run`.
"""

from hfgen.training.arguments import TrainingArguments, parse_arguments
from hfgen.training.bridge import BridgeArguments, BridgeTask, bridge_card, evaluate_bridge, run_bridge
from hfgen.training.checkpoints import CheckpointError, list_checkpoints
from hfgen.training.ddpm import DDPMArguments, DDPMTask, evaluate_ddpm, train_ddpm
from hfgen.training.density import DensityArguments, DensityTask, density_card, evaluate_density, train_density
from hfgen.training.ebm import EBMArguments, EBMTask, energy_card, evaluate_ebm, train_ebm
from hfgen.training.flow_matching import (
    FlowMatchingArguments,
    FlowMatchingTask,
    evaluate_flow_matching,
    flow_matching_card,
    train_flow_matching,
)
from hfgen.training.images import (
    DDPMImageArguments,
    DDPMImageTask,
    FlowMatchingImageArguments,
    FlowMatchingImageTask,
    ImageDiffusionArguments,
)
from hfgen.training.rbm import RBMArguments, RBMTask, evaluate_rbm, rbm_card, train_rbm
from hfgen.training.score import ScoreArguments, ScoreTask, evaluate_score, score_card, train_score
from hfgen.training.trainer import Phase, Trainer, TrainingDivergedError, TrainingResult, TrainingTask, run
from hfgen.training.vae import VAEArguments, VAETask, evaluate_vae, train_vae, vae_card

__all__ = [
    "DDPMImageArguments",
    "DDPMImageTask",
    "FlowMatchingImageArguments",
    "FlowMatchingImageTask",
    "ImageDiffusionArguments",
    "DensityArguments",
    "DensityTask",
    "EBMArguments",
    "EBMTask",
    "RBMArguments",
    "RBMTask",
    "ScoreArguments",
    "ScoreTask",
    "density_card",
    "energy_card",
    "evaluate_density",
    "evaluate_ebm",
    "evaluate_rbm",
    "evaluate_score",
    "rbm_card",
    "score_card",
    "train_density",
    "train_ebm",
    "train_rbm",
    "train_score",
    "BridgeArguments",
    "BridgeTask",
    "CheckpointError",
    "DDPMArguments",
    "DDPMTask",
    "FlowMatchingArguments",
    "FlowMatchingTask",
    "Phase",
    "Trainer",
    "TrainingArguments",
    "TrainingDivergedError",
    "TrainingResult",
    "TrainingTask",
    "VAEArguments",
    "VAETask",
    "bridge_card",
    "evaluate_bridge",
    "evaluate_ddpm",
    "evaluate_flow_matching",
    "evaluate_vae",
    "flow_matching_card",
    "list_checkpoints",
    "parse_arguments",
    "run",
    "run_bridge",
    "train_ddpm",
    "train_flow_matching",
    "train_vae",
    "vae_card",
]
