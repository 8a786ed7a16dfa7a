#!/usr/bin/env bash
# Submit a sharded bound and its checks: bound array → merge → check array → merged check, each afterok the last.
# Every parameter is an environment variable (see the .sbatch files); they are passed to the jobs with --export=ALL.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
SHARDS=${SHARDS:-4}
export SHARDS
last=$((SHARDS - 1))

bound=$(sbatch --parsable --export=ALL --array=0-$last "$here/bound-array.sbatch")
merge=$(sbatch --parsable --export=ALL --dependency=afterok:$bound "$here/merge.sbatch")
checks=$(sbatch --parsable --export=ALL --array=0-$last --dependency=afterok:$merge "$here/check-array.sbatch")
verdict=$(sbatch --parsable --export=ALL --dependency=afterok:$checks "$here/check-merged.sbatch")
echo "submitted: bound array $bound (shards 0-$last), merge $merge, check array $checks, merged check $verdict"
echo "$bound $merge $checks $verdict"
