#!/bin/sh
# lego's exec DNS provider (default mode): "$1" is present or cleanup, "$2" the record's FQDN, "$3" the value.
# Writes through the bench's DNS provider API (bench/control.ts), like a provider's API call.
case "$1" in
  present|cleanup) exec curl -fsS -o /dev/null -X POST "$BENCH_CONTROL/$1" --data-urlencode "fqdn=$2" --data-urlencode "value=$3" ;;
  *) exit 0 ;;
esac
