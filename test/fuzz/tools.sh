#!/usr/bin/env bash
# tools.sh — make fuzz-build's check that CC (clang) links libFuzzer; when it
# does not, installs clang and libclang-rt-14-dev with apt-get (root only),
# as test/test_arm.sh installs its cross tools.   test/fuzz/tools.sh CC
cc=${1:-clang}
probe=$(mktemp -d /tmp/edge-fuzz-probe-XXXXXX)
trap 'rm -rf "$probe"' EXIT
links() {
    echo 'int LLVMFuzzerTestOneInput(const char *data, unsigned long size) { (void)data; (void)size; return 0; }' >"$probe/p.c"
    "$cc" -fsanitize=fuzzer -o "$probe/p" "$probe/p.c" 2>/dev/null
}
links && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "fuzz: $cc -fsanitize=fuzzer does not link: installing clang libclang-rt-14-dev with apt-get"
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q clang libclang-rt-14-dev; } >"$probe/apt.log" 2>&1 \
        || tail -5 "$probe/apt.log"
    links && exit 0
fi
echo "fuzz: $cc -fsanitize=fuzzer does not link; install clang and libclang-rt-14-dev (apt-get, as root)" >&2
exit 1
