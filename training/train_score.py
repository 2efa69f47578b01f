"""Train a score SDE (denoising score matching) on a toy distribution and save it as a diffusers pipeline.

accelerate launch training/train_score.py                               # built-in recipe: VP SDE, checkerboard
accelerate launch training/train_score.py --resume_from_checkpoint latest
python training/train_score.py --dataset 8gaussians --output_dir out/score-8g
python training/train_score.py --sde ve --sigma_max 10 --output_dir out/score-ve
python training/train_score.py --config run.yaml                        # flags beside it override the file
"""

from hfgen.arguments.score_sde import ScoreSDEArguments
from hfgen.cli.scripts import run_script


def train(args: ScoreSDEArguments) -> dict:
    from hfgen.training import ScoreSDETask, run  # torch and the task: imported once the arguments are parsed

    return run(ScoreSDETask(args))


if __name__ == "__main__":
    raise SystemExit(run_script(ScoreSDEArguments, train, __doc__))
