r"""Train a 2-D energy-based model by maximum likelihood with short-run persistent Langevin chains and a replay
buffer (Du & Mordatch 2019), and save it as a diffusers pipeline (card with the NLL, W2 and the energy landscape).

accelerate launch training/train_ebm.py --dataset 8gaussians --output_dir out/ebm-8gaussians
python training/train_ebm.py --dataset checkerboard --training_sampler langevin --step_size 1e-3 --langevin_steps 40 \
    --regularization 0.01 --max_train_steps 5000 --output_dir out/ebm-checkerboard
python training/train_ebm.py --dataset 8gaussians --training_sampler langevin --step_size 2e-3
accelerate launch training/train_ebm.py ... --resume_from_checkpoint latest   # continues exactly (buffer included)
"""

from hfgen.arguments.energy import EnergyArguments
from hfgen.cli.scripts import run_script


def train(args: EnergyArguments) -> dict:
    from hfgen.training import EnergyTask, run  # torch and the task: imported once the arguments are parsed

    return run(EnergyTask(args))


if __name__ == "__main__":
    raise SystemExit(run_script(EnergyArguments, train, __doc__))
