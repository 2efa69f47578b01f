"""Train a constant-α DDPM (ε-prediction) on a toy distribution, or on images, and save it as a diffusers pipeline.

accelerate launch training/train_ddpm.py                                # built-in recipe: checkerboard
accelerate launch training/train_ddpm.py --resume_from_checkpoint latest
python training/train_ddpm.py --dataset moons --output_dir out/ddpm-moons
python training/train_ddpm.py --num_train_timesteps 100 --final_alpha_bar 1e-3   # α = ᾱ_T^(1/T)
python training/train_ddpm.py --config run.yaml                         # flags beside it override the file

Images (a diffusers UNet2DModel; --dataset_name or --train_data_files selects them):
python training/train_ddpm.py --dataset_name ylecun/mnist --output_dir out/ddpm-mnist
python training/train_ddpm.py --dataset_name ylecun/mnist --class_conditional --guidance_scale 2
"""

from hfgen.arguments.ddpm_points import DDPMPointsArguments
from hfgen.arguments.images import DDPMImageArguments
from hfgen.cli.scripts import run_points_or_images


def train(args: DDPMPointsArguments) -> dict:
    from hfgen.training import DDPMPointsTask, run  # torch and the task: imported once the arguments are parsed

    return run(DDPMPointsTask(args))


def train_images(args: DDPMImageArguments) -> dict:
    from hfgen.training import DDPMImageTask, run  # torch and the task: imported once the arguments are parsed

    return run(DDPMImageTask(args))


if __name__ == "__main__":
    raise SystemExit(run_points_or_images((DDPMPointsArguments, train), (DDPMImageArguments, train_images), __doc__))
