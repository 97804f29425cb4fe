"""`ab-test --endpoint`: is the served model the fine-tuned one? (E001-E004)."""

from ftdiag.endpoint.client import EndpointConfig, Served, base_url, fetch, parse_extra
from ftdiag.endpoint.compare import (
    EndpointResult,
    EndpointRow,
    EndpointSpec,
    EndpointSummary,
    run_endpoint_test,
)

__all__ = ["EndpointConfig", "EndpointResult", "EndpointRow", "EndpointSpec", "EndpointSummary",
           "Served", "base_url", "fetch", "parse_extra", "run_endpoint_test"]
