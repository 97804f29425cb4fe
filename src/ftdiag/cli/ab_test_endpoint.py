"""`ftdiag ab-test --endpoint`: the glue from ab-test's options to the endpoint comparison."""

from __future__ import annotations

from pathlib import Path

from ftdiag.cli._common import emit, write_reports
from ftdiag.errors import FtdiagError
from ftdiag.prompts.records import Record


def run_endpoint(*, url: str, served_base: str | None, served_adapter: str | None,
                 adapter: Path | None, base: str | None, records: list[Record],
                 template: Path | None, chat_template: bool, chat: bool, request_extra: str | None,
                 base_request_extra: str | None,
                 api_key: str | None, concurrency: int, timeout: float, max_new_tokens: int,
                 batch_size: int, seed: int, max_identical: float | None, show: int,
                 json_out: bool, markdown: Path | None, html: Path | None, junit: Path | None,
                 strict: bool) -> None:
    """Ask the server, compare, render, exit (0 pass, 1 fail, 2 bad input or no server)."""
    from ftdiag.abtest.client import EndpointConfig, parse_extra
    from ftdiag.abtest.served import EndpointSpec, run_endpoint_test
    from ftdiag.prompts.template import load_template
    from ftdiag.render import ab_test_endpoint as render
    from ftdiag.render.progress import stage_progress

    if adapter is not None and not adapter.is_dir():
        raise FtdiagError(f"adapter folder not found: {adapter}")
    tpl = (load_template(template, chat_template or (chat and template is None))
           if template or chat_template or chat else None)
    cfg = EndpointConfig(url=url, api_key=api_key, chat=chat,
                         request_extra=(parse_extra(request_extra, "--request-extra")
                                        if request_extra else None),
                         base_request_extra=(parse_extra(base_request_extra,
                                                         "--base-request-extra")
                                             if base_request_extra else None),
                         max_tokens=max_new_tokens,
                         seed=seed, concurrency=concurrency, timeout=timeout)
    spec = EndpointSpec(cfg, served_base, served_adapter, adapter_dir=adapter, base=base,
                        template=tpl, batch_size=batch_size, max_identical=max_identical)
    with stage_progress(enabled=not json_out) as (stage, progress):
        result = run_endpoint_test(spec, records, stage=stage, progress=progress)
    write_reports(result, ((markdown, render.to_markdown), (html, render.to_html),
                           (junit, render.to_junit)))
    emit(result.report, json_out=json_out, strict=strict,
         render=lambda _rep, console: render.print_endpoint(result, console, show=show))
