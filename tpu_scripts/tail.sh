#!/usr/bin/env bash
# Shows the log of a run started by launch.sh: worker 0 by default, or --worker N / all
# (lines prefixed with the worker's hostname). Follows the log until Ctrl-C.
#
# Usage: tail.sh --name NAME --zone ZONE [--worker 0|N|all] [--lines N] [--no-follow]
#                [--log LOG] [--project PROJECT] [--dry-run]
#
#   --worker W   which worker's log (default 0)
#   --lines N    lines of history to show first (default 100)
#   --no-follow  print and exit instead of following
#   --log LOG    log file on the workers, as given to launch.sh (default bigvl.log)
#   --dry-run    print the gcloud command instead of running it

set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

WORKER=0 LINES=100 FOLLOW=1 LOG=bigvl.log
normalize_args "$@"
set -- "${ARGS[@]}"
while [[ $# -gt 0 ]]; do
  case $1 in
    --worker) need_value "$@"; WORKER=$2; shift 2 ;;
    --lines) need_value "$@"; LINES=$2; shift 2 ;;
    --no-follow) FOLLOW=0; shift ;;
    --log) need_value "$@"; LOG=$2; shift 2 ;;
    *) parse_common_flag "$@"; shift "$CONSUMED" ;;
  esac
done
require --name "$NAME"
require --zone "$ZONE"
check_worker "$WORKER"
[[ $LINES =~ ^[0-9]+$ ]] || die "--lines must be a number, got '$LINES'"
if [[ ${#EXTRA[@]} -gt 0 ]]; then die "unexpected arguments after --: ${EXTRA[*]}"; fi

TAIL="tail -n $LINES"
if [[ $FOLLOW == 1 ]]; then TAIL+=" -F"; fi
TAIL+=" $(remote_path "$LOG")"
if [[ $WORKER == all ]]; then
  # shellcheck disable=SC2016  # $(hostname) is for the worker's shell
  TAIL+=' | sed -u "s/^/[$(hostname)] /"'
fi
tpu_ssh "$WORKER" "$TAIL"
