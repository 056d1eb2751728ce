"""Issue 23, the download and prior-file faults, reproduced against stand-in servers on 127.0.0.1 and temporary
copies of the shipped priors: a server that drops every transfer half way and ignores Range, one that accepts
connections and never answers, one that stalls, one that serves content other than its published hash; damaged
files in the caches; legacy pickles; broken prior cards; a damaged default demo prior.

Items of the issue: 4 (downloads that never end) and 5 (a wrong download accepted, a damaged cached copy), 7 (legacy
pickles), 9 and 11 (prior cards, a damaged default demo prior). Each download runs in a thread with a bound, so a
download that never ends fails the test instead of hanging it; the limits are set small (DGNAM_DOWNLOAD_STALL=1,
DGNAM_DOWNLOAD_TIMEOUT=5)."""
from __future__ import annotations

import hashlib
import io
import json
import shutil
import socket
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
import torch

from dgnam_engine import cli, priors as P, weights as W
from dgnam_engine.errors import UserError, WeightsCorrupt
from httpserver import FileServer, sha256_of

BODY = bytes(range(256)) * (24 << 12)  # 24 MiB: more than two of the Hub client's 10 MB chunks


@pytest.fixture(scope="module")
def server():
    with FileServer() as s:
        yield s


@pytest.fixture()
def torch_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.fixture()
def online(tmp_path, monkeypatch, server, torch_home):
    """Downloads on, both hosts served by `server`, an empty Hub cache, and small limits (1 s without a byte,
    5 s in all) so a fault shows in seconds."""
    import huggingface_hub.constants as hfc

    monkeypatch.setattr(hfc, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("DGNAM_TORCH_MIRROR", server.url)
    monkeypatch.setenv("DGNAM_DOWNLOAD_STALL", "1")
    monkeypatch.setenv("DGNAM_DOWNLOAD_TIMEOUT", "5")
    return tmp_path / "hf" / "hub"


def _files_under(folder: Path) -> list[str]:
    """Every file (whole or partial) under `folder`, lock files and the refs bookkeeping aside."""
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if (p.is_file() or p.is_symlink()) and not p.name.endswith(".lock")
                  and p.name != "CACHEDIR.TAG" and "refs" not in p.relative_to(folder).parts)


def _fetch_bounded(wf, bound: float = 20.0, **kw):
    """W.fetch in a thread; returns (exception or path, seconds, peak Python memory in bytes). Fails the test when
    the download is still going after `bound` seconds."""
    box = {}

    def run():
        try:
            box["result"] = W.fetch(wf, **kw)
        except BaseException as exc:  # the test looks at it
            box["result"] = exc

    from huggingface_hub.utils import build_hf_headers

    build_hf_headers()  # its first call imports modules: memory that is not the download's
    tracemalloc.start()
    t0 = time.monotonic()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(bound)
    seconds = time.monotonic() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert not t.is_alive(), f"the download was still going after {bound} s"
    return box["result"], seconds, peak


def _one_line(msg: str) -> None:
    assert msg and "\n" not in msg and "Traceback" not in msg


def _hub(server, name: str, body: bytes = BODY, **kw) -> W.WeightFile:
    server.serve_hub("someone/faults", f"{name}.pt", body, **kw)
    return W.WeightFile(f"{name}.pt", name, hf_repo="someone/faults", hf_filename=f"{name}.pt")


def _tv(server, name: str, body: bytes = BODY, prefix: str | None = None, **kw) -> W.WeightFile:
    fname = f"{name}-{prefix or hashlib.sha256(body).hexdigest()[:8]}.pth"
    server.serve(f"/models/{fname}", body, **kw)
    return W.WeightFile(fname, name, url=f"https://download.pytorch.org/models/{fname}")


# ----- item 4: a download that never ends -----

@pytest.mark.parametrize("where", ["hub", "torch"])
def test_server_dropping_every_transfer_and_ignoring_range_fails_fast(server, online, torch_home, where):
    wf = _hub(server, "drops", truncated=True) if where == "hub" else _tv(server, "drops", truncated=True)
    n = len(server.requests)
    err, seconds, peak = _fetch_bounded(wf)
    assert isinstance(err, UserError), err
    msg = str(err)
    _one_line(msg)
    assert "cut short 3 times" in msg and "ignores resume requests" in msg and wf.download_url() in msg
    gets = [r for r in server.requests[n:] if r.startswith("GET")]
    assert len(gets) == 3  # the first transfer and two resumes, no more
    assert seconds < 5 and peak < 8 << 20  # one 1 MiB chunk at a time, never the 24 MiB body
    assert _files_under(online) == [] and _files_under(torch_home) == []
    print(f"\n{where}: dropping server failed in {seconds:.2f} s, peak Python memory {peak / 2**20:.1f} MiB")


