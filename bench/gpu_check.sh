#!/usr/bin/env bash
# GPU check of the collection, for a machine with a CUDA GPU: every CUDA test, then one short
# CUDA run per paper that has a GPU path, then a table of frames/s per paper. Under 10 minutes.
#
#   bash bench/gpu_check.sh
#
# Prints the GPU's name and the torch / CUDA versions; runs `pytest -m '' -k cuda tests/` (every test
# with "cuda" in its name; `-rs` lists the skips); then each run of GPU_RUNS below into a
# temporary folder (removed at the end), each under `timeout`, and all of it under a total
# budget (GPU_CHECK_BUDGET seconds, default 570), so the whole check stays under 10 minutes.
# frames/s is the run's summary.json `env_steps / wall_seconds` (wall s: the training loop's time;
# the status adds the whole process's, with start-up and CUDA initialisation).
# Exits 1 if a test or a run failed (or ran out of time), 0 otherwise.
#
# Without a CUDA device it prints one line on stderr and exits 2, before writing anything.
# Set PYTHON to choose the interpreter.
set -u
cd "$(dirname "$0")/.." || exit 2
PYTHON=${PYTHON:-python}
BUDGET=${GPU_CHECK_BUDGET:-570}   # seconds for the tests and all runs together
TEST_LIMIT=180                    # seconds for the CUDA tests
RUN_LIMIT=180                     # seconds for each run (each takes well under 2 minutes on a GPU)
MIN_LIMIT=30                      # a step that would get less than this is not started

# One short CUDA run per paper with a GPU path: "paper|name|train.py and its arguments" (the run
# folder is added as --out-dir). A small budget of each paper's real config, so frames/s means
# what it would mean in a real run.
GPU_RUNS=(
  # SEARL-TD3, the reference config (HalfCheetah-v5, population 10 trained as one batched
  # computation on the GPU): 3 generations of 10 000 env steps, 2 of them with ~5 000 updates each
  "searl|searl-td3-halfcheetah|searl/train.py --config_file searl/configs/searl_td3.yaml --device cuda --total-steps 30000 --no-plots"
  # PB2 tuning PPO/DrAC on Procgen bigfish (IMPALA CNN, 64 envs x 256 steps per update): 2 agents,
  # 2 rounds of one PPO update each, one exploit/explore step between them
  "pb2_procgen|pb2_procgen-bigfish|pb2_procgen/train.py --env bigfish --device cuda --batchsize 2 --max_budget 32768 --t_ready 16384 --set test_episodes=1 --no-plots"
  # STEVE on HalfCheetah-v5 at the laptop sizes (ensembles 4/4/4, H = 3): 1000 random frames,
  # 100 world-model pretraining updates, then 2000 frames of one value + one world-model update each
  "steve|steve-halfcheetah|steve/train.py experiments/laptop/halfcheetah/steve0.json --device cuda --frames 3000 --eval-every 3000 --set model_config.pretrain_n=100 --no-plots"
  # Optim4RL meta-training at the reference's grid_meta scale (6 gridworlds x 512 agents, K = 4):
  # 4 meta-iterations (204 800 steps per task); env steps counted over all six tasks
  "optim4rl|optim4rl-grid-meta|optim4rl/main.py --config_file grid_meta --config_idx 1 --device cuda --set env.train_steps=204800 --set display_interval=1"
)
# Not on the GPU by design (no line): synthetic_envs (small inner CPU agents; --device is only
# validated). optim4rl's PPO and RNNIdentity runs stay on the CPU.
NOT_ON_GPU="synthetic_envs (CPU by design)"

