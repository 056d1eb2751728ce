"""DGN-AM Studio engine: synthesize the preferred input of a neuron through a deep generator network prior
(Nguyen et al., NIPS 2016). No Streamlit here: the dashboard and the command line both call `runner`."""
from .errors import RunCancelled, UserError, WeightsCorrupt, WeightsMissing
from .runner import Settings, UnitResult, get_prior, get_target, visualize

__all__ = ["RunCancelled", "Settings", "UnitResult", "UserError", "WeightsCorrupt", "WeightsMissing",
           "get_prior", "get_target", "visualize"]
