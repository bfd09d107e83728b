#!/usr/bin/env bash
# Submit a repo-ray training run to an existing Ray cluster (cluster/raycluster.yaml) with
# `ray job submit`. The dashboard must be reachable, e.g.
#   kubectl -n repo-ray port-forward svc/repo-ray-head-svc 8265:8265
#
#   cluster/submit.sh [--config FILE] [--run-dir DIR_OR_URI] [--working-dir DIR] [--wait] [-- ARGS...]
#
# Defaults: the image's configs/paper.yaml, run dir /mnt/runs/paper (the PVC), --resume (a
# resubmitted run continues), 1 GPU and 8 CPUs for the driver as in cluster/rayjob.yaml.
# --working-dir uploads a local checkout that then replaces the image's code on every node;
# --config is then relative to it. Extra ARGS go to `repo-ray train`.
# Environment: RAY_ADDRESS (default http://127.0.0.1:8265), ENTRYPOINT_NUM_GPUS, ENTRYPOINT_NUM_CPUS.
# The judge API key is never passed here: the judge pods read it from their Secret.
set -euo pipefail

config=/opt/repo-ray/configs/paper.yaml
run_dir=/mnt/runs/paper
working_dir=
wait=0
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --config) config=$2; shift 2 ;;
    --run-dir) run_dir=$2; shift 2 ;;
    --working-dir) working_dir=$2; shift 2 ;;
    --wait) wait=1; shift ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "submit.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

# A relative run dir would land in the job's temporary copy of the working dir and be lost.
if [[ "$run_dir" != /* && "$run_dir" != *://* ]]; then
  echo "submit.sh: --run-dir '$run_dir' must be an absolute path on shared storage or a URI (s3://...)" >&2
  exit 2
fi

args=(job submit --address "${RAY_ADDRESS:-http://127.0.0.1:8265}"
      --entrypoint-num-gpus "${ENTRYPOINT_NUM_GPUS:-1}" --entrypoint-num-cpus "${ENTRYPOINT_NUM_CPUS:-8}")
[[ -n "$working_dir" ]] && args+=(--working-dir "$working_dir")
[[ $wait -eq 0 ]] && args+=(--no-wait)
args+=(-- repo-ray train --config "$config" --run-dir "$run_dir" --resume --no-progress "${extra[@]}")
exec ray "${args[@]}"
