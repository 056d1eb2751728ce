"""Pickers shared by the pages: model -> layer -> unit(s) (linked to the URL), prior, advanced settings.

The current choice lives in `st.session_state["selection"]` so it follows the user from page to page; each page's
widgets start from it. `?model=...&layer=...&unit=...` in the URL selects a unit directly (links from slides).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import streamlit as st

from dgnam_engine import limits, numbers
from dgnam_engine import targets as T

from . import catalog, state
from .links import is_new_link, presenting, wrote_link  # noqa: F401 (pages call widgets.is_new_link)
from .plain import plain

MAX_UNITS = 8  # units per run: one batch that still shows progress quickly on a CPU


@dataclass
class Selection:
    model: str
    layer: str
    units: list[int]

    @property
    def unit(self) -> int:
        return self.units[0]


def _shared() -> dict:
    return st.session_state.setdefault(
        "selection", {"model": catalog.DEFAULT_MODEL, "layer": None, "units": [catalog.DEFAULT_UNIT]})


def _query_error(qp: dict) -> Optional[str]:
    """Check ?model/layer/unit and copy them into the shared selection; a message for anything bad."""
    model = qp.get("model", catalog.DEFAULT_MODEL)
    if model not in catalog.model_names():
        return f"The link names a model “{plain(model)}” that does not exist. Pick a model below."
    if not catalog.model_available(model):
        return (f"The weights of {model} are not on this machine: get them on the Setup page (or run "
                f"`{catalog.fetch_command(model)}` in the project folder) and reload, or pick another model below.")
    layers = catalog.layers(model)
    layer = qp.get("layer", catalog.output_layer(model))
    if layer not in layers:
        return f"{model} has no layer “{plain(layer)}”. Pick one of: {plain(', '.join(layers))}."
    units = [catalog.default_unit(model) if layer == catalog.output_layer(model) else 0]
    if "unit" in qp:
        n_units = layers[layer].units
        try:
            units = numbers.unit_list(str(qp["unit"]), n_units)
        except numbers.NumberError as exc:
            if exc.reason == "range":
                return f"Unit {exc.value} does not exist in {layer} of {model} (units 0–{n_units - 1})."
            if exc.reason == "reversed":
                return f"The link's units “{plain(exc.part)}” are an empty range. Pick a unit below."
            return f"The link's unit “{plain(qp['unit'])}” is not a number. Pick a unit below."
    st.session_state["selection"] = {"model": model, "layer": layer, "units": units[:MAX_UNITS]}
    return None


def _apply_query_params(prefix: str) -> None:
    qp = {k: st.query_params[k] for k in ("model", "layer", "unit") if k in st.query_params}
    if not qp or not is_new_link(qp):
        return
    err = _query_error(qp)
    if err:
        st.session_state[f"{prefix}_qp_error"] = err
        return
    for k in [k for k in st.session_state if str(k).startswith(prefix + "_u")] + [f"{prefix}_model",
                                                                                 f"{prefix}_layer"]:
        st.session_state.pop(k, None)  # the widgets start again from the link's selection


def _ensure(key: str, options: list, default) -> None:
    if st.session_state.get(key) not in options:
        st.session_state[key] = default


def _parse_units(text: str, n_units: int) -> list[int]:
    """The Units box, read by the engine's parser (ranges checked before they are built); messages as Markdown."""
    try:
        units = numbers.unit_list(text, n_units)
    except numbers.NumberError as exc:
        if exc.reason == "empty":
            raise ValueError("Enter at least one unit number, e.g. 12.") from None
        if exc.reason == "range":
            raise ValueError(f"Unit {exc.value} does not exist in this layer: it has units 0–{n_units - 1}.") from None
        if exc.reason == "reversed":
            raise ValueError(f"“{plain(exc.part)}” is an empty range: write the smaller number first, like "
                             "10-15.") from None
        raise ValueError(f"“{plain(exc.part)}” is not a unit number. Write numbers like 3, 17, 42 or a range like "
                         "10-15.") from None
    if len(units) > MAX_UNITS:
        raise ValueError(f"Pick at most {MAX_UNITS} units per run.")
    return units


