"""The classifier and its training: base models, head, search space, two-phase recipe, random-base init."""
