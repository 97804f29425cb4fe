"""ab-test --endpoint against a real `transformers serve`: each E code on a real server."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from _ab_helpers import TITLES, merged_dir, write_titles  # noqa: F401
from _schema import pin
from _server import ServedModels, Server, openai_server, served_models  # noqa: F401
from typer.testing import CliRunner

from ftdiag.cli.app import app

runner = CliRunner()
TOKENS = "12"


def ab(server: Server, base: Path | str, adapter: Path | str, titles: Path, *extra: str,
       local: Path | None = None, code: int) -> dict[str, Any]:
    """Run `ftdiag ab-test --endpoint ... --json`, which must exit with `code`; its report."""
    args = ["ab-test", "--endpoint", server.url, "--served-base", str(base), "--served-adapter",
            str(adapter), "--titles", str(titles), "--max-new-tokens", TOKENS, "--json", *extra]
    if local is not None:
        args += ["--adapter", str(local)]
    res = runner.invoke(app, args)
    assert res.exit_code == code, res.output + server.log_tail()
    assert "Traceback" not in res.output
    return json.loads(res.stdout)


def status(report: dict[str, Any], code: str) -> list[str]:
    return [c["status"] for c in report["checks"] if c["code"] == code]


@pytest.fixture
def titles(tmp_path: Path) -> Path:
    return write_titles(tmp_path / "titles.txt")


@pytest.fixture
def live(openai_server: Server, served_models: ServedModels,  # noqa: F811
         ) -> tuple[Server, ServedModels]:
    """The session's server and the folders it serves."""
    return openai_server, served_models


def test_served_merged_adapter_reproduces_the_local_adapter(
        live: tuple[Server, ServedModels], titles: Path) -> None:
    server, m = live
    rep = ab(server, m.base, m.merged, titles, local=m.adapter, code=0)
    for c in ("E001", "E002", "E003", "E004"):
        assert set(status(rep, c)) == {"pass"}, (c, rep["findings"])
    rows = rep["details"]["rows"]
    assert all(r["outputs"]["served-adapter"] == r["outputs"]["adapter"] for r in rows)
    assert all(r["outputs"]["served-base"] == r["outputs"]["base"] for r in rows)
    assert rep["details"]["endpoint"]["listed_models"] is not None
    assert str(m.merged) in rep["details"]["endpoint"]["listed_models"]
    endpoint = rep["details"]["endpoint"]
    assert endpoint["runtime"] == "transformers serve"  # detected from its /openapi.json
    assert endpoint["requests"]["served-adapter"] == {"model": str(m.merged),
                                                      "chosen_by": "given"}
    assert set(status(rep, "E005")) == {"pass"}  # the served base reproduces the local base
    pin("ab-test-endpoint", rep)  # --json keys pinned like every command's


def test_base_served_under_the_adapters_name_is_e001_and_e002(
        live: tuple[Server, ServedModels], titles: Path) -> None:
    server, m = live
    rep = ab(server, m.base, m.base_copy, titles, local=m.adapter, code=1)
    assert status(rep, "E001") == ["fail"]
    assert status(rep, "E002") == ["fail"]
    assert status(rep, "E004") == ["skip"]  # it is the base, not a drifted adapter
    e002 = next(f for f in rep["findings"] if f["code"] == "E002")
    assert e002["evidence"]["matches_local_base"] == e002["evidence"]["informative"] > 0


def test_e001_without_a_local_reference_respects_max_identical(
        live: tuple[Server, ServedModels], titles: Path) -> None:
    server, m = live
    rep = ab(server, m.base, m.base_copy, titles, code=1)
    assert status(rep, "E001") == ["fail"]
    assert status(rep, "E002") == ["skip"]
    rep = ab(server, m.base, m.base_copy, titles, "--max-identical", "1.0", code=0)
    assert status(rep, "E001") == ["pass"]


def test_unknown_model_name_is_e003_with_the_servers_answer(
        live: tuple[Server, ServedModels], titles: Path, tmp_path: Path) -> None:
    server, m = live
    missing = tmp_path / "no-such-export"
    rep = ab(server, m.base, missing, titles, code=1)
    e003 = [f for f in rep["findings"] if f["code"] == "E003"]
    assert [f["evidence"]["model"] for f in e003] == [str(missing)]
    assert e003[0]["evidence"]["error"].startswith("HTTP 5")
    assert status(rep, "E001") == ["skip"]


