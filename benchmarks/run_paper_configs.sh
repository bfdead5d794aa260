#!/usr/bin/env bash
# Re-run the paper-claim configs (configs/paper/*.yaml) into results/paper/<name>/.
# Models are cached (PRIVLAB_CACHE, default .privlab_cache/) and shared between configs,
# and each run resumes where it stopped. Every invocation of a config appends its wall time
# to benchmarks/results/paper_runs.jsonl (with "resumed": whether state/ already held
# finished units, so a resumed run's time is only the rest). A failing config does not stop
# the ones after it; the script exits 1 if any failed. A config whose report.json is newer
# than its YAML is done and skipped (its report keeps the wall times of the run that made
# it); PRIVLAB_RERUN=1 runs it again. An interrupted config (Ctrl-C) stops the whole queue.
# Several queues may run at once (on 2 cores, two: most configs keep one core busy): each
# config holds a lock (results/paper/.locks/NAME.lock) while it runs, and a queue skips a
# config another queue holds; the wall-time log records the configs found running beside it
# (at its start and end) and OMP_NUM_THREADS.
# Usage: benchmarks/run_paper_configs.sh [names...]
#        benchmarks/run_paper_configs.sh --queue FILE   (names from FILE, one per line, '#'
#        comments; the file is read again before each config, so it can be edited, reordered
#        or extended while the queue runs)
set -euo pipefail
cd "$(dirname "$0")/.."
export PRIVLAB_CACHE="${PRIVLAB_CACHE:-$PWD/.privlab_cache}"
PRIVLAB="${PRIVLAB:-.venv/bin/privlab}"
queue=""
if [ "${1:-}" = "--queue" ]; then
  queue="${2:?--queue needs a file}"
  shift 2
fi
names=("$@")
if [ -z "$queue" ] && [ ${#names[@]} -eq 0 ]; then
  names=(song2019_table2_3_defences song2019_sec7_countermeasures song2019_table6_eps
         song2019_table5_adv_ratio song2019_fig3_capacity song2019_table7_per_class
         song2019_fig5_unknown_eps song2019_table3_mnist5k
         song2019_table7_mnist5k song2019_fig2_sensitivity
         song2019_table8_verified_digits song2019_table10_small_train song2019_appE_noise_layer
         lira_rmia_robust_digits dp_audit_digits
         song2019_table9_verified_mnist5k atat2026_defence_grid
         atat2026_matched_accuracy balle2022_informed_adversary maciazek_table1_mnist5k
         maciazek_table1_digits maciazek_one_vs_rest maciazek_fig3a_shadows
         maciazek_fig3b_sigma_init maciazek_fig4_dp maciazek_fig4_dp_n40
         liu2025_fig2_fig4_feature_matching liu2025_fig3_utility_matched
         liu2025_batch_size_sweep
         # the papers' own data at full size (`make paper-data` first; hours each)
         song2019_table3_fmnist song2019_fig5_fmnist song2019_table7_fmnist
         song2019_table6_fmnist song2019_table5_fmnist song2019_table11_fmnist
         song2019_table9_fmnist song2019_fig3_fmnist song2019_fig4_fmnist
         balle2022_informed_mnist maciazek_table1_mnist maciazek_fig4_dp_mnist
         atat2026_defence_grid_mnist
         liu2025_fig2_fig4_feature_matching_mnist liu2025_fig2_fig4_feature_matching_fashion_mnist
         liu2025_batch_size_sweep_mnist liu2025_batch_size_sweep_fashion_mnist
         liu2025_fig3_utility_matched_mnist liu2025_fig3_utility_matched_fashion_mnist)
fi
LOG=benchmarks/results/paper_runs.jsonl
failed=0

done_already() {  # the config's report is newer than its YAML (and no re-run is asked for)
  [ -z "${PRIVLAB_RERUN:-}" ] && [ "results/paper/$1/report.json" -nt "configs/paper/$1.yaml" ]
}

LOCKS=results/paper/.locks
mkdir -p "$LOCKS"

running_beside() {  # the configs other queues hold now, one per line
  local lock
  for lock in "$LOCKS"/*.lock; do
    [ -e "$lock" ] && [ "$lock" != "$LOCKS/$1.lock" ] || continue
    flock -n "$lock" true || basename "$lock" .lock
  done
}

run_one() {  # returns 2 without running when another queue holds the config
  local name=$1 resumed=false status=0 start seconds lock beside
  exec {lock}>"$LOCKS/$name.lock"
  flock -n "$lock" || { exec {lock}>&-; echo "== $name: running in another queue"; return 2; }
  beside=$(running_beside "$name")
  echo "== $name $(date +%T)"
  [ -d "results/paper/$name/state" ] && [ -n "$(ls -A "results/paper/$name/state")" ] && resumed=true
  start=$(date +%s)
  "$PRIVLAB" run "configs/paper/$name.yaml" --out "results/paper/$name" || status=$?
  seconds=$(( $(date +%s) - start ))
  exec {lock}>&-
  beside=$(printf '%s\n' "$beside" "$(running_beside "$name")" | sort -u | { grep -v '^$' || true; } \
    | sed 's/.*/"&"/' | paste -sd, - | sed 's/,/, /g')
  echo "$name: $seconds s (exit $status)"
  printf '{"config": "%s", "seconds": %d, "exit": %d, "resumed": %s, "finished": "%s", "commit": "%s", "nproc": %d, "threads": "%s", "beside": [%s]}\n' \
    "$name" "$seconds" "$status" "$resumed" "$(date -u +%FT%TZ)" \
    "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" "$(nproc --all)" \
    "${OMP_NUM_THREADS:-default}" "$beside" >> "$LOG"
  [ "$status" -ne 130 ] || { echo "interrupted: the queue stops here"; exit 130; }
  [ "$status" -eq 0 ] || failed=1
}

next_in_queue() {  # the first name in the queue file neither done nor tried in this run
  local name
  while read -r name; do
    case "$name" in '' | '#'*) continue ;; esac
    case " $tried " in *" $name "*) continue ;; esac
    done_already "$name" && continue
    echo "$name"
    return
  done < "$queue"
}

if [ -n "$queue" ]; then
  tried=""
  while next=$(next_in_queue) && [ -n "$next" ]; do
    tried="$tried $next"
    run_one "$next" || true
  done
else
  for name in "${names[@]}"; do
    if done_already "$name"; then
      echo "== $name: done (results/paper/$name/report.json is newer than its config)"
      continue
    fi
    run_one "$name" || true
  done
fi
exit "$failed"
