#!/usr/bin/env bash
# Build and operate newsmon on Google Cloud Dataflow as a Flex Template. See deploy/dataflow/README.md.
#
#   deploy/dataflow/deploy.sh build-image | build-template
#   deploy/dataflow/deploy.sh run-replay | run-watch | run-stream
#   deploy/dataflow/deploy.sh update stream|watch
#   deploy/dataflow/deploy.sh drain [JOB_ID] | cancel [JOB_ID]
#
# Configured by environment variables only (listed by `deploy.sh help`). DRY_RUN=1 prints the gcloud
# commands instead of running them.
set -euo pipefail
shopt -s inherit_errexit # `set -e` also inside $(…)

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
GCLOUD=${GCLOUD:-gcloud}

usage() {
  cat <<'EOF'
usage: deploy/dataflow/deploy.sh COMMAND [ARG]

commands:
  build-image        build the launcher + worker image with Cloud Build and push it to $IMAGE
  build-template     write the Flex Template spec (image + metadata.json) to $TEMPLATE
  run-replay         batch job: replay $INPUTS (gs:// files or globs, comma-separated)
  run-watch          streaming job: poll the feeds listed in $FEEDS (a gs:// file)
  run-stream         streaming job: items from $INPUT_SUBSCRIPTION or $INPUT_TOPIC
  update stream|watch  replace the running streaming job $JOB_NAME in place (new image/template/options)
  drain [JOB_ID]     stop reading input, finish in-flight data, then stop (streaming jobs)
  cancel [JOB_ID]    stop now; in-flight data is dropped
  help               this text

environment (required where a command needs it):
  PROJECT            Google Cloud project id
  REGION             Dataflow region, e.g. europe-west2
  BUCKET             Cloud Storage bucket name (no gs://) for the template, staging and temp files
  IMAGE              image path, e.g. europe-west2-docker.pkg.dev/$PROJECT/newsmon/newsmon:2024-06-01
  TEMPLATE           template spec path (default gs://$BUCKET/templates/newsmon.json)
  JOB_NAME           job name (default newsmon-stream / newsmon-watch / newsmon-replay-<time>);
                     update, drain and cancel find the running job by this name
  OUT                output folder (default gs://$BUCKET/newsmon/<command>)
  TOPICS, SUBSCRIPTIONS   gs:// topics / subscriptions TOML (default: shipped taxonomy / all topics)
  INPUTS             run-replay: comma-separated gs:// files or globs
  FEEDS              run-watch: gs:// feed list (one URL per line, or OPML); INTERVAL, SHARDS optional
  INPUT_SUBSCRIPTION run-stream: projects/P/subscriptions/S (or INPUT_TOPIC: projects/P/topics/T)
  ALERTS_TOPIC, ID_LABEL, TIMESTAMP_ATTRIBUTE   run-stream, optional
  SERVICE_ACCOUNT    worker service account email (default: the Compute Engine default account)
  MAX_WORKERS, NUM_WORKERS, WORKER_MACHINE_TYPE   optional worker sizing
  TRANSFORM_NAME_MAPPINGS   update: renamed steps, "OldName=NewName,Other=New2"
  DRY_RUN=1          print the gcloud commands instead of running them
EOF
}

die() {
  echo "deploy.sh: error: $*" >&2
  exit 2
}

# require VAR...: every named variable must be set and non-empty.
require() {
  local var missing=()
  for var in "$@"; do
    [[ -n "${!var:-}" ]] || missing+=("$var")
  done
  if ((${#missing[@]})); then
    die "set ${missing[*]} (see: deploy/dataflow/deploy.sh help)"
  fi
}

run() {
  if [[ "${DRY_RUN:-}" == 1 ]]; then
    printf '%q ' "$@"
    printf '\n'
  else
    "$@"
  fi
}

template_path() {
  if [[ -n "${TEMPLATE:-}" ]]; then
    echo "$TEMPLATE"
  else
    require BUCKET
    echo "gs://$BUCKET/templates/newsmon.json"
  fi
}

build_image() {
  require PROJECT IMAGE
  # `--tag` only builds a Dockerfile at the source root; ours is in deploy/dataflow, so a config file
  # runs `docker build -f`. The ignore file limits the upload to what the Dockerfile copies.
  run "$GCLOUD" builds submit "$ROOT" \
    --project "$PROJECT" \
    --config "$HERE/cloudbuild.yaml" \
    --ignore-file deploy/dataflow/gcloudignore \
    --substitutions "_IMAGE=$IMAGE"
}

build_template() {
  require PROJECT IMAGE
  run "$GCLOUD" dataflow flex-template build "$(template_path)" \
    --project "$PROJECT" \
    --image "$IMAGE" \
    --sdk-language PYTHON \
    --metadata-file "$HERE/metadata.json"
}

# launch COMMAND [--update]: start a job from the template; template parameters come from the
# environment, each passed only when set.
launch() {
  local command=$1 update=${2:-} streaming=1
  require PROJECT REGION BUCKET IMAGE
  [[ "$command" == replay ]] && streaming=0

  local default_name="newsmon-$command"
  ((streaming)) || default_name="newsmon-replay-$(date -u +%Y%m%d-%H%M%S)"
  local job_name=${JOB_NAME:-$default_name}
  [[ "$job_name" =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]] ||
    die "JOB_NAME=$job_name: lower-case letters, digits and '-', starting with a letter"

  local params=(
    "command=$command"
    "out=${OUT:-gs://$BUCKET/newsmon/$command}"
    # Workers run the same image as the launcher (its packages, its Beam).
    "sdk_container_image=$IMAGE"
  )
  add() { # add PARAM VAR: pass template parameter PARAM when $VAR is set
    if [[ -n "${!2:-}" ]]; then params+=("$1=${!2}"); fi
  }
  add topics TOPICS
  add subscriptions SUBSCRIPTIONS
  case "$command" in
    replay)
      require INPUTS
      add inputs INPUTS
      ;;
    watch)
      require FEEDS
      add feeds FEEDS
      add interval INTERVAL
      add shards SHARDS
      ;;
    stream)
      [[ -n "${INPUT_SUBSCRIPTION:-}" || -n "${INPUT_TOPIC:-}" ]] ||
        die "set INPUT_SUBSCRIPTION (projects/P/subscriptions/S) or INPUT_TOPIC (projects/P/topics/T)"
      [[ -z "${INPUT_SUBSCRIPTION:-}" || -z "${INPUT_TOPIC:-}" ]] ||
        die "set INPUT_SUBSCRIPTION or INPUT_TOPIC, not both"
      add input_subscription INPUT_SUBSCRIPTION
      add input_topic INPUT_TOPIC
      add alerts_topic ALERTS_TOPIC
      add id_label ID_LABEL
      add timestamp_attribute TIMESTAMP_ATTRIBUTE
      ;;
  esac

  local args=(
    dataflow flex-template run "$job_name"
    --project "$PROJECT"
    --region "$REGION"
    --template-file-gcs-location "$(template_path)"
    --staging-location "gs://$BUCKET/staging"
    --temp-location "gs://$BUCKET/temp"
  )
  local p
  for p in "${params[@]}"; do
    # One --parameters per value, with '~' as gcloud's list delimiter: values such as INPUTS contain
    # commas (see `gcloud topic escaping`).
    [[ "$p" != *"~"* ]] || die "parameter ${p%%=*}: '~' is not supported in values"
    args+=(--parameters "^~^$p")
  done
  ((streaming)) && args+=(--enable-streaming-engine)
  [[ -n "${SERVICE_ACCOUNT:-}" ]] && args+=(--service-account-email "$SERVICE_ACCOUNT")
  [[ -n "${MAX_WORKERS:-}" ]] && args+=(--max-workers "$MAX_WORKERS")
  [[ -n "${NUM_WORKERS:-}" ]] && args+=(--num-workers "$NUM_WORKERS")
  [[ -n "${WORKER_MACHINE_TYPE:-}" ]] && args+=(--worker-machine-type "$WORKER_MACHINE_TYPE")
  if [[ "$update" == --update ]]; then
    args+=(--update)
    [[ -n "${TRANSFORM_NAME_MAPPINGS:-}" ]] && args+=(--transform-name-mappings "$TRANSFORM_NAME_MAPPINGS")
  fi
  run "$GCLOUD" "${args[@]}"
}

# job_id [JOB_ID]: the given id, else the id of the one active job named $JOB_NAME.
job_id() {
  if [[ -n "${1:-}" ]]; then
    echo "$1"
    return
  fi
  require PROJECT REGION JOB_NAME
  local ids
  ids=$("$GCLOUD" dataflow jobs list --project "$PROJECT" --region "$REGION" --status active \
    --filter "name=$JOB_NAME" --format 'value(id)') || die "could not list the jobs in $PROJECT/$REGION"
  [[ -n "$ids" ]] || die "no active job named $JOB_NAME in $PROJECT/$REGION (give a JOB_ID)"
  [[ "$ids" != *$'\n'* ]] || die "several active jobs named $JOB_NAME: give one JOB_ID: $(echo "$ids" | tr '\n' ' ')"
  echo "$ids"
}

stop_job() {
  local action=$1 id
  require PROJECT REGION
  id=$(job_id "${2:-}")
  run "$GCLOUD" dataflow jobs "$action" "$id" --project "$PROJECT" --region "$REGION"
}

main() {
  local command=${1:-help}
  case "$command" in
    build-image) build_image ;;
    build-template) build_template ;;
    run-replay) launch replay ;;
    run-watch) launch watch ;;
    run-stream) launch stream ;;
    update)
      case "${2:-}" in
        stream | watch) launch "$2" --update ;;
        *) die "update needs the pipeline: update stream|watch (the job to replace is \$JOB_NAME)" ;;
      esac
      ;;
    drain | cancel) stop_job "$command" "${2:-}" ;;
    help | -h | --help) usage ;;
    *)
      usage >&2
      die "unknown command: $command"
      ;;
  esac
}

main "$@"
