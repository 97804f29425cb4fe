"""Served ab-test throughput: `ab-test --endpoint` against `transformers serve` on SmolLM2-135M.

One server (CPU), two model names (the embedded model's folder and a link to it, so each name has
its own loaded copy as a base and an export would); the same titles at --concurrency 8 vs 1.
Prints completion tokens/s for each and the ratio.

    python benchmarks/bench_endpoint.py                             # 8 titles x 32 tokens
    python benchmarks/bench_endpoint.py --titles 16 --new-tokens 64
    python benchmarks/bench_endpoint.py --server-arg=--continuous-batching

Measured (2-core shared CPU, 8 titles x 32 tokens, plain `transformers serve`): 4.4 tokens/s at
--concurrency 1, 4.1 at 8 (0.92x): without continuous batching the server generates one request
at a time, so client concurrency cannot help there; servers that batch (vLLM, TGI, llama-server
with -np N) are where --concurrency pays.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench_abtest import TITLES  # the same titles as the local ab-test benchmark

from ftdiag.abtest.client import EndpointConfig, fetch
from ftdiag.abtest.served import EndpointSpec, run_endpoint_test
from ftdiag.demo.local_server import start, stop
from ftdiag.model.load import resolve_model_dir
from ftdiag.prompts.records import Record


def timed_run(url: str, base: str, adapter: str, records: list[Record], new_tokens: int,
              concurrency: int) -> tuple[float, int]:
    """Seconds for the served part of one ab-test --endpoint run, and completion tokens."""
    cfg = EndpointConfig(url=url, max_tokens=new_tokens, concurrency=concurrency, timeout=600)
    spec = EndpointSpec(cfg, base, adapter)
    t0 = time.perf_counter()
    result = run_endpoint_test(spec, records)
    seconds = time.perf_counter() - t0
    assert result.summary is not None and not any(
        c.code == "E003" and c.status == "fail" for c in result.report.checks), \
        result.report.to_dict()["findings"]
    tokens = sum(result.summary.completion_tokens.values())
    return seconds, tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--titles", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--server-arg", action="append", default=[],
                    help="a `transformers serve` option, e.g. --server-arg=--continuous-batching")
    args = ap.parse_args()
    model = resolve_model_dir("smollm2-135m")
    records = [Record(t) for t in (TITLES * 4)[: args.titles]]
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "served-export"
        export.symlink_to(model, target_is_directory=True)
        t0 = time.perf_counter()
        server = start(Path(tmp) / "serve.log", extra=tuple(args.server_arg))
        print(f"transformers serve ready in {time.perf_counter() - t0:.1f}s at {server.url}")
        try:
            warm = EndpointConfig(url=server.url, max_tokens=2)
            fetch(warm, {"b": (str(model), {}), "a": (str(export), {})}, ["warm-up"])
            results = {}
            for concurrency in (1, 8):
                seconds, tokens = timed_run(server.url, str(model), str(export), records,
                                            args.new_tokens, concurrency)
                results[concurrency] = tokens / seconds
                print(f"--concurrency {concurrency}: {2 * len(records)} requests, {tokens} "
                      f"completion tokens in {seconds:.1f}s = {tokens / seconds:.1f} tokens/s")
        finally:
            stop(server)
    print(f"concurrency 8 vs 1: {results[8] / results[1]:.2f}x tokens/s "
          f"({args.titles} titles x {args.new_tokens} new tokens, SmolLM2-135M, CPU)")


if __name__ == "__main__":
    main()
