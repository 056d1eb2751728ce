"""Paths as a person reads them: inside a folder the dashboard knows, a path is named from that folder
("<data folder>/results/ab12.png", "~/Downloads/pets.pth"), so a page or a shared ZIP shows no more of this
server's layout than it needs, and short enough to fit a table's column."""
from __future__ import annotations

import os
import sysconfig
from pathlib import Path

from dgnam_engine.store import default_root


def _known() -> list[tuple[Path, str]]:
    """(folder, its name), the most specific folder first."""
    torch_home = Path(os.environ.get("TORCH_HOME") or Path.home() / ".cache" / "torch").expanduser()
    folders = [(default_root(), "<data folder>"), (torch_home, "<torch cache>"),
               (Path(sysconfig.get_paths()["purelib"]), "<python packages>"), (Path.home(), "~")]
    return sorted(((Path(os.path.normpath(f)), name) for f, name in folders), key=lambda f: -len(f[0].parts))


def shown(path: str | os.PathLike) -> str:
    """`path` named from the innermost known folder that holds it; other paths as they are."""
    text = str(path)
    p = Path(text).expanduser()
    if not p.is_absolute():
        return text
    p = Path(os.path.normpath(p))
    for folder, name in _known():
        try:
            rel = p.relative_to(folder)
        except ValueError:
            continue
        return name if rel == Path(".") else f"{name}/{rel.as_posix()}"
    return text


def from_home(path: str | os.PathLike) -> str:
    """A known folder itself (the data folder): "~/..." inside the home folder, else as it is."""
    p = Path(os.path.normpath(Path(str(path)).expanduser()))
    try:
        return "~/" + p.relative_to(Path.home()).as_posix()
    except ValueError:
        return str(path)


def shown_in(text: str) -> str:
    """`text` (a line that may name paths, like "<file> (or the Hugging Face cache)") with each absolute path in
    it named by shown()."""
    return " ".join(shown(w) if w.startswith(("/", "~")) else w for w in text.split(" "))
