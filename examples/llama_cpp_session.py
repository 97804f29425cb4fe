"""Capture docs/llama-cpp.md: a trained adapter on a real llama-server, as a user would run it.

    python examples/llama_cpp_session.py RUN_DIR [--out docs/llama-cpp.md]

RUN_DIR is an `ftdiag train` output on the embedded model (its adapter is RUN_DIR itself).
llama-server and convert_lora_to_gguf.py come from the pinned build of tests/_llamacpp.py.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from _llamacpp import LLAMA_CPP_COMMIT, LLAMA_CPP_PYTHON, convert_lora, start_server  # noqa: E402

from ftdiag.model.load import embedded_gguf_path, resolve_model_dir  # noqa: E402

ENV = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}


def ftdiag(*args: str) -> tuple[str, str]:
    """(the command line as shown, what it printed) of one ftdiag run."""
    cmd = [str(Path(sys.executable).with_name("ftdiag")), *args]
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, check=False)
    took = time.monotonic() - start
    shown = "$ ftdiag " + " ".join(shlex.quote(a) for a in args)
    return shown, f"{proc.stdout.rstrip()}\n(exit {proc.returncode}, {took:.1f} s)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "llama-cpp.md")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="llama-cpp-session-"))
    base = resolve_model_dir("smollm2-135m")
    titles = work / "titles.txt"
    titles.write_text("Stainless steel water bottle\nCotton crew neck t-shirt\n"
                      "USB-C charging cable 2m\nNon-stick frying pan 28cm\n")
    lora = convert_lora(args.run, base, work / "adapter-f32.gguf", "f32")
    q8 = convert_lora(args.run, base, work / "adapter-q8_0.gguf", "q8_0")
    parts: list[tuple[str, str, str]] = []
    with start_server(embedded_gguf_path(), lora=[lora], log=work / "server.log") as server:
        common = ["--adapter", str(args.run), "--titles", str(titles), "--max-new-tokens", "24"]
        parts.append(("No names: ftdiag detects llama.cpp and sets each arm's `lora`",
                      *ftdiag("ab-test", "--endpoint", server.url, *common)))
        parts.append(("The earlier recipe: a base arm that sends `\"lora\": []` gets the adapter "
                      "(E005)",
                      *ftdiag("ab-test", "--endpoint", server.url, "--served-base", "base",
                              "--served-adapter", "base", "--request-extra",
                              '{"lora": [{"id": 0, "scale": 1.0}]}',
                              "--base-request-extra", '{"lora": []}', *common)))
    for gguf in (lora, q8):
        parts.append((f"check-export on the converter's {gguf.stem.split('-')[-1]} output",
                      *ftdiag("check-export", str(gguf), "--adapter", str(args.run), "--base",
                              str(base))))
    text = [
        "# ftdiag on a real llama.cpp",
        "",
        f"Captured by `python examples/llama_cpp_session.py RUN` on llama-server and "
        f"`convert_lora_to_gguf.py` from llama-cpp-python {LLAMA_CPP_PYTHON} (llama.cpp "
        f"{LLAMA_CPP_COMMIT}), built by `make llama-cpp`. The server runs the embedded "
        "SmolLM2-135M Q4_1 GGUF with the LoRA of a 40-step `ftdiag train` run converted to "
        "f32; the local reference is the same run on the fp32 conversion of that GGUF, so small "
        "drifts (E004, a warning) come from llama.cpp's quantized matmuls.",
        "",
        "```bash",
        "python convert_lora_to_gguf.py RUN --base BASE_HF --outtype f32 \\\n"
        "    --outfile adapter-f32.gguf",
        "llama-server -m SmolLM2-135M-Instruct.Q4_1.gguf --lora adapter-f32.gguf",
        "```",
    ]
    for title, shown, out in parts:
        text += ["", f"## {title}", "", "```text", shown.replace(str(work), "$WORK")
                 .replace(str(args.run), "RUN").replace(str(base), "BASE_HF"),
                 out.replace(str(work), "$WORK").replace(str(args.run), "RUN")
                 .replace(str(base), "BASE_HF"), "```"]
    args.out.write_text("\n".join(text) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
