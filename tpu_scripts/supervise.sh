#!/usr/bin/env bash
# Keeps a run going on spot / queued TPU capacity: creates the queued resource, waits for
# it, installs bigvl, launches the run, then watches it. When the slice is preempted (state
# PREEMPTED, SUSPENDED or FAILED, or a worker's run is gone while the run is unfinished) it
# deletes the resource, queues it again, reinstalls and relaunches the same command on the
# same workdir (which resumes from its newest checkpoint). Stops when the run has written
# WORKDIR/final_metrics.json (exit 0) or after --max-retries recoveries (exit 1). Every event
# is one line in --log (and on stderr): `<UTC time> <event> <detail>`.
#
# Usage: supervise.sh --name NAME --zone ZONE --type TYPE --config CONFIG --workdir gs://BUCKET/RUN
#                     [--spot | --best-effort] [--version V] [--env KEY=VALUE]... [--git URL [--branch B]]
#                     [--mount BUCKET]...
#                     [--max-retries N] [--poll SECONDS] [--wait-active SECONDS] [--log FILE]
#                     [--project PROJECT] [-- --config.key=value ...]
#
#   --type, --spot, --best-effort, --version   as create.sh (always a queued resource)
#   --config, --workdir, --env                 as launch.sh; --workdir gs://BUCKET/RUN (or a shared path)
#   --git URL, --branch B                      as install.sh (default: ship this checkout)
#   --mount BUCKET    mount.sh on every worker after each install (repeatable): the data's bucket
#   --max-retries N   recoveries (delete + queue again) before giving up (default 5)
#   --poll S          seconds between checks (default 60)
#   --wait-active S   give up on one queued request after S seconds not ACTIVE (default 0 = wait)
#   --log FILE        event log (default supervise-NAME.log)
#   --dry-run         refused: the supervisor acts on what gcloud answers (see each script's --dry-run)
#   after --          passed to bigvl.main unchanged

set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TYPE="" VERSION="" CAPACITY="" CONFIG="" WORKDIR="" GIT_URL="" BRANCH=""
MAX_RETRIES=5 POLL=60 WAIT_ACTIVE=0 LOG=""
ENV_ARGS=() MOUNTS=()
normalize_args "$@"
set -- "${ARGS[@]}"
while [[ $# -gt 0 ]]; do
  case $1 in
    --type) need_value "$@"; TYPE=$2; shift 2 ;;
    --version) need_value "$@"; VERSION=$2; shift 2 ;;
    --spot) CAPACITY=--spot; shift ;;
    --best-effort) CAPACITY=--best-effort; shift ;;
    --config) need_value "$@"; CONFIG=$2; shift 2 ;;
    --workdir) need_value "$@"; WORKDIR=$2; shift 2 ;;
    --env) need_value "$@"; ENV_ARGS+=(--env "$2"); shift 2 ;;
    --git) need_value "$@"; GIT_URL=$2; shift 2 ;;
    --mount) need_value "$@"; MOUNTS+=("$2"); shift 2 ;;
    --branch) need_value "$@"; BRANCH=$2; shift 2 ;;
    --max-retries) need_value "$@"; MAX_RETRIES=$2; shift 2 ;;
    --poll) need_value "$@"; POLL=$2; shift 2 ;;
    --wait-active) need_value "$@"; WAIT_ACTIVE=$2; shift 2 ;;
    --log) need_value "$@"; LOG=$2; shift 2 ;;
    *) parse_common_flag "$@"; shift "$CONSUMED" ;;
  esac
done
require --name "$NAME"
require --zone "$ZONE"
require --type "$TYPE"
require --config "$CONFIG"
require --workdir "$WORKDIR"
for value in "$MAX_RETRIES" "$POLL" "$WAIT_ACTIVE"; do
  [[ $value =~ ^[0-9]+$ ]] || die "--max-retries, --poll and --wait-active take whole numbers, got '$value'"
done
if [[ $DRY_RUN == 1 ]]; then die "--dry-run is not supported: supervise.sh acts on what gcloud answers"; fi
LOG=${LOG:-supervise-$NAME.log}
COMMON=(--name "$NAME" --zone "$ZONE")
if [[ -n $PROJECT ]]; then COMMON+=(--project "$PROJECT"); fi
gcloud_tpu_flags

# event NAME DETAIL...: one line in the log and on stderr.
event() {
  local line
  line="$(date -u +%Y-%m-%dT%H:%M:%SZ) $*"
  echo "$line" >>"$LOG"
  echo "$SCRIPT_NAME: $line" >&2
}

