"""Issue 30, the third fault probe's download defects, against stand-in servers on 127.0.0.1: a Places host serving
random bytes (kept, listed present, passed by a second `fetch`), an endless answer (13 GB in 40 s), and a Hub
endpoint that drips its headers (huggingface_hub's own first-call registry request held `fetch` past its
deadline; with the registry cached, the deadline named a missing header). Each failed before its fix."""
from __future__ import annotations

import io
import os
import socket
import threading
import time

import pytest
import torch

from dgnam_engine import catalog, cli
from dgnam_engine import weights as W
from dgnam_engine.errors import UserError
from test_faults_downloads import Dripping, _fetch_bounded, _files_under, _one_line, online, server, torch_home  # noqa: F401

PLACES = "/models_places365/resnet18_places365.pth.tar"


def _exit_line(capsys, argv) -> tuple[int, str]:
    code = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) <= 1, err
    return code, err


@pytest.fixture()
def places(server, online, monkeypatch):
    monkeypatch.setenv("DGNAM_PLACES_MIRROR", server.url)
    monkeypatch.setenv("DGNAM_DOWNLOAD_TIMEOUT", "60")  # a sound 45 MB file takes a moment on a busy machine
    return server


def _places_file() -> bytes:
    """A ResNet-18-Places365 as the official release saves it: {'state_dict': {'module.<key>': ...}, ...}."""
    import torchvision

    torch.manual_seed(0)
    sd = torchvision.models.resnet18(num_classes=365).state_dict()
    buf = io.BytesIO()
    torch.save({"epoch": 90, "arch": "resnet18", "state_dict": {f"module.{k}": v for k, v in sd.items()}}, buf)
    return buf.getvalue()


# ----- probe 5: a Places download is known sound once it loads ---------------------------------------------------

def test_random_bytes_from_a_places_host_are_refused_and_nothing_is_kept(places, torch_home, capsys):
    places.serve(PLACES, os.urandom(1 << 20))
    code, err = _exit_line(capsys, ["fetch", "resnet18_places365"])
    assert code == 2, err  # was 0: kept, then listed present
    assert "the file that arrived does not load" in err and "nothing was kept" in err, err
    assert _files_under(torch_home) == []
    assert not catalog.present("resnet18_places365")


def test_a_sound_places_download_is_kept_and_fetched_again_it_passes(places, torch_home, capsys):
    places.serve(PLACES, _places_file())
    assert _exit_line(capsys, ["fetch", "resnet18_places365"])[0] == 0
    assert _files_under(torch_home) == ["resnet18_places365.pth.tar"]
    assert _exit_line(capsys, ["fetch", "resnet18_places365"])[0] == 0


def test_a_damaged_places_copy_in_the_cache_is_named_by_a_second_fetch(places, torch_home, capsys):
    torch_home.mkdir(parents=True)
    (torch_home / "resnet18_places365.pth.tar").write_bytes(os.urandom(1 << 16))  # an older version kept it
    code, err = _exit_line(capsys, ["fetch", "resnet18_places365"])
    assert code == 2 and "resnet18_places365.pth.tar is damaged" in err, err  # was: passed as sound
    assert "fetch resnet18_places365 --force" in err


# ----- lower: downloads have a size bound --------------------------------------------------------------------------

class Endless:
    """Answers 200 with no length (or a claimed one) and sends bytes until the client hangs up."""

    def __init__(self, claimed: int | None = None):
        self.claimed = claimed

    def __enter__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.sent = 0
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn):
        try:
            conn.recv(65536)
            length = f"Content-Length: {self.claimed}\r\n" if self.claimed else ""
            conn.sendall(f"HTTP/1.1 200 OK\r\n{length}Connection: close\r\n\r\n".encode())
            block = b"\0" * (1 << 16)
            while True:
                conn.sendall(block)
                self.sent += len(block)
        except OSError:  # the client hung up
            pass
        finally:
            conn.close()

    def __exit__(self, *exc):
        self.sock.close()


def _endless_file(size=None) -> W.WeightFile:
    return W.WeightFile("endless.pth", "endless", url="https://download.pytorch.org/models/endless.pth", size=size)


def test_an_endless_answer_stops_beyond_the_size_the_catalogue_knows(online, torch_home, monkeypatch):
    with Endless() as srv:
        monkeypatch.setenv("DGNAM_TORCH_MIRROR", srv.url)
        err, seconds, _ = _fetch_bounded(_endless_file(size=2_000_000))
    assert isinstance(err, UserError), err  # was: 13 GB in 40 s, until the deadline
    _one_line(str(err))
    assert "beyond the 2.5 MB this file can have" in str(err), err
    assert srv.sent < 20_000_000 and _files_under(torch_home) == []


