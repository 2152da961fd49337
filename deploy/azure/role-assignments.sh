#!/usr/bin/env bash
# The Azure role assignments amlcert's identity needs (README "Azure runbook"), with the Azure CLI (`az login` as
# someone who may assign roles: Owner, User Access Administrator or Role Based Access Control Administrator).
#
#   deploy/azure/role-assignments.sh zone        DNS: the built-in "DNS Zone Contributor" on the zone (simple)
#   deploy/azure/role-assignments.sh recordset   DNS, tighter: "amlcert DNS-01 record set writer" (custom,
#                                                amlcert-dns-recordset-role.json) on each _acme-challenge record set,
#                                                plus the built-in "Reader" on the zone
# Both also assign "amlcert Azure ML extension updater" (custom, amlcert-extension-role.json) on the cluster.
#
# Settings (environment):
#   PRINCIPAL_ID     object (principal) id of the identity: az identity show -g <rg> -n <name> --query principalId
#   SUBSCRIPTION_ID  the subscription of the zone and the cluster (and of the custom roles' AssignableScopes)
#   DNS_RG DNS_ZONE  the zone's resource group and name (e.g. contoso.com)
#   RECORDS          recordset mode: the names below the zone that get certificates, space-separated
#                    (ml for ml.contoso.com; a wildcard *.ml uses ml too)
#   CLUSTER_RG CLUSTER_NAME  the AKS or Arc cluster; CLUSTER_TYPE managedClusters (default) or connectedClusters
# With manageRecord: true, amlcert also writes the FQDN's A record: use zone mode, or the zone-scoped custom role
# amlcert-dns-role.json instead of DNS Zone Contributor.
set -euo pipefail
mode="${1:-zone}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${PRINCIPAL_ID:?set PRINCIPAL_ID}" "${SUBSCRIPTION_ID:?set SUBSCRIPTION_ID}" "${DNS_RG:?set DNS_RG}" "${DNS_ZONE:?set DNS_ZONE}"
: "${CLUSTER_RG:?set CLUSTER_RG}" "${CLUSTER_NAME:?set CLUSTER_NAME}"
cluster_type="${CLUSTER_TYPE:-managedClusters}"
case "$cluster_type" in
  managedClusters) cluster_provider=Microsoft.ContainerService ;;
  connectedClusters) cluster_provider=Microsoft.Kubernetes ;;
  *) echo "CLUSTER_TYPE must be managedClusters or connectedClusters" >&2; exit 2 ;;
esac
zone_scope="/subscriptions/$SUBSCRIPTION_ID/resourceGroups/$DNS_RG/providers/Microsoft.Network/dnszones/$DNS_ZONE"
cluster_scope="/subscriptions/$SUBSCRIPTION_ID/resourceGroups/$CLUSTER_RG/providers/$cluster_provider/$cluster_type/$CLUSTER_NAME"

assign() { # role scope
  az role assignment create --assignee-object-id "$PRINCIPAL_ID" --assignee-principal-type ServicePrincipal \
    --role "$1" --scope "$2" --output none
  echo "assigned \"$1\" on $2"
}
# a custom role from its file, with this subscription as its assignable scope (created once)
custom_role() { # file
  local name tmp
  name="$(sed -n 's/^ *"Name": *"\(.*\)",$/\1/p' "$1")"
  if [ -z "$(az role definition list --custom-role-only true --name "$name" --query '[].id' --output tsv)" ]; then
    tmp="$(mktemp)"
    sed "s#/subscriptions/00000000-0000-0000-0000-000000000000#/subscriptions/$SUBSCRIPTION_ID#" "$1" > "$tmp"
    az role definition create --role-definition "$tmp" --output none
    rm -f "$tmp"
    echo "created role \"$name\""
  fi
  ROLE_NAME="$name"
}

case "$mode" in
  zone)
    assign "DNS Zone Contributor" "$zone_scope"
    ;;
  recordset)
    : "${RECORDS:?set RECORDS (e.g. RECORDS=ml for ml.$DNS_ZONE)}"
    custom_role "$here/amlcert-dns-recordset-role.json"
    for name in $RECORDS; do
      set_name="_acme-challenge.$name"
      # The record set must exist for an assignment on it, and must never be emptied: amlcert removes only its own
      # values, and deletes the set when the last one goes, so a placeholder value stays in it.
      az network dns record-set txt add-record --subscription "$SUBSCRIPTION_ID" -g "$DNS_RG" -z "$DNS_ZONE" \
        -n "$set_name" -v "amlcert-placeholder" --output none
      assign "$ROLE_NAME" "$zone_scope/TXT/$set_name"
    done
    assign "Reader" "$zone_scope"
    ;;
  *)
    echo "usage: $0 zone|recordset" >&2
    exit 2
    ;;
esac
custom_role "$here/amlcert-extension-role.json"
assign "$ROLE_NAME" "$cluster_scope"
echo "Role assignments take a few minutes to apply; then run: amlcert doctor"