def pick_unit(prefix: str, multi: bool = False, link: bool = True, stacked: bool = False) -> Optional[Selection]:
    """Model, layer and unit pickers. Returns None (after showing a message) when the input is unusable.
    `stacked`: the unit box on a row of its own under network and layer (a narrow column: Run's controls, where
    three in a row cut the network's name at 1280 px with the sidebar open)."""
    models = catalog.available_models()
    if not models:
        st.error("No model weights are on this machine. Reinstall with `bash run.sh`, which installs the "
                 "offline default model (efficientnet_lite0).")
        return None
    if link:
        _apply_query_params(prefix)
        err = st.session_state.pop(f"{prefix}_qp_error", None)
        if err:
            st.error(err)
    shared = _shared()
    if stacked:
        (c1, c2), c3 = st.columns([1, 1.4]), st.container()
    else:
        c1, c2, c3 = st.columns([1, 1.4, 1.6])
    mkey = f"{prefix}_model"
    _ensure(mkey, models, shared["model"] if shared["model"] in models else models[0])
    model = c1.selectbox("Network", models, key=mkey, format_func=catalog.model_short,
                         help="Networks whose weights are on this machine (see Setup for more).")
    layers = catalog.layers(model)
    lkey = f"{prefix}_layer"
    layer_default = shared["layer"] if shared["model"] == model and shared["layer"] in layers \
        else catalog.output_layer(model)
    _ensure(lkey, list(layers), layer_default)
    layer = c2.selectbox("Layer", list(layers), key=lkey,
                         format_func=lambda n: catalog.layer_caption(layers[n], model), help=catalog.TERMS["layer"])
    n_units = layers[layer].units
    same = shared["model"] == model and shared["layer"] == layer
    prev = [u for u in shared["units"] if 0 <= u < n_units] if same else []
    if catalog.is_class_layer(model, layer):
        prev = prev or [catalog.default_unit(model)]
        label = lambda u: catalog.class_label(u, model)  # noqa: E731
        # a network with classes of its own keeps its own box: the same text names other classes elsewhere
        own = "" if catalog.class_names(model) == catalog.class_names() else f"_{model}"
        if multi:
            ukey = f"{prefix}_classes{own}"
            if ukey not in st.session_state:
                st.session_state[ukey] = ", ".join(label(u) for u in prev)
            example = "espresso, goldfish" if n_units == 1000 else ", ".join(catalog.class_names(model)[:2])
            try:
                units = parse_classes(c3.text_input(
                    "Classes (name or number)", key=ukey,
                    help=f"Type a class name or number, several with commas (e.g. {example}). The last "
                         f"layer has one unit per {catalog.dataset(model)} class. " + catalog.TERMS["unit"]),
                    model)
            except ValueError as exc:
                st.error(str(exc))
                return None
            c3.caption("Selected: " + catalog.markdown_name(", ".join(label(u) for u in units), model))
        else:
            ukey = f"{prefix}_ucls{own}"
            _ensure(ukey, list(range(n_units)), prev[0])
            units = [c3.selectbox("Class (type to search)", range(n_units), key=ukey, format_func=label)]
    elif multi:
        ukey = f"{prefix}_utext_{layer}"
        if ukey not in st.session_state:
            st.session_state[ukey] = ", ".join(map(str, prev or [0]))
        text = c3.text_input(f"Units (0–{n_units - 1}, e.g. 3, 17, 42)", key=ukey)
        try:
            units = _parse_units(text, n_units)
        except ValueError as exc:
            st.error(str(exc))
            return None
    else:
        ukey = f"{prefix}_unum_{layer}"
        if ukey not in st.session_state:
            st.session_state[ukey] = prev[0] if prev else 0
        # no min/max on the box: an out-of-range number must stop the page with a reason, not silently stay 0
        unit = c3.number_input(f"Unit (0–{n_units - 1})", key=ukey, step=1, help=catalog.TERMS["unit"])
        if not 0 <= unit < n_units:
            st.error(f"Unit {unit} does not exist in this layer: it has units 0–{n_units - 1}.")
            return None
        units = [int(unit)]
    st.session_state["selection"] = {"model": model, "layer": layer, "units": units}
    if link:
        qp = {"model": model, "layer": layer, "unit": ",".join(map(str, units))}
        wrote_link(qp)
    return Selection(model, layer, units)


def pick_layer(prefix: str) -> Optional[tuple[str, str]]:
    """Network and layer only (Browse: its grid's one search box picks the unit), linked like pick_unit."""
    models = catalog.available_models()
    if not models:
        st.error("No model weights are on this machine. Reinstall with `bash run.sh`, which installs the "
                 "offline default model (efficientnet_lite0).")
        return None
    _apply_query_params(prefix)
    err = st.session_state.pop(f"{prefix}_qp_error", None)
    if err:
        st.error(err)
    shared = _shared()
    c1, c2 = st.columns([1, 1.4])
    mkey, lkey = f"{prefix}_model", f"{prefix}_layer"
    _ensure(mkey, models, shared["model"] if shared["model"] in models else models[0])
    model = c1.selectbox("Network", models, key=mkey, format_func=catalog.model_short,
                         help="Networks whose weights are on this machine (see Setup for more).")
    layers = catalog.layers(model)
    _ensure(lkey, list(layers), shared["layer"] if shared["model"] == model and shared["layer"] in layers
            else catalog.output_layer(model))
    layer = c2.selectbox("Layer", list(layers), key=lkey,
                         format_func=lambda n: catalog.layer_caption(layers[n], model), help=catalog.TERMS["layer"])
    if (shared["model"], shared["layer"]) != (model, layer):
        st.session_state["selection"] = {"model": model, "layer": layer,
                                         "units": [catalog.default_unit(model) if catalog.is_class_layer(model, layer)
                                                   else 0]}
    return model, layer


