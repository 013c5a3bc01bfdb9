"""Every deep row of the study runs the bundles' own workflow, exactly as a user would:
``python -m monai.bundle run --args_file <run>/bundle_args.json`` (the args file holds the config
files and the overrides), i.e. ``monai.bundle.scripts.run(args_file=...)``. Executors:

  pool        (default) `workers` spawned worker processes, each calling that function for one
              run after another: two runs side by side on the two cores, one torch thread each,
              without paying MONAI's ~10 CPU s import per run (~100 runs per study);
  subprocess  one `python -m monai.bundle run --args_file ...` process per run (full isolation);
  inprocess   in this process, one after another (the smoke study: its runs take seconds).

A test checks that they and the explicit command line recorded per run give identical outputs.

A run is finished when ``<output_dir>/study_run.json`` exists and records the same config files
and overrides; an unfinished run is simply started again (the bundle resumes from its last
checkpoint), so the study is resumable run by run.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from voxsurv.study.protocol import REPO

log = logging.getLogger(__name__)

ARGS_FILE, DONE_FILE, LOG_FILE = "bundle_args.json", "study_run.json", "bundle.log"
EXECUTORS = ("pool", "subprocess", "inprocess")


@dataclass
class BundleRun:
    """One bundle workflow run: config files merged in order (repo-relative), then overrides."""
    name: str
    config_file: list[str]
    overrides: dict = field(default_factory=dict)
    repo: str = str(REPO)

    @property
    def output_dir(self) -> Path:
        return Path(self.overrides["output_dir"])

    def args(self) -> dict:
        """The args file of `monai.bundle run`: config files (absolute), metadata, overrides."""
        meta = str(Path(self.repo) / Path(self.config_file[0]).parent / "metadata.json")
        return {"config_file": [str(Path(self.repo) / f) for f in self.config_file], "meta_file": meta,
                **self.overrides}

    def command(self) -> list[str]:
        return [sys.executable, "-m", "monai.bundle", "run", "--args_file", str(self.output_dir / ARGS_FILE)]

    def config_sha256(self) -> dict[str, str]:
        """Content hash of every config file: a finished run is reused only if its files are unchanged."""
        import hashlib

        return {f: hashlib.sha256((Path(self.repo) / f).read_bytes()).hexdigest()[:16] for f in self.config_file}

    def record(self) -> dict:
        """What results.json keeps of the run (enough to re-run it by hand)."""
        return {"name": self.name, "config_file": list(self.config_file), "overrides": dict(self.overrides),
                "config_sha256": self.config_sha256(),
                "command": "python -m monai.bundle run --args_file " + shlex.quote(str(self.output_dir / ARGS_FILE)),
                "cli": cli_command(self)}

    def done(self) -> dict | None:
        """The finished-run marker if it matches this run's configs and overrides, else None."""
        path = self.output_dir / DONE_FILE
        if not path.is_file():
            return None
        d = json.loads(path.read_text())
        if d.get("config_file") != list(self.config_file) or d.get("overrides") != json.loads(json.dumps(self.overrides)):
            raise RuntimeError(f"{path} belongs to a run with other settings; use another output folder or delete "
                               f"{self.output_dir} (nothing is overwritten silently)")
        if d.get("config_sha256") != self.config_sha256():
            changed = [f for f, h in self.config_sha256().items() if (d.get("config_sha256") or {}).get(f) != h]
            raise RuntimeError(f"{path}: config files changed since this run finished ({changed}); use another output "
                               f"folder (or rename the candidate) so old results are not reused")
        return d


def cli_command(run: BundleRun) -> list[str]:
    """The same run spelled as explicit `python -m monai.bundle run --key value` arguments."""
    args = run.args()
    out = ["python", "-m", "monai.bundle", "run", "--config_file", repr(args.pop("config_file")),
           "--meta_file", args.pop("meta_file")]
    for k, v in args.items():
        out += [f"--{k}", v if isinstance(v, str) else repr(v)]
    return out


