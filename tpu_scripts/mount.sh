#!/usr/bin/env bash
# Mounts a Cloud Storage bucket with gcsfuse on every worker of a TPU VM slice, with the options
# Google's Cloud Storage FUSE guide and MaxText's setup_gcsfuse.sh give for read-heavy training,
# so data.train_paths can name /gcs/BUCKET/... on each host. Installs gcsfuse (Google's apt
# repository) on a worker that lacks it; a worker where the mount is up already is left alone.
#
# Usage: mount.sh --name NAME --zone ZONE --bucket BUCKET [--mount-point DIR] [--cache-dir DIR]
#                 [--read-write] [--worker all|N] [--project PROJECT] [--dry-run] [-- GCSFUSE_FLAGS...]
#
#   --bucket       the bucket, NAME or gs://NAME
#   --mount-point  where it appears on each worker (default /gcs/NAME)
#   --cache-dir    gcsfuse's file cache (default /tmp/gcsfuse-cache/NAME; a local SSD or /dev/shm
#                  is faster); whole shards are cached on first read, downloaded in parallel
#   --read-write   mount writable (default read-only: shards are read here, the run directory is
#                  written as gs://... by bigvl itself, not through the mount)
#   --worker W     workers to mount on (default all)
#   --dry-run      print the gcloud command instead of running it
#   after --       extra gcsfuse flags, e.g. -- --file-cache-max-size-mb=200000

set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

BUCKET="" MOUNT_POINT="" CACHE_DIR="" READ_WRITE=0 WORKER=all
normalize_args "$@"
set -- "${ARGS[@]}"
while [[ $# -gt 0 ]]; do
  case $1 in
    --bucket) need_value "$@"; BUCKET=${2#gs://}; BUCKET=${BUCKET%/}; shift 2 ;;
    --mount-point) need_value "$@"; MOUNT_POINT=$2; shift 2 ;;
    --cache-dir) need_value "$@"; CACHE_DIR=$2; shift 2 ;;
    --read-write) READ_WRITE=1; shift ;;
    --worker) need_value "$@"; WORKER=$2; shift 2 ;;
    *) parse_common_flag "$@"; shift "$CONSUMED" ;;
  esac
done
require --name "$NAME"
require --zone "$ZONE"
require --bucket "$BUCKET"
check_worker "$WORKER"
[[ $BUCKET =~ ^[a-z0-9][a-z0-9._-]*$ ]] || die "--bucket must be a bucket name (no path), got '$BUCKET'"
MOUNT_POINT=${MOUNT_POINT:-/gcs/$BUCKET}
CACHE_DIR=${CACHE_DIR:-/tmp/gcsfuse-cache/$BUCKET}
[[ $MOUNT_POINT == /* && $CACHE_DIR == /* ]] || die "--mount-point and --cache-dir must be absolute paths"
check_bucket_region "gs://$BUCKET"

# Metadata caches never expire (a training set does not change under a run), the file cache has
# no size limit and keeps whole files for random reads (ArrayRecord reads records at offsets),
# filled by parallel downloads.
OPTIONS=(--implicit-dirs --type-cache-max-size-mb=-1 --stat-cache-max-size-mb=-1 --kernel-list-cache-ttl-secs=-1
         --metadata-cache-ttl-secs=-1 --file-cache-max-size-mb=-1 --file-cache-cache-file-for-range-read=true
         --file-cache-enable-parallel-downloads=true "--cache-dir=$CACHE_DIR")
if [[ $READ_WRITE == 0 ]]; then OPTIONS=(-o ro "${OPTIONS[@]}"); fi
GCSFUSE="gcsfuse"
for arg in "${OPTIONS[@]}" "${EXTRA[@]}" "$BUCKET" "$MOUNT_POINT"; do GCSFUSE+=" $(remote_word "$arg")"; done
MP=$(remote_word "$MOUNT_POINT") CACHE=$(remote_word "$CACHE_DIR")

# remote_command: the bash line each worker runs (single-quoted $ are for the worker's shell).
# shellcheck disable=SC2016
remote_command() {
  printf '%s' 'set -e; if ! command -v gcsfuse >/dev/null; then '
  printf '%s' 'repo=gcsfuse-$(lsb_release -c -s); '
  printf '%s' 'echo "deb [signed-by=/usr/share/keyrings/cloud.google.asc] https://packages.cloud.google.com/apt $repo main" '
  printf '%s' '| sudo tee /etc/apt/sources.list.d/gcsfuse.list >/dev/null; '
  printf '%s' 'curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo tee /usr/share/keyrings/cloud.google.asc >/dev/null; '
  printf '%s' 'sudo apt-get update -q && sudo apt-get install -y -q gcsfuse; fi; '
  printf '%s' "if mountpoint -q $MP; then echo \"\$(hostname): $MOUNT_POINT is mounted already\"; exit 0; fi; "
  printf '%s' "sudo mkdir -p $MP $CACHE; sudo chown \"\$(id -u):\$(id -g)\" $MP $CACHE; "
  printf '%s' "$GCSFUSE; echo \"\$(hostname): gs://$BUCKET mounted at $MOUNT_POINT\""
}

tpu_ssh "$WORKER" "$(remote_command)"