# -- CUDA or nothing: one line and exit 2, before anything is written ---------------------------
probe=$("$PYTHON" -c '
import warnings
import torch
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    ok = torch.cuda.is_available()
why = "; torch says: " + str(caught[0].message).splitlines()[0] if caught and not ok else ""
name = torch.cuda.get_device_name(0) if ok else "-"
count = torch.cuda.device_count() if ok else 0
print(int(ok), torch.__version__, torch.version.cuda or "none", name, count, why, sep="\t")
' 2>/dev/null)
if [ -z "$probe" ]; then
  echo "bench/gpu_check.sh: error: '$PYTHON' cannot import torch; activate the collection's environment or set PYTHON" >&2
  exit 2
fi
IFS=$'\t' read -r cuda_ok torch_version cuda_build gpu_name gpu_count why <<<"$probe"
if [ "$cuda_ok" != 1 ]; then
  echo "bench/gpu_check.sh: error: torch sees no CUDA device (torch $torch_version, CUDA build: $cuda_build$why); run it on a GPU machine" >&2
  exit 2
fi

tmp=$(mktemp -d -t gpu_check.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
deadline=$((SECONDS + BUDGET))

# the seconds a step may take: its own limit, or what is left of the total budget if less
limit_for() {
  local left=$((deadline - SECONDS))
  if [ "$left" -lt "$1" ]; then echo "$left"; else echo "$1"; fi
}

echo "GPU: $gpu_name ($gpu_count CUDA device(s) visible); torch $torch_version, CUDA $cuda_build"
echo

failed=0
limit=$(limit_for $TEST_LIMIT)
echo "== CUDA tests: $PYTHON -m pytest -q -rs -m '' -k cuda tests/ (limit ${limit}s)"
timeout -k 10 "$limit" "$PYTHON" -m pytest -q -rs -p no:cacheprovider -m '' -k cuda tests/
test_status=$?
case $test_status in
  0) tests_result="passed" ;;
  124|137) tests_result="TIMEOUT after ${limit}s"; failed=$((failed + 1)) ;;
  *) tests_result="FAILED (pytest exit $test_status)"; failed=$((failed + 1)) ;;
esac
echo

rows=()
for entry in "${GPU_RUNS[@]}"; do
  IFS='|' read -r paper name command <<<"$entry"
  out="$tmp/$name"
  log="$tmp/$name.log"
  shown="$PYTHON $command --out-dir \$tmp/$name"
  limit=$(limit_for $RUN_LIMIT)
  if [ "$limit" -lt "$MIN_LIMIT" ]; then
    failed=$((failed + 1))
    rows+=("$paper|$shown|-|-|-|NOT RUN: the ${BUDGET}s budget is spent")
    continue
  fi
  echo "== $name: $shown (limit ${limit}s)"
  start=$SECONDS
  # shellcheck disable=SC2086  # $command holds several words on purpose
  timeout -k 10 "$limit" "$PYTHON" $command --out-dir "$out" >"$log" 2>&1
  status=$?
  took=$((SECONDS - start))
  if [ $status -eq 0 ] && info=$("$PYTHON" -c '
import json, sys
s = json.load(open(sys.argv[1]))
steps, wall = int(s["env_steps"]), float(s["wall_seconds"])
print(steps, f"{wall:.1f}", f"{steps / wall:.0f}" if wall > 0 else "-", sep="\t")
' "$out/summary.json" 2>>"$log"); then
    IFS=$'\t' read -r steps wall fps <<<"$info"
    rows+=("$paper|$shown|$steps|$wall|$fps|ok (${took}s with start-up)")
    echo "   $steps env steps in ${wall}s: $fps frames/s"
  else
    failed=$((failed + 1))
    case $status in
      124|137) why="TIMEOUT after ${limit}s" ;;
      0) why="FAILED: no usable summary.json" ;;
      *) why="FAILED (exit $status)" ;;
    esac
    rows+=("$paper|$shown|-|-|-|$why")
    echo "   $why; the end of its output:"
    tail -c 4000 "$log" | tr '\r' '\n' | grep -v '^$' | tail -n 20 | awk '{print "   | " $0}'
  fi
done

echo
echo "GPU: $gpu_name; torch $torch_version, CUDA $cuda_build; CUDA tests: $tests_result"
echo
echo "| paper | command | env steps | wall s | frames/s | status |"
echo "|---|---|---|---|---|---|"
for row in "${rows[@]}"; do
  IFS='|' read -r paper shown steps wall fps status <<<"$row"
  echo "| $paper | \`$shown\` | $steps | $wall | $fps | $status |"
done
echo
echo "No GPU line (yet): $NOT_ON_GPU."
echo "$failed failed (tests and ${#rows[@]} runs), $((SECONDS))s in all"
[ $failed -eq 0 ]
