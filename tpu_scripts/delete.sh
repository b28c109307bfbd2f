#!/usr/bin/env bash
# Deletes a TPU VM slice, or a queued resource and its slice (--queued).
#
# Usage: delete.sh --name NAME --zone ZONE [--queued] [--yes] [--project PROJECT] [--dry-run]
#
#   --queued     NAME is a queued resource (made by create.sh --queued); deletes its node too
#   --yes        do not ask for confirmation
#   --dry-run    print the gcloud command instead of running it

set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

QUEUED=0 YES=0
normalize_args "$@"
set -- "${ARGS[@]}"
while [[ $# -gt 0 ]]; do
  case $1 in
    --queued) QUEUED=1; shift ;;
    --yes) YES=1; shift ;;
    *) parse_common_flag "$@"; shift "$CONSUMED" ;;
  esac
done
require --name "$NAME"
require --zone "$ZONE"
if [[ ${#EXTRA[@]} -gt 0 ]]; then die "unexpected arguments after --: ${EXTRA[*]}"; fi

gcloud_tpu_flags
CONFIRM=()
if [[ $YES == 1 ]]; then CONFIRM=(--quiet); fi
if [[ $QUEUED == 1 ]]; then
  run gcloud compute tpus queued-resources delete "$NAME" "${FLAGS[@]}" --force "${CONFIRM[@]}"
else
  run gcloud compute tpus tpu-vm delete "$NAME" "${FLAGS[@]}" "${CONFIRM[@]}"
fi