def test_an_endless_places_answer_stops_at_the_catalogues_size(online, places, torch_home, monkeypatch):
    with Endless() as srv:
        monkeypatch.setenv("DGNAM_PLACES_MIRROR", srv.url)
        err, _, _ = _fetch_bounded(catalog.weight_file("resnet18_places365"))
    assert isinstance(err, UserError) and "beyond the 56.9 MB this file can have" in str(err), err  # 45.5 x 1.25
    assert srv.sent < 120_000_000 and _files_under(torch_home) == []


def test_an_answer_announcing_too_much_is_refused_at_once(online, torch_home, monkeypatch):
    with Endless(claimed=10 ** 10) as srv:
        monkeypatch.setenv("DGNAM_TORCH_MIRROR", srv.url)
        err, _, _ = _fetch_bounded(_endless_file(size=2_000_000))
    assert isinstance(err, UserError) and "the server announces 10000.0 MB" in str(err), err
    assert _files_under(torch_home) == []


def test_a_file_of_unknown_size_has_a_generous_bound(online, torch_home, monkeypatch):
    monkeypatch.setattr(W, "MAX_UNKNOWN_BYTES", 3_000_000)
    with Endless() as srv:
        monkeypatch.setenv("DGNAM_TORCH_MIRROR", srv.url)
        err, _, _ = _fetch_bounded(_endless_file())
    assert isinstance(err, UserError) and "beyond the 3.0 MB" in str(err), err


def test_the_catalogue_gives_every_download_its_size():
    for name in ("resnet18_places365", "caffenet_places365", "alexnet", "fc6", "caffenet"):
        wf = catalog.weight_file(name)
        assert wf.size and wf.check is not None, name


# ----- probe 12: the deadline holds against a Hub endpoint that drips its headers ---------------------------------

def _hub_file() -> W.WeightFile:
    return W.WeightFile("drip.pt", "drip", hf_repo="someone/drip", hf_filename="drip.pt")


def _fetch_in_thread(wf, bound: float):
    """W.fetch in a thread (not _fetch_bounded: its warm-up call of build_hf_headers is the very request that
    hangs); (exception or path, seconds), failing the test if still going after `bound` s."""
    box = {}

    def run():
        try:
            box["r"] = W.fetch(wf)
        except BaseException as exc:  # the test looks at it
            box["r"] = exc

    t0 = time.monotonic()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(bound)
    assert not t.is_alive(), f"the download was still going after {bound} s"
    return box["r"], time.monotonic() - t0


def test_a_dripping_hub_ends_at_the_deadline_on_the_first_call(online, monkeypatch, tmp_path):
    """huggingface_hub's user agent fetched an agent registry from the endpoint on its first use, with a read
    timeout only: a server dripping headers held `fetch` for ever (killed at 200 s with a 20 s deadline)."""
    from huggingface_hub import constants
    from huggingface_hub.utils import _detect_agent

    monkeypatch.setenv("DGNAM_DOWNLOAD_TIMEOUT", "1.5")
    monkeypatch.setattr(_detect_agent, "_registry", None)  # a fresh process: not asked yet
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(tmp_path / "registry.json"))  # nothing cached
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", False)
    with Dripping() as drip:
        monkeypatch.setenv("HF_ENDPOINT", drip.url)
        monkeypatch.setattr(constants, "ENDPOINT", drip.url)
        err, seconds = _fetch_in_thread(_hub_file(), bound=15)
    assert isinstance(err, UserError), err
    assert "timed out: not finished within 1.5 s" in str(err), err
    assert seconds < 4


def test_a_dripping_hub_names_the_deadline_not_a_missing_header(online, monkeypatch):
    from huggingface_hub.utils import _detect_agent

    monkeypatch.setenv("DGNAM_DOWNLOAD_TIMEOUT", "1.5")
    monkeypatch.setattr(_detect_agent, "_registry", _detect_agent._EMPTY_REGISTRY)  # the registry cached
    with Dripping() as drip:
        monkeypatch.setenv("HF_ENDPOINT", drip.url)
        err, seconds, _ = _fetch_bounded(_hub_file(), bound=15)
    assert isinstance(err, UserError), err
    assert "timed out: not finished within 1.5 s" in str(err), err  # was "lacks the Hub's X-Repo-Commit"
    assert "X-Repo-Commit" not in str(err) and seconds < 4
