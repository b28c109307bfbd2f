#!/usr/bin/env bash
# Installs bigvl on every worker of a TPU VM slice: ships this checkout (git archive of
# --ref, default HEAD: commit first, uncommitted changes are not shipped) or clones --git,
# then runs `pip install -e '.[tfds,gcs]' 'jax[tpu]'` in DIR on each worker (gcs: gs:// workdirs).
#
# Usage: install.sh --name NAME --zone ZONE [--git URL [--branch BRANCH] | --ref REF]
#                   [--dir DIR] [--extras EXTRAS] [--project PROJECT] [--dry-run] [-- PIP_ARGS...]
#
#   --git URL    clone URL on the workers instead of copying this checkout
#   --branch B   branch or tag to clone (with --git; default: the remote's default branch)
#   --ref REF    commit-ish of this checkout to ship (default HEAD)
#   --dir DIR    install directory on the workers, relative to the home (default bigvl)
#   --extras E   bigvl extras to install (default tfds,gcs; '' for none)
#   --dry-run    print the commands instead of running them
#   after --     extra pip arguments, e.g. -- 'jax[tpu]==0.10.2'

set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

GIT_URL="" BRANCH="" REF=HEAD DIR=bigvl EXTRAS=tfds,gcs
normalize_args "$@"
set -- "${ARGS[@]}"
while [[ $# -gt 0 ]]; do
  case $1 in
    --git) need_value "$@"; GIT_URL=$2; shift 2 ;;
    --branch) need_value "$@"; BRANCH=$2; shift 2 ;;
    --ref) need_value "$@"; REF=$2; shift 2 ;;
    --dir) need_value "$@"; DIR=$2; shift 2 ;;
    --extras) [[ $# -ge 2 ]] || die "--extras needs a value"; EXTRAS=$2; shift 2 ;;
    *) parse_common_flag "$@"; shift "$CONSUMED" ;;
  esac
done
require --name "$NAME"
require --zone "$ZONE"
if [[ -n $BRANCH && -z $GIT_URL ]]; then die "--branch needs --git"; fi
if [[ ! $DIR =~ ^[A-Za-z0-9_][A-Za-z0-9._/-]*$ || $DIR == *..* ]]; then
  die "--dir must be a plain relative path (letters, digits, . _ - /), got '$DIR'"
fi

PACKAGE=.
if [[ -n $EXTRAS ]]; then PACKAGE=".[$EXTRAS]"; fi
PIP="python3 -m pip install -e $(remote_word "$PACKAGE") \"jax[tpu]\""
for arg in "${EXTRA[@]}"; do PIP+=" $(remote_word "$arg")"; done
REMOTE_DIR=$DIR  # a plain path (checked above)

gcloud_tpu_flags
if [[ -n $GIT_URL ]]; then
  CLONE="git clone --depth 1"
  if [[ -n $BRANCH ]]; then CLONE+=" --branch $(remote_word "$BRANCH")"; fi
  tpu_ssh all "set -e; rm -rf $REMOTE_DIR; $CLONE $(remote_word "$GIT_URL") $REMOTE_DIR; cd $REMOTE_DIR; $PIP"
else
  TARBALL="${TMPDIR:-/tmp}/bigvl-$NAME.tar.gz"
  if [[ $DRY_RUN == 0 && -n $(git -C "$REPO_ROOT" status --porcelain --untracked-files=no) ]]; then
    warn "uncommitted changes in $REPO_ROOT are not shipped (git archive $REF)"
  fi
  run git -C "$REPO_ROOT" archive --format=tar.gz -o "$TARBALL" "$REF"
  run gcloud compute tpus tpu-vm scp "$TARBALL" "$NAME:bigvl.tar.gz" "${FLAGS[@]}" --worker=all
  tpu_ssh all "set -e; rm -rf $REMOTE_DIR; mkdir -p $REMOTE_DIR; tar -xzf bigvl.tar.gz -C $REMOTE_DIR; rm bigvl.tar.gz; cd $REMOTE_DIR; $PIP"
fi
