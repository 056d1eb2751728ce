"""DGN-AM Studio engine: synthesize the preferred input of a neuron through a deep generator network prior
(Nguyen et al., NIPS 2016). No Streamlit here: the dashboard and the command line both call `runner`.

Importing the package loads nothing heavy: `import dgnam_engine.errors` must not wait for torch. The names below
load `runner` (and torch) when first used."""
from . import openmp_wait
from .errors import RunCancelled, UserError, WeightsCorrupt, WeightsMissing

openmp_wait.apply()  # before anything of ours loads torch

_FROM_RUNNER = ("Settings", "UnitResult", "get_prior", "get_target", "visualize")

__all__ = ["RunCancelled", "Settings", "UnitResult", "UserError", "WeightsCorrupt", "WeightsMissing",
           "get_prior", "get_target", "visualize"]


def __getattr__(name):
    if name in _FROM_RUNNER:
        from . import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
