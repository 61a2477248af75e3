#!/usr/bin/env bash
# Writes the seed inputs of each fuzz target from the project's fixtures into fuzz/corpus/<target>/ (files named
# seed-*). run.sh minimises the corpus afterwards with `cargo fuzz cmin`; the committed corpus is the minimised one.
set -euo pipefail
cd "$(dirname "$0")"
fixtures=../fixtures
base="https://hlf.crm4.dynamics.com/api/data/v9.2/"
mkdir -p corpus/{batch_response,page_json,error_body,config_toml,mapping_toml}

# batch_response: the content type on the first line, then the body; the boundary is the fixture's first delimiter.
for file in "$fixtures"/dataverse/batch-response-*.txt; do
  name=$(basename "$file" .txt)
  boundary=$(head -n1 "$file" | tr -d '\r' | sed 's/^--//')
  { printf 'multipart/mixed; boundary=%s\n' "$boundary"; cat "$file"; } >"corpus/batch_response/seed-$name"
  { printf 'multipart/mixed; boundary="%s"\n' "$boundary"; tr -d '\r' <"$file"; } >"corpus/batch_response/seed-$name-lf"
done

# page_json: pages of rows and change-tracking pages, with {base} replaced as the client's tests do.
for file in "$fixtures"/dataverse/contacts-*.json "$fixtures"/dataverse/whoami.json; do
  sed "s|{base}|$base|g" "$file" >"corpus/page_json/seed-$(basename "$file" .json)"
done

# error_body: the status on the first line, then Dataverse's or Azure AD's error body.
status_of() {
  case "$1" in
    error-concurrency) echo 412 ;;
    error-not-found-by-key) echo 404 ;;
    error-privilege-denied) echo 403 ;;
    error-throttled-requests) echo 429 ;;
    aad-*) echo 401 ;;
    *) echo 400 ;;
  esac
}
for file in "$fixtures"/dataverse/error-*.json "$fixtures"/dataverse/aad-*.json; do
  name=$(basename "$file" .json)
  { status_of "$name"; cat "$file"; } >"corpus/error_body/seed-$name"
done
printf '502\n<html><body>Bad gateway</body></html>' >corpus/error_body/seed-proxy-page

# config_toml and mapping_toml: the configuration and mapping fixtures as they are.
for file in "$fixtures"/config/*.toml; do
  cp "$file" "corpus/config_toml/seed-$(basename "$file" .toml)"
done
cp "$fixtures"/mapping/*.toml corpus/mapping_toml/
for file in corpus/mapping_toml/*.toml; do mv "$file" "corpus/mapping_toml/seed-$(basename "$file" .toml)"; done
# The mapping fixture has no lookup field: add one, as the mapping crate's tests write it.
{
  cat "$fixtures"/mapping/hlf-default.toml
  printf '\n[[records.mentor.fields]]\nfield = "account"\ncolumn = "parentcustomerid"\nowner = "app"\ntype = "lookup"\n'
  printf 'target_entity_set = "accounts"\nnavigation_property = "parentcustomerid_account"\ndisplay_name = "Company"\n'
} >corpus/mapping_toml/seed-with-lookup
