"""Train an explicit density model (GMM by EM, KDE, MADE, coupling flow, CNF by maximum likelihood) and save it as a
diffusers pipeline. Arguments left unset take the model's benchmark recipe (the ``recipe`` of its task class in
hfgen.training.density.DENSITY_TASKS).

python training/train_density.py --model gmm --dataset 8gaussians --output_dir out/gmm-8g
python training/train_density.py --model cnf --dataset checkerboard --output_dir out/cnf-cb
python training/train_density.py --model made --dataset_name ylecun/mnist --output_dir out/made-mnist
accelerate launch training/train_density.py --model coupling ... --resume_from_checkpoint latest
"""

from hfgen.arguments.density import DensityArguments
from hfgen.cli.scripts import run_script


def train(args: DensityArguments) -> dict:
    from hfgen.training.density import density_task  # torch and the task: imported once the arguments are parsed
    from hfgen.training.trainer import run

    return run(density_task(args))


if __name__ == "__main__":
    raise SystemExit(run_script(DensityArguments, train, __doc__))
