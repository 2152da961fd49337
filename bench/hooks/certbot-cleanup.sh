#!/bin/sh
# certbot --manual-cleanup-hook: remove the TXT value again.
exec curl -fsS -o /dev/null -X POST "$BENCH_CONTROL/cleanup" --data-urlencode "fqdn=_acme-challenge.$CERTBOT_DOMAIN" --data-urlencode "value=$CERTBOT_VALIDATION"
