#!/bin/sh
# The image's entrypoint: one image, one process per pod, chosen by the first argument.
# Kubernetes passes the mode and its flags as `args` (k8s/manifests), so the image's
# ENTRYPOINT (tini, then this script) stays in front and signals reach the process.
set -eu

usage() {
    cat <<'USAGE'
usage: mlcp-entrypoint MODE [ARGS...]
  web         the API and web UI (gunicorn; default --bind=0.0.0.0:8000)
  worker      a Celery gate worker (celery --app=controlplane.celery worker ARGS)
  beat        Celery beat, the periodic tasks (celery --app=controlplane.celery beat ARGS)
  controller  the rollout controller and its webhook sender (manage.py runcontroller ARGS)
  serve       the model server (mlcp serve ARGS)
  migrate     apply database migrations, then exit (manage.py migrate --noinput ARGS)
  migrated    wait until every migration of this image is applied (an init container; gives up
              after MLCP_MIGRATE_WAIT_S seconds, default 600), then exit
  manage      any manage.py command (manage.py ARGS)
  mlcp        the mlcp command line (mlcp ARGS)
USAGE
}

# manage.py lives beside the packages' sources in the image (/app); tests point this at a checkout.
cd "${MLCP_APP_DIR:-/app}"

if [ "$#" -eq 0 ]; then
    usage >&2
    exit 64
fi
mode="$1"
shift

case "$mode" in
    web)
        if [ "$#" -eq 0 ]; then
            set -- --bind="0.0.0.0:${PORT:-8000}" --access-logfile=-
        fi
        exec gunicorn controlplane.wsgi:application "$@"
        ;;
    worker) exec celery --app=controlplane.celery worker "$@" ;;
    # beat keeps its schedule state in /tmp: the root filesystem is read-only in the pods.
    beat) exec celery --app=controlplane.celery beat --schedule=/tmp/celerybeat-schedule "$@" ;;
    controller) exec python manage.py runcontroller "$@" ;;
    serve) exec mlcp serve "$@" ;;
    migrate) exec python manage.py migrate --noinput "$@" ;;
    migrated)
        # The mlcp-migrate Job applies them; a pod of a new release must not run against the old schema.
        # `migrate --check` applies nothing: it fails while a migration is unapplied or the database is down.
        waited=0
        limit="${MLCP_MIGRATE_WAIT_S:-600}"
        until python manage.py migrate --check --noinput >/dev/null; do
            if [ "$waited" -ge "$limit" ]; then
                echo "mlcp-entrypoint: migrations still not applied after ${waited}s (is the mlcp-migrate Job running?)" >&2
                exit 1
            fi
            echo "mlcp-entrypoint: waiting for the database migrations (${waited}s)" >&2
            sleep 5
            waited=$((waited + 5))
        done
        ;;
    manage) exec python manage.py "$@" ;;
    mlcp) exec mlcp "$@" ;;
    -h|--help|help)
        usage
        ;;
    *)
        echo "mlcp-entrypoint: unknown mode '$mode'" >&2
        usage >&2
        exit 64
        ;;
esac
