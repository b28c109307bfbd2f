#!/usr/bin/env bash
# Starts `python3 -m bigvl.main --config CONFIG --workdir WORKDIR [overrides]` on every
# worker of a TPU VM slice at once (each joins the run through jax.distributed), in the
# background with nohup; each worker writes its own log (~/bigvl.log) and pid (~/bigvl.pid).
#
# Usage: launch.sh --name NAME --zone ZONE --config CONFIG --workdir gs://BUCKET/RUN
#                  [--env KEY=VALUE]... [--dir DIR] [--log LOG] [--worker all|N]
#                  [--project PROJECT] [--dry-run] [-- --config.key=value ...]
#
#   --config     config file (and :ARG) relative to DIR, e.g. configs/demo.py
#   --workdir    checkpoints and metrics: gs://BUCKET/RUN (written by every host through Cloud
#                Storage's API; one warning line when the bucket is not in the TPU's region), or a
#                path every worker shares
#   --env K=V    environment variable for the run (repeatable), e.g. LIBTPU_INIT_ARGS=...
#   --dir DIR    where install.sh put bigvl on the workers (default bigvl)
#   --log LOG    log file on each worker, relative to the home (default bigvl.log)
#   --worker W   workers to start (default all)
#   --dry-run    print the gcloud command instead of running it
#   after --     passed to bigvl.main unchanged, e.g. -- --config.total_steps=1000
# Refuses to start on a worker whose previous run is still alive (see stop.sh).

set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

CONFIG="" WORKDIR="" DIR=bigvl LOG=bigvl.log WORKER=all
ENV_VARS=()
normalize_args "$@"
set -- "${ARGS[@]}"
while [[ $# -gt 0 ]]; do
  case $1 in
    --config) need_value "$@"; CONFIG=$2; shift 2 ;;
    --workdir) need_value "$@"; WORKDIR=$2; shift 2 ;;
    --env) need_value "$@"; ENV_VARS+=("$2"); shift 2 ;;
    --dir) need_value "$@"; DIR=$2; shift 2 ;;
    --log) need_value "$@"; LOG=$2; shift 2 ;;
    --worker) need_value "$@"; WORKER=$2; shift 2 ;;
    *) parse_common_flag "$@"; shift "$CONSUMED" ;;
  esac
done
require --name "$NAME"
require --zone "$ZONE"
require --config "$CONFIG"
require --workdir "$WORKDIR"
check_worker "$WORKER"
for kv in "${ENV_VARS[@]}"; do
  [[ $kv =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "--env needs KEY=VALUE, got '$kv'"
done
if [[ $WORKDIR == gs://* ]]; then check_bucket_region "$WORKDIR"; fi

MAIN="python3 -m bigvl.main --config $(remote_word "$CONFIG") --workdir $(remote_word "$WORKDIR")"
for arg in "${EXTRA[@]}"; do MAIN+=" $(remote_word "$arg")"; done
if [[ ${#ENV_VARS[@]} -gt 0 ]]; then
  PREFIX="env"
  for kv in "${ENV_VARS[@]}"; do PREFIX+=" $(remote_word "$kv")"; done
  MAIN="$PREFIX $MAIN"
fi
LOG_PATH=$(remote_path "$LOG")

# remote_command: the bash line each worker runs (single-quoted $ are for the worker's shell).
# shellcheck disable=SC2016
remote_command() {
  printf '%s' "set -e; cd $(remote_word "$DIR"); pid_file=\"\$HOME\"/bigvl.pid; "
  printf '%s' 'if [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then '
  printf '%s' 'echo "$(hostname): bigvl is still running (pid $(cat "$pid_file")), stop it first (stop.sh)" >&2; '
  printf '%s' 'exit 1; fi; '
  printf '%s' "nohup $MAIN > $LOG_PATH 2>&1 < /dev/null & "
  printf '%s' 'echo $! > "$pid_file"; echo "$(hostname): started pid $!, log" '"$LOG_PATH"
}

tpu_ssh "$WORKER" "$(remote_command)"