# resource_state: the queued resource's state (ACTIVE, WAITING_FOR_RESOURCES, ...), or NOT_FOUND.
resource_state() {
  local state
  if state=$(gcloud compute tpus queued-resources describe "$NAME" "${FLAGS[@]}" \
    "--format=value(state.state)" 2>/dev/null); then
    echo "${state:-UNKNOWN}"
  else
    echo NOT_FOUND
  fi
}

# run_status: "finished" once the workdir has final_metrics.json, else "running" when every
# worker's run is alive, else "gone". Asked on all workers; an ssh failure counts as gone.
run_status() {
  local out check
  # shellcheck disable=SC2016  # for the workers' shell
  if [[ $WORKDIR == gs://* ]]; then  # a bucket: asked through the workers' gcloud
    check='if gcloud storage objects describe '"$(remote_word "$WORKDIR/final_metrics.json")"' >/dev/null 2>&1; then '
  else
    check='if [ -f '"$(remote_word "$WORKDIR")"'/final_metrics.json ]; then '
  fi
  check+='echo finished; '
  # shellcheck disable=SC2016
  check+='elif [ -f "$HOME"/bigvl.pid ] && kill -0 "$(cat "$HOME"/bigvl.pid)" 2>/dev/null; then echo running; '
  check+='else echo gone; fi'
  if ! out=$(gcloud compute tpus tpu-vm ssh "$NAME" "${FLAGS[@]}" --worker=all "--command=$check" 2>/dev/null); then
    echo gone
  elif grep -q finished <<<"$out"; then
    echo finished
  elif grep -q gone <<<"$out" || ! grep -q running <<<"$out"; then
    echo gone
  else
    echo running
  fi
}

create() {
  local args=(--type "$TYPE" --queued)
  if [[ -n $VERSION ]]; then args+=(--version "$VERSION"); fi
  if [[ -n $CAPACITY ]]; then args+=("$CAPACITY"); fi
  "$HERE/create.sh" "${COMMON[@]}" "${args[@]}" >/dev/null
}

install_and_launch() {
  local install=()
  if [[ -n $GIT_URL ]]; then install+=(--git "$GIT_URL"); fi
  if [[ -n $BRANCH ]]; then install+=(--branch "$BRANCH"); fi
  "$HERE/install.sh" "${COMMON[@]}" "${install[@]}" >/dev/null
  for bucket in "${MOUNTS[@]}"; do "$HERE/mount.sh" "${COMMON[@]}" --bucket "$bucket" >/dev/null; done
  "$HERE/launch.sh" "${COMMON[@]}" --config "$CONFIG" --workdir "$WORKDIR" "${ENV_ARGS[@]}" -- "${EXTRA[@]}" >/dev/null
}

# recover REASON: delete and queue again, or give up after MAX_RETRIES.
RETRIES=0
recover() {
  RETRIES=$((RETRIES + 1))
  if [[ $RETRIES -gt $MAX_RETRIES ]]; then
    event GIVE_UP "$1; $MAX_RETRIES recoveries used"
    exit 1
  fi
  event RECOVER "$1 (recovery $RETRIES of $MAX_RETRIES): deleting and queueing again"
  "$HERE/delete.sh" "${COMMON[@]}" --queued --yes >/dev/null 2>&1 || event DELETE_FAILED "continuing"
  create || event CREATE_FAILED "will retry"
  LAUNCHED=0
  WAITED=0
}

event START "$NAME $TYPE ${CAPACITY:-on-demand}: $CONFIG -> $WORKDIR"
LAUNCHED=0 WAITED=0
if [[ $(resource_state) == NOT_FOUND ]]; then
  event CREATE "queueing $NAME"
  create || event CREATE_FAILED "will retry"
fi
while true; do
  STATE=$(resource_state)
  case $STATE in
    ACTIVE)
      if [[ $LAUNCHED == 0 ]]; then
        event ACTIVE "installing and launching"
        if install_and_launch; then
          LAUNCHED=1
          event LAUNCHED "$CONFIG on $WORKDIR"
        else
          recover "install or launch failed"
          continue
        fi
      else
        case $(run_status) in
          finished) event FINISHED "$WORKDIR/final_metrics.json written"; exit 0 ;;
          gone) recover "a worker's run is gone"; continue ;;
        esac
      fi
      ;;
    PREEMPTED | SUSPENDED | SUSPENDING | FAILED | NOT_FOUND)
      recover "state $STATE"
      continue
      ;;
    *)
      WAITED=$((WAITED + POLL))
      if [[ $WAIT_ACTIVE -gt 0 && $WAITED -gt $WAIT_ACTIVE ]]; then
        recover "not ACTIVE after ${WAIT_ACTIVE}s (state $STATE)"
        continue
      fi
      ;;
  esac
  sleep "$POLL"
done
