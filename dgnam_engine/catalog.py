"""The one catalogue of what exists: the networks to visualise, the generator priors and the judges (networks that
score pictures), each with its weights, download size, input convention and whether it is present here.

The command line (`models`, `priors`, `fetch`), the Setup page and every picker read these lists; none keeps its
own. An entry is defined once, next to how it is built: a network is one `TargetSpec` in `targets._registry()`,
an original prior one `PriorSpec` in `priors.ORIGINAL_PRIORS`, a trained prior one file in `assets/priors`;
`add_network` registers one more at run time (for networks a user adds from a file in the data folder).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from . import priors as P
from . import targets as T
from . import weights as W
from .errors import UserError

DEPTHS = P.DEPTHS
PAPER_SETUP = (T.PAPER_TARGET, *DEPTHS)  # the paper's network and its four priors


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str  # "network", "prior" or "judge"
    title: str
    available: bool
    path: Optional[str]  # where its weights are; None when missing or built into the architecture
    place: str  # where its weights are, or where `fetch` puts them (for people who copy files by hand)
    weights: Optional[str]  # the weights file's name
    fetch: Optional[str]  # the name `python -m dgnam_engine fetch` takes, when it can be downloaded and is missing
    size: Optional[int]  # bytes to download, about
    input: str  # its input convention in one line
    source: str = ""
    depth: str = ""  # priors: which of the paper's layers it plays
    prior_kind: str = ""  # priors: "original" or "trained"
    default: bool = False  # the default network or prior of a run that names none
    damaged: str = ""  # priors: one line naming a damaged file and what to do (priors.damage_message)
    spec: Any = field(default=None, compare=False, repr=False)  # targets.TargetSpec or priors.PriorSpec


def _place(wf: Optional[W.WeightFile], found) -> str:
    if found is not None:
        return str(found)
    if wf is None:
        return "built in"
    there = str(W.checkpoints_dir() / wf.filename)
    return f"{there} (or the Hugging Face cache)" if wf.hf_repo else there


def _network(spec: T.TargetSpec, kind: str, default: str = "") -> Entry:
    found = W.find(spec.weights) if spec.weights is not None else None
    available = spec.weights is None or found is not None
    fetchable = spec.weights is not None and spec.weights.fetchable
    return Entry(spec.name, kind, spec.title, available, str(found) if found else None, _place(spec.weights, found),
                 spec.weights.filename if spec.weights else None,
                 None if available or not fetchable else spec.weights.fetch_name, spec.size, spec.input_convention,
                 spec.source, default=spec.name == default, spec=spec)


def networks() -> list[Entry]:
    """The networks a run can visualise (any other timm model as timm/<name> besides), present or not."""
    default = T.default_target()
    return [_network(spec, "network", default) for spec in T.all_specs().values()]


def network(name: str) -> Entry:
    """One network (also timm/<name>); UserError for an unknown name."""
    return _network(T.get_spec(name), "network", T.default_target())


def judges() -> list[Entry]:
    return [_network(spec, "judge") for spec in T.JUDGES.values()]


def _by_depth(item: tuple[str, P.PriorSpec]) -> tuple[int, int]:
    """The paper's depths in order, conv3 to fc7, originals first at each depth."""
    spec = item[1]
    return (DEPTHS.index(spec.depth) if spec.depth in DEPTHS else len(DEPTHS), spec.kind != "original")


def priors() -> list[Entry]:
    """The original priors and the trained ones that ship, present or not, as the paper's depths go."""
    default = P.default_prior_name()
    out = []
    for name, spec in sorted(P.all_specs().items(), key=_by_depth):
        if spec.file:
            found = spec.file if P.is_available(spec) else None
        else:
            found = W.find(spec.weights)
        place = spec.file if spec.file else _place(spec.weights, found)
        out.append(Entry(name, "prior", spec.title, found is not None, str(found) if found else None, place,
                         spec.weights.filename if spec.weights else None,
                         None if found or spec.weights is None else name, spec.size, spec.input_convention,
                         spec.weights.hf_repo or "" if spec.weights else "assets/priors", spec.depth, spec.kind,
                         default=name == default, damaged=P.damage_message(spec) if spec.damaged else "",
                         spec=spec))
    return out


def skipped_priors() -> list[str]:
    """One line per prior file the last listing left out (its card cannot be read)."""
    return P.skipped_priors()


def entry(name: str) -> Entry:
    """A network or a prior by name; UserError naming what exists."""
    for e in networks() + priors():
        if e.name == name:
            return e
    raise UserError(f"unknown name {name!r}: networks {', '.join(T.all_specs())}; priors {', '.join(P.all_specs())}")


def present(name: str) -> bool:
    """Whether `fetch NAME` has nothing left to do: its file is here, or it ships with a package."""
    wf = weight_file(name)
    return wf is None or W.find(wf) is not None


def downloads_allowed() -> bool:
    return W.downloads_allowed()


def weight_file(name: str) -> Optional[W.WeightFile]:
    """The downloadable file behind a network or original prior name (what `fetch NAME` gets), None when it ships
    with an installed package; UserError for a name that is neither."""
    from dataclasses import replace

    from . import network_files

    if name in P.ORIGINAL_PRIORS:
        pspec = P.ORIGINAL_PRIORS[name]
        return replace(pspec.weights, size=pspec.weights.size or pspec.size,
                       check=lambda path: network_files.check_prior_fits(pspec, path))
    spec = T.get_spec(name)
    if spec.weights is None or not spec.weights.fetchable:
        return None
    # what it is for, so a download (or a copy found) is known sound where no hash is published: it loads
    return replace(spec.weights, size=spec.weights.size or spec.size,
                   check=lambda path: network_files.check_fits(spec, path))


def add_network(spec: T.TargetSpec) -> None:
    """Register one more network for this process (a later data-folder file of user networks comes through here)."""
    if spec.name in T.TARGETS or spec.name.startswith("timm/"):
        raise UserError(f"a network named {spec.name!r} exists already")
    T.TARGETS[spec.name] = spec
