"""Studies: a grid of ordinary runs (arms x seeds) trained and evaluated through the project's own commands,
then summarised over seeds with confidence intervals (``python -m experiments.study``).

``config``: the arms, seeds and evaluation of a study, and its presets; ``stats``: means with 95 %
intervals and paired differences; ``runner``: runs each train / evaluate command unless its results are
already there, resuming an interrupted run; ``summary``: the tables per level and the figure.
"""
