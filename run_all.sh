#!/usr/bin/env bash
# Smoke reproduction of the collection on a laptop CPU: every paper's `train.py --smoke`
# (a small budget of the real method) into runs/smoke/<timestamp>/<paper>/, then a table.
#
#   bash run_all.sh              # all five papers
#   bash run_all.sh searl steve  # just these
#
# Continues past a failure; exits non-zero if any paper failed. Each paper's output is in
# runs/smoke/<timestamp>/<paper>.log. Set PYTHON to choose the interpreter.
set -u
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python}
ALL_PAPERS=(searl pb2_procgen synthetic_envs steve optim4rl)

papers=("$@")
[ ${#papers[@]} -eq 0 ] && papers=("${ALL_PAPERS[@]}")
for paper in "${papers[@]}"; do
  case " ${ALL_PAPERS[*]} " in
    *" $paper "*) ;;
    *) echo "run_all.sh: error: unknown paper '$paper'; allowed: ${ALL_PAPERS[*]}" >&2; exit 2 ;;
  esac
done

root="runs/smoke/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$root"
rows=()
failed=0
built=0
for paper in "${papers[@]}"; do
  if [ ! -f "$paper/train.py" ]; then
    rows+=("$paper|-|-|-|-|not built yet")
    continue
  fi
  built=$((built + 1))
  out="$root/$paper"
  log="$root/$paper.log"
  echo "== $paper: $PYTHON $paper/train.py --smoke --out-dir $out (log: $log)"
  start=$(date +%s)
  "$PYTHON" "$paper/train.py" --smoke --out-dir "$out" >"$log" 2>&1
  status=$?
  wall="$(( $(date +%s) - start ))s"
  if [ $status -eq 0 ] && info=$("$PYTHON" -m common.runs check "$out" 2>>"$log"); then
    IFS=$'\t' read -r env steps final _ <<<"$info"
    rows+=("$paper|$env|$steps|$final|$wall|ok")
  else
    failed=$((failed + 1))
    rows+=("$paper|-|-|-|$wall|FAILED (exit $status, see $log)")
  fi
done

echo
printf '%-15s %-22s %10s %13s %8s  %s\n' paper env env_steps final_return wall status
for row in "${rows[@]}"; do
  IFS='|' read -r paper env steps final wall status <<<"$row"
  printf '%-15s %-22s %10s %13s %8s  %s\n' "$paper" "$env" "$steps" "$final" "$wall" "$status"
done
echo
echo "$built of ${#papers[@]} papers built, $failed failed; outputs in $root/"
[ $failed -eq 0 ]