def parse_classes(text: str, model: Optional[str] = None) -> list[int]:
    """The classes of `model` (default ImageNet's) typed in the shared class box (names or numbers, separated by
    commas), exact names first: "espresso" is espresso (967) only. A name that fits several classes is a question
    back, never all of them."""
    units: list[int] = []
    n = len(catalog.class_names(model))
    what = catalog.dataset(model) if model else "ImageNet"
    for part in filter(None, (p.strip() for p in text.replace(";", ",").split(","))):
        found = catalog.find_classes(part, model)
        if not found:
            raise ValueError(f"No {what} class is called “{plain(part)}”. Try another name, or a class number "
                             f"0–{n - 1}.")
        if len(found) > 1:
            shown = ", ".join(catalog.class_label(i, model) for i in found[:6]) + (" …" if len(found) > 6 else "")
            if model and catalog.class_names(model) != catalog.class_names():
                shown = plain(shown)  # names from a user's file, not ours
            raise ValueError(f"“{plain(part)}” fits {len(found)} classes: {shown}. Type the full name or the "
                             "number.")
        units.append(found[0])
    if not units:
        raise ValueError(f"Type a class name, e.g. {catalog.class_names(model)[0]}, or a class number 0–{n - 1}.")
    if len(units) > MAX_UNITS:
        raise ValueError(f"Pick at most {MAX_UNITS} classes per run.")
    return list(dict.fromkeys(units))


def pick_prior(prefix: str, label: str = "Prior (image generator)") -> str:
    """A present prior, or the pixel baseline; says plainly when no prior is installed."""
    names = catalog.available_priors()
    if not names:
        st.warning(catalog.NO_PRIOR)
    options = names + [catalog.PIXEL, catalog.MACO]
    key = f"{prefix}_prior"
    _ensure(key, options, catalog.default_prior())
    if presenting():  # a setting: hidden on a projector, the choice made before (or the default) stays
        return st.session_state[key]
    return st.selectbox(label, options, key=key, format_func=catalog.prior_title,
                        help=catalog.TERMS["prior"] + " 'No prior' changes the pixels directly, the baseline the "
                             "paper improves on.")


MAX_STEPS = limits.STEPS[1]
LR_RANGE = limits.LR


@dataclass
class Advanced:
    steps: int
    lr: Optional[float]
    seed: int
    n_seeds: int
    problem: Optional[str] = None  # why these settings cannot be rendered, in words; None when they can


def settings_problem(steps, lr, seed=0) -> Optional[str]:
    """The engine's one rule (limits.py), in its words, for every page's settings; None when they can run."""
    problem = limits.steps_problem(steps) or limits.settings_problem(None, lr, seed)
    if problem is None:
        return None
    if lr is not None and "learning rate" in problem:
        problem += " (or empty for the model's default)"
    return f"{problem[0].upper()}{problem[1:]}. Render is off until then."


def advanced(prefix: str, model: str, seeds_side_by_side: bool = True, preview: bool = False) -> Advanced:
    """The settings a researcher may change; hidden in presentation mode (the defaults are used)."""
    default_steps = state.default_steps() or T.get_spec(model).n_iters
    if presenting():
        return Advanced(default_steps, None, 0, 1)
    with st.expander("Advanced settings"):
        c1, c2, c3, c4 = st.columns(4)
        # no min/max: a value out of range must reach settings_problem, which says why in the page
        if preview:
            from dgnam_engine import accel

            steps = accel.PREVIEW_ITERS
            c1.text_input("Steps", f"{steps} (quick preview)", disabled=True, key=f"{prefix}_steps_preview",
                          help="The quick preview always takes this many steps; turn it off to choose.")
        else:
            steps = c1.number_input("Steps", value=default_steps, step=1, key=f"{prefix}_steps",
                                    help=f"More steps (1–{MAX_STEPS}): a stronger activation, a slower run.")
        lr = c2.number_input("Learning rate", value=None, step=0.1, format="%g", key=f"{prefix}_lr",
                             placeholder="model default",
                             help=f"How big each step is at the start ({LR_RANGE[0]:g}–{LR_RANGE[1]:g}).")
        st.session_state.setdefault(f"{prefix}_seed", 0)  # a page may set it (Run's "new seed" button)
        seed = c3.number_input("Seed", step=1, key=f"{prefix}_seed",
                               help="The random starting code. On this computer's CPU the same seed and settings "
                               "always give the same picture; on a GPU the units rendered with it can change "
                               "details.")
        n = c4.number_input("Seeds side by side", 1, 4, 1, key=f"{prefix}_nseeds",
                            help="Several starting codes show how much the picture varies.") \
            if seeds_side_by_side else 1
    problem = settings_problem(steps, lr, seed)
    if problem:
        st.error(problem, icon=":material/block:")
    return Advanced(int(steps or 0), None if lr is None else float(lr), int(seed or 0), int(n), problem)
