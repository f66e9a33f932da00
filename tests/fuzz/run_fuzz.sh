#!/usr/bin/env bash
# run_fuzz.sh BIN WORKDIR SEEDS DICT SECONDS [libFuzzer flags...] — one fuzz.* ctest: fuzz BIN for
# $UKRUN_FUZZ_SECONDS (else SECONDS) from the corpus WORKDIR/corpus (kept between runs) and the seeds, with the
# dictionary DICT when not empty. A crash leaves its input in WORKDIR/artifacts/ and fails the test.
set -euo pipefail
bin=$1 work=$2 seeds=$3 dict=$4 secs=${UKRUN_FUZZ_SECONDS:-$5}
shift 5
mkdir -p "$work/corpus" "$work/artifacts"
args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
      -artifact_prefix="$work/artifacts/")
[ -n "$dict" ] && args+=(-dict="$dict")
echo "run_fuzz: $(basename "$bin") for ${secs}s, corpus $work/corpus"
exec "$bin" "${args[@]}" "$@" "$work/corpus" "$seeds"
