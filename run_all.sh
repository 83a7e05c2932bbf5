#!/usr/bin/env bash
# Smoke reproduction of the collection on a laptop CPU: every paper's `train.py --smoke`
# (a small budget of the real method) into runs/smoke/<timestamp>/<run>/, then a table.
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

# Smoke runs: "paper|name|extra args|then|check". A paper may have several (pb2_procgen: the toy
# and a tiny Procgen run); each paper's --smoke preset is a small budget of the real method.
# "then" is an optional second script run after train.py succeeds ({out}: the run folder);
# "check" is the run folder whose summary goes in the table (default {out}).
SMOKE_RUNS=(
  "searl|searl|"
  "pb2_procgen|pb2_procgen-toy|--env toy"
  "pb2_procgen|pb2_procgen-bigfish|--env bigfish"
  "synthetic_envs|synthetic_envs-cliff-rn|--kind rn --env cliff --mode 2 --iterations 60 --workers 2 --backend process|synthetic_envs/evaluate.py {out} --workers 2 --backend process"
  "steve|steve-pendulum|experiments/goodruns/pendulum/steve0.json|steve/toy_demo.py --trials 3 --out-dir {out}/toy"
  "optim4rl|optim4rl-catch|--config_file catch_meta --config_idx 1|optim4rl/train.py --smoke --config_file catch_lopt --config_idx 1 --param-load-path {out}/param.pt --out-dir {out}/lopt|{out}/lopt"
)

root="runs/smoke/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$root"
rows=()
failed=0
built=0
for entry in "${SMOKE_RUNS[@]}"; do
  IFS='|' read -r paper name extra then check <<<"$entry"
  case " ${papers[*]} " in *" $paper "*) ;; *) continue ;; esac
  if [ ! -f "$paper/train.py" ]; then
    rows+=("$name|-|-|-|-|not built yet")
    continue
  fi
  built=$((built + 1))
  out="$root/$name"
  log="$root/$name.log"
  # shellcheck disable=SC2086  # $extra holds several words on purpose
  echo "== $name: $PYTHON $paper/train.py --smoke $extra --out-dir $out (log: $log)"
  start=$(date +%s)
  "$PYTHON" "$paper/train.py" --smoke $extra --out-dir "$out" >"$log" 2>&1
  status=$?
  if [ $status -eq 0 ] && [ -n "$then" ]; then
    echo "   then: $PYTHON ${then//\{out\}/$out}"
    # shellcheck disable=SC2086
    "$PYTHON" ${then//\{out\}/$out} >>"$log" 2>&1
    status=$?
  fi
  wall="$(( $(date +%s) - start ))s"
  check="${check//\{out\}/$out}"
  if [ $status -eq 0 ] && info=$("$PYTHON" -m common.runs check "${check:-$out}" 2>>"$log"); then
    IFS=$'\t' read -r env steps final _ <<<"$info"
    rows+=("$name|$env|$steps|$final|$wall|ok")
  else
    failed=$((failed + 1))
    rows+=("$name|-|-|-|$wall|FAILED (exit $status, see $log)")
  fi
done

echo
printf '%-24s %-22s %10s %13s %8s  %s\n' run env env_steps final_return wall status
for row in "${rows[@]}"; do
  IFS='|' read -r name env steps final wall status <<<"$row"
  printf '%-24s %-22s %10s %13s %8s  %s\n' "$name" "$env" "$steps" "$final" "$wall" "$status"
done
echo
echo "$built smoke runs of ${#rows[@]} ran, $failed failed; outputs in $root/"
[ $failed -eq 0 ]
