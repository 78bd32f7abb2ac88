#!/bin/bash
# sheetcake hook for Kea's run_script hook library (libdhcp_run_script.so), DHCPv4 and DHCPv6.
#
# Kea starts this script with the hook point as its only argument (leases4_committed,
# lease4_renew, lease6_release, ...) and the lease in environment variables (LEASE4_ADDRESS,
# LEASES4_AT0_ADDRESS, ...). For each lease handed out or renewed it adds the address to the
# client's subscriber and PUTs the whole subscriber to the sheetcake API; for each lease
# released, expired or declined it removes the address, and DELETEs the subscriber when it has
# none left. Every call sends the complete state, so repeating an event changes nothing.
#
# Kea runs the script with ONLY its own variables in the environment (no PATH, nothing from the
# service), so the settings come from a file: SHEETCAKE_KEA_CONF, default
# /etc/sheetcake/kea-hook.conf (shell assignments, see README.md; Kea cannot set
# SHEETCAKE_KEA_CONF, a wrapper script can). Variables already set in the environment win over
# the file, which is handy when running the script by hand.
#
# Failures are logged to syslog (tag sheetcake-kea) and stderr with the reason; the script
# always exits 0 so Kea never sees an error. curl gives up after 2 seconds.

set -u
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

settings=(SHEETCAKE_API_URL SHEETCAKE_API_TOKEN SHEETCAKE_API_TOKEN_FILE SHEETCAKE_PLANS
    SHEETCAKE_DEFAULT_PLAN SHEETCAKE_KEYS SHEETCAKE_STATE_DIR)
declare -A from_env=()
for v in "${settings[@]}"; do
    if [ -n "${!v-}" ]; then from_env[$v]=${!v}; fi
done
conf=${SHEETCAKE_KEA_CONF:-/etc/sheetcake/kea-hook.conf}
# shellcheck source=/dev/null
if [ -r "$conf" ]; then . "$conf"; fi
for v in "${!from_env[@]}"; do printf -v "$v" '%s' "${from_env[$v]}"; done

api_url=${SHEETCAKE_API_URL:-http://127.0.0.1:9180}
token=${SHEETCAKE_API_TOKEN:-}
if [ -z "$token" ] && [ -n "${SHEETCAKE_API_TOKEN_FILE:-}" ]; then
    token=$(cat -- "$SHEETCAKE_API_TOKEN_FILE" 2>/dev/null) || token=
fi
plans=${SHEETCAKE_PLANS:-/etc/sheetcake/dhcp-plans}
# "download upload [node]" for clients the plan file does not list; empty leaves them alone.
default_plan=${SHEETCAKE_DEFAULT_PLAN:-}
# Which identifiers are looked up in the plan file, in order. hostname is not in the default:
# clients choose their own hostnames.
keys=${SHEETCAKE_KEYS:-client-id duid hwaddr remote-id circuit-id}
state=${SHEETCAKE_STATE_DIR:-/var/lib/sheetcake-kea}
hook=${1:-}

# To syslog; to stderr (Kea's log, or the terminal) when syslog cannot be reached.
log() {
    logger --socket-errors=on -t sheetcake-kea -p daemon.warning -- "$hook: $*" 2>/dev/null ||
        printf 'sheetcake-kea: %s: %s\n' "$hook" "$*" >&2
}

# Percent-encodes one path segment (ids may hold '/', '@', spaces).
urlencode() {
    local LC_ALL=C s=$1 out='' c i
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case $c in
        [A-Za-z0-9._~-]) out+=$c ;;
        *) printf -v c '%%%02X' "'$c" && out+=$c ;;
        esac
    done
    printf '%s' "$out"
}

