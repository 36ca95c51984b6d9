# speed-docs.sh — sourced by tools/bench and tools/bench-vs-llamacpp: how
# they name this machine's CPU, and how --write-docs puts a measured table
# into the one document that holds it. Needs ROOT (the repository).
#
# Every measured table sits between two marker lines, so the tool that
# measured it can measure it again and rewrite it in place:
#   README.md        <!-- speed:readme -->          this CPU's runq-vs-llama.cpp
#                    <!-- /speed:readme -->         table (the README's one table)
#   docs/SPEED.md    <!-- speed:CPU -->             a CPU's section: its heading
#                    <!-- speed:CPU:KIND -->        and its tables, one block per
#                    <!-- /speed:CPU:KIND -->       kind (vs-llamacpp for the CPUs
#                    <!-- /speed:CPU -->            not in the README, busy-core, bench)
# CPU is cpu_id's slug. A README table of another CPU moves to that CPU's
# section of docs/SPEED.md when this CPU's replaces it, so no table is in
# both documents.
#
#   cpu_id                 vendor, family and model: amd-f26-m2
#   cpu_title              "AMD EPYC (Zen 5, family 26 model 2)"
#   cpu_simd               the SIMD extensions runq's kernel sets look for
#   write_speed_block KIND FILE    FILE's lines as this CPU's KIND table
#                          (KIND readme: README.md's table)

cpuinfo_field() { grep -m1 "^$1[[:space:]]*:" /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//'; }

cpu_id() {
    local vendor family model
    vendor=$(cpuinfo_field vendor_id) family=$(cpuinfo_field 'cpu family') model=$(cpuinfo_field model)
    case $vendor in AuthenticAMD) vendor=amd ;; GenuineIntel) vendor=intel ;; "") vendor=$(uname -m) ;; *) vendor=$(tr 'A-Z ' 'a-z-' <<<"$vendor") ;; esac
    if [[ -z $family ]]; then   # ARM: the part number names the core
        family=$(cpuinfo_field 'CPU implementer') model=$(cpuinfo_field 'CPU part')
    fi
    echo "$vendor-f${family:-0}-m${model:-0}"
}

# AMD's family and model name the core generation; other CPUs' model name says enough.
cpu_title() {
    local name family model generation=""
    name=$(cpuinfo_field 'model name') family=$(cpuinfo_field 'cpu family') model=$(cpuinfo_field model)
    [[ -n $name ]] || name="$(uname -m) CPU part $(cpuinfo_field 'CPU part')"
    if [[ $(cpuinfo_field vendor_id) == AuthenticAMD && -n $family ]]; then
        case $family in
            23) generation="Zen or Zen 2" ;;
            25) if (( (model >= 16 && model <= 31) || (model >= 96 && model <= 127) || (model >= 160 && model <= 175) )); then
                    generation="Zen 4"; else generation="Zen 3"; fi ;;
            26) generation="Zen 5" ;;
        esac
    fi
    echo "$name (${generation:+$generation, }family $family model $model)"
}

