"""Networks: diffusers ``ModelMixin`` + ``ConfigMixin`` classes, one module per family."""

from hfgen.models.affine_mean import StepwiseAffineMean, StepwiseAffineMeanOutput
from hfgen.models.classifier import MnistClassifier, MnistClassifierConfig, MnistClassifierOutput
from hfgen.models.coupling_flow import CouplingFlow, CouplingFlowOutput
from hfgen.models.ddpm_oracle import DDPMOracle, DDPMOracleOutput
from hfgen.models.energy import EnergyMLP, EnergyMLPOutput
from hfgen.models.finite_data_velocity import FiniteDataVelocity, FiniteDataVelocityOutput
from hfgen.models.kde import KernelDensity, KernelDensityOutput
from hfgen.models.made import MADE, MADEOutput
from hfgen.models.mixture import GaussianMixture, GaussianMixtureOutput
from hfgen.models.mlp import TimeMLP, TimeMLPOutput
from hfgen.models.rbm import RBMModel, RBMModelOutput
from hfgen.models.residual_mean import ResidualMean, ResidualMeanOutput
from hfgen.models.vae import VAE, AutoEncoder, AutoEncoderOutput, Decoder, Encoder

__all__ = [
    "FiniteDataVelocity",
    "FiniteDataVelocityOutput",
    "CouplingFlow",
    "CouplingFlowOutput",
    "GaussianMixture",
    "GaussianMixtureOutput",
    "KernelDensity",
    "KernelDensityOutput",
    "MADE",
    "MADEOutput",
    "AutoEncoder",
    "AutoEncoderOutput",
    "DDPMOracle",
    "DDPMOracleOutput",
    "Decoder",
    "EnergyMLP",
    "EnergyMLPOutput",
    "Encoder",
    "MnistClassifier",
    "MnistClassifierConfig",
    "MnistClassifierOutput",
    "RBMModel",
    "RBMModelOutput",
    "ResidualMean",
    "ResidualMeanOutput",
    "StepwiseAffineMean",
    "StepwiseAffineMeanOutput",
    "TimeMLP",
    "TimeMLPOutput",
    "VAE",
]