def _env() -> dict:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _run_subprocess(run: BundleRun) -> tuple[float, float]:
    with open(run.output_dir / LOG_FILE, "ab") as logf:
        proc = subprocess.Popen(run.command(), cwd=run.repo, env=_env(), stdout=logf, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = (run.output_dir / LOG_FILE).read_text(errors="replace").splitlines()[-25:]
        raise RuntimeError(f"bundle run {run.name} failed (exit {proc.returncode}); log "
                           f"{run.output_dir / LOG_FILE}:\n" + "\n".join(tail))
    return usage.ru_utime + usage.ru_stime, 0.0


def _run_inprocess(run: BundleRun) -> tuple[float, float]:
    """`monai.bundle.scripts.run(args_file=...)`: the function behind `python -m monai.bundle run`."""
    import torch
    from monai.bundle.scripts import run as bundle_run

    threads = torch.get_num_threads()
    cwd = os.getcwd()
    c0 = time.process_time()
    try:
        os.chdir(run.repo)
        bundle_run(args_file=str(run.output_dir / ARGS_FILE))
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)
    return time.process_time() - c0, 0.0


def execute(run: BundleRun, executor: str = "inprocess") -> dict:
    """Run one bundle workflow unless its marker says it is done; returns the marker."""
    if executor not in ("subprocess", "inprocess"):
        raise ValueError(f"execute runs one run: executor 'subprocess' or 'inprocess', got {executor!r}")
    done = run.done()
    if done is not None:
        return done
    run.output_dir.mkdir(parents=True, exist_ok=True)
    (run.output_dir / ARGS_FILE).write_text(json.dumps(run.args(), indent=1))
    log.info("bundle run %s ...", run.name)
    t0 = time.time()
    cpu, _ = (_run_subprocess if executor == "subprocess" else _run_inprocess)(run)
    marker = {**run.record(), "executor": executor, "wall_s": round(time.time() - t0, 1), "cpu_s": round(cpu, 1),
              "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    tmp = run.output_dir / (DONE_FILE + ".tmp")
    tmp.write_text(json.dumps(marker, indent=1))
    os.replace(tmp, run.output_dir / DONE_FILE)
    log.info("bundle run %s done in %.0f s", run.name, marker["wall_s"])
    return marker


def _pool_task(run: BundleRun) -> dict:
    """One run in a pool worker; its output (stdout + stderr, MONAI's logging) goes to
    <output_dir>/bundle.log as with the subprocess executor (a worker runs one task at a time)."""
    import torch

    torch.set_num_threads(1)
    run.output_dir.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(run.output_dir / LOG_FILE, "ab") as logf:
        os.dup2(logf.fileno(), 1), os.dup2(logf.fileno(), 2)
        try:
            return execute(run, "inprocess")
        except BaseException:
            import traceback

            traceback.print_exc()   # into the run's log, as a failed `python -m monai.bundle run` would
            raise
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


def execute_all(runs: list[BundleRun], executor: str = "pool", workers: int = 2) -> list[dict]:
    """Run many (finished ones are skipped): side by side in `workers` processes (pool or
    subprocess executor), or one after another in this process. Every run is attempted; failures
    are raised together at the end."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    todo = [r for r in runs if r.done() is None]
    results, errors = {}, []
    if executor == "inprocess" or not todo:
        for r in todo:
            try:
                results[r.name] = execute(r, executor)
            except Exception as exc:  # noqa: BLE001 - collected and re-raised with every failure
                errors.append(f"{r.name}: {exc}")
    else:
        if executor == "pool":
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            pool = ProcessPoolExecutor(max(1, workers), mp_context=mp.get_context("spawn"), max_tasks_per_child=20)
            submit = lambda r: pool.submit(_pool_task, r)  # noqa: E731
        else:
            pool = ThreadPoolExecutor(max(1, workers))
            submit = lambda r: pool.submit(execute, r, "subprocess")  # noqa: E731
        with pool:
            futures = {r.name: submit(r) for r in todo}
        for name, f in futures.items():
            try:
                results[name] = f.result()
            except Exception as exc:  # noqa: BLE001
                errors.append(f"{name}: {exc}")
    if errors:
        raise RuntimeError(f"{len(errors)} of {len(runs)} bundle runs failed:\n" + "\n".join(errors))
    return [results.get(r.name) or r.done() for r in runs]
