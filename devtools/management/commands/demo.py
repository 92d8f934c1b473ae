"""`manage.py demo` (what `make demo` runs): a working mlcp on embedded defaults.

It migrates a SQLite database, creates a login (password and token) per role, trains
a small ResNet-style digits classifier, registers it with its golden set,
runs its gates on a Celery worker (kombu's filesystem broker, no Redis
needed), prints the evidence, then ships it: a first production deploy, a
healthy canary that promotes and a failing one the controller rolls back by
itself (see `devtools.demo_rollout`), and leaves the web UI and API up.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from devtools.demo_logins import FILE_NAME, ensure_logins, login_lines

ROOT = Path(__file__).resolve().parents[3]


class Command(BaseCommand):
    help = "Set up a demo mlcp on embedded defaults and leave the server running."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000, help="where the web server listens (make demo "
                                                                        "DEMO_PORT=...)")
        parser.add_argument("--no-serve", action="store_true", help="stop after the gates (for tests)")
        parser.add_argument("--gate-timeout", type=float, default=900)

    def handle(self, port, no_serve, gate_timeout, **options):
        if settings.CELERY_BROKER_URL != "filesystem://" or settings.SESSION_COOKIE_SECURE:
            # Plain http on loopback: no Redis needed, and cookies that a browser sends over http.
            env = dict(os.environ, CELERY_BROKER_URL="filesystem://", SESSION_COOKIE_SECURE="false",
                       CSRF_COOKIE_SECURE="false")
            os.execve(sys.executable, [sys.executable, str(ROOT / "manage.py"), "demo", "--port", str(port),
                                       "--gate-timeout", str(gate_timeout)] + (["--no-serve"] if no_serve else []),
                      env)
        # A SIGTERM (not only Ctrl-C) must run the cleanup below: the worker and servers are our children.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        self._step("migrating the database")
        call_command("migrate", verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        logins = ensure_logins(settings.DATA_DIR)

        worker = self._start_worker()
        try:
            version = self._register_model()
            self._wait_for_gates(version, gate_timeout)
            self._rollouts(version, gate_timeout)
            if no_serve:
                return
            self._serve(port, logins)
        finally:
            worker.terminate()
            worker.wait(timeout=30)

    def _step(self, text):
        self.stdout.write(self.style.MIGRATE_HEADING(f"==> {text}"))

    def _start_worker(self) -> subprocess.Popen:
        self._step("starting a Celery worker for the gates queue")
        return subprocess.Popen([sys.executable, "-m", "celery", "-A", "controlplane.celery", "worker",
                                 "-Q", "gates,default", "--concurrency", "1", "--loglevel", "WARNING",
                                 "--pool", "solo"], cwd=ROOT,
                                # The demo gates its own reference models, so it may run them without
                                # bubblewrap on a laptop; the README says what that gives up.
                                env={"MLCP_GATE_SANDBOX_ALLOW_WEAK": "1", **os.environ})

    def _register_model(self):
        from registry import services
        from registry.models import RegisteredModel
        from registry.storage import default_store
        from devtools.reference_models import build_reference_model, golden_set_npz_bytes

        self._step("training a ResNet-style classifier on sklearn's digits (cached after the first run)")
        reference = build_reference_model("resnet")
        model, _ = RegisteredModel.objects.get_or_create(
            name="digits-resnet", defaults={"description": "ResNet-style classifier of 8x8 handwritten digits",
                                            "class_labels": [str(i) for i in range(10)], "owner": "demo"})
        if model.default_golden_set is None:
            staged = default_store().stage()
            staged.write(golden_set_npz_bytes())
            services.register_golden_set(model, staged, actor="demo", description="held-out digits")
        self._step(f"registering it (golden-set accuracy {reference.accuracy:.3f})")
        version = services.ingest_bytes(model, reference.onnx_bytes, "digits-resnet.onnx",
                                        services.VersionMetadata(tags={"arch": "resnet", "source": "demo"}),
                                        actor="demo")
        return version  # its gates were queued when the registration committed

    def _wait_for_gates(self, version, timeout):
        self._step(f"running the gates of {version}")
        deadline = time.monotonic() + timeout
        self._wait_until_gated(version, deadline)
        for derived in version.derived.all():
            self._step(f"running the gates of its derived {derived.derivation} version {derived}")
            self._wait_until_gated(derived, deadline)

    def _wait_until_gated(self, version, deadline):
        from registry.choices import VersionStatus

        while time.monotonic() < deadline:
            version.refresh_from_db()
            if version.status not in (VersionStatus.REGISTERED, VersionStatus.GATING) or (
                    version.status == VersionStatus.REGISTERED and version.status_reason):
                break
            time.sleep(1)
        for result in version.gate_results.order_by("position"):
            self.stdout.write(f"    {result.gate:<13} {result.verdict:<6} {result.device:<22} {result.summary}")
        self.stdout.write(self.style.SUCCESS(f"    {version}: {version.status} ({version.status_reason})"))

    # --- shipping it ------------------------------------------------------

    def _rollouts(self, first, gate_timeout):
        """Deploy `first`, canary its int8 version (promotes), then a faulty one (rolled back)."""
        from devtools import demo_rollout
        from rollouts import services as rollout_services

        approver, ci = self._user("demo-approver"), self._user("demo-ci")
        good = first.derived.get(derivation="int8-static-qdq")
        for version in (first, good):
            self._approve(version, approver)
        say = self.stdout.write
        self._step("starting a Kubernetes API emulator and Prometheus on loopback for the rollouts")
        with demo_rollout.platform(say) as env:
            # What an admin does once per model: rollouts go only to the model's own Deployment.
            rollout_services.set_rollout_target(first.model, env.traffic, actor=self._user("admin"),
                                                reason="demo: the emulator's model server Deployment")
            demo_rollout.finish_leftovers(env, first.model, actor=ci, say=say)
            self._step(f"deploying {first} to production (one 100% step: nothing runs yet to compare it with)")
            self._said_outcome(demo_rollout.deploy_first(env, first, actor=ci, say=say))
            self._step(f"canary of {good} (int8 of {first}), steps 10% -> 25% -> 50% -> 100%, 5 s each")
            self._said_outcome(demo_rollout.canary(env, good, actor=ci, say=say), label="good canary")
            bad = self._register_bad_version(first.model, gate_timeout, approver)
            self._step(f"canary of {bad}; its server's fault switch fails "
                       f"{demo_rollout.FAULT_ERROR_RATE:.0%} of its requests (a defect no offline gate sees)")
            self._said_outcome(demo_rollout.canary(env, bad, actor=ci, say=say,
                                                   fault_error_rate=demo_rollout.FAULT_ERROR_RATE),
                               label="bad canary")
        self._final_states(first.model)

    def _user(self, username):
        return get_user_model().objects.get(username=username)

    def _approve(self, version, approver):
        from registry import services
        from registry.choices import VersionStatus

        version.refresh_from_db()
        if version.status != VersionStatus.AWAITING_APPROVAL:
            raise CommandError(f"{version} is {version.status} ({version.status_reason}), not awaiting approval: "
                               "the demo cannot ship it")
        services.approve_version(version, actor=approver, reason="demo: every gate passed; evidence read in the UI")
        self.stdout.write(f"    {version} approved by {approver.username} (every gate passed)")

    def _register_bad_version(self, model, gate_timeout, approver):
        from registry import services
        from devtools.reference_models import build_reference_model

        self._step("training an EfficientNet-style classifier for a third version (cached after the first run)")
        reference = build_reference_model("efficientnet")
        version = services.ingest_bytes(model, reference.onnx_bytes, "digits-efficientnet.onnx",
                                        services.VersionMetadata(tags={"arch": "efficientnet", "source": "demo"}),
                                        actor="demo")
        self._wait_for_gates(version, gate_timeout)
        self._approve(version, approver)
        return version

    def _said_outcome(self, rollout, label="rollout"):
        from rollouts.choices import Phase

        rollout.refresh_from_db()
        if rollout.phase == Phase.SUCCEEDED:
            self.stdout.write(self.style.SUCCESS(f"    {label} {rollout.version}: succeeded; production is "
                                                 f"{rollout.version} (rollout {rollout.pk})"))
            return
        retreat = rollout.events.filter(new=Phase.ROLLING_BACK).order_by("pk").first()
        how = (" automatically by the controller" if retreat is not None and retreat.actor == "controller"
               else f" by {retreat.actor}" if retreat is not None else "")
        self.stdout.write(self.style.WARNING(f"    {label} {rollout.version}: {rollout.phase.replace('_', ' ')}"
                                             f"{how} (rollout {rollout.pk}): {rollout.abort_reason}"))

    def _final_states(self, model):
        from registry import services

        self._step("final states")
        production = services.alias_target(model, "production")
        self.stdout.write(f"    production alias: {production}")
        for version in model.versions.order_by("number"):
            derived = f" ({version.derivation} of :{version.parent.number})" if version.parent_id else ""
            self.stdout.write(f"    {version}{derived}: {version.status}")
        for rollout in model.rollouts.order_by("pk"):
            self.stdout.write(f"    rollout {rollout.pk} ({rollout.kind}) of {rollout.version}: {rollout.phase}")

    def _serve(self, port, logins):
        base = f"http://127.0.0.1:{port}"
        by_role = {login.role: login for login in logins}
        self._step(f"mlcp is up at {base}/ (another port: make demo DEMO_PORT=8001)")
        self.stdout.write(f"    web UI {base}/   rollouts {base}/rollouts/   API {base}/api/v1/ (docs {base}/api/docs/)"
                          f"   Django admin {base}/admin/")
        self.stdout.write(f"    logins, one per role (sign in at {base}/accounts/login/; the token is for mlcp):")
        for line in login_lines(logins):
            self.stdout.write(f"      {line}")
        self.stdout.write(f"    all of it is in {settings.DATA_DIR / FILE_NAME} (readable by you only)")
        self.stdout.write(f"    try: MLCP_URL={base} MLCP_TOKEN={by_role['oncall'].token} .venv/bin/mlcp rollout list")
        self.stdout.write("    Ctrl-C stops it.")
        # Warnings only: a request log would bury the lines above.
        server = subprocess.Popen([sys.executable, "-m", "gunicorn", "controlplane.wsgi", "--bind",
                                   f"127.0.0.1:{port}", "--workers", "2", "--timeout", "600", "--log-level", "warning"],
                                  cwd=ROOT, env=dict(os.environ))
        try:
            server.wait()
        finally:
            server.terminate()
            server.wait(timeout=30)
