#!/bin/sh
# certbot --manual-auth-hook: write the TXT value, then wait the fixed time certbot's DNS plugins wait by default
# (dns_common.DNSAuthenticator, --<plugin>-propagation-seconds, default 10 s in certbot 2.1): certbot itself never
# checks propagation.
set -e
curl -fsS -o /dev/null -X POST "$BENCH_CONTROL/present" --data-urlencode "fqdn=_acme-challenge.$CERTBOT_DOMAIN" --data-urlencode "value=$CERTBOT_VALIDATION"
sleep "${BENCH_CERTBOT_WAIT:-10}"
