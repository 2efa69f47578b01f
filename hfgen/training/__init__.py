"""What every training script shares: arguments, the one Trainer, checkpoints, evaluation and outputs, and each
model family's task.

A script under ``training/`` parses its arguments dataclass (:mod:`hfgen.training.arguments`, without torch:
command line, YAML or JSON), then builds its :class:`TrainingTask` and calls :func:`run`. The names below are
imported on first use (PEP 562), so that importing the arguments does not import the tasks.
"""

from __future__ import annotations

from hfgen.lazy import lazy_exports

#: every public name and the module that defines it
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(["ClassifierArguments"], "hfgen.training.arguments.classifier"),
    **dict.fromkeys(["parse_arguments", "TrainingArguments"], "hfgen.training.arguments.common"),
    **dict.fromkeys(["DDPMPointsArguments"], "hfgen.training.arguments.ddpm_points"),
    **dict.fromkeys(["DensityArguments"], "hfgen.training.arguments.density"),
    **dict.fromkeys(["EnergyArguments"], "hfgen.training.arguments.energy"),
    **dict.fromkeys(["FlowMatchingArguments"], "hfgen.training.arguments.flow_matching"),
    **dict.fromkeys(
        ["DDPMImageArguments", "FlowMatchingImageArguments", "ImageDiffusionArguments"],
        "hfgen.training.arguments.images",
    ),
    **dict.fromkeys(["RBMArguments"], "hfgen.training.arguments.rbm"),
    **dict.fromkeys(["SchrodingerBridgeArguments"], "hfgen.training.arguments.schrodinger_bridge"),
    **dict.fromkeys(["ScoreSDEArguments"], "hfgen.training.arguments.score_sde"),
    **dict.fromkeys(["VAEArguments"], "hfgen.training.arguments.vae"),
    **dict.fromkeys(["list_checkpoints"], "hfgen.training.checkpoints"),
    **dict.fromkeys(["CheckpointError", "TrainingDivergedError"], "hfgen.training.errors"),
    **dict.fromkeys(["ClassifierTask", "train_classifier"], "hfgen.training.classifier"),
    **dict.fromkeys(["DDPMPointsTask", "evaluate_ddpm_points", "train_ddpm_points"], "hfgen.training.ddpm_points"),
    **dict.fromkeys(["DensityTask", "evaluate_density", "train_density"], "hfgen.training.density"),
    **dict.fromkeys(["EnergyTask", "train_energy"], "hfgen.training.energy"),
    **dict.fromkeys(
        ["evaluate_flow_matching", "FlowMatchingTask", "train_flow_matching"], "hfgen.training.flow_matching"
    ),
    **dict.fromkeys(["DDPMImageTask", "FlowMatchingImageTask"], "hfgen.training.images"),
    **dict.fromkeys(["evaluate_rbm", "RBMTask", "train_rbm"], "hfgen.training.rbm"),
    **dict.fromkeys(
        ["evaluate_schrodinger_bridge", "run_bridge", "SchrodingerBridgeTask"], "hfgen.training.schrodinger_bridge"
    ),
    **dict.fromkeys(["evaluate_score_sde", "ScoreSDETask", "train_score_sde"], "hfgen.training.score_sde"),
    **dict.fromkeys(["Phase", "TrainingTask"], "hfgen.training.task"),
    **dict.fromkeys(["run", "Trainer", "TrainingResult"], "hfgen.training.trainer"),
    **dict.fromkeys(["evaluate_vae", "train_vae", "VAETask"], "hfgen.training.vae"),
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
