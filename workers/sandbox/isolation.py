"""How the sandbox's child process is isolated on this host, and the command that starts it.

Three levels, strongest first; `isolation_in_force()` picks the best one that
works here (or the one `MLCP_GATE_SANDBOX` names):

- `bubblewrap`: Debian's `bwrap`. New user, PID, network, IPC and UTS
  namespaces; uid 65534 with no capabilities; a root filesystem that holds only
  the Python runtime and mlcp's code, read-only; a private `/tmp`; the job's
  own directory as the only writable place. Needs unprivileged user
  namespaces or root, which many Kubernetes pods do not allow. Inside, uid
  65534 maps to the worker's own uid outside (bubblewrap maps the caller), so
  a root worker keeps job directories in a 0700 folder no child can see
  (`runner.jobs_root`). Processes and memory are limited per process only:
  no cgroup caps the job as a whole (see the README's "Security").
- `setuid`: a plain child dropped to uid/gid 65534 with `setpriv` (the worker
  must run as root for that). It cannot read the worker's data directory
  (0700, owned by the worker), but it shares the host's network.
- `scrubbed`: a child of the same user. It inherits no secret from the
  environment, but could read any file the worker can: weak, and refused unless
  `MLCP_GATE_SANDBOX_ALLOW_WEAK` is set (the demo sets it).

Every level runs the child with an environment of a few fixed variables, in
an empty working directory, under `prlimit` limits (address space, CPU time,
file size, processes, no core dumps).
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import asdict, dataclass
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

log = logging.getLogger(__name__)

NOBODY = 65534
SANDBOX_ROOT = "/sandbox"  # where the job directory appears inside bubblewrap
# mlcp's own packages the child imports; nothing else of the project tree is visible.
CODE_PACKAGES = ("workers", "registry", "controlplane")
LEVELS = ("bubblewrap", "setuid", "scrubbed")


@dataclass(frozen=True)
class Isolation:
    """What the sandbox's child is kept from; recorded with every gate result."""

    name: str
    filesystem: bool  # cannot read the worker's data directory, keys or database
    network: bool  # has no network at all (not even loopback servers of the host)
    uid: int  # the uid the child runs as (inside its user namespace for bubblewrap)

    @property
    def strong(self) -> bool:
        return self.filesystem

    def as_dict(self) -> dict:
        return asdict(self)


BUBBLEWRAP = Isolation("bubblewrap", filesystem=True, network=True, uid=NOBODY)
SETUID = Isolation("setuid", filesystem=True, network=False, uid=NOBODY)


def _scrubbed() -> Isolation:
    return Isolation("scrubbed", filesystem=False, network=False, uid=os.geteuid())


@dataclass(frozen=True)
class Limits:
    """Resource limits of one child; every figure is the worker's, never the uploader's."""

    address_space_bytes: int
    cpu_seconds: int
    file_size_bytes: int
    processes: int
    wall_seconds: float

    @classmethod
    def from_settings(cls) -> "Limits":
        return cls(address_space_bytes=settings.MLCP_SANDBOX_MEMORY_BYTES,
                   cpu_seconds=settings.MLCP_SANDBOX_CPU_SECONDS,
                   file_size_bytes=settings.MLCP_SANDBOX_FILE_SIZE_BYTES,
                   processes=settings.MLCP_SANDBOX_PROCESSES,
                   wall_seconds=settings.MLCP_SANDBOX_WALL_SECONDS)


def child_command(isolation: Isolation, job_dir: Path, entry_module: str, limits: Limits,
                  extra_packages: tuple[str, ...] = ()) -> tuple[list[str], dict[str, str], str]:
    """(argv, environment, working directory) that run `python -m entry_module` in the sandbox."""
    inside_dir = SANDBOX_ROOT if isolation.name == "bubblewrap" else str(job_dir)
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": inside_dir,
        "TMPDIR": f"{inside_dir}/tmp",
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(settings.BASE_DIR),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    python = [sys.executable, "-m", entry_module]
    rlimits = ["prlimit", f"--as={limits.address_space_bytes}", f"--cpu={limits.cpu_seconds}",
               f"--fsize={limits.file_size_bytes}", f"--nproc={limits.processes}", "--core=0", "--"]
    # Killed with the worker: the child runs in its own session (so a timeout kills all of it), and a
    # worker that dies must not leave a model running on.
    dies_with_worker = ["setpriv", "--pdeathsig", "KILL"]
    if isolation.name == "bubblewrap":
        argv = [*dies_with_worker, "--", *rlimits, *_bwrap_argv(job_dir, (*CODE_PACKAGES, *extra_packages), env)]
        return [*argv, *python], {}, "/"
    if isolation.name == "setuid":
        drop = [f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--no-new-privs",
                "--inh-caps=-all", "--bounding-set=-all"]
        return [*dies_with_worker, *drop, "--", *rlimits, *python], env, str(job_dir)
    return [*dies_with_worker, "--", *rlimits, *python], env, str(job_dir)


