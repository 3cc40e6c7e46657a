#!/usr/bin/env bash
# Move the retraining schedule to a newly compiled pipeline (new images, new DAG): create the new
# schedule first, then delete the older ones of the same name, so a failure never leaves none.
# A Vertex AI schedule keeps the pipeline spec it was created with; this is how a new image reaches it.
#
#   RETRAIN_CRON='0 3 * * 1' infra/roll_schedule.sh pipeline.yaml
#
# Environment: RETRAIN_CRON (required, 5-field cron, optionally "TZ=Europe/Paris 0 3 * * 1"),
# SCHEDULE_NAME (default mmoe-ranker-retrain), and what `ranker schedule` reads: GOOGLE_CLOUD_PROJECT,
# GOOGLE_CLOUD_REGION, RANKER_PIPELINE_ROOT, RANKER_SERVICE_ACCOUNT, RANKER_REGISTRY, ...
set -euo pipefail

template=${1:?usage: infra/roll_schedule.sh PIPELINE_YAML}
cron=${RETRAIN_CRON:?set RETRAIN_CRON, e.g. '0 3 * * 1'}
name=${SCHEDULE_NAME:-mmoe-ranker-retrain}

previous=$(ranker schedule list | awk -F'\t' -v name="$name" '$2 == name { print $1 }')
ranker schedule create --template "$template" --cron "$cron" --name "$name"
for schedule in $previous; do
  ranker schedule delete "$schedule"
done
