#!/usr/bin/env bash
# Wall time of n = 1, 2, 4 shards of one brute-force bound run in parallel on this machine, against the
# unsharded run, with the merge and its b₀ (spec/shards.md). Release build; one run each.
set -euo pipefail
OUT=${1:-shard-scaling-out}
SEQUENCES=${SEQUENCES:-65536}
STRATEGY=${STRATEGY:-brute-force}
repo=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT"; cd "$OUT"
dotnet publish "$repo/src/Verifier.Cli" -c Release -o bin --nologo -v quiet >/dev/null
V=$PWD/bin/verifier
[ -d model ] || "$V" train-model --task max-of-k --out model >/dev/null 2>&1
# ALL=1: the whole max-of-k space of vocab 32, k 4 (1 048 576 sequences) as a descriptor instead of SEQUENCES samples.
if [ "${ALL:-0}" = 1 ]; then [ -f data.jsonl ] || "$V" make-data --task max-of-k --vocab 32 --k 4 --all --out data.jsonl >/dev/null
else [ -f data.jsonl ] || "$V" make-data --task max-of-k --count "$SEQUENCES" --seed 7 --out data.jsonl >/dev/null; fi
now() { date +%s.%N; }
t=$(now); "$V" bound --model model --data data.jsonl --strategy "$STRATEGY" --out whole.json --no-true-loss --no-record --force 2>/dev/null | head -1
whole=$(awk -v a="$t" -v b="$(now)" 'BEGIN { print b - a }')
echo "unsharded: ${whole} s"
for n in 1 2 4; do
  rm -rf "s$n"; mkdir "s$n"
  t=$(now)
  seq 0 $((n - 1)) | xargs -P "$n" -I{} "$V" bound --model model --data data.jsonl --strategy "$STRATEGY" --shard {}/$n \
    --out "s$n/shard-{}.json" --no-true-loss --force >/dev/null 2>&1
  "$V" merge s$n/shard-*.json --out "s$n/merged.json" --no-record --force 2>/dev/null | head -1
  wall=$(awk -v a="$t" -v b="$(now)" 'BEGIN { print b - a }')
  awk -v n="$n" -v w="$wall" -v u="$whole" 'BEGIN { printf "n = %d shards in parallel (+ merge): %.1f s, %.2f× the unsharded run\n", n, w, w / u }'
done
