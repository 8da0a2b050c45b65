#!/usr/bin/env bash
# Build the dogbreed images, tag them and push them to Amazon ECR (or any registry).
# stdout: the pushed image URIs, one per line; progress goes to stderr. Never prints credentials:
# the ECR password goes straight from the AWS CLI into `docker login --password-stdin`.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: scripts/build_and_push.sh [options] [train|serve|serve-slim|all]

Builds the images (default: all three), tags them and pushes them to Amazon ECR as
<account>.dkr.ecr.<region>.amazonaws.com/<prefix><image>:<tag>. The images, and where to pass
their URIs:
  train        training                                  dogbreed train --image URI
  serve        model server on torch, for GPU endpoints  dogbreed deploy --serve-image URI
  serve-slim   model server on ONNX Runtime, no torch,   dogbreed deploy --slim-image URI
               for CPU and serverless endpoints (serves the model.onnx that training jobs write)
Creates the ECR repositories when missing and logs docker in with `aws ecr get-login-password`.
Prints the pushed image URIs, one per line, in the order above.

Where to push:
  --region REGION       AWS region (default: AWS_REGION, AWS_DEFAULT_REGION, then
                        `aws configure get region`)
  --account ID          AWS account id (default: from `aws sts get-caller-identity`)
  --profile NAME        AWS CLI profile (default: AWS_PROFILE or the CLI's default)
  --endpoint-url URL    AWS API endpoint for the STS and ECR calls (default: AWS_ENDPOINT_URL);
                        for a local AWS stand-in such as moto
  --ecr-host HOST       log in and push to HOST instead of <account>.dkr.ecr.<region>.amazonaws.com
                        (the repositories are still created in ECR)
  --registry REGISTRY   push to any other registry instead (HOST[:PORT][/PATH]); makes no AWS
                        calls and does not log in: run `docker login` first if it needs one

What to push:
  --tag TAG             image tag (default: latest)
  --prefix PREFIX       image and repository name prefix (default: dogbreed-)
  --no-build            push the images already built locally as <prefix>train:<tag> etc.
  --base-image IMAGE    passed to scripts/build_images.sh (official | standin | auto | an image;
                        default auto; serve-slim gets python:3.11-slim or its stand-in)
  --bake-weights 0|1    passed to scripts/build_images.sh

  -h, --help            this help

Needs docker, and for ECR the AWS CLI (v2, or v1 >= 1.17.10) with credentials allowed to call
sts:GetCallerIdentity, ecr:DescribeRepositories, ecr:CreateRepository,
ecr:GetAuthorizationToken and the ecr push actions.
USAGE
}

log() { printf '[build-and-push] %s\n' "$*" >&2; }
die() { printf '[build-and-push] error: %s\n' "$*" >&2; exit 1; }

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
which=all tag=${TAG:-latest} prefix=dogbreed- build=1 registry="" ecr_host=""
region="" account="" profile=${AWS_PROFILE:-} endpoint=${AWS_ENDPOINT_URL:-}
build_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --region) region=${2:?--region needs a value}; shift ;;
    --account) account=${2:?--account needs a value}; shift ;;
    --profile) profile=${2:?--profile needs a value}; shift ;;
    --endpoint-url) endpoint=${2:?--endpoint-url needs a value}; shift ;;
    --ecr-host) ecr_host=${2:?--ecr-host needs a value}; shift ;;
    --registry) registry=${2:?--registry needs a value}; shift ;;
    --tag) tag=${2:?--tag needs a value}; shift ;;
    --prefix) prefix=${2?--prefix needs a value}; shift ;;
    --no-build) build=0 ;;
    --base-image | --bake-weights) build_args+=("$1" "${2:?$1 needs a value}"); shift ;;
    train | serve | serve-slim | all) which=$1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done
