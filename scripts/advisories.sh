#!/usr/bin/env bash
# `cargo deny check advisories` offline, against the RustSec snapshot in
# ../shared/advisory-db (these machines cannot reach github.com). Run by
# `make test`; fails on any advisory not accepted, with a written reason, in
# deny.toml's [advisories] ignore.
#
# cargo-deny 0.20 opens DB_PATH/advisory-db-3157b0e258782691 (the folder it
# derives from the default database URL) and reads its git HEAD for the
# database's date, so the snapshot's crates/ is copied into such a folder,
# committed once with the snapshot's date, and db-path is pointed at it
# (outside the clone, rebuilt when the snapshot changes).
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="${PAYWATCH_TOOLS:-/var/tmp/paywatch-tools}"
DENY="$TOOLS/cargo-deny/bin/cargo-deny"
SNAPSHOT="${PAYWATCH_ADVISORY_DB:-../shared/advisory-db}"
[ -d "$SNAPSHOT/crates" ] || { echo "paywatch: no advisory snapshot at $SNAPSHOT/crates" >&2; exit 1; }
command -v git >/dev/null 2>&1 || { echo "paywatch: git is needed for the advisory database" >&2; exit 1; }

DB_PATH="$TOOLS/advisory-dbs"
DB="$DB_PATH/advisory-db-3157b0e258782691"
# The snapshot's identity: its README (which names the upstream commit) and
# the list of advisory files with their sizes.
stamp=$( (cat "$SNAPSHOT/README.md" 2>/dev/null; cd "$SNAPSHOT" && find crates -type f -printf '%p %s\n' | sort) | sha256sum | cut -d' ' -f1)
if [ "$(cat "$DB/.paywatch-stamp" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$DB"
  mkdir -p "$DB"
  cp -r "$SNAPSHOT/crates" "$DB/crates"
  date=$(grep -oE '\([0-9]{4}-[0-9]{2}-[0-9]{2}\)' "$SNAPSHOT/README.md" | head -n 1 | tr -d '()')
  date="${date:-2026-08-21}"
  (
    cd "$DB"
    git init -q -b main
    git add crates
    GIT_AUTHOR_DATE="${date}T00:00:00Z" GIT_COMMITTER_DATE="${date}T00:00:00Z" \
      git -c user.name=paywatch -c user.email=paywatch@localhost commit -q -m "RustSec advisory-db snapshot ($date)"
  )
  echo "$stamp" > "$DB/.paywatch-stamp"
fi

# deny.toml with db-path pointing at the copy.
cfg=$(mktemp)
trap 'rm -f "$cfg"' EXIT
sed "s|^db-path = .*|db-path = \"$DB_PATH\"|" deny.toml > "$cfg"
grep -q "^db-path = \"$DB_PATH\"" "$cfg" || { echo "paywatch: deny.toml has no db-path line under [advisories]" >&2; exit 1; }
"$DENY" --log-level error --offline --config "$cfg" check advisories
echo "advisories ok (RustSec snapshot $(git -C "$DB" log -1 --format=%cs))"
