"""What every training script shares: arguments, the one Trainer, checkpoints, evaluation and outputs, and each
model family's task.

A script under ``training/`` parses its arguments dataclass (:func:`parse_arguments`: command line, YAML or
JSON), builds its :class:`TrainingTask` and calls :func:`run`.
"""

from hfgen.training.arguments import TrainingArguments, parse_arguments
from hfgen.training.checkpoints import CheckpointError, list_checkpoints
from hfgen.training.classifier import ClassifierArguments, ClassifierTask, train_classifier
from hfgen.training.ddpm_points import DDPMPointsArguments, DDPMPointsTask, evaluate_ddpm_points, train_ddpm_points
from hfgen.training.density import DensityArguments, DensityTask, evaluate_density, train_density
from hfgen.training.energy import EnergyArguments, EnergyTask, train_energy
from hfgen.training.flow_matching import (
    FlowMatchingArguments,
    FlowMatchingTask,
    evaluate_flow_matching,
    train_flow_matching,
)
from hfgen.training.images import (
    DDPMImageArguments,
    DDPMImageTask,
    FlowMatchingImageArguments,
    FlowMatchingImageTask,
    ImageDiffusionArguments,
)
from hfgen.training.rbm import RBMArguments, RBMTask, evaluate_rbm, train_rbm
from hfgen.training.schrodinger_bridge import (
    SchrodingerBridgeArguments,
    SchrodingerBridgeTask,
    evaluate_schrodinger_bridge,
    run_bridge,
)
from hfgen.training.score_sde import ScoreSDEArguments, ScoreSDETask, evaluate_score_sde, train_score_sde
from hfgen.training.task import Phase, TrainingDivergedError, TrainingTask
from hfgen.training.trainer import Trainer, TrainingResult, run
from hfgen.training.vae import VAEArguments, VAETask, evaluate_vae, train_vae

__all__ = [
    "ClassifierArguments",
    "ClassifierTask",
    "train_classifier",
    "DDPMImageArguments",
    "DDPMImageTask",
    "FlowMatchingImageArguments",
    "FlowMatchingImageTask",
    "ImageDiffusionArguments",
    "DensityArguments",
    "DensityTask",
    "EnergyArguments",
    "EnergyTask",
    "RBMArguments",
    "RBMTask",
    "ScoreSDEArguments",
    "ScoreSDETask",
    "evaluate_density",
    "evaluate_rbm",
    "evaluate_score_sde",
    "train_density",
    "train_energy",
    "train_rbm",
    "train_score_sde",
    "SchrodingerBridgeArguments",
    "SchrodingerBridgeTask",
    "CheckpointError",
    "DDPMPointsArguments",
    "DDPMPointsTask",
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
    "evaluate_schrodinger_bridge",
    "evaluate_ddpm_points",
    "evaluate_flow_matching",
    "evaluate_vae",
    "list_checkpoints",
    "parse_arguments",
    "run",
    "run_bridge",
    "train_ddpm_points",
    "train_flow_matching",
    "train_vae",
]
