#!/bin/bash
# Checks the tree's formatting: the meson test 'format' (suites quick and
# format) runs it.
#
#   scripts/check_format.sh [--fix] [PATH...]
#
# C sources and headers must be as clang-format leaves them (.clang-format;
# guests/linux/.clang-format adds to it), and every text file must follow
# .editorconfig's cheap rules: no trailing whitespace (Markdown may have it),
# no tabs in C, headers, shell, Python and meson.build, a final newline.
# Files are the ones git knows (tracked, or new and not ignored), so a new
# file is checked without being listed anywhere; PATH limits the check to
# those files or folders. Prints each offending file (its path from the top
# of the tree) with a hint, and exits 1 if there is any.
#
# --fix: runs clang-format -i on the C files first, then checks.
set -euo pipefail
caller_directory=$PWD
cd "$(dirname "$0")/.."
root=$PWD

fix=false
if [ "${1:-}" = --fix ]; then
    fix=true
    shift
fi

# Not a git checkout (a release tarball): nothing to list; 77 is meson's skip.
if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    echo "check_format: not a git checkout, nothing to check"
    exit 77
fi

# Files that clang-format must leave alone, with the reason.
excluded_from_clang_format=(
    'tests/isa/*.h'         # assembler macros for the .S tests, not C
)
# Files whose bytes are data, not text to tidy.
excluded_from_text_rules=(
    'tests/fuzz/corpus/*'   # fuzz inputs: every byte is part of the input
)

# Every file git knows that is still there (tracked, or new and not ignored).
paths=()
for path in "$@"; do
    [[ $path == /* ]] || path=$caller_directory/$path
    paths+=("$(realpath -m --relative-to="$root" "$path")")
done
mapfile -d '' known_files < <(git ls-files -z --cached --others --exclude-standard -- "${paths[@]}")
# Whether FILE matches one of the PATTERNs (a `*` also matches a '/').
matches_any() {
    local file=$1 pattern
    shift
    for pattern in "$@"; do
        # shellcheck disable=SC2053 # the pattern is a glob on purpose
        [[ $file == $pattern ]] && return 0
    done
    return 1
}
c_files=()
text_files=()
for file in "${known_files[@]}"; do
    [ -f "$file" ] || continue    # deleted, not yet committed
    matches_any "$file" "${excluded_from_text_rules[@]}" || text_files+=("$file")
    if [[ $file == *.c || $file == *.h ]] && ! matches_any "$file" "${excluded_from_clang_format[@]}"; then
        c_files+=("$file")
    fi
done

# The version the tree is formatted with is Debian 12's clang-format 14;
# another version may format some lines differently.
clang_format=${CLANG_FORMAT:-}
if [ -z "$clang_format" ]; then
    clang_format=clang-format
    command -v clang-format-14 >/dev/null && clang_format=clang-format-14
fi
if ! command -v "$clang_format" >/dev/null; then
    echo "check_format: $clang_format not found: install it (scripts/setup.sh)" >&2
    exit 1
fi
version=$("$clang_format" --version | grep -o 'version [0-9]*' | cut -d' ' -f2)
if [ "$version" != 14 ]; then
    echo "check_format: warning: $clang_format is version $version; the tree follows version 14" >&2
fi

if $fix && [ ${#c_files[@]} -gt 0 ]; then
    "$clang_format" -i --style=file -- "${c_files[@]}"
fi

failed=false

# clang-format: one run over every file; each violation is reported as
# "FILE:LINE:COLUMN: error: code should be clang-formatted".
if [ ${#c_files[@]} -gt 0 ]; then
    status=0
    output=$("$clang_format" --dry-run --Werror --ferror-limit=1 --style=file -- "${c_files[@]}" 2>&1) ||
        status=$?
    mapfile -t unformatted < <(printf '%s\n' "$output" |
        sed -n 's/^\(.*\):[0-9]*:[0-9]*: error: code should be clang-formatted.*/\1/p' | sort -u)
    for file in "${unformatted[@]}"; do
        echo "$file: not clang-formatted; fix: clang-format -i $file"
    done
    if [ $status -ne 0 ]; then
        failed=true
        if [ ${#unformatted[@]} -eq 0 ]; then
            printf '%s\n' "$output" >&2    # clang-format failed otherwise (a bad .clang-format?)
        fi
    fi
fi

# .editorconfig's cheap rules, on every text file (a file with a NUL byte
# is binary and skipped).
if [ ${#text_files[@]} -gt 0 ]; then
    printf '%s\0' "${text_files[@]}" | python3 -c '
import os, re, sys
NO_TABS = re.compile(r"(\.(c|h|sh|py)|(^|/)meson\.build)$")
SHELL_SHEBANG = re.compile(rb"#!\s*(/usr)?/bin/(env\s+)?(ba)?sh\b")
failed = False
for path in sys.stdin.buffer.read().split(b"\0"):
    if not path:
        continue
    name = os.fsdecode(path)
    with open(path, "rb") as f:
        data = f.read()
    if not data or b"\0" in data:
        continue
    lines = data.split(b"\n")
    problems = []
    if not data.endswith(b"\n"):
        problems.append(("no newline at the end", "add one"))
    if not name.endswith(".md"):
        numbers = [str(i + 1) for i, line in enumerate(lines) if line.rstrip() != line]
        if numbers:
            problems.append(("trailing whitespace on line " + ", ".join(numbers[:5]) +
                             (", ..." if len(numbers) > 5 else ""),
                             "sed -i \"s/[[:space:]]*$//\" " + name))
    if NO_TABS.search(name) or SHELL_SHEBANG.match(data):
        numbers = [str(i + 1) for i, line in enumerate(lines) if b"\t" in line]
        if numbers:
            problems.append(("tab on line " + ", ".join(numbers[:5]) +
                             (", ..." if len(numbers) > 5 else ""), "indent with spaces"))
    for problem, hint in problems:
        print(f"{name}: {problem}; fix: {hint}")
        failed = True
sys.exit(1 if failed else 0)
' || failed=true
fi

if $failed; then
    echo "check_format: the files above break .clang-format or .editorconfig" \
        "(scripts/check_format.sh --fix formats the C files)"
    exit 1
fi
echo "check_format: ${#c_files[@]} C files and ${#text_files[@]} text files checked, all clean"
