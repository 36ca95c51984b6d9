# build.sh — sourced by the scripts that drive llama.cpp's prebuilt CPU
# libraries (tools/bench-vs-llamacpp, tools/quality-vs-llamacpp,
# test/test_kquant.sh): where node-llama-cpp keeps them, and how a small C
# driver of tools/llamacpp is built against them. Needs ROOT (the repository).
#
#   llamacpp_installed           0 when node-llama-cpp's libraries are there
#   llamacpp_build NAME SCRATCH  build/llamacpp-NAME from tools/llamacpp/NAME.c
#                                (llama.h read from the bundled sources once,
#                                in SCRATCH); prints why on failure, returns 1
LLAMACPP=$ROOT/tools/llamacpp
LLAMACPP_NLC=$LLAMACPP/node_modules/node-llama-cpp
LLAMACPP_LIBS=$LLAMACPP/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64

llamacpp_installed() { [[ -d $LLAMACPP_NLC && -d $LLAMACPP_LIBS ]]; }

llamacpp_release() { sed -n 's/^ *"tag": *"\([^"]*\)".*/\1/p' "$LLAMACPP_NLC/llama/llama.cpp.info.json" 2>/dev/null | head -1; }

llamacpp_build() {
    local name=$1 scratch=$2 headers binary
    headers=$ROOT/build/llamacpp-include/$(llamacpp_release)
    binary=$ROOT/build/llamacpp-$name
    if [[ ! -f $headers/include/llama.h || ! -f $headers/ggml/include/gguf.h ]]; then
        rm -rf "$scratch/llama.cpp.git"
        git clone -q --bare "$LLAMACPP_NLC/llama/gitRelease.bundle" "$scratch/llama.cpp.git" && mkdir -p "$headers" &&
            git --git-dir="$scratch/llama.cpp.git" archive HEAD include/llama.h ggml/include | tar -x -C "$headers" ||
            { echo "cannot read llama.cpp's headers from $LLAMACPP_NLC/llama/gitRelease.bundle" >&2; return 1; }
    fi
    if [[ ! -x $binary || $LLAMACPP/$name.c -nt $binary || $LLAMACPP_NLC/package.json -nt $binary ]]; then
        mkdir -p "$ROOT/build"
        ${CC:-cc} -O2 -Wall -Wextra -I"$headers/include" -I"$headers/ggml/include" -o "$binary" "$LLAMACPP/$name.c" \
            "$LLAMACPP_LIBS"/libllama*.so "$LLAMACPP_LIBS"/libggml.*so "$LLAMACPP_LIBS"/libggml-base.so \
            -Wl,-rpath,"$LLAMACPP_LIBS" -lm ||
            { echo "cannot build tools/llamacpp/$name.c against node-llama-cpp's libraries" >&2; return 1; }
    fi
}
