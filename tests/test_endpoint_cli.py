"""ab-test --endpoint: bad input and dead or foreign endpoints give one line and exit 2."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from _ab_helpers import write_titles
from _server import free_port
from typer.testing import CliRunner

from ftdiag.abtest.client import base_url, parse_extra
from ftdiag.cli.app import app
from ftdiag.errors import FtdiagError

runner = CliRunner()


@pytest.fixture
def titles(tmp_path: Path) -> Path:
    return write_titles(tmp_path / "titles.txt")


def run(url: str, titles: Path, *extra: str) -> tuple[int, str]:
    res = runner.invoke(app, ["ab-test", "--endpoint", url, "--served-base", "b",
                              "--served-adapter", "a", "--titles", str(titles), "--json",
                              "--timeout", "5", *extra])
    return res.exit_code, res.stderr


def one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_unreachable_endpoint_is_one_line_exit_2(titles: Path) -> None:
    code, err = run(f"http://127.0.0.1:{free_port()}", titles)
    assert code == 2
    assert "cannot reach http://127.0.0.1:" in one_error_line(err)


@pytest.fixture
def not_openai() -> Iterator[str]:
    """A real HTTP server that is not an OpenAI API (a static file server)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_that_is_not_openai_is_one_line_exit_2(titles: Path, not_openai: str) -> None:
    code, err = run(not_openai, titles)
    assert code == 2
    assert "no OpenAI API at" in one_error_line(err)


@pytest.fixture
def silent() -> Iterator[str]:
    """A TCP port that accepts connections and never answers (a hung server)."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def test_a_server_that_never_answers_is_a_timeout_exit_2(titles: Path, silent: str) -> None:
    code, err = run(silent, titles, "--timeout", "0.5")
    assert code == 2
    assert "did not answer within 0.5s" in one_error_line(err)


@pytest.mark.parametrize("args, text", [
    (["--served-adapter", "b", "--request-extra", "{}", "--base-request-extra", "{}"],
     "same thing"),
    (["--request-extra", "[1]"], "JSON object"),
    (["--request-extra", "{oops"], "not JSON"),
])
def test_bad_options_are_one_line_exit_2(titles: Path, args: list[str], text: str) -> None:
    code, err = run(f"http://127.0.0.1:{free_port()}", titles, *args)
    assert code == 2 and text in one_error_line(err)


def test_without_names_the_server_is_asked_first(titles: Path) -> None:
    res = runner.invoke(app, ["ab-test", "--endpoint", f"http://127.0.0.1:{free_port()}",
                              "--titles", str(titles)])
    assert res.exit_code == 2 and "cannot reach" in one_error_line(res.stderr)
    res = runner.invoke(app, ["ab-test", "--titles", str(titles)])
    assert res.exit_code == 2 and "--adapter" in one_error_line(res.stderr)


def test_base_url_and_extra() -> None:
    assert base_url("http://h:8000") == "http://h:8000/v1"
    assert base_url("http://h:8000/v1/") == "http://h:8000/v1"
    assert base_url("https://x.org/api/v1") == "https://x.org/api/v1"
    with pytest.raises(FtdiagError):
        base_url("localhost:8000")
    assert parse_extra('{"lora": [{"id": 0, "scale": 1.0}]}') == {"lora": [{"id": 0,
                                                                             "scale": 1.0}]}
