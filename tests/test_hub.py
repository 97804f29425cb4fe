"""Hub ids resolved like transformers does, against a real cache layout, offline.

Nothing is downloaded: conftest sets HF_HUB_OFFLINE=1; the two network tests lift it only
towards a closed local port and a local server that answers as the Hub does for errors.
"""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import huggingface_hub.constants as hf_constants
import pytest
from _adapter_fixtures import copy_adapter, edit_config
from _hub_fixtures import cache_repo, fake_commit
from typer.testing import CliRunner

from ftdiag.cli.app import app
from ftdiag.errors import FtdiagError
from ftdiag.model.load import resolve_adapter_dir, resolve_model_dir
from ftdiag.testing import tiny

runner = CliRunner()
BASE_ID = "tiny-org/tiny-llama"


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HF_HUB_CACHE in a temp dir (huggingface_hub read the variable at import)."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    assert hf_constants.is_offline_mode()  # the tests' environment (conftest), never a download
    return cache


@pytest.fixture
def cached_base(hf_cache: Path, tiny_llama: Path) -> Path:
    return cache_repo(hf_cache, BASE_ID, tiny_llama)


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


def test_cached_hub_id_resolves_to_its_snapshot(cached_base: Path) -> None:
    folder = resolve_model_dir(BASE_ID)
    assert folder == cached_base
    assert folder.name == fake_commit(f"{BASE_ID}@main")
    assert (folder / "config.json").is_symlink()  # the blob layout, read through the links
    assert json.loads((folder / "config.json").read_text())["model_type"] == "llama"


def test_revision_picks_a_named_ref_or_a_commit(hf_cache: Path, cached_base: Path,
                                                tmp_path: Path) -> None:
    other = tiny.save_base(tmp_path / "wide", "llama", hidden=48)
    v2 = cache_repo(hf_cache, BASE_ID, other, ref="v2")
    assert resolve_model_dir(BASE_ID) == cached_base
    assert resolve_model_dir(BASE_ID, revision="v2") == v2
    assert resolve_model_dir(BASE_ID, revision=v2.name) == v2
    assert json.loads((v2 / "config.json").read_text())["hidden_size"] == 48
    with pytest.raises(FtdiagError, match="HF_HUB_OFFLINE"):
        resolve_model_dir(BASE_ID, revision="v3")


def test_snapshot_without_weights_serves_the_static_layer_only(hf_cache: Path,
                                                               tiny_llama: Path) -> None:
    snap = cache_repo(hf_cache, BASE_ID, tiny_llama, skip=("model.safetensors",))
    assert resolve_model_dir(BASE_ID, weights=False) == snap
    with pytest.raises(FtdiagError, match="incomplete"):
        resolve_model_dir(BASE_ID)


def test_adapter_naming_a_cached_hub_id_is_checked_without_base(
        cached_base: Path, trained_adapter: Path, tmp_path: Path) -> None:
    adapter = edit_config(copy_adapter(trained_adapter, tmp_path / "a"),
                          base_model_name_or_path=BASE_ID)
    code, out, err = run("check-adapter", str(adapter), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["details"]["base_dir"] == str(cached_base)
    assert "R" in report["layers"]["run"]
    named = next(c for c in report["checks"] if "base_model_name_or_path" in c["message"])
    assert named["code"] == "A008" and named["status"] == "pass"
    assert "is the base given" in named["message"]


def test_a008_compares_a_recorded_hub_id_through_the_cache(
        cached_base: Path, trained_adapter: Path, tiny_llama: Path, tmp_path: Path) -> None:
    adapter = edit_config(copy_adapter(trained_adapter, tmp_path / "a"),
                          base_model_name_or_path=BASE_ID)
    other = Path(shutil.copytree(tiny_llama, tmp_path / "other-base"))
    cfg = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**cfg, "rope_theta": 1234.0}))
    code, out, _ = run("check-adapter", str(adapter), "--base", str(other), "--static-only",
                       "--json")
    warned = [c for c in json.loads(out)["checks"] if c["status"] == "warn"]
    assert code == 0
    assert [c["code"] for c in warned] == ["A008"]
    assert BASE_ID in warned[0]["message"]


def test_adapter_given_as_hub_id(cached_base: Path, hf_cache: Path, trained_adapter: Path,
                                 tmp_path: Path) -> None:
    adapter = edit_config(copy_adapter(trained_adapter, tmp_path / "a"),
                          base_model_name_or_path=BASE_ID)
    snap = cache_repo(hf_cache, "tiny-org/my-lora", adapter)
    assert resolve_adapter_dir("tiny-org/my-lora") == snap
    code, out, err = run("check-adapter", "tiny-org/my-lora", "--static-only", "--json")
    assert code == 0, err
    assert json.loads(out)["details"]["base_dir"] == str(cached_base)


