"""The worker's side of the sandbox: copy verified bytes in, run one job, read a bounded answer back.

Nothing the child writes is trusted: the result must be one JSON object under
`MLCP_SANDBOX_RESULT_MAX_BYTES`, and a derived artifact must be a regular file
under the upload size limit; anything else is a `SandboxFailure`, which the
pipeline records as a gate error.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from controlplane.errors import MlcpError
from workers.sandbox.isolation import Isolation, Limits, child_command, isolation_in_force, prepare_job_dir
from workers.sandbox.protocol import REQUEST, RESULT

log = logging.getLogger(__name__)
_OUTPUT_TAIL_BYTES = 4000


class SandboxFailure(MlcpError):
    """The child did not answer: it crashed, ran out of a limit, or wrote something out of bounds."""

    code = "sandbox_failed"


@dataclass
class JobResult:
    """What a job answered (`result`), the files it produced, and the isolation it ran under."""

    result: dict
    isolation: Isolation
    outputs: dict[str, bytes] = field(default_factory=dict)


def run_job(job: str, *, inputs: dict[str, bytes], params: dict, outputs: tuple[str, ...] = (),
            entry_module: str = "workers.sandbox.jobs", extra_packages: tuple[str, ...] = (),
            limits: Limits | None = None) -> JobResult:
    """Run `job` of `entry_module` in the sandbox over copies of `inputs` (file name -> bytes).

    `outputs` names the files (under the job's `out/`) to read back if the job wrote them.
    Raises SandboxFailure when the child dies, times out or answers out of bounds.
    """
    isolation = isolation_in_force()
    limits = limits or Limits.from_settings()
    # The worker's pid in the name: a sweep removes only directories whose worker is gone.
    job_dir = Path(tempfile.mkdtemp(prefix=f"job-{os.getpid()}-", dir=jobs_root()))
    try:
        prepare_job_dir(job_dir, isolation)
        for name, data in inputs.items():
            _write_input(job_dir, name, data, isolation)
        _write_input(job_dir, REQUEST, json.dumps({"job": job, "params": params}).encode(), isolation)
        argv, env, cwd = child_command(isolation, job_dir, entry_module, limits, extra_packages)
        _run_child(argv, env, cwd, limits, job)
        result = _read_result(job_dir)
        return JobResult(result=result, isolation=isolation, outputs=_read_outputs(job_dir, outputs))
    finally:
        remove_job_dir(job_dir)


def jobs_root() -> Path:
    """The 0700 folder, owned by the worker and never bound into a sandbox, that holds every job directory.

    Under bubblewrap run by root the child's files belong to root on the host
    and it may chmod its own job directory; a parent no child can see or change
    keeps whatever it writes (a setuid copy of a binary, say) out of reach of
    every other user of the host.
    """
    root = Path(tempfile.gettempdir()) / f"mlcp-gates-{os.geteuid()}"
    root.mkdir(mode=0o700, exist_ok=True)
    info = root.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise SandboxFailure(f"{root} must be a 0700 folder owned by the worker", code="sandbox_unavailable")
    return root


def remove_job_dir(job_dir: Path) -> None:
    """Delete a job directory however the child shaped it (shutil.rmtree recurses and fails on deep trees)."""
    subprocess.run(["rm", "-rf", "--one-file-system", "--", str(job_dir)], stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def sweep_stale_jobs() -> int:
    """Remove job directories left by workers that died mid-gate; called when a worker starts.

    Other workers on the same host share the folder: a directory whose worker
    process still exists is theirs, running, and is left alone.
    """
    stale = [job_dir for job_dir in jobs_root().glob("job-*") if not _worker_alive(job_dir.name)]
    for job_dir in stale:
        remove_job_dir(job_dir)
    return len(stale)


def _worker_alive(job_dir_name: str) -> bool:
    try:
        pid = int(job_dir_name.split("-")[1])
    except (IndexError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_input(job_dir: Path, name: str, data: bytes, isolation: Isolation) -> None:
    if "/" in name or name.startswith("."):
        raise ValueError(f"input names are plain file names, got {name!r}")
    path = job_dir / name
    path.write_bytes(data)
    path.chmod(0o400)
    if isolation.name == "setuid":
        os.chown(path, isolation.uid, isolation.uid)


def _run_child(argv: list[str], env: dict, cwd: str, limits: Limits, job: str) -> None:
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=output,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = process.wait(timeout=limits.wall_seconds)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            raise SandboxFailure(f"the {job} job ran past its {limits.wall_seconds:.0f} s limit and was killed",
                                 code="sandbox_timeout")
        finally:
            _kill_group(process)  # nothing the job started outlives it
        if code != 0:
            output.seek(max(0, output.seek(0, 2) - _OUTPUT_TAIL_BYTES))
            tail = output.read().decode(errors="replace")
            how = f"was killed by signal {-code} ({signal.Signals(-code).name})" if code < 0 else f"exited with {code}"
            log.warning("sandbox job %s %s: %s", job, how, tail)
            raise SandboxFailure(f"the {job} job {how} (a limit, or the model crashed it)",
                                 code="sandbox_crashed", output_tail=tail[-1000:])


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


def _read_result(job_dir: Path) -> dict:
    data = _read_child_file(job_dir, Path(RESULT).name, settings.MLCP_SANDBOX_RESULT_MAX_BYTES)
    if data is None:
        raise SandboxFailure("the sandbox job wrote no result", code="sandbox_no_result")
    try:
        # NaN and Infinity are not JSON: PostgreSQL's jsonb and the API's renderer refuse them later.
        result = json.loads(data, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise SandboxFailure(f"the sandbox job's result is not JSON: {exc}", code="sandbox_bad_result") from exc
    if not isinstance(result, dict) or not isinstance(result.get("ok"), bool):
        raise SandboxFailure("the sandbox job's result is not a result object", code="sandbox_bad_result")
    return result


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _read_outputs(job_dir: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    found = {}
    for name in names:
        data = _read_child_file(job_dir, name, settings.MLCP_MAX_UPLOAD_BYTES)
        if data is not None:
            found[name] = data
    return found


def _read_child_file(job_dir: Path, name: str, max_bytes: int) -> bytes | None:
    """A file the child wrote in out/, or None; never through a link it planted (the worker may be root)."""
    try:
        out_fd = os.open(job_dir / "out", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        raise SandboxFailure("the sandbox job replaced its output folder", code="sandbox_bad_result") from exc
    try:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=out_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SandboxFailure(f"the sandbox job's {name} cannot be opened safely: {exc.strerror}",
                                 code="sandbox_bad_result") from exc
        with os.fdopen(fd, "rb") as fh:
            info = os.fstat(fh.fileno())
            # One link only: a hard link to a file the child could not read itself is refused too.
            if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
                raise SandboxFailure(f"the sandbox job's {name} is not a plain file", code="sandbox_bad_result")
            if info.st_size > max_bytes:
                raise SandboxFailure(f"the sandbox job's {name} is {info.st_size} bytes, over the {max_bytes}-byte "
                                     "limit", code="sandbox_result_too_large")
            return fh.read(max_bytes + 1)[:max_bytes]
    finally:
        os.close(out_fd)

