"""ftdiag under torchrun with each rank's exit status and output kept apart.

torchrun exits 1 whether a rank printed a fail verdict or crashed, and mixes the ranks' output.
So each rank runs this file, which runs `ftdiag` and records its exit status, stdout and stderr
in `rank<N>.json`; `launch` returns them with the launcher's own result.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
HAS_LAUNCHER = (BIN / "torchrun").is_file() and (BIN / "ftdiag").is_file()


@dataclass
class RankRun:
    rank: int
    rc: int
    stdout: str
    stderr: str


@dataclass
class Launch:
    rc: int  # the launcher's (torchrun's) exit status, or ftdiag's with one process
    stdout: str
    stderr: str
    ranks: list[RankRun]

    def assert_exit(self, code: int) -> None:
        """Every rank, and the launcher, exit with `code`; no rank printed a traceback."""
        assert [r.rc for r in self.ranks] == [code] * len(self.ranks), self.stderr[-3000:]
        assert self.rc == code, self.stderr[-3000:]
        for r in self.ranks:
            assert "Traceback" not in r.stderr, f"rank {r.rank}:\n{r.stderr[-3000:]}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(args: list[str], tmp_path: Path, procs: int, timeout: float = 240) -> Launch:
    """`ftdiag ARGS` in `procs` CPU processes (torchrun when procs > 1), FTDIAG_CACHE in tmp."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FTDIAG_CACHE": str(tmp_path / "cache")}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    if procs == 1:
        proc = subprocess.run([str(BIN / "ftdiag"), *args], env=env, capture_output=True,
                              text=True, timeout=timeout)
        return Launch(proc.returncode, proc.stdout, proc.stderr,
                      [RankRun(0, proc.returncode, proc.stdout, proc.stderr)])
    logs = tmp_path / f"ranks-{_free_port()}"
    logs.mkdir(parents=True)
    cmd = [str(BIN / "torchrun"), "--nproc_per_node", str(procs), "--master_port",
           str(_free_port()), __file__, str(logs), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    ranks = [RankRun(**json.loads(p.read_text())) for p in sorted(logs.glob("rank*.json"))]
    assert [r.rank for r in ranks] == list(range(procs)), proc.stderr[-3000:]
    return Launch(proc.returncode, proc.stdout, proc.stderr, ranks)


def _rank_main(logs: Path, args: list[str]) -> int:
    """One rank: run ftdiag, keep what it did, pass its output and exit status on."""
    proc = subprocess.run([str(BIN / "ftdiag"), *args], capture_output=True, text=True)
    rank = int(os.environ["RANK"])
    record = RankRun(rank, proc.returncode, proc.stdout, proc.stderr)
    (logs / f"rank{rank}.json").write_text(json.dumps(record.__dict__))
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(_rank_main(Path(sys.argv[1]), sys.argv[2:]))