class Resuming:
    """A Hub that honours Range but drops every transfer after 40 % of the file; records each request's headers."""

    def __init__(self, body: bytes, cdn: str | None = None):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from httpserver import HUB_COMMIT

        outer = self
        self.body, self.seen = body, []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self, with_body: bool):
                outer.seen.append((self.command, {k.lower(): v for k, v in self.headers.items()}))
                if cdn is not None:  # the Hub's answer for a large file: its facts, and where the bytes are
                    self.send_response(302)
                    self.send_header("Location", cdn + "/blob/xyz")
                    self.send_header("X-Linked-Etag", f'"{hashlib.sha256(body).hexdigest()}"')
                    self.send_header("X-Linked-Size", str(len(body)))
                    self.send_header("X-Repo-Commit", HUB_COMMIT)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = int(self.headers.get("Range", "bytes=0-")[6:].rstrip("-"))
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body) - start))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
                self.send_header("X-Repo-Commit", HUB_COMMIT)
                self.end_headers()
                if with_body:
                    self.wfile.write(body[start:start + int(len(body) * 0.4)])
                    self.close_connection = True

            def do_GET(self):
                self._answer(True)

            def do_HEAD(self):
                self._answer(False)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_transfer_cut_short_resumes_with_range_and_the_cache_is_huggingface_hubs(online, monkeypatch):
    from huggingface_hub import hf_hub_download

    body = BODY[:3 << 20]
    wf = W.WeightFile("resumes.pt", "resumes", hf_repo="someone/faults", hf_filename="resumes.pt")
    monkeypatch.setenv("HF_TOKEN", "hf_stand_in_token")
    with Resuming(body) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        path, seconds, _ = _fetch_bounded(wf)
    assert isinstance(path, Path), path
    assert path.read_bytes() == body
    gets = [h for m, h in hub.seen if m == "GET"]
    assert [h.get("range") for h in gets] == [None, f"bytes={int(len(body) * 0.4)}-", f"bytes={int(len(body) * 0.8)}-"]
    assert all(h.get("authorization") == "Bearer hf_stand_in_token" for _, h in hub.seen)  # the user's token
    # huggingface_hub itself finds the file offline, in its own layout
    assert Path(hf_hub_download("someone/faults", "resumes.pt", local_files_only=True)) == path
    assert path.is_symlink() and path.resolve().name == hashlib.sha256(body).hexdigest()
    assert (online / "models--someone--faults" / "refs" / "main").read_text() == path.parent.name


def test_large_file_bytes_come_from_the_download_host_without_the_token(online, monkeypatch):
    body = BODY[:1 << 20]
    wf = W.WeightFile("lfs.pt", "lfs", hf_repo="someone/faults", hf_filename="lfs.pt")
    monkeypatch.setenv("HF_TOKEN", "hf_stand_in_token")
    with Resuming(body) as cdn:
        cdn_url = cdn.url.replace("127.0.0.1", "localhost")  # another host name for the same server
        with Resuming(body, cdn=cdn_url) as hub:
            monkeypatch.setenv("HF_ENDPOINT", hub.url)
            path, _, _ = _fetch_bounded(wf)
    assert isinstance(path, Path), path
    assert path.read_bytes() == body
    assert [m for m, _ in hub.seen] == ["HEAD"] and hub.seen[0][1]["authorization"] == "Bearer hf_stand_in_token"
    assert [m for m, _ in cdn.seen] == ["GET", "GET", "GET"]  # cut short twice, resumed
    assert all("authorization" not in h for _, h in cdn.seen)  # the token stays with the Hub


class Silent:
    """Accepts TCP connections (the kernel completes them from the listen backlog) and never says a word."""

    def __enter__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        return self

    def __exit__(self, *exc):
        self.sock.close()


@pytest.mark.parametrize("where", ["hub", "torch"])
def test_server_that_never_answers_times_out_and_says_so(server, online, torch_home, monkeypatch, where):
    wf = _hub(server, "silent") if where == "hub" else _tv(server, "silent")
    with Silent() as silent:
        monkeypatch.setenv("HF_ENDPOINT", silent.url)
        monkeypatch.setenv("DGNAM_TORCH_MIRROR", silent.url)
        err, seconds, _ = _fetch_bounded(wf)
    assert isinstance(err, UserError), err
    msg = str(err)
    _one_line(msg)
    assert "timed out" in msg and "accepted the connection but sent no answer within 1 s" in msg
    assert "no network" not in msg and "cannot reach" not in msg
    assert seconds < 3
    assert _files_under(online) == [] and _files_under(torch_home) == []


