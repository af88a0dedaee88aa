#!/usr/bin/env bash
# Regenerates results/ with the toolkit's own commands (`make results` runs it; see results/README.md).
#   bash results/reproduce.sh [figure2] [table3] [specificity] [search] [report]   (default: all of them)
# RESULTS_DIR (default: results/) is where the files go; ARCHS narrows the targets; REDUCED=1 runs a small
# version of every part (ResNet-20 only, two targets, a short search) for the end-to-end test. The run starts
# from an empty results cache of its own, so nothing computed before it is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${RESULTS_DIR:-results}
PARTS=${*:-figure2 table3 specificity search report}
ARCHS=${ARCHS:-"eyeriss simba_like simple_weight_stationary simple_output_stationary"}
CACHE=$(mktemp -d)/results.sqlite
trap 'rm -rf "$(dirname "$CACHE")"' EXIT
export COSTMODEL_CACHE=$CACHE
PY=${PYTHON:-$(dirname "$(command -v costmodel)")/python}
if [ "${REDUCED:-0}" = 1 ]; then
    ARCHS="eyeriss simba_like"
    SEARCH_FLAGS="--steps 6 --warmup-steps 2 --train-epochs 1 --finetune-epochs 1"
else
    SEARCH_FLAGS=""
fi
start=$(date +%s)
say() { echo "== $* ($(( $(date +%s) - start )) s)"; }

for part in $PARTS; do case $part in
figure2)
    # HALOC Figure 2 on every target: latency over a dense (r1, r2) grid at step 8
    for arch in $ARCHS; do
        say "figure 2 on $arch"
        if [ "${REDUCED:-0}" = 1 ]; then
            costmodel heatmap --arch "$arch" --model resnet20 --layer layer3.0.conv2 --step 16 --out "$OUT/figure2/resnet20"
            continue
        fi
        for layer in layer3.0.conv2 layer4.0.conv2; do
            costmodel heatmap --arch "$arch" --model resnet18 --layer "$layer" --step 8 --out "$OUT/figure2/resnet18"
        done
        costmodel heatmap --arch "$arch" --model resnet20 --layer layer3.0.conv2 --step 8 --out "$OUT/figure2/resnet20"
    done ;;
table3)
    # Table 3, Eyeriss rows: the original networks and both at the paper's FLOPs (rank step 8, r1 = r2)
    say "table 3"
    if [ "${REDUCED:-0}" = 1 ]; then MODELS="resnet20:20M"; else MODELS="resnet18:615.62M mobilenetv2:229.13M"; fi
    for pair in $MODELS; do
        model=${pair%%:*}; flops=${pair#*:}
        costmodel build --arch eyeriss --model "$model" --step 8 --step-64 8 --step-32 8 --out "$OUT/table3/$model-eyeriss"
        costmodel isoflops --lut "$OUT/table3/$model-eyeriss/lut.csv" --model "$model" --flops "$flops" --out "$OUT/table3"
    done ;;
specificity)
    # the same budget (0.4: the simple designs cannot go below 0.32 on digits-cnn) searched on every target;
    # every target's choice priced on every target
    targets=(); digits_luts=(); digits=(); resnet_luts=(); resnet=()
    for arch in $ARCHS; do
        say "specificity on $arch"
        costmodel search --arch "$arch" --model digits-cnn --data digits --budget 0.4 --method haloc --seed 0 \
            $SEARCH_FLAGS --out "$OUT/specificity/digits-$arch"
        # exit 1 = some candidates have no legal mapping on this target (their LUT rows are left out)
        costmodel build --arch "$arch" --model digits-cnn --out "$OUT/specificity/digits-cnn-$arch" || [ $? = 1 ]
        costmodel build --arch "$arch" --model resnet20 --step 8 --step-64 8 --step-32 8 \
            --out "$OUT/specificity/resnet20-$arch" || [ $? = 1 ]
        # CIFAR-10 ResNet-20 at HALOC's -72.2 % FLOPs: no CIFAR data here, so the LUT-only choice
        costmodel isoflops --lut "$OUT/specificity/resnet20-$arch/lut.csv" --model resnet20 --flops 11.46M \
            --out "$OUT/specificity/resnet20-$arch"
        targets+=("$arch")
        digits+=("$OUT/specificity/digits-$arch/report.json"); digits_luts+=("$OUT/specificity/digits-cnn-$arch/lut.csv")
        resnet+=("$OUT/specificity/resnet20-$arch/resnet20-11.46M.json")
        resnet_luts+=("$OUT/specificity/resnet20-$arch/lut.csv")
    done
    costmodel crossprice --lut "${digits_luts[@]}" --target "${targets[@]}" \
        --choice "${digits[@]}" --label "${targets[@]}" --budget 0.4 --out "$OUT/specificity/digits-cnn-crossprice.md"
    costmodel crossprice --lut "${resnet_luts[@]}" --target "${targets[@]}" \
        --choice "${resnet[@]}" --label "${targets[@]}" --out "$OUT/specificity/resnet20-crossprice.md" ;;
search)
    say "search comparison (methods x budgets x seeds)"
    if [ "${REDUCED:-0}" = 1 ]; then
        "$PY" benchmarks/search_digits.py --seeds 1 --budgets 0.3 --skip-demo --steps 10 --out "$OUT/search"
    else
        "$PY" benchmarks/search_digits.py --out "$OUT/search"
    fi ;;
report)
    say "reports"
    for folder in "$OUT"/figure2/* "$OUT"/table3/*-eyeriss "$OUT"/specificity/digits-*; do
        [ -d "$folder" ] && costmodel report "$folder"
    done ;;
*) echo "unknown part '$part'; parts: figure2 table3 specificity search report" >&2; exit 2 ;;
esac; done
say "done"
