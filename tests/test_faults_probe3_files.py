"""Issue 30, the third fault probe's file and input defects: class names files (special files, sizes, line counts,
control characters, duplicates, BOMs), `models add` / `fetch NAME --from FILE` (copy first, check the copy; NaN
weights, means and stds; the user's own googlenet; priors by --from; look-alike architectures; messages that name
the fix), NaN activations, one number parser in the engine, special files named as such.

Each test reproduces a defect the probe found and failed before its fix. Networks are small and random
(mobilenet_v3_small with 10 classes for most; resnet18/34 where the family matters), each file written once."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from dgnam_engine import accel, class_lists, cli, user_networks
from dgnam_engine import weights as W
from dgnam_engine.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
ARCH = "torchvision:mobilenet_v3_small"


def one_error(capsys, argv: list[str]) -> str:
    """The command line in this process: exit 2, exactly one line on stderr, nothing on stdout."""
    code = cli.main(argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    assert "Traceback" not in err and not out.strip(), (out, err)
    return lines[0]


@pytest.fixture()
def data(tmp_path, monkeypatch) -> Path:
    """An empty data folder and torch cache of the test's own."""
    monkeypatch.setenv("DGNAM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "data"


def _nothing_added(data: Path) -> None:
    folder = data / "networks"
    assert not folder.exists() or not list(folder.iterdir()), list(folder.iterdir())


def _save(model: torch.nn.Module, path: Path) -> Path:
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    import torchvision.models as tvm

    d = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    small = tvm.mobilenet_v3_small(num_classes=10)
    out = {"small": _save(small, d / "small.pth")}
    sd = small.state_dict()
    sd["classifier.3.bias"][0] = float("nan")
    torch.save(sd, d / "nan.pth")
    out["nan"] = d / "nan.pth"
    out["resnet34"] = _save(tvm.resnet34(num_classes=10), d / "resnet34.pth")
    out["googlenet"] = _save(tvm.googlenet(weights=None, aux_logits=False, init_weights=False), d / "googlenet.pth")
    return out


def _names(path: Path, n: int, **kw) -> Path:
    path.write_text("\n".join(f"class{i}" for i in range(n)) + "\n", **kw)
    return path


def _bounded(fn, bound: float = 10.0):
    """fn() in a thread; its result or exception, failing the test if it is still going after `bound` s."""
    box = {}

    def run():
        try:
            box["r"] = fn()
        except BaseException as exc:  # the test looks at it
            box["r"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(bound)
    assert not t.is_alive(), f"still going after {bound} s (reading for ever, or waiting for a writer)"
    return box["r"]


# ----- probe 1: a class names file read whole, whatever it is ------------------------------------------------------

def test_a_class_names_file_that_is_a_device_or_a_pipe_is_refused_unread(tmp_path, data, files, capsys):
    zero = tmp_path / "zero.txt"
    zero.symlink_to("/dev/zero")  # was read whole: 21 GB, then the OOM killer
    fifo = tmp_path / "names.fifo"
    os.mkfifo(fifo)  # was: blocked for ever waiting for a writer
    for path in (zero, fifo):
        err = _bounded(lambda p=path: class_lists.read_names_file(p))
        assert isinstance(err, UserError) and "is not a regular file" in str(err), err
        line = one_error(capsys, ["models", "add", "pets", "--arch", ARCH, "--weights", str(files["small"]),
                                  "--classes", str(path)])
        assert f"{path} is not a regular file" in line
    _nothing_added(data)


def test_a_huge_class_names_file_is_refused_by_its_size_before_it_is_read(tmp_path):
    big = tmp_path / "big.txt"
    with open(big, "wb") as f:
        f.truncate(class_lists.MAX_NAMES_BYTES + 1)  # sparse: its size says it all, nothing need be read
    with pytest.raises(UserError, match=r"big.txt is 8.4 MB, more than a class list's 8 MB"):
        class_lists.read_names_file(big)


def test_a_million_line_class_list_is_refused_before_a_network_is_built(tmp_path, data, files, capsys):
    many = tmp_path / "many.txt"
    many.write_text("\n".join(f"c{i}" for i in range(1_000_000)))  # 7.9 MB: within the size bound
    t0 = time.monotonic()
    line = one_error(capsys, ["models", "add", "pets", "--arch", ARCH, "--weights", str(files["small"]),
                              "--classes", str(many)])
    assert "has 1000000 names, more than the 100000 a network may have" in line  # was: 4.8 GB, then the message
    assert time.monotonic() - t0 < 20
    _nothing_added(data)


@pytest.mark.parametrize("text, words", [
    ("cat\ndo\x00g\n", ["name 2", "control character '\\x00'"]),  # was accepted; every result then "damaged"
    ("cat\ndo\tg\n", ["name 2", "control character '\\t'"]),
    ("cat\ndog\nCat\n", ["names 'Cat' twice (names 1 and 3)"]),  # was accepted silently
    ("cat\ndog\nbig_cat\nbig cat\n", ["'big cat' twice (names 3 and 4)"]),  # found alike, so one name
])
def test_class_names_no_class_can_have_are_refused_in_one_line(tmp_path, text, words):
    path = tmp_path / "names.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserError) as e:
        class_lists.read_names_file(path)
    assert "\n" not in str(e.value) and all(w in str(e.value) for w in words), str(e.value)


def test_a_bom_is_not_part_of_the_first_class_name(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text("cat\ndog\n", encoding="utf-8-sig")
    names = class_lists.read_names_file(path)
    assert names == ("cat", "dog")  # was ('\ufeffcat', 'dog'): "did you mean \ufeffcat"
    assert class_lists.suggestions(names, "ca") == ["cat"]


def test_a_class_line_ending_in_a_non_ascii_digit_is_a_name_not_a_traceback(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text("cat ²\ndog 1\n", encoding="utf-8")  # "²".isdigit() is True, int("²") a ValueError
    assert class_lists.read_names_file(path) == ("cat ²", "dog 1")
    path.write_text("cat 0\ndog 1\n", encoding="utf-8")
    assert class_lists.read_names_file(path) == ("cat", "dog")  # the Places `name index` form still reads


# ----- models add: bad numbers, names and weights --------------------------------------------------------------------

@pytest.mark.parametrize("extra, words", [
    (["--num-classes", "100000000"], ["--num-classes 100000000 is out of range", "1 to 100000"]),  # was 400 GB
    (["--num-classes", "0"], ["--num-classes 0 is out of range"]),
    (["--input-size", "0"], ["--input-size 0 is out of range", "16 to 2048"]),  # was accepted: the default used
    (["--mean", "nan,0.4,0.4", "--std", "0.2,0.2,0.2"], ["--mean", "'nan,0.4,0.4'"]),  # was accepted
    (["--mean", "0.4,0.4,0.4", "--std", "1e-308,0.2,0.2"], ["--std", "from 0.001 to 10"]),  # was accepted
    (["--mean", "٠.٤,0.4,0.4", "--std", "0.2,0.2,0.2"], ["--mean"]),  # float() read it as 0.4
])
def test_models_add_refuses_numbers_no_network_reads_by(extra, words, data, files, capsys):
    line = one_error(capsys, ["models", "add", "pets", "--arch", ARCH, "--weights", str(files["small"])] + extra)
    assert all(w in line for w in words), line
    _nothing_added(data)


def test_models_add_refuses_weights_holding_nan(data, files, capsys):
    line = one_error(capsys, ["models", "add", "pets", "--arch", ARCH, "--weights", str(files["nan"])])
    assert "holds NaN or infinite values (classifier.3.bias)" in line  # was added; every picture then NaN
    _nothing_added(data)


def test_a_network_name_ending_in_a_newline_is_refused(data, files, capsys):
    line = one_error(capsys, ["models", "add", "pets2\n", "--arch", ARCH, "--weights", str(files["small"])])
    assert "bad network name 'pets2\\n'" in line  # `$` matched before the newline: accepted
    _nothing_added(data)


def test_models_add_argument_errors_point_to_the_real_help(data, files, capsys):
    line = one_error(capsys, ["models", "add", "pets", "--arch", ARCH, "--weights", str(files["small"]),
                              "--num-classes", "many"])
    assert "(see `python -m dgnam_engine models add --help`)" in line  # was `add --help`, no such command
    subprocess.run([sys.executable, "-m", "dgnam_engine", "models", "add", "--help"], check=True, cwd=ROOT,
                   capture_output=True)  # and that command exists


def test_an_architecture_typo_gets_a_did_you_mean(data, files, capsys):
    line = one_error(capsys, ["models", "add", "pets", "--arch", "torchvision:mobilenet-v3-small", "--weights",
                              str(files["small"])])
    assert "did you mean torchvision:mobilenet_v3_small?" in line, line
    line = one_error(capsys, ["models", "add", "pets", "--arch", "torchvision:resnet-18", "--weights",
                              str(files["small"])])
    assert "did you mean torchvision:resnet18?" in line, line


def test_a_file_of_another_architecture_of_the_family_is_named(data, files, capsys):
    line = one_error(capsys, ["models", "add", "pets", "--arch", "torchvision:resnet18", "--weights",
                              str(files["resnet34"])])
    assert "unexpected key" in line and "it looks like resnet34: give --arch torchvision:resnet34" in line, line
    _nothing_added(data)


def test_nine_names_for_ten_outputs_say_so(tmp_path, data, files, capsys):
    names = _names(tmp_path / "names.txt", 9)
    line = one_error(capsys, ["models", "add", "pets", "--arch", ARCH, "--weights", str(files["small"]),
                              "--classes", str(names)])
    # was: "the file has 10 classes, the network 9 (classifier.3.weight)"
    assert f"your class names file {names} has 9 names (lines), the network in {files['small']} has 10 outputs" \
        in line, line
    _nothing_added(data)


# ----- probe 4: check one file, copy another ---------------------------------------------------------------------

def _swap_during_the_check(monkeypatch, src: Path) -> None:
    """The first load of any weights file also overwrites the user's `src` with garbage: a file swapped between
    the check and the copy."""
    real, done = W.load_state_dict, []

    def loading(path):
        if not done:
            done.append(path)
            src.write_bytes(b"not weights at all")
        return real(path)

    monkeypatch.setattr(W, "load_state_dict", loading)


def test_models_add_keeps_the_file_it_checked(tmp_path, data, files, monkeypatch, capsys):
    src = tmp_path / "mine.pth"
    shutil.copyfile(files["small"], src)
    want = hashlib.sha256(src.read_bytes()).hexdigest()
    _swap_during_the_check(monkeypatch, src)
    assert cli.main(["models", "add", "pets", "--arch", ARCH, "--weights", str(src)]) == 0
    kept = data / "networks" / "pets" / "weights.pth"
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == want  # was the garbage, stored as checked
    W.load_state_dict(kept)


def test_fetch_from_keeps_the_file_it_checked(tmp_path, data, files, monkeypatch, capsys):
    src = tmp_path / "mine.pth"
    shutil.copyfile(files["googlenet"], src)
    want = hashlib.sha256(src.read_bytes()).hexdigest()
    _swap_during_the_check(monkeypatch, src)
    assert cli.main(["fetch", "googlenet", "--from", str(src)]) == 0
    kept = W.checkpoints_dir() / "googlenet.pth"
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == want


# ----- probe 10 and lower: fetch --from with the user's own file, priors by --from -------------------------------

def test_fetch_googlenet_from_a_file_of_ones_own(data, files, capsys):
    from dgnam_engine import targets as T

    assert cli.main(["fetch", "googlenet", "--from", str(files["googlenet"])]) == 0  # was a StopIteration
    out = capsys.readouterr().out
    placed = W.checkpoints_dir() / "googlenet.pth"
    assert f"googlenet: {placed}" in out
    assert W.find(T.get_spec("googlenet").weights) == placed  # found where lookups look
    assert W.damage(T.get_spec("googlenet").weights, placed) is None


def test_fetch_an_original_prior_from_a_file(tmp_path, data, capsys):
    from dgnam_engine import generators, priors as P

    gen = generators.build(P.ORIGINAL_PRIORS["conv3"].arch)
    mine = _save(gen, tmp_path / "my_conv3.pt")
    assert cli.main(["fetch", "conv3", "--from", str(mine)]) == 0  # was "unknown model 'conv3'"
    assert W.find(P.ORIGINAL_PRIORS["conv3"].weights) == W.checkpoints_dir() / "upconvGAN_conv3.pt"
    capsys.readouterr()
    wrong = _save(torch.nn.Linear(3, 2), tmp_path / "wrong.pt")
    line = one_error(capsys, ["fetch", "pool5", "--from", str(wrong)])
    assert f"{wrong} does not fit the pool5 prior's generator" in line
    assert not (W.checkpoints_dir() / "upconvGAN_pool5.pt").exists()
    line = one_error(capsys, ["fetch", "lite0-b3", "--from", str(mine)])
    assert "ships with the project" in line and "--prior-file" in line


# ----- special files: "not a regular file", not "file not found" ----------------------------------------------------

def test_special_files_are_named_as_such(tmp_path, data, capsys):
    fifo = tmp_path / "w.pth"
    os.mkfifo(fifo)
    cases = [["visualize", "--model", "caffenet", "--weights", str(fifo), "--unit", "1", "--iters", "1", "--out",
              str(tmp_path / "o.png")],  # was "not found" (and, for visualize, a hash read that waited for ever)
             ["fetch", "googlenet", "--from", str(fifo)],
             ["models", "add", "pets", "--arch", ARCH, "--weights", str(fifo)],
             ["neighbours", "--image", str(fifo), "--images", str(tmp_path)]]
    for argv in cases:
        line = _bounded(lambda a=argv: one_error(capsys, a), 60)
        assert isinstance(line, str), line
        assert f"{fifo} is not a regular file" in line, line
    assert not (tmp_path / "o.png").exists()


# ----- models remove, layers of an added network ------------------------------------------------------------------

def test_models_remove_of_a_linked_entry_removes_the_link_only(tmp_path, data, files, capsys):
    assert cli.main(["models", "add", "pets", "--arch", ARCH, "--weights", str(files["small"])]) == 0
    elsewhere = tmp_path / "kept" / "pets"
    elsewhere.parent.mkdir()
    (data / "networks" / "pets").rename(elsewhere)
    (data / "networks" / "pets").symlink_to(elsewhere, target_is_directory=True)
    capsys.readouterr()
    assert cli.main(["models", "remove", "pets"]) == 0  # was an OSError traceback (rmtree of a link)
    assert not (data / "networks" / "pets").exists() and not (data / "networks" / "pets").is_symlink()
    assert (elsewhere / "network.json").is_file()  # not the product's to delete


def test_layers_of_an_added_network_says_what_it_is(tmp_path, data, files, capsys):
    assert cli.main(["models", "add", "pets", "--arch", ARCH, "--weights", str(files["small"])]) == 0
    capsys.readouterr()
    assert cli.main(["layers", "pets"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "trained on added" not in first and f"a network you added ({ARCH}, 10 classes" in first, first


# ----- --unit suggestions, places --only conv5 ------------------------------------------------------------------------

def test_a_misspelt_class_gets_a_did_you_mean(tmp_path, capsys):
    line = one_error(capsys, ["visualize", "--model", "caffenet", "--random-weights", "--iters", "1", "--unit",
                              "zebraa", "--out", str(tmp_path / "o.png")])
    assert "no class named 'zebraa'; did you mean zebra?" in line, line  # was no suggestion at all


def test_places_only_conv5_on_a_network_without_conv5_says_why(tmp_path, capsys):
    line = one_error(capsys, ["places", "--model", "resnet18_places365", "--random-weights", "--only", "conv5",
                              "--out", str(tmp_path / "out")])
    assert "resnet18_places365 has no conv5 layer" in line  # was: nothing printed, exit 0
    assert not (tmp_path / "out").exists()


# ----- probe 9: a NaN activation is the network's, not a damaged database ----------------------------------------

def test_a_network_giving_nan_is_named_before_anything_is_stored():
    """The runner refuses the run, so no caller (the worker that stores, the CLI that writes) gets a NaN row."""
    from dgnam_engine import runner, targets as T

    tgt = T.load_target("caffenet", "cpu", random_weights=True)
    with torch.no_grad():
        tgt.model.conv1.weight.fill_(float("nan"))
    with pytest.raises(UserError) as e:  # was a RuntimeError in the plan check, or NOT NULL in the store
        runner.visualize("caffenet", [1], None, runner.Settings(n_iters=1, method="pixel"), target=tgt)
    assert "the network gives NaN for this picture: caffenet fc8 unit 1" in str(e.value)
    assert "\n" not in str(e.value)


# ----- probe 11: one number parser in the engine ---------------------------------------------------------------------

@pytest.mark.parametrize("value", ["²", "٣", "1" * 20])
def test_cpu_threads_setting_is_ascii_digits_within_range(value, monkeypatch):
    monkeypatch.setenv(accel.THREADS_ENV, value)  # "²" was a traceback, "٣" read as 3, 20 digits overflowed
    with pytest.raises(UserError, match=f"{accel.THREADS_ENV}=.*digits 0-9"):
        accel.cpu_pass_threads()
    monkeypatch.setenv(accel.THREADS_ENV, "3")
    assert accel.cpu_pass_threads() == 3


def test_download_limits_are_ascii_digits(monkeypatch):
    from dgnam_engine import http_download as D

    monkeypatch.setenv(D.DEADLINE_ENV, "٣")  # float() read it as 3
    with pytest.raises(UserError, match="DGNAM_DOWNLOAD_TIMEOUT must be a number of seconds"):
        D.Limits.from_env()
    monkeypatch.setenv(D.DEADLINE_ENV, "2.5")
    assert D.Limits.from_env().deadline == 2.5


def test_no_isdigit_then_int_left_in_the_engine():
    """str.isdigit accepts "²" (int refuses it) and int accepts "٣": the engine reads typed numbers only through
    numbers.py. Detecting any digit to refuse a text (objectives) is no reading."""
    found = []
    for p in (ROOT / "dgnam_engine").rglob("*.py"):
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            if any(f".{m}()" in line for m in ("isdigit", "isnumeric", "isdecimal")) and "ch.isdigit()" not in line:
                found.append(f"{p.relative_to(ROOT)}:{i}")
    assert found == [], found


# ----- probe 13: the shipped demo priors are sealed ------------------------------------------------------------------

@pytest.fixture()
def demo_priors(tmp_path, monkeypatch) -> Path:
    """A copy of the shipped demo priors (with their SHA256SUMS) that the test may damage."""
    from dgnam_engine import priors as P

    folder = tmp_path / "priors"
    shutil.copytree(P.DEMO_PRIORS_DIR, folder)
    monkeypatch.setattr(P, "DEMO_PRIORS_DIR", folder)
    return folder


def _flip_a_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) * 2 // 3] ^= 0x10  # inside the tensors: safetensors still reads it
    path.write_bytes(bytes(data))


def test_the_shipped_demo_priors_match_their_seal():
    from dgnam_engine import priors as P

    sums = P._read_sums(P.DEMO_PRIORS_DIR)
    assert sorted(sums) == sorted(p.name for p in P.DEMO_PRIORS_DIR.glob("*.safetensors"))
    for p in P.DEMO_PRIORS_DIR.glob("*.safetensors"):
        assert P.seal_problem(p) is None, p


def test_a_flipped_bit_in_a_demo_prior_refuses_to_load_in_one_line(demo_priors, tmp_path, capsys):
    from dgnam_engine import catalog, priors as P

    f = demo_priors / "lite0-b3.safetensors"
    _flip_a_bit(f)
    P.read_card(f)  # the file still reads: only its seal tells
    with pytest.raises(UserError) as e:  # was: loaded, noise pictures, no warning
        P.load_prior("lite0-b3")
    msg = str(e.value)
    assert "\n" not in msg and str(f) in msg and "SHA256SUMS" in msg and "replace it with a sound copy" in msg, msg
    with pytest.raises(UserError, match="SHA256SUMS"):
        P.load_prior(prior_file=str(f))  # by its path too
    assert next(e for e in catalog.priors() if e.name == "lite0-b3").damaged
    line = one_error(capsys, ["visualize", "--model", "efficientnet_lite0", "--random-weights", "--prior",
                              "lite0-b3", "--unit", "1", "--iters", "1", "--out", str(tmp_path / "o.png")])
    assert "lite0-b3" in line and "SHA256SUMS" in line
    assert not (tmp_path / "o.png").exists()
    P.load_prior("lite0-b5")  # the others are sound


def test_a_demo_prior_is_hashed_once_per_file_version(demo_priors):
    from dgnam_engine import priors as P

    f = demo_priors / "lite0-b5.safetensors"
    P._seal_problem.cache_clear()
    for _ in range(3):
        P.load_prior("lite0-b5")
        P.all_specs()
    assert P._seal_problem.cache_info().misses == len(list(demo_priors.glob("*.safetensors")))
    _flip_a_bit(f)
    assert P.seal_problem(f) is not None  # a new version of the file is hashed again


def test_a_prior_saved_into_the_demo_folder_is_sealed(demo_priors):
    from dgnam_engine import priors as P

    prior = P.load_prior("lite0-b3")
    card = P.read_card(demo_priors / "lite0-b3.safetensors")
    P.save_prior_file(demo_priors / "lite0-b3.safetensors", prior.generator, prior.lower * 0.5, prior.upper, card)
    assert P.seal_problem(demo_priors / "lite0-b3.safetensors") is None  # retrained: sealed anew, not "damaged"


def test_an_entry_being_staged_is_not_listed_or_warned_about(data, caplog):
    folder = data / "networks" / ".pets.partial"  # what `models add` checks its copies in
    folder.mkdir(parents=True)
    (folder / "weights.pth").write_bytes(b"half")
    assert user_networks.entries() == [] and "skipping" not in caplog.text


def test_a_prior_damaged_after_it_was_cached_is_checked_again(demo_priors):
    """The runner's prior cache is keyed by the file's identity: a file damaged (or replaced) after the dashboard
    or an earlier command loaded it is read, and so checked, again instead of being served from memory."""
    from dgnam_engine import runner

    runner.get_prior("lite0-b3")
    _flip_a_bit(demo_priors / "lite0-b3.safetensors")
    with pytest.raises(UserError, match="SHA256SUMS"):
        runner.get_prior("lite0-b3")