json_string() {
    local s=${1//\\/\\\\}
    printf '"%s"' "${s//\"/\\\"}"
}

# api METHOD PATH [BODY]: true on 2xx; logs the status and the server's error otherwise.
# The token goes to curl on stdin, not on its command line where ps would show it.
api() {
    local method=$1 path=$2 body=${3:-} out code rc secret=''
    local args=(--silent --show-error --max-time 2 --connect-timeout 1 -X "$method"
        -w '\n%{http_code}' -K -)
    if [ -n "$body" ]; then
        args+=(-H 'Content-Type: application/json' --data-binary "$body")
    fi
    if [ -n "$token" ]; then secret="header = \"Authorization: Bearer $token\""; fi
    out=$(curl "${args[@]}" "$api_url$path" 2>&1 <<<"$secret")
    rc=$?
    code=${out##*$'\n'}
    out=${out%$'\n'*}
    out=${out//$'\n'/ }
    out=${out%"${out##*[![:space:]]}"}
    case $code in
    2??) return 0 ;;
    404) [ "$method" = DELETE ] && return 0 ;; # already gone: what we wanted
    esac
    if [ "$rc" -ne 0 ]; then
        log "$method $path: no answer from $api_url (curl exit $rc): ${out:0:300}"
    else
        log "$method $path: HTTP $code: ${out:0:500}"
    fi
    return 1
}

# The plan of a client: "subscriber download upload [node]", from the plan file, whose lines
# are "KEY SUBSCRIBER DOWNLOAD UPLOAD [NODE]" (# starts a comment). Keys compare without case.
# Arguments: KIND=VALUE pairs for the identifiers this lease carries.
lookup_plan() {
    local kind pair value line
    for kind in $keys; do
        for pair in "$@"; do
            [ "${pair%%=*}" = "$kind" ] || continue
            value=${pair#*=}
            [ -n "$value" ] || continue
            if [ -r "$plans" ]; then
                line=$(awk -v k="$value" 'BEGIN { k = tolower(k) }
                    $1 !~ /^#/ && tolower($1) == k && NF >= 4 { print $2, $3, $4, $5; exit }' "$plans")
                if [ -n "$line" ]; then
                    printf '%s\n' "$line"
                    return 0
                fi
            fi
        done
    done
    [ -n "$default_plan" ] || return 1
    # A default subscriber is named after the first identifier the lease has, hardware
    # address first so that a dual-stack client's v4 and v6 leases meet in one subscriber
    # when Kea knows the MAC of both.
    for kind in hwaddr client-id duid; do
        for pair in "$@"; do
            if [ "${pair%%=*}" = "$kind" ] && [ -n "${pair#*=}" ]; then
                printf 'dhcp-%s %s\n' "${pair#*=}" "$default_plan"
                return 0
            fi
        done
    done
    return 1
}

# change add|remove ADDRESS [KIND=VALUE...]: updates the subscriber's address list under a lock
# (Kea does not wait for the script, so several may run at once) and sends it.
change() {
    local op=$1 address=$2 id='' down='' up='' node='' plan file fd addresses body a
    shift 2
    [ -n "$address" ] || return 0
    local by_address
    by_address="$state/by-address/$(urlencode "$address")"
    if [ "$op" = remove ] && [ -r "$by_address" ]; then
        id=$(cat -- "$by_address")
    else
        plan=$(lookup_plan "$@") || {
            [ "$op" = add ] && log "no plan for $address ($*); not shaped"
            return 0
        }
        read -r id down up node <<<"$plan"
    fi
    [ -n "$id" ] || return 0
    # An address handed to a new client while the old one still has it here (its release was
    # missed): take it from the old one first, or sheetcake would refuse the overlap (409).
    if [ "$op" = add ] && [ -r "$by_address" ] && [ "$(cat -- "$by_address")" != "$id" ]; then
        change remove "$address"
    fi
    # State file: line 1 "download upload [node]", then one address per line.
    file="$state/$(urlencode "$id")"
    if ! exec {fd}>>"$file"; then
        log "cannot write $file; is $state writable by Kea's user?"
        return 0
    fi
    if ! flock -w 2 "$fd"; then
        log "$id: state locked for 2 s; $op $address skipped"
        exec {fd}>&-
        return 0
    fi
    if [ -z "$down" ]; then
        read -r down up node <"$file"
    fi
    addresses=$(tail -n +2 -- "$file")
    if [ "$op" = add ]; then
        addresses=$(printf '%s\n%s\n' "$addresses" "$address" | sed '/^$/d' | sort -u)
        printf '%s\n' "$id" >"$by_address"
    else
        addresses=$(printf '%s\n' "$addresses" | grep -vxF -- "$address" | sed '/^$/d')
        rm -f -- "$by_address"
    fi
    # Truncate rather than delete: another run may be waiting on this file's lock.
    printf '%s %s %s\n%s' "$down" "$up" "$node" "${addresses:+$addresses$'\n'}" >"$file"
    if [ -z "$addresses" ]; then
        api DELETE "/v1/subscribers/$(urlencode "$id")"
    elif [ -z "$down" ] || [ -z "$up" ]; then
        log "$id: no plan known; $op $address not sent"
    else
        body='{"addresses": ['
        while read -r a; do body+="$(json_string "$a"), "; done <<<"$addresses"
        body="${body%, }], \"download\": $(json_string "$down"), \"upload\": $(json_string "$up")"
        [ -n "$node" ] && body+=", \"node\": $(json_string "$node")"
        api PUT "/v1/subscribers/$(urlencode "$id")" "$body}"
    fi
    exec {fd}>&-
    return 0
}

# v6 leases: a delegated prefix is ADDRESS/LEN, an address is itself.
v6_address() {
    local address=$1 len=$2 type=$3
    if [ "$type" = IA_PD ] || { [ -n "$len" ] && [ "$len" != 128 ]; }; then
        printf '%s/%s' "$address" "$len"
    else
        printf '%s' "$address"
    fi
}

mkdir -p -- "$state/by-address" 2>/dev/null

# Option 82 sub-options, when the query passed a relay agent: 1 circuit-id, 2 remote-id (hex).
relay=("circuit-id=${QUERY4_OPTION_82_SUB_OPTION_1:-}" "remote-id=${QUERY4_OPTION_82_SUB_OPTION_2:-}")

# One v4 lease held in variables named PREFIX_ADDRESS, PREFIX_CLIENT_ID, ...
v4() {
    local op=$1 p=$2 a c h n
    a=${p}_ADDRESS c=${p}_CLIENT_ID h=${p}_HWADDR n=${p}_HOSTNAME
    change "$op" "${!a:-}" "client-id=${!c:-}" "hwaddr=${!h:-}" "hostname=${!n:-}" "${relay[@]}"
}

v6() {
    local op=$1 p=$2 a l t d h n
    a=${p}_ADDRESS l=${p}_PREFIX_LEN t=${p}_TYPE d=${p}_DUID h=${p}_HWADDR n=${p}_HOSTNAME
    [ -n "${!a:-}" ] || return 0
    change "$op" "$(v6_address "${!a}" "${!l:-}" "${!t:-}")" \
        "duid=${!d:-}" "hwaddr=${!h:-}" "hostname=${!n:-}"
}

case $hook in
leases4_committed)
    for ((i = 0; i < ${DELETED_LEASES4_SIZE:-0}; i++)); do v4 remove "DELETED_LEASES4_AT$i"; done
    for ((i = 0; i < ${LEASES4_SIZE:-0}; i++)); do v4 add "LEASES4_AT$i"; done
    ;;
lease4_renew) v4 add LEASE4 ;;
lease4_release | lease4_expire | lease4_decline) v4 remove LEASE4 ;;
leases6_committed)
    for ((i = 0; i < ${DELETED_LEASES6_SIZE:-0}; i++)); do v6 remove "DELETED_LEASES6_AT$i"; done
    for ((i = 0; i < ${LEASES6_SIZE:-0}; i++)); do v6 add "LEASES6_AT$i"; done
    ;;
lease6_renew | lease6_rebind) v6 add LEASE6 ;;
lease6_release | lease6_expire | lease6_decline) v6 remove LEASE6 ;;
*) ;; # lease4_recover, lease6_recover and future hook points: nothing to do
esac
exit 0
