#!/bin/sh
# Build the King James Version corpus (4,298,239 bytes, one verse per line) of the MRNN/GRU/LSTM
# text benchmark from Debian's bible-kjv-text and bible-kjv packages (4.38); the text is in the
# public domain (see probseq/data/embedded/KJV_GENESIS_NOTICE.md).
#
#   sh benchmarks/kjv_corpus.sh OUT.txt        # needs apt-get (Debian/Ubuntu) and dpkg
set -eu
out=$(realpath -m "${1:?usage: kjv_corpus.sh OUT.txt}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
apt-get download bible-kjv-text bible-kjv >/dev/null
for deb in ./*.deb; do dpkg -x "$deb" root; done
cd - >/dev/null
(cd "$work/root/usr/lib" && ../bin/bible -l 100000 -d bible.data "gen1:1-rev22:21") > "$out"
echo "wrote $out ($(wc -c < "$out") bytes; sha256 $(sha256sum "$out" | cut -d' ' -f1))"
echo "expected 4298239 bytes, sha256 6f74f5589333c56c263963e6347dba662bae2d96861302e690aaae0b4a855eda"