[[ $which == all ]] && roles=(train serve serve-slim) || roles=("$which")
[[ $tag =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "invalid tag '$tag'"
registry=${registry%/}

command -v docker >/dev/null || die "docker is not installed (https://docs.docker.com/engine/install/)"
docker info >/dev/null 2>&1 || die "cannot reach a Docker engine (is dockerd running? can you use its socket?)"
if [[ -z $registry ]]; then
  command -v aws >/dev/null \
    || die "the AWS CLI (aws) is not installed: https://aws.amazon.com/cli/ (or push elsewhere with --registry)"
fi

# 1. Where they go (before building, so missing settings fail fast).
aws_cli() {
  aws ${profile:+--profile "$profile"} ${endpoint:+--endpoint-url "$endpoint"} --region "$region" "$@"
}
if [[ -n $registry ]]; then
  target=$registry
else
  region=${region:-${AWS_REGION:-${AWS_DEFAULT_REGION:-}}}
  if [[ -z $region ]]; then
    region=$(aws ${profile:+--profile "$profile"} configure get region 2>/dev/null || true)
  fi
  [[ -n $region ]] || die "no AWS region: pass --region or set one with 'aws configure'"
  if [[ -z $account ]]; then
    # stdout and stderr together: on failure the CLI's own reason is shown (it holds no secrets).
    if ! out=$(aws_cli sts get-caller-identity --query Account --output text 2>&1); then
      die "cannot find the AWS account: no usable AWS credentials? (aws sts get-caller-identity: $(tail -n 3 <<<"$out"))"
    fi
    account=$(tail -n 1 <<<"$out")
  fi
  [[ $account =~ ^[0-9]{12}$ ]] || die "AWS account id must be 12 digits, got '$account'"
  suffix=amazonaws.com
  [[ $region == cn-* ]] && suffix=amazonaws.com.cn
  target=${ecr_host:-$account.dkr.ecr.$region.$suffix}
  log "ECR registry $account.dkr.ecr.$region.$suffix${ecr_host:+ (pushing to $ecr_host)}"
fi

# 2. Images.
local_images=()
for role in "${roles[@]}"; do local_images+=("${prefix}${role}:${tag}"); done
if [[ $build == 1 ]]; then
  "$repo_root/scripts/build_images.sh" --tag "$tag" --prefix "$prefix" "${build_args[@]}" "$which" >/dev/null
else
  for image in "${local_images[@]}"; do
    docker image inspect "$image" >/dev/null 2>&1 || die "no local image $image (drop --no-build to build it)"
  done
fi

# 3. ECR repositories and login.
if [[ -z $registry ]]; then
  for role in "${roles[@]}"; do
    repo="${prefix}${role}"
    if err=$(aws_cli ecr describe-repositories --repository-names "$repo" 2>&1 >/dev/null); then
      log "repository $repo exists"
    elif [[ $err == *RepositoryNotFoundException* ]]; then
      log "creating repository $repo"
      aws_cli ecr create-repository --repository-name "$repo" \
        --image-scanning-configuration scanOnPush=true >/dev/null \
        || die "cannot create ECR repository $repo (output above)"
    else
      die "cannot describe ECR repository $repo: $err"
    fi
  done

  log "logging docker in to $target"
  aws_cli ecr get-login-password | docker login --username AWS --password-stdin "$target" >&2 \
    || die "docker login to $target failed (aws ecr get-login-password or docker login above)"
fi

# 4. Tag and push.
uris=()
for role in "${roles[@]}"; do
  uri="$target/${prefix}${role}:${tag}"
  docker tag "${prefix}${role}:${tag}" "$uri"
  log "pushing $uri"
  docker push "$uri" >&2 || die "pushing $uri failed (docker output above)"
  uris+=("$uri")
done
log "pushed (stdout: the URIs alone):"
for i in "${!roles[@]}"; do
  case "${roles[$i]}" in
    train) use="dogbreed train --image" ;;
    serve) use="dogbreed deploy --serve-image (GPU instances)" ;;
    serve-slim) use="dogbreed deploy --slim-image (CPU instances, serverless)" ;;
  esac
  log "  ${uris[$i]}  ->  $use"
done
printf '%s\n' "${uris[@]}"
