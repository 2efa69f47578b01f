"""Train a constant-α DDPM (ε-prediction) on a toy distribution and save it as a diffusers pipeline.

accelerate launch training/train_ddpm.py                                # built-in recipe: checkerboard
accelerate launch training/train_ddpm.py --resume_from_checkpoint latest
python training/train_ddpm.py --dataset moons --output_dir out/ddpm-moons
python training/train_ddpm.py --num_train_timesteps 100 --final_alpha_bar 1e-3   # α = ᾱ_T^(1/T)
python training/train_ddpm.py --config run.yaml                         # flags beside it override the file
"""

import json

from hfgen.training import DDPMArguments, DDPMTask, parse_arguments, run


def main() -> None:
    args = parse_arguments(DDPMArguments)
    metrics = run(DDPMTask(args), args.num_eval_samples)
    if metrics:
        print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