def test_remote_size_of_a_silent_server_is_unknown_within_its_timeout(online, monkeypatch):
    wf = W.WeightFile("x.pt", "x", hf_repo="someone/faults", hf_filename="x.pt")
    with Silent() as silent:
        monkeypatch.setenv("HF_ENDPOINT", silent.url)
        t0 = time.monotonic()
        assert W.remote_size(wf, timeout=1.0) is None
        assert time.monotonic() - t0 < 2.5


def test_stalled_transfer_fails_with_the_stall_named(server, online, torch_home):
    wf = _hub(server, "stalls", pause=30.0)  # a first piece, then 30 s of nothing
    err, seconds, _ = _fetch_bounded(wf)
    assert isinstance(err, UserError), err
    _one_line(str(err))
    assert "stalled: no data for 1 s after" in str(err)
    assert seconds < 3 and _files_under(online) == []


def test_overall_deadline_ends_a_slow_download(server, online, torch_home, monkeypatch):
    monkeypatch.setenv("DGNAM_DOWNLOAD_TIMEOUT", "1.5")
    wf = _tv(server, "slow", pause=0.2)  # 50 pieces, 0.2 s apart: bytes keep coming for 10 s
    err, seconds, _ = _fetch_bounded(wf)
    assert isinstance(err, UserError), err
    _one_line(str(err))
    assert "timed out: not finished within 1.5 s" in str(err) and "DGNAM_DOWNLOAD_TIMEOUT" in str(err)
    assert seconds < 3 and _files_under(torch_home) == []


def test_bad_limit_setting_is_one_line(online, server, monkeypatch):
    monkeypatch.setenv("DGNAM_DOWNLOAD_STALL", "soon")
    with pytest.raises(UserError, match="DGNAM_DOWNLOAD_STALL must be a number of seconds above 0"):
        W.fetch(_hub(server, "limits", b"x"))


# ----- item 5: a wrong download is accepted -----

def test_hub_content_not_matching_its_etag_is_refused(server, online):
    wf = _hub(server, "wrong", BODY[:1 << 20])
    path = "/someone/faults/resolve/main/wrong.pt"
    body, truncated, pause, _ = server.files[path]
    server.files[path] = (body, truncated, pause, sha256_of(b"the published content"))  # another file's hash
    err, _, _ = _fetch_bounded(wf)
    assert isinstance(err, UserError), err
    _one_line(str(err))
    assert "does not match the hash the Hub published" in str(err) and "nothing was kept" in str(err)
    assert _files_under(online) == [] and W.find(wf) is None
    err, _, _ = _fetch_bounded(wf)  # asked again: downloads again and refuses again, never "present"
    assert isinstance(err, UserError) and "does not match" in str(err)


def test_torchvision_file_not_matching_the_hash_in_its_name_is_refused(server, online, torch_home):
    wf = _tv(server, "badhash", BODY[:1 << 20], prefix="00000000")
    err, _, _ = _fetch_bounded(wf)
    assert isinstance(err, UserError), err
    _one_line(str(err))
    assert "does not match the 00000000 in its name" in str(err)
    assert _files_under(torch_home) == [] and W.find(wf) is None


