#!/usr/bin/env bash
# Builds bundle/: everything needed to run the CLI and the tests on a Linux x64 GPU machine that has
# an NVIDIA driver but no .NET SDK.
#
#   bundle/cli/        framework-dependent Release publish of the CLI (flashmla.dll)
#   bundle/tests/      framework-dependent Release publish of the xunit v3 test executable
#   bundle/dotnet-runtime-<ver>-linux-x64.tar.xz
#                      the `dotnet` host, host/fxr and shared/Microsoft.NETCore.App/<ver>
#                      taken from the local SDK install (no ASP.NET Core)
#   bundle/run.sh      launcher: unpacks the runtime once, sets DOTNET_ROOT, runs `flashmla ...` or the tests
#
# Usage: scripts/bundle.sh            (DOTNET_ROOT overrides where the runtime is taken from)
# The runtime tarball is cached in artifacts/bundle-cache/ and reused while the runtime is unchanged.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

bundle=$root/bundle
cache=$root/artifacts/bundle-cache
limit_mib=64

if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
  echo "error: the bundle is built for linux-x64 from the local .NET install; this is $(uname -s)-$(uname -m)" >&2
  exit 1
fi

dotnet_root=${DOTNET_ROOT:-$(dirname "$(readlink -f "$(command -v dotnet)")")}
latest() { find "$1" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort -V | tail -n 1; }
runtime_version=$(latest "$dotnet_root/shared/Microsoft.NETCore.App")
fxr_version=$(latest "$dotnet_root/host/fxr")
if [ -z "$runtime_version" ] || [ -z "$fxr_version" ] || [ ! -x "$dotnet_root/dotnet" ]; then
  echo "error: no .NET runtime under $dotnet_root (set DOTNET_ROOT)" >&2
  exit 1
fi
case "$runtime_version" in
  10.*) ;;
  *) echo "error: the local Microsoft.NETCore.App is $runtime_version; the project targets net10.0" >&2; exit 1 ;;
esac

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ "$commit" != unknown ] && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  commit="$commit-dirty"
fi

echo "== bundle: runtime $runtime_version (hostfxr $fxr_version) from $dotnet_root, commit $commit"
rm -rf "$bundle"
mkdir -p "$bundle" "$cache"

# PlotNativeRuntimes=none: no SkiaSharp native libraries (22 MB, for PNG plots only); plots are drawn
# from the recorded JSON elsewhere (flashmla bench --results), and SVG needs no native library.
publish() {
  local project=$1 out=$2
  echo "== dotnet publish $project -> ${out#"$root"/}"
  dotnet publish "$project" -c Release -o "$out" --self-contained false \
    -p:ContinuousIntegrationBuild=true -p:SatelliteResourceLanguages=en -p:PlotNativeRuntimes=none -nologo -v:quiet
}
publish src/FlashMla.Cli/FlashMla.Cli.csproj "$bundle/cli"
publish tests/FlashMla.Tests/FlashMla.Tests.csproj "$bundle/tests"
# Documentation XML files are not needed to run.
find "$bundle/cli" "$bundle/tests" -name '*.xml' -type f -delete

# The runtime tarball: reproducible (sorted names, fixed times and owners, single-threaded xz).
tarball=dotnet-runtime-$runtime_version-linux-x64.tar.xz
members=(dotnet "host/fxr/$fxr_version" "shared/Microsoft.NETCore.App/$runtime_version")
for f in LICENSE.txt ThirdPartyNotices.txt; do
  [ -f "$dotnet_root/$f" ] && members+=("$f")
done
stamp=$( (cd "$dotnet_root" && find "${members[@]}" -type f -printf '%P %s %T@\n' | sort && printf '%s\n' "${members[@]}") | sha256sum | cut -c1-16)
cached=$cache/${tarball%.tar.xz}-$stamp.tar.xz
if [ ! -f "$cached" ]; then
  echo "== packing the runtime (xz -9, about a minute)"
  rm -f "$cache"/dotnet-runtime-*.tar.xz
  tar -C "$dotnet_root" --sort=name --mtime='2000-01-01 00:00:00Z' --owner=0 --group=0 --numeric-owner \
    --format=gnu -cf - "${members[@]}" | xz -9 -T1 -c > "$cached.tmp"
  mv "$cached.tmp" "$cached"
else
  echo "== runtime tarball cached: ${cached#"$root"/}"
fi
cp "$cached" "$bundle/$tarball"

printf '%s\n' "$runtime_version-$stamp" > "$bundle/RUNTIME_ID"
printf '%s\n' "$tarball" > "$bundle/RUNTIME_TARBALL"
printf '%s\n' "$commit" > "$bundle/COMMIT"

cat > "$bundle/run.sh" <<'LAUNCHER'
#!/usr/bin/env bash
# FlashMLA.NET bundle launcher (made by scripts/bundle.sh). Needs only bash, tar, xz and an NVIDIA driver.
#
#   bundle/run.sh flashmla info            the CLI (any flashmla command and options)
#   bundle/run.sh tests [test options]     the xunit v3 test executable (GPU tests run when a GPU is present)
#
# The .NET runtime is unpacked once to ${FLASHMLA_RUNTIME_DIR:-${TMPDIR:-/tmp}/flashmla-dotnet-<id>}.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
usage() {
  echo "usage: $0 flashmla <command> [options]   (e.g. $0 flashmla info)" >&2
  echo "       $0 tests [test options]           (e.g. $0 tests --help)" >&2
}
if [ $# -lt 1 ]; then
  usage
  exit 2
fi

id=$(cat "$here/RUNTIME_ID")
tarball=$here/$(cat "$here/RUNTIME_TARBALL")
runtime=${FLASHMLA_RUNTIME_DIR:-${TMPDIR:-/tmp}/flashmla-dotnet-$id-$(id -u)}
if [ ! -f "$runtime/.complete" ]; then
  echo "unpacking the .NET runtime to $runtime" >&2
  mkdir -p "$(dirname "$runtime")"
  staging=$(mktemp -d "${runtime}.XXXXXX")
  tar -C "$staging" -xJf "$tarball"
  touch "$staging/.complete"
  rm -rf "$runtime"
  mv "$staging" "$runtime" 2>/dev/null || rm -rf "$staging"   # another run may have won the race
fi

export DOTNET_ROOT=$runtime
export PATH=$runtime:$PATH
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
export FLASHMLA_COMMIT=${FLASHMLA_COMMIT:-$(cat "$here/COMMIT")}

what=$1
shift
case "$what" in
  flashmla|cli)
    exec "$runtime/dotnet" "$here/cli/FlashMla.Cli.dll" "$@"
    ;;
  tests|test)
    cd "$here/tests"
    exec "$runtime/dotnet" "$here/tests/FlashMla.Tests.dll" "$@"
    ;;
  *)
    usage
    exit 2
    ;;
esac
LAUNCHER
chmod +x "$bundle/run.sh"

# Size check.
bytes=$(du -sb "$bundle" | cut -f1)
mib=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')
echo "== bundle/: $mib MiB ($bytes bytes) in $(find "$bundle" -type f | wc -l) files"
du -sh "$bundle"/* | sed 's/^/   /'
if [ "$bytes" -ge $((limit_mib * 1048576)) ]; then
  echo "error: the bundle is over $limit_mib MiB" >&2
  exit 1
fi
cat <<EOF_USAGE
== done. On a Linux x64 machine with an NVIDIA driver, copy bundle/ there and run the GPU tests with:
   bundle/run.sh tests
   (the CLI: bundle/run.sh flashmla info | decode | verify | bench ...)
EOF_USAGE
