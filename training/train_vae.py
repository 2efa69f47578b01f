r"""Train an autoencoder or a VAE with a 2-D latent space on MNIST-family images and save it as a diffusers pipeline.

accelerate launch training/train_vae.py --model vae --dataset_name ylecun/mnist --output_dir out/vae-mnist
python training/train_vae.py --model ae --train_data_files mnist/train.parquet \
    --test_data_files mnist/test.parquet --output_dir out/ae-mnist
accelerate launch training/train_vae.py ... --resume_from_checkpoint latest       # continues exactly
python training/train_vae.py ... --classifier_path out/mnist-classifier           # classifier scores of samples
"""

from hfgen.arguments.vae import VAEArguments
from hfgen.cli.scripts import run_script


def train(args: VAEArguments) -> dict:
    from hfgen.training import VAETask, run  # torch and the task: imported once the arguments are parsed

    return run(VAETask(args))


if __name__ == "__main__":
    raise SystemExit(run_script(VAEArguments, train, __doc__))