def _damage(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("where", ["hub", "torch"])
def test_damaged_cached_copy_is_named_and_force_replaces_it(server, online, torch_home, where):
    body = BODY[:1 << 20]
    wf = _hub(server, "damaged", body) if where == "hub" else _tv(server, "damaged", body)
    path = W.fetch(wf)
    _damage(path.resolve())
    n = len(server.requests)
    with pytest.raises(WeightsCorrupt) as e:
        W.fetch(wf)
    _one_line(str(e.value))
    assert str(path) in str(e.value) and "is damaged" in str(e.value)
    assert "`python -m dgnam_engine fetch damaged --force`" in str(e.value)
    assert len(server.requests) == n  # nothing downloaded without --force
    again = W.fetch(wf, force=True)
    assert again == path and again.read_bytes() == body and W.fetch(wf) == path


def test_force_names_a_copy_someone_else_put_first(server, online, torch_home):
    wf = _hub(server, "theirs", BODY[:1 << 16])
    torch_home.mkdir(parents=True)
    (torch_home / "theirs.pt").write_bytes(b"their own bytes")  # no published hash to check a copy here by
    assert W.fetch(wf) == torch_home / "theirs.pt"
    with pytest.raises(UserError) as e:
        W.fetch(wf, force=True)
    _one_line(str(e.value))
    assert f"{torch_home / 'theirs.pt'} is found before it" in str(e.value) and "remove it" in str(e.value)
    assert (torch_home / "theirs.pt").read_bytes() == b"their own bytes"  # not the project's file: untouched


def test_cli_fetch_force_on_a_damaged_fc6_and_loading_it_names_the_fix(server, online, capsys):
    spec = P.ORIGINAL_PRIORS["fc6"]
    sd = {"defc7.weight": torch.zeros(2)}
    buf = io.BytesIO()
    torch.save(sd, buf)
    server.serve_hub(P.HF_DEEPSIM, "upconvGAN_fc6.pt", buf.getvalue())
    assert cli.main(["fetch", "fc6"]) == 0
    cached = W.find(spec.weights)
    cached.resolve().write_bytes(b"\0" * 100)  # damaged after the download
    with pytest.raises(WeightsCorrupt) as e:
        P.load_prior("fc6")
    _one_line(str(e.value))
    assert "not a readable weights file" in str(e.value) and "fetch fc6 --force" in str(e.value)
    capsys.readouterr()
    assert cli.main(["fetch", "fc6"]) == 2
    err = capsys.readouterr().err
    assert "is damaged" in err and "fetch fc6 --force" in err and len(err.strip().splitlines()) == 1
    assert cli.main(["fetch", "fc6", "--force"]) == 0
    assert W.find(spec.weights).read_bytes() == buf.getvalue()


# ----- item 7: a legacy pickle said "not a PyTorch checkpoint" without the reason -----

def _legacy(obj, protocol: int = 2) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=False, pickle_protocol=protocol)
    return buf.getvalue()


def test_legacy_python2_checkpoint_loads(tmp_path):
    """Python 2 wrote byte strings (published Places networks); they decode as latin-1, as their own loader does."""
    sd = {"a.weight": torch.arange(6.0).reshape(2, 3)}
    data = _legacy({"state_dict": sd, "arch": "abcd"})
    assert data.count(b"X\x04\x00\x00\x00abcd") == 1
    (tmp_path / "py2.pth.tar").write_bytes(data.replace(b"X\x04\x00\x00\x00abcd", b"U\x04ab\xe9d"))
    got = W.load_state_dict(tmp_path / "py2.pth.tar")
    assert torch.equal(got["a.weight"], sd["a.weight"])


def test_unreadable_legacy_files_say_why(tmp_path):
    sd = {"a.weight": torch.zeros(3)}
    whole = _legacy(sd)
    files = {"p4.pt": _legacy(sd, 4), "cut.pt": whole[:60], "cut-in-data.pt": whole[:-5]}
    import pickle

    files["plain.pkl"] = pickle.dumps({"a": [1, 2]})
    reasons = {}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(WeightsCorrupt) as e:
            W.load_state_dict(tmp_path / name)
        _one_line(str(e.value))
        reasons[name] = str(e.value).partition(" is not a readable weights file: ")[2]
    assert reasons["p4.pt"].startswith("a PyTorch file in the legacy (not zip) format written with pickle protocol 4")
    for name in ("cut.pt", "cut-in-data.pt"):
        assert reasons[name] == "a PyTorch file in the legacy (before 1.6, not zip) format that is cut short", name
    assert reasons["plain.pkl"].startswith("a plain Python pickle, not a file written by torch.save")


# ----- items 9 and 11: prior cards and a damaged default demo prior -----

@pytest.fixture()
def demo_dir(tmp_path, monkeypatch) -> Path:
    """A copy of the shipped demo priors that the test may damage."""
    folder = tmp_path / "priors"
    shutil.copytree(P.DEMO_PRIORS_DIR, folder)
    monkeypatch.setattr(P, "DEMO_PRIORS_DIR", folder)
    return folder


def test_broken_prior_card_is_skipped_and_named_once(demo_dir, capsys):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(demo_dir / "zzz.safetensors"))  # no card inside: the one beside counts
    (demo_dir / "zzz.json").write_text('{"name": "zzz", ')
    save_file({"w": torch.zeros(2)}, str(demo_dir / "yyy.safetensors"), metadata={P.CARD_KEY: "[1, 2]"})
    capsys.readouterr()
    assert cli.main(["priors", "--json"]) == 0
    out, err = capsys.readouterr()
    rows = {r["name"] for r in json.loads(out)}
    assert {"lite0-b3", "lite0-b5", "lite0-pooled", "lite0-logits", "fc6"} <= rows and "zzz" not in rows
    lines = err.strip().splitlines()
    assert len(lines) == 2, lines  # each bad card once, however often the priors were listed
    assert any("zzz.json is not valid JSON" in line for line in lines)
    assert any("yyy.safetensors" in line and "not a JSON object" in line for line in lines)
    assert P.default_prior_name() == P.DEMO_DEFAULT
    assert any("zzz.json" in line for line in P.skipped_priors())