cpu_simd() {
    local flags out=() f
    flags=" $(cpuinfo_field flags) $(cpuinfo_field Features) "
    for f in avx2:AVX2 f16c:F16C fma:FMA avx_vnni:AVX-VNNI avx512f:AVX-512F avx512bw:AVX-512BW avx512vl:AVX-512VL \
             avx512_vnni:AVX512-VNNI amx_int8:AMX-INT8 asimd:NEON asimddp:dot-product i8mm:i8mm; do
        [[ $flags == *" ${f%%:*} "* ]] && out+=("${f#*:}")
    done
    (( ${#out[@]} )) && (IFS=,; echo "${out[*]}" | sed 's/,/, /g') || echo "none of runq's"
}

# The lines of FILE between "<!-- ID -->" and "<!-- /ID -->" (exclusive).
speed_block() {
    awk -v begin="<!-- $2 -->" -v end="<!-- /$2 -->" '$0 == end { on = 0 } on { print } $0 == begin { on = 1 }' "$1"
}

# FILE with the block ID's lines replaced by those of CONTENT; a missing
# block is added before the line "<!-- /PARENT -->" (PARENT given), else at the end.
replace_speed_block() {
    local file=$1 id=$2 content=$3 parent=${4:-}
    if grep -qxF "<!-- $id -->" "$file"; then
        awk -v begin="<!-- $id -->" -v end="<!-- /$id -->" -v content="$content" '
            $0 == begin { print; while ((getline line < content) > 0) print line; skip = 1; next }
            $0 == end { skip = 0 }
            !skip { print }' "$file" >"$file.tmp.$$"
    elif [[ -n $parent ]] && grep -qxF "<!-- /$parent -->" "$file"; then
        awk -v id="$id" -v parent_end="<!-- /$parent -->" -v content="$content" '
            $0 == parent_end { print "<!-- " id " -->"; while ((getline line < content) > 0) print line; print "<!-- /" id " -->"; print "" }
            { print }' "$file" >"$file.tmp.$$"
    else
        { cat "$file"; echo; echo "<!-- $id -->"; cat "$content"; echo "<!-- /$id -->"; } >"$file.tmp.$$"
    fi
    mv "$file.tmp.$$" "$file"
}

# FILE without the block ID (markers included).
remove_speed_block() {
    awk -v begin="<!-- $2 -->" -v end="<!-- /$2 -->" '$0 == begin { skip = 1 } !skip { print } $0 == end { skip = 0 }' "$1" >"$1.tmp.$$"
    mv "$1.tmp.$$" "$1"
}

# docs/SPEED.md gets a section for CPU (titled TITLE) when it has none.
ensure_cpu_section() {
    local speed=$1 cpu=$2 title=$3
    grep -qxF "<!-- speed:$cpu -->" "$speed" && return
    printf '\n<!-- speed:%s -->\n## Measured on %s\n\n<!-- /speed:%s -->\n' "$cpu" "$title" "$cpu" >>"$speed"
}

write_speed_block() {
    local kind=$1 content=$2 readme=$ROOT/README.md speed=$ROOT/docs/SPEED.md cpu title
    cpu=$(cpu_id) title=$(cpu_title)
    [[ -f $readme && -f $speed ]] || { echo "write_speed_block: README.md or docs/SPEED.md is missing" >&2; return 1; }
    if [[ $kind == readme ]]; then
        # the README's table of another CPU moves to that CPU's section of docs/SPEED.md
        local old_line old_cpu old_title
        old_line=$(speed_block "$readme" speed:readme | grep -m1 '^<!-- cpu: ' || true)
        old_cpu=$(sed -n 's/^<!-- cpu: \([^ ]*\) | .* -->$/\1/p' <<<"$old_line")
        old_title=$(sed -n 's/^<!-- cpu: [^ ]* | \(.*\) -->$/\1/p' <<<"$old_line")
        if [[ -n $old_cpu && $old_cpu != "$cpu" ]]; then
            speed_block "$readme" speed:readme | grep -v '^<!-- cpu: ' >"$content.old"
            ensure_cpu_section "$speed" "$old_cpu" "$old_title"
            replace_speed_block "$speed" "speed:$old_cpu:vs-llamacpp" "$content.old" "speed:$old_cpu"
            rm -f "$content.old"
        fi
        grep -qxF "<!-- speed:$cpu:vs-llamacpp -->" "$speed" && remove_speed_block "$speed" "speed:$cpu:vs-llamacpp"
        { echo "<!-- cpu: $cpu | $title -->"; cat "$content"; } >"$content.readme"
        replace_speed_block "$readme" speed:readme "$content.readme"
        rm -f "$content.readme"
        echo "README.md: the speed table rewritten for $title" >&2
    else
        ensure_cpu_section "$speed" "$cpu" "$title"
        replace_speed_block "$speed" "speed:$cpu:$kind" "$content" "speed:$cpu"
        echo "docs/SPEED.md: the $kind table of $title rewritten" >&2
    fi
}
