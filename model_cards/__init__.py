"""Jinja templates of the model cards, one per model family, read by :mod:`hfgen.hub`."""
