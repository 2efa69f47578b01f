"""The command line of the training scripts, without torch: parsing a dataclass of arguments (flags, YAML or JSON),
smoke runs, and the front door that turns a user's mistake into one ``error: …`` line."""
