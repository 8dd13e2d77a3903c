#!/usr/bin/env bash
# Builds the FluxWire libFuzzer target and runs it for SECONDS (default 60).
#   Fuzz/run-fuzz.sh [SECONDS]        build, then fuzz from Fuzz/corpus
#   Fuzz/run-fuzz.sh --seeds          regenerate Fuzz/corpus
# Exit status is non-zero if the fuzzer finds a crash (the input is left in
# Fuzz/.build/artifacts/).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
build="$here/.build"
mkdir -p "$build/artifacts" "$build/corpus"

# The decoder's pure core: no NIO, no Crypto; LZ4 through the CLZ4 module map.
# FLUXWIRE_SOURCES points at another copy (e.g. one with a planted bug).
src="${FLUXWIRE_SOURCES:-$root/Sources/FluxWire}"
sources=(
    "$src/WireError.swift"
    "$src/WireFrame.swift"
    "$src/WireCodec.swift"
    "$src/WireMessage.swift"
    "$src/WireLengthScanner.swift"
)
flags=(-swift-version 6 -I "$root/Sources/CLZ4" -llz4 -module-name FluxWireFuzz)

if [[ "${1:-}" == "--seeds" ]]; then
    swiftc "${flags[@]}" -parse-as-library "${sources[@]}" "$here/make-seeds.swift" -o "$build/make-seeds"
    mkdir -p "$here/corpus"
    "$build/make-seeds" "$here/corpus"
    ls "$here/corpus"
    exit 0
fi

seconds="${1:-60}"
echo "building fuzz target (ASan + libFuzzer)…"
swiftc "${flags[@]}" -sanitize=fuzzer,address -parse-as-library -O -g \
    "${sources[@]}" "$here/FluxWireFuzz/main.swift" -o "$build/fluxwire-fuzz" 2> "$build/build.log" || {
    cat "$build/build.log" >&2
    exit 1
}
echo "fuzzing for ${seconds}s…"
# New inputs go to the scratch corpus; the committed seeds are only read.
# The Swift runtime's own backtracer would hold the output pipe open after a
# crash; libFuzzer and ASan print the stack already.
set +e
SWIFT_BACKTRACE=enable=no "$build/fluxwire-fuzz" -max_total_time="$seconds" -max_len=70000 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$build/artifacts/" "$build/corpus" "$here/corpus" > "$build/fuzz.log" 2>&1
status=$?
set -e
grep -v "^\"\|^#\|Uses:" "$build/fuzz.log" | tail -n 30
if [[ "$status" != 0 ]]; then
    echo "FluxWire fuzzer found a failure (exit $status); see $build/artifacts/" >&2
    exit "$status"
fi
echo "FluxWire fuzzer: no failure in ${seconds}s"
