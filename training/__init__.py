"""Training and evaluation of one member of the family: data, trainer, metrics; no Ray here."""
