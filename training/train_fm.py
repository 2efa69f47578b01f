"""Train a flow-matching model between two toy distributions and save it as a diffusers pipeline.

accelerate launch training/train_fm.py                       # built-in recipe: N(0, I) → checkerboard
python training/train_fm.py --dataset moons --output_dir out/fm-moons
python training/train_fm.py config.yaml                      # or config.json
"""

import json
import sys

from transformers import HfArgumentParser

from hfgen.data import get_toy_distribution
from hfgen.training import FlowMatchingArguments, evaluate_flow_matching, train_flow_matching, write_outputs


def main() -> None:
    parser = HfArgumentParser(FlowMatchingArguments)
    if len(sys.argv) == 2 and sys.argv[1].endswith((".yaml", ".yml")):
        (args,) = parser.parse_yaml_file(sys.argv[1])
    elif len(sys.argv) == 2 and sys.argv[1].endswith(".json"):
        (args,) = parser.parse_json_file(sys.argv[1])
    else:
        (args,) = parser.parse_args_into_dataclasses()

    pipeline, metrics = train_flow_matching(args)
    target = get_toy_distribution(args.dataset)
    metrics |= evaluate_flow_matching(
        pipeline, target, args.num_eval_samples, args.num_inference_steps, args.num_nll_samples
    )
    write_outputs(pipeline, metrics, args)
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
