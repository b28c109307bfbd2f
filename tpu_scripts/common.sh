# shellcheck shell=bash
# shellcheck disable=SC2034  # the variables set here are read by the scripts that source it
# Sourced by the tpu_scripts: flag parsing shared by every script, one-line errors,
# and `run`, which prints a command and runs it unless --dry-run was given.
#
# A script sets its own variables to "" first, then loops:
#   normalize_args "$@"; set -- "${ARGS[@]}"
#   while [[ $# -gt 0 ]]; do
#     case $1 in
#       --type) need_value "$@"; TYPE=$2; shift 2 ;;
#       *) parse_common_flag "$@"; shift "$CONSUMED" ;;
#     esac
#   done
#   require --name "$NAME"

SCRIPT_NAME=$(basename "$0")
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DRY_RUN=0
NAME=""
ZONE=""
PROJECT=""
ARGS=()
EXTRA=()
FLAGS=()
CONSUMED=0

# die MESSAGE...: one line on stderr, exit status 2.
die() {
  echo "$SCRIPT_NAME: error: $*" >&2
  exit 2
}

warn() {
  echo "$SCRIPT_NAME: warning: $*" >&2
}

# usage: prints the script's header comment (from line 2 to the first blank line).
usage() {
  sed -n '2,/^$/{/^#/s/^# \{0,1\}//p;}' "$0"
}

# normalize_args ARG...: rewrites "--flag=value" as "--flag" "value" up to a lone "--";
# the result is in ARGS.
normalize_args() {
  ARGS=()
  while [[ $# -gt 0 ]]; do
    case $1 in
      --) ARGS+=("$@"); break ;;
      --*=*) ARGS+=("${1%%=*}" "${1#*=}") ;;
      *) ARGS+=("$1") ;;
    esac
    shift
  done
}

# need_value FLAG [VALUE...]: dies unless FLAG is followed by a value.
need_value() {
  [[ $# -ge 2 && -n $2 && $2 != --* ]] || die "$1 needs a value"
}

# require FLAG VALUE: dies when a required flag was not given.
require() {
  [[ -n $2 ]] || die "$1 is required (see $SCRIPT_NAME --help)"
}

# parse_common_flag ARG...: handles --name --zone --project --dry-run --help and "--"
# (everything after it goes to EXTRA); sets CONSUMED to the number of words used.
parse_common_flag() {
  case $1 in
    --name) need_value "$@"; NAME=$2; CONSUMED=2 ;;
    --zone) need_value "$@"; ZONE=$2; CONSUMED=2 ;;
    --project) need_value "$@"; PROJECT=$2; CONSUMED=2 ;;
    --dry-run) DRY_RUN=1; CONSUMED=1 ;;
    -h | --help) usage; exit 0 ;;
    --) shift; EXTRA=("$@"); CONSUMED=$(($# + 1)) ;;
    *) die "unknown argument '$1' (see $SCRIPT_NAME --help)" ;;
  esac
}

# quote_word WORD: WORD as a shell would need it typed (--flag='value' for flags).
quote_word() {
  local word=$1 safe='^[A-Za-z0-9_./:@%+,=-]+$' flag='^(--[A-Za-z0-9-]+=)(.*)$'
  local sq="'" esc="'\\''"
  if [[ $word =~ $safe ]]; then
    printf '%s' "$word"
  elif [[ $word =~ $flag ]]; then
    local value=${BASH_REMATCH[2]}
    printf "%s'%s'" "${BASH_REMATCH[1]}" "${value//"$sq"/"$esc"}"
  else
    printf "'%s'" "${word//"$sq"/"$esc"}"
  fi
}

# quote_command WORD...: the command as one copy-pasteable line.
quote_command() {
  local line="" word
  for word in "$@"; do
    line+="${line:+ }$(quote_word "$word")"
  done
  printf '%s\n' "$line"
}

# run COMMAND...: prints the command (stdout with --dry-run, "+ command" on stderr
# otherwise) and runs it unless --dry-run.
run() {
  if [[ $DRY_RUN == 1 ]]; then
    quote_command "$@"
  else
    echo "+ $(quote_command "$@")" >&2
    "$@"
  fi
}

# gcloud_tpu_flags: the --zone/--project flags every gcloud call takes, in FLAGS.
gcloud_tpu_flags() {
  FLAGS=("--zone=$ZONE")
  if [[ -n $PROJECT ]]; then FLAGS+=("--project=$PROJECT"); fi
}

# tpu_ssh WORKER REMOTE_COMMAND: runs REMOTE_COMMAND (a bash line) on WORKER (N or all).
tpu_ssh() {
  gcloud_tpu_flags
  run gcloud compute tpus tpu-vm ssh "$NAME" "${FLAGS[@]}" "--worker=$1" "--command=$2"
}

# remote_word WORD: WORD quoted for the remote bash: bare when safe, in double quotes
# when that is enough, else bash's %q.
remote_word() {
  local safe='^[A-Za-z0-9_./:@%+,=-]+$' plain='^[^$`"\\!]*$'
  if [[ $1 =~ $safe ]]; then
    printf '%s' "$1"
  elif [[ $1 =~ $plain ]]; then
    printf '"%s"' "$1"
  else
    printf '%q' "$1"
  fi
}

# remote_path PATH: a path on the workers, relative to the remote home unless absolute,
# as a shell word for the remote bash ("$HOME"/PATH).
remote_path() {
  if [[ $1 == /* ]]; then
    remote_word "$1"
  else
    # shellcheck disable=SC2016  # $HOME is for the remote shell
    printf '"$HOME"/%s' "$(remote_word "$1")"
  fi
}

# check_bucket_region gs://BUCKET[/...]: one warning line when the bucket's location is not the region of
# --zone (reads and writes then cross regions: slower, and billed as egress); nothing under --dry-run.
check_bucket_region() {
  local bucket=${1#gs://} region=${ZONE%-*} location
  bucket=${bucket%%/*}
  if [[ $DRY_RUN == 1 ]]; then return 0; fi
  if ! location=$(gcloud storage buckets describe "gs://$bucket" --format='value(location)' 2>/dev/null); then
    warn "could not read the location of gs://$bucket (gcloud storage buckets describe): does it exist?"
  elif [[ ${location,,} != "$region" ]]; then
    warn "gs://$bucket is in ${location,,}, the TPU in $ZONE: checkpoints cross regions (slower, egress billed); use a bucket in $region"
  fi
}

# check_worker WORKER: "all" or a worker index.
check_worker() {
  [[ $1 == all || $1 =~ ^[0-9]+$ ]] || die "--worker must be a worker index or 'all', got '$1'"
}