def test_not_cached_offline_is_one_line_exit_2(hf_cache: Path, trained_adapter: Path,
                                               tmp_path: Path) -> None:
    adapter = edit_config(copy_adapter(trained_adapter, tmp_path / "a"),
                          base_model_name_or_path="nobody/not-cached")
    code, out, err = run("check-adapter", str(adapter))
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert "'nobody/not-cached'" in err and "HF_HUB_OFFLINE is set" in err
    assert "Traceback" not in err
    assert not any(hf_cache.iterdir())  # nothing fetched, nothing written


def test_paths_that_are_not_hub_ids_stay_local_errors(hf_cache: Path) -> None:
    for name in ("./missing-folder", "/no/such/model", "a/b/c"):
        with pytest.raises(FtdiagError, match="base model not found"):
            resolve_model_dir(name)
    with pytest.raises(FtdiagError, match="adapter folder not found"):
        resolve_adapter_dir("./no-adapter")


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Lift offline mode for one test; the endpoint is always set to a local address."""
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    yield


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_hub_is_a_network_error(hf_cache: Path, online: None,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hf_constants, "ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(FtdiagError, match="the Hub cannot be reached") as info:
        resolve_model_dir("nobody/offline-net")
    assert "ConnectError" in info.value.message


class _FakeHub(http.server.BaseHTTPRequestHandler):
    """Answers every request with the Hub's error headers for the repo named in the path."""

    def do_GET(self) -> None:
        code, error = (403, "GatedRepo") if "gated" in self.path else (404, "RepoNotFound")
        self.send_response(code)
        self.send_header("X-Error-Code", error)
        self.send_header("X-Error-Message", f"{error} for {self.path}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_hub(online: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setattr(hf_constants, "ENDPOINT", url)
    yield url
    server.shutdown()
    server.server_close()


def test_missing_and_gated_repos_say_so(hf_cache: Path, fake_hub: str) -> None:
    with pytest.raises(FtdiagError, match="no repo by that name") as missing:
        resolve_model_dir("nobody/no-such-model")
    assert "HF_TOKEN" in (missing.value.hint or "")
    with pytest.raises(FtdiagError, match="is gated") as gated:
        resolve_model_dir("meta/gated-model")
    assert "HF_TOKEN" in (gated.value.hint or "")
    assert not any(hf_cache.rglob("*.safetensors"))


def test_check_adapter_revision_option_picks_the_base_ref(
        hf_cache: Path, cached_base: Path, trained_adapter: Path, tmp_path: Path) -> None:
    adapter = edit_config(copy_adapter(trained_adapter, tmp_path / "a"),
                          base_model_name_or_path=BASE_ID)
    v2 = cache_repo(hf_cache, BASE_ID, cached_base, ref="v2", commit=fake_commit("v2"))
    code, out, err = run("check-adapter", str(adapter), "--revision", "v2", "--static-only",
                         "--json")
    assert code == 0, err
    assert json.loads(out)["details"]["base_dir"] == str(v2)
    code, _, err = run("check-adapter", str(adapter), "--revision", "nope", "--static-only")
    assert code == 2 and "tiny-org/tiny-llama@nope" in err


def test_training_on_a_hub_id_records_the_id_not_the_cache_path(cached_base: Path,
                                                                tmp_path: Path) -> None:
    import torch

    from ftdiag.training.recipe import TrainConfig, build_model

    cfg = TrainConfig(data=tmp_path / "unused.json", out=tmp_path / "out", base=BASE_ID,
                      revision="main")
    model = build_model(resolve_model_dir(BASE_ID, "main"), cfg, torch.float32)
    saved = tmp_path / "adapter"
    model.save_pretrained(saved)
    recorded = json.loads((saved / "adapter_config.json").read_text())
    assert (recorded["base_model_name_or_path"], recorded["revision"]) == (BASE_ID, "main")


def test_check_export_with_adapter_and_base_as_hub_ids(
        hf_cache: Path, cached_base: Path, tiny_llama: Path, trained_adapter: Path,
        tmp_path: Path) -> None:
    from _export_fixtures import merge_to

    from ftdiag.export.check import check_export

    merged = merge_to(tiny_llama, trained_adapter, tmp_path / "merged")
    adapter = edit_config(copy_adapter(trained_adapter, tmp_path / "a"),
                          base_model_name_or_path=BASE_ID)
    cache_repo(hf_cache, "tiny-org/my-lora", adapter)
    report = check_export(merged, "tiny-org/my-lora")
    assert report.verdict == "pass"
    assert report.details.base == str(cached_base)  # type: ignore[attr-defined]