def test_prior_file_of_the_users_with_a_broken_card_is_one_line(tmp_path, capsys):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "mine.safetensors"))
    (tmp_path / "mine.json").write_text("{'name': 'mine'}")  # Python, not JSON
    with pytest.raises(WeightsCorrupt) as e:
        P.load_prior(None, str(tmp_path / "mine.safetensors"))
    _one_line(str(e.value))
    assert "mine.json is not valid JSON" in str(e.value)
    assert cli.main(["visualize", "--model", "efficientnet_lite0", "--unit", "1", "--random-weights", "--prior-file",
                     str(tmp_path / "mine.safetensors"), "--out", str(tmp_path / "x.png"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mine.json is not valid JSON" in err[0] and not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("how", ["cut short", "empty", "garbage"])
def test_damaged_default_demo_prior_is_named_and_stays_the_default(demo_dir, capsys, how):
    f = demo_dir / f"{P.DEMO_DEFAULT}.safetensors"
    data = f.read_bytes()
    f.write_bytes({"cut short": data[:len(data) // 3], "empty": b"", "garbage": b"\x00" * 4096}[how])
    assert P.default_prior_name() == P.DEMO_DEFAULT  # not silently another prior
    with pytest.raises(WeightsCorrupt) as e:
        P.load_prior()
    msg = str(e.value)
    _one_line(msg)
    assert "unknown prior" not in msg and str(f) in msg and "is damaged" in msg and "git checkout" not in msg
    assert "replace it" in msg and "--prior" in msg
    with pytest.raises(WeightsCorrupt, match="is damaged"):
        P.load_prior(P.DEMO_DEFAULT)
    capsys.readouterr()
    assert cli.main(["priors", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[P.DEMO_DEFAULT]["default"] and "is damaged" in rows[P.DEMO_DEFAULT]["damaged"]
    assert rows["lite0-b5"]["damaged"] is None


def test_damaged_shipped_prior_says_how_to_restore_it():
    spec = P.PriorSpec("lite0-b3", "t", "compact", (1,), "e:l", file=str(P.DEMO_PRIORS_DIR / "lite0-b3.safetensors"),
                       kind="trained", damaged="the file is empty")
    msg = P.damage_message(spec)
    assert "git checkout -- assets/priors/lite0-b3.safetensors" in msg and "is damaged (the file is empty)" in msg


def test_setup_page_names_the_damaged_prior_and_the_skipped_card(demo_dir, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("DGNAM_DATA_DIR", str(tmp_path / "data"))
    (demo_dir / f"{P.DEMO_DEFAULT}.safetensors").write_bytes(b"")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(demo_dir / "zzz.safetensors"))
    (demo_dir / "zzz.json").write_text("{")
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "streamlit_app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/setup.py").run()
    assert not at.exception
    rows = at.table[1].value  # Setup's tables wrap (st.table)
    assert rows[rows["prior"] == P.DEMO_DEFAULT].iloc[0]["weights"] == "damaged"
    assert rows[rows["prior"] == "lite0-b5"].iloc[0]["weights"] == "present"
    assert any(f"{P.DEMO_DEFAULT}.safetensors is damaged (the file is empty)" in e.value for e in at.error)
    assert any("zzz.json is not valid JSON" in w.value for w in at.warning)


class Dripping:
    """Answers with a status line, then one header line every 0.3 s for ever: never a stall, never an answer."""

    def __enter__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn):
        try:
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            while not self.stop.wait(0.3):
                conn.sendall(b"X-Drip: 1\r\n")
        except OSError:  # the client hung up
            pass
        finally:
            conn.close()

    def __exit__(self, *exc):
        self.stop.set()
        self.sock.close()


def test_headers_dripping_past_the_deadline_end_at_the_deadline(server, online, torch_home, monkeypatch):
    monkeypatch.setenv("DGNAM_DOWNLOAD_TIMEOUT", "1.5")
    wf = _tv(server, "drip")
    with Dripping() as drip:
        monkeypatch.setenv("DGNAM_TORCH_MIRROR", drip.url)
        err, seconds, _ = _fetch_bounded(wf)
    assert isinstance(err, UserError), err
    _one_line(str(err))
    assert "timed out: not finished within 1.5 s" in str(err)
    assert seconds < 3 and _files_under(torch_home) == []