def test_an_unknown_hub_id_is_e003_before_the_server_blocks_on_it(
        live: tuple[Server, ServedModels], titles: Path) -> None:
    """transformers serve would retry a download of an unknown Hub id and stall every request."""
    import time

    server, m = live
    start = time.monotonic()
    rep = ab(server, m.base, "no-such-org/no-such-model", titles, code=1)  # default --timeout
    took = time.monotonic() - start
    e003 = [f for f in rep["findings"] if f["code"] == "E003"]
    assert [f["evidence"]["model"] for f in e003] == ["no-such-org/no-such-model"]
    assert "would try to download it" in e003[0]["message"]
    assert set(status(rep, "E001") + status(rep, "E005")) == {"skip"}
    assert took < 120, took  # the bound; nothing was sent, so seconds
    assert server.proc.poll() is None  # the server still runs


def test_request_extra_goes_to_the_adapters_requests_only(
        live: tuple[Server, ServedModels], titles: Path) -> None:
    """One model name, the adapter chosen by a body field (as llama-server / TGI do).

    transformers serve rejects unknown body fields: its 422 answer is the adapter arm's E003
    evidence, while the base arm (no extra field) answers.
    """
    server, m = live
    rep = ab(server, m.merged, m.merged, titles, "--request-extra",
             '{"adapter_id": "my-finetune"}', code=1)
    e003 = {c["evidence"]["model"] + ":" + c["status"] for c in rep["checks"]
            if c["code"] == "E003"}
    assert e003 == {f"{m.merged}:pass", f"{m.merged}:fail"}
    error = next(f["evidence"]["error"] for f in rep["findings"] if f["code"] == "E003")
    assert "422" in error and "adapter_id" in error


def test_wrongly_scaled_export_is_e004_drift_not_base(
        live: tuple[Server, ServedModels], titles: Path) -> None:
    server, m = live
    rep = ab(server, m.base, m.rescaled, titles, local=m.adapter, code=0)  # a warn: exit 0
    assert status(rep, "E002") == ["pass"]
    assert status(rep, "E004") == ["warn"]
    e004 = next(f for f in rep["findings"] if f["code"] == "E004")
    rows = rep["details"]["rows"]
    drifted = [r for r in rows if r["outputs"]["served-adapter"] != r["outputs"]["adapter"]]
    assert drifted and e004["evidence"]["titles"] == len(drifted)  # recounted from the texts
    assert e004["evidence"]["n"] == len(rows) == len(TITLES)
    assert e004["evidence"]["first_divergent_token"]["min"] == min(
        r["served_drift_token"] for r in drifted)


def test_chat_route_uses_the_servers_chat_template(
        live: tuple[Server, ServedModels], titles: Path) -> None:
    server, m = live
    rep = ab(server, m.base, m.merged, titles, "--chat", local=m.adapter, code=0)
    assert rep["details"]["endpoint"]["route"] == "/v1/chat/completions"
    assert status(rep, "E002") == ["pass"]
    assert status(rep, "E004") == ["pass"], rep["findings"]


def test_report_files(live: tuple[Server, ServedModels], titles: Path, tmp_path: Path) -> None:
    server, m = live
    md, html, junit = tmp_path / "r.md", tmp_path / "r.html", tmp_path / "r.xml"
    res = runner.invoke(app, ["ab-test", "--endpoint", server.url, "--served-base",
                              str(m.base), "--served-adapter", str(m.base_copy), "--adapter",
                              str(m.adapter), "--titles", str(titles), "--max-new-tokens",
                              TOKENS, "--markdown", str(md), "--html", str(html), "--junit",
                              str(junit)])
    assert res.exit_code == 1, res.output
    assert "E002" in res.stdout and "served adapter" in res.stdout
    assert "E001" in md.read_text() and "local BASE" in md.read_text()
    assert html.read_text().startswith("<!DOCTYPE html>")
    suites = ET.parse(junit).getroot().findall("testsuite")
    assert suites[0].get("failures") == str(len(TITLES))
