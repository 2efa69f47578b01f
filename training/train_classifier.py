"""Train the small MNIST-family CNN classifier used to score generated images, and save it with safetensors.

python training/train_classifier.py --dataset_name ylecun/mnist --output_dir out/mnist-classifier
python training/train_classifier.py --train_data_files mnist/train.parquet --test_data_files mnist/test.parquet
accelerate launch --multi_gpu --num_processes 2 training/train_classifier.py --dataset_name ylecun/mnist
"""

from hfgen.training.classifier import ClassifierArguments, train_classifier
from hfgen.training.cli import run_script

if __name__ == "__main__":
    raise SystemExit(run_script(ClassifierArguments, lambda args: train_classifier(args)[1], __doc__))
