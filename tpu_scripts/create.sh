#!/usr/bin/env bash
# Creates a Cloud TPU VM slice, or a queued resource for one (--queued).
#
# Usage: create.sh --name NAME --zone ZONE --type TYPE [--version VERSION] [--queued]
#                  [--spot | --best-effort] [--project PROJECT] [--dry-run] [-- GCLOUD_FLAGS...]
#
#   --type       accelerator type: v5p-64, v5litepod-16, v6e-32, v4-32, ...
#   --version    TPU software version; default by generation: v6e v2-alpha-tpuv6e,
#                v5p v2-alpha-tpuv5, v5e v2-alpha-tpuv5-lite, v4 and older tpu-ubuntu2204-base
#   --queued     create a queued resource (node id = NAME); it waits for capacity, check
#                with: gcloud compute tpus queued-resources describe NAME --zone ZONE
#   --spot       spot (preemptible) capacity
#   --best-effort  best-effort tier (queued resources only, through gcloud alpha)
#   --dry-run    print the gcloud command instead of running it
#   after --     extra gcloud flags, e.g. -- --network=my-net --reserved

set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

TYPE="" VERSION="" QUEUED=0 SPOT=0 BEST_EFFORT=0
normalize_args "$@"
set -- "${ARGS[@]}"
while [[ $# -gt 0 ]]; do
  case $1 in
    --type) need_value "$@"; TYPE=$2; shift 2 ;;
    --version) need_value "$@"; VERSION=$2; shift 2 ;;
    --queued) QUEUED=1; shift ;;
    --spot) SPOT=1; shift ;;
    --best-effort) BEST_EFFORT=1; shift ;;
    *) parse_common_flag "$@"; shift "$CONSUMED" ;;
  esac
done
require --name "$NAME"
require --zone "$ZONE"
require --type "$TYPE"
if [[ $SPOT == 1 && $BEST_EFFORT == 1 ]]; then die "--spot and --best-effort exclude each other"; fi
if [[ $BEST_EFFORT == 1 && $QUEUED == 0 ]]; then die "--best-effort needs --queued"; fi

if [[ -z $VERSION ]]; then
  case $TYPE in
    v6e-*) VERSION=v2-alpha-tpuv6e ;;
    v5p-*) VERSION=v2-alpha-tpuv5 ;;
    v5litepod-* | v5e-*) VERSION=v2-alpha-tpuv5-lite ;;
    v2-* | v3-* | v4-*) VERSION=tpu-ubuntu2204-base ;;
    *) die "no default --version for --type $TYPE; pass --version" ;;
  esac
fi

gcloud_tpu_flags
CAPACITY=()
if [[ $SPOT == 1 ]]; then CAPACITY=(--spot); fi
if [[ $BEST_EFFORT == 1 ]]; then CAPACITY=(--best-effort); fi

if [[ $QUEUED == 1 ]]; then
  GCLOUD=(gcloud)
  if [[ $BEST_EFFORT == 1 ]]; then GCLOUD+=(alpha); fi
  run "${GCLOUD[@]}" compute tpus queued-resources create "$NAME" "--node-id=$NAME" "${FLAGS[@]}" \
    "--accelerator-type=$TYPE" "--runtime-version=$VERSION" "${CAPACITY[@]}" "${EXTRA[@]}"
  if [[ $DRY_RUN == 0 ]]; then
    echo "queued; the slice is usable once its state is ACTIVE:" >&2
    echo "  gcloud compute tpus queued-resources describe $NAME ${FLAGS[*]}" >&2
  fi
else
  run gcloud compute tpus tpu-vm create "$NAME" "${FLAGS[@]}" \
    "--accelerator-type=$TYPE" "--version=$VERSION" "${CAPACITY[@]}" "${EXTRA[@]}"
fi
