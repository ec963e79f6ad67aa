"""Experiments: compiled runs and sweeps, data batches, test landscapes, races and plots.

:mod:`gradflow.experiments.plots` needs matplotlib (``pip install 'gradflow[experiments]'``) and is
imported on its own.
"""

from gradflow.experiments.data import Batches
from gradflow.experiments.grid import OptimizerGrid, optimizer_grid
from gradflow.experiments.history import History, steps_to_tolerance
from gradflow.experiments.landscapes import LANDSCAPES, Landscape
from gradflow.experiments.loop import EarlyStopping, run, sweep
from gradflow.experiments.race import RACERS, SEED_OPTIMIZERS, RaceResult, race, race_one

__all__ = [
    "LANDSCAPES",
    "RACERS",
    "SEED_OPTIMIZERS",
    "Batches",
    "EarlyStopping",
    "History",
    "Landscape",
    "OptimizerGrid",
    "RaceResult",
    "optimizer_grid",
    "race",
    "race_one",
    "run",
    "steps_to_tolerance",
    "sweep",
]
