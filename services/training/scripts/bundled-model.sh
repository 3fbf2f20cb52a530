#!/usr/bin/env bash
# Reproduce one bundled model with the project's own pipeline: import its data set into Postgres, train it as a
# foreground training job, register it, and write models/NAME.onnx + models/NAME.card.json.
#   services/training/scripts/bundled-model.sh rhythm-1lead|normal-12lead      (make model-rhythm / model-12lead)
# Needs Postgres (ECG_DATABASE_URL) and the data sets (ECG_DATA_DIR). Uses the artifact store of
# ECG_ARTIFACT_CONNECTION_STRING; when that is unset and nothing listens on 127.0.0.1:10000, a temporary Azurite
# is started for the run.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../../.." && pwd)
bin="$repo/.venv/bin"
data=${ECG_DATA_DIR:-$(dirname "$repo")/shared/data}
out=${MODELS_OUT:-$repo/models}
twelve_leads="I,II,III,aVR,aVL,aVF,V1,V2,V3,V4,V5,V6"

case "${1:-}" in
  rhythm-1lead)
    dataset=cinc2017
    recipe=(--family resnet --classes 'N,A,O,~' --normal N --unreadable '~' --leads I
            --sampling-rate 150 --window-s 30 --normalisation zscore --epochs 30 --batch-size 32 --lr 0.001 --seed 0
            --split-seed 0 --short-crops 0.25 --features beats) ;;
  normal-12lead)
    dataset=ptbxl
    recipe=(--family resnet --classes Normal,Abnormal --normal Normal --leads "$twelve_leads"
            --sampling-rate 100 --window-s 10 --normalisation minmax --epochs 30 --batch-size 32 --lr 0.001 --seed 0
            --features beats+morphology) ;;
  *) echo "usage: $0 rhythm-1lead|normal-12lead" >&2; exit 2 ;;
esac

if [ -z "${ECG_ARTIFACT_CONNECTION_STRING:-}" ] && ! (exec 3<>/dev/tcp/127.0.0.1/10000) 2>/dev/null; then
  mkdir -p "$repo/var/azurite"
  "$repo/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort 10000 --location "$repo/var/azurite" \
    --skipApiVersionCheck --disableTelemetry --silent &
  azurite_pid=$!
  trap 'kill $azurite_pid' EXIT
  for _ in $(seq 1 30); do (exec 3<>/dev/tcp/127.0.0.1/10000) 2>/dev/null && break; sleep 1; done
fi

"$bin/ecg" db upgrade
"$bin/ecg" dataset import "$data/$dataset" --dataset "$dataset"
"$bin/ecg" train --dataset "$dataset" --name "$1" "${recipe[@]}" --output "$out"