def _bwrap_argv(job_dir: Path, packages: tuple[str, ...], env: dict[str, str]) -> list[str]:
    argv = ["bwrap", "--unshare-all", "--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY),
            "--cap-drop", "ALL", "--die-with-parent", "--new-session", "--hostname", "sandbox",
            "--ro-bind", "/usr", "/usr"]
    for top in ("lib", "lib64", "lib32", "bin", "sbin"):
        path = Path("/") / top
        if path.is_symlink():
            argv += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            argv += ["--ro-bind", str(path), str(path)]
    for etc_file in ("/etc/ld.so.cache", "/etc/localtime"):
        if Path(etc_file).exists():
            argv += ["--ro-bind", etc_file, etc_file]
    # The private /tmp first: binds below may live under /tmp (a checkout there) and must stay visible.
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for path in _runtime_paths():
        argv += ["--ro-bind", path, path]
    for package in packages:
        path = Path(settings.BASE_DIR) / package
        argv += ["--ro-bind", str(path), str(path)]
    argv += ["--bind", str(job_dir), SANDBOX_ROOT, "--chdir", SANDBOX_ROOT, "--clearenv"]
    for name, value in env.items():
        argv += ["--setenv", name, value]
    return argv + ["--"]


def _runtime_paths() -> list[str]:
    """The Python installation and its packages: what the child may read besides /usr and mlcp's code."""
    candidates = {sys.base_prefix, sys.prefix, *(sysconfig.get_paths()[key] for key in ("stdlib", "purelib", "platlib"))}
    protected = [Path(p).resolve() for p in protected_paths()]
    chosen = []
    for candidate in sorted(candidates):
        path = Path(candidate).resolve()
        if not path.is_dir() or str(path).startswith("/usr/"):
            continue
        if any(secret == path or path in secret.parents for secret in protected):
            # A runtime folder that contains the data directory would expose it.
            raise ImproperlyConfigured(f"the Python runtime at {path} contains mlcp's data; "
                                       "move MLCP_DATA_DIR out of it")
        chosen.append(str(path))
    return chosen


def protected_paths() -> list[str]:
    """Where the worker keeps what a hostile model must never read."""
    paths = [settings.DATA_DIR, settings.MLCP_ARTIFACT_DIR]
    if settings.MLCP_SIGNING_KEY_PATH:
        paths.append(Path(settings.MLCP_SIGNING_KEY_PATH).parent)
    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3"):
        paths.append(Path(str(database["NAME"])).parent)
    return [str(Path(p).resolve()) for p in paths]


# ------------------------------------------------------------- detection

@functools.cache
def isolation_in_force() -> Isolation:
    """The isolation gates run under on this host: `MLCP_GATE_SANDBOX`, or the best that works."""
    wanted = settings.MLCP_GATE_SANDBOX
    if wanted not in ("auto", *LEVELS):
        raise ImproperlyConfigured(f"MLCP_GATE_SANDBOX must be auto or one of {', '.join(LEVELS)}, got {wanted!r}")
    order = LEVELS if wanted == "auto" else (wanted,)
    for level in order:
        problem = _probe(level)
        if problem is None:
            isolation = {"bubblewrap": BUBBLEWRAP, "setuid": SETUID}.get(level) or _scrubbed()
            log.info("gate sandbox: %s", isolation)
            return isolation
        log.warning("gate sandbox: %s is not available here: %s", level, problem)
        if wanted != "auto":
            raise ImproperlyConfigured(f"MLCP_GATE_SANDBOX={level} does not work on this host: {problem}")
    raise ImproperlyConfigured("no gate sandbox works on this host")


def require_isolation() -> Isolation:
    """The isolation in force, or ImproperlyConfigured when it is weak and weak is not allowed."""
    isolation = isolation_in_force()
    if not isolation.strong and not settings.MLCP_GATE_SANDBOX_ALLOW_WEAK:
        raise ImproperlyConfigured(
            f"the gate sandbox here is '{isolation.name}': an uploaded model could read this worker's "
            "files and keys. Install bubblewrap (and allow user namespaces), or run the worker as root so "
            "gates can drop to an unprivileged user, or set MLCP_GATE_SANDBOX_ALLOW_WEAK=1 to accept the risk.")
    return isolation


def _probe(level: str) -> str | None:
    """None if a child at `level` starts and runs Python here, else why not."""
    if shutil.which("prlimit") is None or shutil.which("setpriv") is None:
        return "prlimit and setpriv (util-linux) are not installed"
    if level == "bubblewrap" and shutil.which("bwrap") is None:
        return "bwrap is not installed (Debian package 'bubblewrap')"
    if level == "setuid":
        if os.geteuid() != 0:
            return "the worker does not run as root, so it cannot drop to another user"
        exposed = [p for p in protected_paths() if _readable_by_others(Path(p))]
        if exposed:
            return f"{exposed[0]} is readable by other users (make it 0700)"
    isolation = {"bubblewrap": BUBBLEWRAP, "setuid": SETUID}.get(level) or _scrubbed()
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mlcp-probe-") as job_dir:
        prepare_job_dir(Path(job_dir), isolation)
        limits = Limits(address_space_bytes=2 * 1024**3, cpu_seconds=30, file_size_bytes=1024**2, processes=256,
                        wall_seconds=60)
        argv, env, cwd = child_command(isolation, Path(job_dir), "workers.sandbox.protocol", limits)
        try:
            done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{type(exc).__name__}: {exc}"
    if done.returncode != 0 or b"sandbox-ready" not in done.stdout:
        tail = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        return f"exit {done.returncode}: {tail[0][:300]}"
    return None


def prepare_job_dir(job_dir: Path, isolation: Isolation) -> None:
    """Make the job directory (and its tmp/) writable by the child and by nobody else."""
    (job_dir / "tmp").mkdir(exist_ok=True)
    (job_dir / "out").mkdir(exist_ok=True)
    job_dir.chmod(0o700)
    if isolation.name == "setuid":
        for path in (job_dir, job_dir / "tmp", job_dir / "out"):
            os.chown(path, NOBODY, NOBODY)


def _readable_by_others(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & 0o005) if path.exists() else False
    except OSError:
        return False
