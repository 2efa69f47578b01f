"""Parsing a dataclass of arguments with transformers' ``HfArgumentParser`` (without torch).

A script accepts its dataclass on the command line, from a YAML or JSON file (``--config run.yaml``, or the
file as the only argument), or both: the file sets the values and command-line flags override them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import field, fields, is_dataclass
from pathlib import Path
from typing import Any

from hfgen.cli.smoke import ArgumentsT, smoke_capped


def documented(default: Any, help: str) -> Any:
    """A dataclass field with a ``--help`` text."""
    return field(default=default, metadata={"help": help})


def recipe(**defaults: Any) -> Callable[[type], type]:
    """A class decorator, under ``@dataclass``: new ``defaults`` of fields the class inherits (each keeps its place,
    type and help), as a family declares its recipe."""

    def declare(cls: type) -> type:
        inherited = {f.name: f.type for base in cls.__mro__[1:] if is_dataclass(base) for f in fields(base)}
        own = cls.__dict__.get("__annotations__", {})
        cls.__annotations__ = {**own, **{name: inherited[name] for name in defaults}}
        for name, value in defaults.items():
            setattr(cls, name, value)
        return cls

    return declare


def read_config_file(path: str) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"config file {path!r} does not exist")
    text = file.read_text(encoding="utf-8")
    if file.suffix in (".yaml", ".yml"):
        import yaml

        values = yaml.safe_load(text)
    elif file.suffix == ".json":
        values = json.loads(text)
    else:
        raise ValueError(f"config file {path!r} must end in .yaml, .yml or .json")
    if not isinstance(values, dict):
        raise ValueError(f"config file {path!r} must hold a mapping of argument names to values")
    return values


#: help of the arguments the families declare with their own defaults (a redeclared field loses its metadata)
SHARED_HELP = {
    "gradient_accumulation_steps": "micro-batches per optimizer step",
    "learning_rate": "AdamW learning rate (peak, after the warm-up)",
    "lr_warmup_steps": "optimizer steps of linear learning-rate warm-up",
    "adam_beta1": "AdamW β1",
    "adam_beta2": "AdamW β2",
    "adam_weight_decay": "AdamW decoupled weight decay",
    "hidden_size": "width of the network's hidden layers",
    "num_layers": "number of hidden layers",
    "activation": "activation of the hidden layers",
    "time_embedding": "embedding of the time input",
    "num_inference_steps": "steps of the sampler used for validation and evaluation",
    "image_column": "column of the data set holding the images",
    "label_column": "column of the data set holding the labels",
    "image_size": "height and width of the (square) images",
    "num_channels": "image channels",
    "latent_dim": "dimension of the latent codes",
}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """``--help`` keeps the script's docstring as written (its example command lines) and shows every default but
    ``None`` (an unset argument: its help says what unset means)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is None else super()._get_help_string(action)


def _document(parser: Any, arguments_class: type) -> None:
    """Give every flag a help text: its own, the one of the field it redeclares in a base class, or
    :data:`SHARED_HELP`; the parser's formatter then also shows its default."""
    inherited: dict[str, str] = {}
    for cls in reversed(arguments_class.__mro__):
        if is_dataclass(cls):
            inherited |= {f.name: f.metadata["help"] for f in fields(cls) if f.metadata.get("help")}
    for action in parser._actions:
        if not action.help:
            action.help = inherited.get(action.dest) or SHARED_HELP.get(action.dest)
        if action.help and "%(" not in action.help:  # argparse %-formats help texts: "10%" must read "10%%"
            action.help = action.help.replace("%", "%%")
        if action.choices and action.help and "choices" not in action.help:
            action.help += f" (choices: {', '.join(map(str, action.choices))})"


def take_config_flag(argv: list[str]) -> tuple[str | None, list[str]]:
    """The file of ``--config FILE``, ``--config=FILE`` (at most one) or a lone ``FILE.yaml``/``FILE.json``, and the
    other arguments."""
    if len(argv) == 1 and not argv[0].startswith("-") and argv[0].endswith((".yaml", ".yml", ".json")):
        return argv[0], []
    paths, rest, index = [], [], 0
    while index < len(argv):
        item = argv[index]
        if item == "--config":
            if index + 1 >= len(argv) or argv[index + 1].startswith("--"):
                raise ValueError("`--config` needs a file path: --config run.yaml or --config=run.yaml")
            paths.append(argv[index + 1])
            index += 2
            continue
        if item.startswith("--config="):
            if not item.removeprefix("--config="):
                raise ValueError("`--config=` needs a file path: --config=run.yaml")
            paths.append(item.removeprefix("--config="))
        else:
            rest.append(item)
        index += 1
    if len(paths) > 1:
        raise ValueError(f"`--config` was given {len(paths)} times ({paths}); pass one file, and flags to override it")
    return (paths[0] if paths else None), rest


def build_parser(arguments_class: type, description: str | None = None) -> argparse.ArgumentParser:
    """The command-line parser of ``arguments_class`` (``HfArgumentParser``, every flag documented, ``--config``);
    ``description`` (a script's docstring) heads its ``--help``."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(arguments_class, description=description, formatter_class=_HelpFormatter)
    parser.add_argument("--config", default=None, help="YAML or JSON file of argument values")
    _document(parser, arguments_class)
    return parser


def parse_arguments(
    arguments_class: type[ArgumentsT], argv: list[str] | None = None, description: str | None = None
) -> ArgumentsT:
    """Parse ``arguments_class`` from ``argv`` (default ``sys.argv[1:]``): flags, ``--config FILE`` (YAML or
    JSON; flags given beside it override the file), or a lone ``FILE.yaml``/``FILE.json``. ``description`` (a
    script's docstring) heads ``--help``."""
    parser = build_parser(arguments_class, description)
    config_path, argv = take_config_flag(list(sys.argv[1:] if argv is None else argv))
    if config_path is not None:
        values = read_config_file(config_path)
        known = {f.name for f in fields(arguments_class)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"config file {config_path!r} has unknown arguments {unknown}; known: {sorted(known)}")
        parser.set_defaults(**values)
    namespace, remaining = parser.parse_known_args(argv)
    if remaining:
        raise ValueError(f"unknown command-line arguments {remaining}")
    values = {k: v for k, v in vars(namespace).items() if k != "config"}
    return smoke_capped(arguments_class(**values))
