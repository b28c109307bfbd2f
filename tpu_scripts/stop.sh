#!/usr/bin/env bash
# Stops a run started by launch.sh: sends SIGTERM (what a preemption sends, which the train
# loop's orbax preemption check reacts to) to the pid in ~/bigvl.pid on each worker, and
# removes the pid file.
#
# Usage: stop.sh --name NAME --zone ZONE [--worker all|N] [--project PROJECT] [--dry-run]
#
#   --worker W   which workers (default all)
#   --dry-run    print the gcloud command instead of running it

set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

WORKER=all
normalize_args "$@"
set -- "${ARGS[@]}"
while [[ $# -gt 0 ]]; do
  case $1 in
    --worker) need_value "$@"; WORKER=$2; shift 2 ;;
    *) parse_common_flag "$@"; shift "$CONSUMED" ;;
  esac
done
require --name "$NAME"
require --zone "$ZONE"
check_worker "$WORKER"
if [[ ${#EXTRA[@]} -gt 0 ]]; then die "unexpected arguments after --: ${EXTRA[*]}"; fi

# shellcheck disable=SC2016  # the $ expressions are for the worker's shell
STOP='pid_file="$HOME"/bigvl.pid; if [ -f "$pid_file" ]; then pid=$(cat "$pid_file"); '\
'if kill "$pid" 2>/dev/null; then echo "$(hostname): sent SIGTERM to $pid"; '\
'else echo "$(hostname): $pid was not running"; fi; rm -f "$pid_file"; '\
'else echo "$(hostname): no run to stop"; fi'
tpu_ssh "$WORKER" "$STOP"
