#!/usr/bin/env bash
# Re-run the paper-claim configs (configs/paper/*.yaml) into results/paper/<name>/.
# Models are cached (PRIVLAB_CACHE, default .privlab_cache/) and shared between configs,
# and each run resumes where it stopped. Every invocation of a config appends its wall time
# to benchmarks/results/paper_runs.jsonl (with "resumed": whether state/ already held
# finished units, so a resumed run's time is only the rest). A failing config does not stop
# the ones after it; the script exits 1 if any failed. A config whose report.json is newer
# than its YAML is done and skipped (its report keeps the wall times of the run that made
# it); PRIVLAB_RERUN=1 runs it again.
# Usage: benchmarks/run_paper_configs.sh [names...]
set -euo pipefail
cd "$(dirname "$0")/.."
export PRIVLAB_CACHE="${PRIVLAB_CACHE:-$PWD/.privlab_cache}"
PRIVLAB="${PRIVLAB:-.venv/bin/privlab}"
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
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
for name in "${names[@]}"; do
  report="results/paper/$name/report.json"
  if [ -z "${PRIVLAB_RERUN:-}" ] && [ "$report" -nt "configs/paper/$name.yaml" ]; then
    echo "== $name: done ($report is newer than its config)"
    continue
  fi
  echo "== $name $(date +%T)"
  resumed=false
  [ -d "results/paper/$name/state" ] && [ -n "$(ls -A "results/paper/$name/state")" ] && resumed=true
  start=$(date +%s)
  status=0
  "$PRIVLAB" run "configs/paper/$name.yaml" --out "results/paper/$name" || status=$?
  seconds=$(( $(date +%s) - start ))
  echo "$name: $seconds s (exit $status)"
  printf '{"config": "%s", "seconds": %d, "exit": %d, "resumed": %s, "finished": "%s", "commit": "%s", "nproc": %d}\n' \
    "$name" "$seconds" "$status" "$resumed" "$(date -u +%FT%TZ)" \
    "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" "$(nproc)" >> "$LOG"
  [ "$status" -eq 0 ] || failed=1
done
exit "$failed"
